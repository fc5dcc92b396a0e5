"""Typed exceptions of the library.

Library code raises these; only the shells (CLI, HTTP server) turn them into exit codes or
HTTP statuses. Every message is one line that says what went wrong and where.
"""

from __future__ import annotations

__all__ = [
    "SpeakerDBError",
    "UsageError",
    "UnknownEngineError",
    "EngineMissing",
    "AudioError",
    "TooShortError",
    "SilentAudioError",
    "TooLongError",
    "ManifestError",
    "CheckpointFormatError",
    "ModelMismatchError",
    "DatabaseNotFound",
    "DatabaseExistsError",
    "StoreError",
    "ReadOnlyError",
    "DiskFullError",
    "DamagedStoreError",
    "StoreDriverMissing",
    "StoreUnavailable",
    "IndexOutOfDateError",
    "NotFound",
    "AmbiguousKey",
    "Busy",
    "WeightsUnavailable",
    "DownloadError",
    "VectorEngineMissing",
    "VectorEngineUnavailable",
]


class SpeakerDBError(Exception):
    """Base of every error speakerdb raises on purpose."""

    exit_code = 2
    http_status = 400

    def __str__(self) -> str:  # always one line
        return " ".join(super().__str__().split())


class UsageError(SpeakerDBError):
    """Arguments that cannot work together or values out of range.

    ``option``: the library parameter at fault (``"device"``, ``"agg_k"``), named as such in
    the message; ``also``: other parameters the message names. The message never names a
    command-line flag: a shell that has its own names for them (the CLI's ``--agg-k``)
    rewrites these words when it prints the message, so the message uses them for the
    parameters alone ("device 'tpu': ...", not "no CUDA device")."""

    def __init__(self, message: str = "", option: str | None = None,
                 also: tuple[str, ...] = ()):
        super().__init__(message)
        self.option = option
        self.also = tuple(also)

    @property
    def options(self) -> tuple[str, ...]:
        """Every parameter the message names, ``option`` first."""
        return ((self.option,) if self.option else ()) + self.also


class UnknownEngineError(UsageError):
    """A vector tier or ingest engine name that no implementation is registered under."""


class EngineMissing(SpeakerDBError):
    """An optional engine whose package is not installed (``pip install 'speakerdb[ray]'``
    for the ray ingest engine)."""

    http_status = 500


class AudioError(SpeakerDBError):
    """Audio that cannot be read or used; the message names the input."""

    reason = "unreadable"

    def __init__(self, where: str, message: str):
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}")

    def __reduce__(self):  # across processes (decoding workers): same class, same fields
        return type(self), (self.where, self.message), self.__dict__


class TooShortError(AudioError):
    reason = "too_short"


class SilentAudioError(AudioError):
    reason = "silent"


class ManifestError(SpeakerDBError):
    """A manifest or trial list with a bad line; the message names file and line."""


class CheckpointFormatError(SpeakerDBError):
    """A model file that is not one of the known formats, or is damaged."""


class ModelMismatchError(SpeakerDBError):
    """A database bound to one model used with another."""

    http_status = 409


class DatabaseNotFound(SpeakerDBError):
    http_status = 404


class DatabaseExistsError(SpeakerDBError):
    http_status = 409


class StoreError(SpeakerDBError):
    """The metadata store could not be opened, migrated or written."""

    http_status = 500


class ReadOnlyError(StoreError):
    """A change asked of a home (or store) that this process may not write."""

    http_status = 409


class DiskFullError(StoreError):
    """A write that found no space left on the device."""

    http_status = 507


class DamagedStoreError(StoreError):
    """A store file that is not a database or whose pages are corrupt."""


class StoreDriverMissing(StoreError):
    """A store URL whose database driver is not installed (``pip install 'speakerdb[postgres]'``
    for PostgreSQL)."""


class StoreUnavailable(StoreError):
    """A database server that could not be reached, or whose connection was lost while a
    transaction ran (that transaction was rolled back whole: run the command again)."""

    http_status = 503


class IndexOutOfDateError(SpeakerDBError):
    """An index file that does not describe the store it belongs to."""

    http_status = 500


class NotFound(SpeakerDBError):
    http_status = 404


class AmbiguousKey(SpeakerDBError):
    """A key (a sha256 prefix) that names more than one thing: give more of it."""

    http_status = 409


class Busy(SpeakerDBError):
    """Another process is writing to the database and this one was told not to wait."""

    exit_code = 3
    http_status = 409


class TooLongError(AudioError):
    """Audio longer than the limit on one input (the ``max_duration`` parameter)."""

    reason = "too_long"
    options = ("max_duration",)  # the parameter its message names


class WeightsUnavailable(SpeakerDBError):
    """No source could provide a model weights file with the expected sha256."""


class DownloadError(SpeakerDBError):
    """A file that could not be downloaded, or does not match its recorded sha256."""


class VectorEngineMissing(SpeakerDBError):
    """A vector tier whose client library is not installed (``pip install 'speakerdb[qdrant]'``
    for Qdrant)."""

    http_status = 500


class VectorEngineUnavailable(SpeakerDBError):
    """A vector engine (a Qdrant server) that could not be reached, answered with an error, or
    did not answer in time; nothing was answered from it."""

    http_status = 503

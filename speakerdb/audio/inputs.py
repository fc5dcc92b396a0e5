"""One reader per input kind: every audio entry point (decode, enroll, the server's uploads,
the ingest reader) turns what it was given into an ``AudioSource`` here, so that the same bad
input is the same ``AudioError`` wherever it is given.

Accepted: a path (``str`` or ``os.PathLike``), bytes (``bytes``, ``bytearray``,
``memoryview``), a binary file object (read whole, from its current position) or a
``Waveform``; an ``AudioSource`` is taken as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from speakerdb.errors import AudioError

__all__ = ["AudioSource", "audio_input", "file_error"]


@dataclass(frozen=True)
class AudioSource:
    """A checked input: exactly one of ``path`` (an existing file that could be opened, not
    read yet; ``os.fsdecode`` form), ``data`` (the bytes of a file, in memory) or
    ``waveform`` (samples in memory). ``name`` is what messages and results call it."""

    name: str
    path: str | None = None
    data: bytes | None = None
    waveform: object | None = None  # a ``speakerdb.audio.Waveform``

    def read_bytes(self) -> bytes:
        """The bytes of a path or in-memory input; an ``AudioError`` if the file cannot be
        read (a waveform has no bytes: callers encode it, see ``audio.wav``)."""
        if self.data is not None:
            return self.data
        if self.path is None:
            raise AudioError(self.name, "a waveform has no file bytes")
        try:
            with open(self.path, "rb") as fh:
                return fh.read()
        except OSError as e:
            raise file_error(self.name, e) from None

    def __str__(self) -> str:
        return self.name


def _unsupported(x, name: str) -> AudioError:
    """The error for an input of a type no audio function reads."""
    return AudioError(name, f"cannot read audio from {type(x).__name__}; expected a path, "
                            "bytes, a binary file object or a Waveform")


def file_error(name: str, e: OSError) -> AudioError:
    """The ``AudioError`` of a file that could not be opened or read."""
    from speakerdb.audio.decode import short_reason

    if isinstance(e, FileNotFoundError):
        return AudioError(name, "no such file")
    if isinstance(e, IsADirectoryError):
        return AudioError(name, "not a readable audio file (is a directory)")
    return AudioError(name, f"cannot read ({short_reason(e)})")


def _from_path(x, name: str) -> AudioSource:
    path = os.fsdecode(x)
    try:
        if os.path.isdir(path):
            raise IsADirectoryError(path)
        with open(path, "rb"):
            pass
    except OSError as e:
        raise file_error(name, e) from None
    return AudioSource(name, path=path)


def _from_stream(x, name: str) -> AudioSource:
    from speakerdb.audio.decode import short_reason

    try:
        data = x.read()
    except Exception as e:  # noqa: BLE001 - any failure of a foreign file object
        raise AudioError(name, f"cannot read ({short_reason(e)})") from None
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise AudioError(name, "file object must be opened in binary mode")
    return AudioSource(name, data=bytes(data))


def audio_input(x, name: str) -> AudioSource:
    """``x`` checked and named ``name``. Raises ``AudioError`` for a type no audio function
    reads, a path that does not exist, is a directory or cannot be opened, and a file object
    that fails to read or is in text mode."""
    from speakerdb.audio import Waveform

    if isinstance(x, AudioSource):
        return x if x.name == name else replace(x, name=name)
    if isinstance(x, Waveform):
        return AudioSource(name, waveform=x)
    if isinstance(x, (str, os.PathLike)):
        return _from_path(x, name)
    if isinstance(x, (bytes, bytearray, memoryview)):
        return AudioSource(name, data=bytes(x))
    if hasattr(x, "read"):
        return _from_stream(x, name)
    raise _unsupported(x, name)

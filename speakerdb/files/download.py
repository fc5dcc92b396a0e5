"""Fetching one file into a cache folder, verified by sha256 and recorded beside it.

:func:`fetch` takes an ``http(s)://`` URL, a ``file://`` URL or a local path. pooch does the
transfer (``pooch.retrieve`` with ``pooch.HTTPDownloader``; a local file is copied by a
downloader of ours) and the sha256 check (``known_hash="sha256:..."``). The bytes land in a
temporary sibling of the target (:func:`speakerdb.files.atomic.atomic_write`) and are moved
over it only once complete and verified, so a partial download is never seen as the file.

Each cached file has a sidecar ``<name>.sha256`` in ``sha256sum`` format (``sha256sum -c``
checks it), followed by a comment line with the size and ``mtime_ns`` the digest was verified
for, so later calls need not hash the file again::

    92f29b94...0199  campplus_cn_en_common.pt
    # size=28044640 mtime_ns=1796401933610467656

Sidecars written before this module are still read: the JSON of the CAM++ weights cache
(``{"size": ..., "mtime_ns": ..., "sha256": ...}``) and the bare ``sha256sum`` line of the
ReDimNet release cache.

With an expected sha256 a cached file that does not match is removed and fetched again.
Without one the digest recorded at the first download is the reference: a cached file that no
longer matches it is refused (:class:`DownloadError`), one without a record is fetched again.

pooch (and requests) are imported only when something is fetched.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from speakerdb.errors import DownloadError, SpeakerDBError
from speakerdb.files.atomic import atomic_write
from speakerdb.files.hashing import sha256_file

__all__ = ["Progress", "Record", "cached", "fetch", "read_record", "sidecar_path"]

Progress = Callable[[int, "int | None"], None]
"""progress(bytes_done, bytes_total_or_None)."""

_CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_STAT = re.compile(r"^#\s*size=(\d+)\s+mtime_ns=(\d+)\s*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class Record(NamedTuple):
    """What a sidecar says: the sha256, and the (size, mtime_ns) it was verified for."""

    sha256: str
    size: int | None = None
    mtime_ns: int | None = None


def sidecar_path(path: str | os.PathLike) -> Path:
    """``<path>.sha256``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def read_record(path: str | os.PathLike) -> Record | None:
    """The record in ``path``'s sidecar, in any of the formats written so far; None when there
    is no sidecar or it cannot be understood."""
    try:
        text = sidecar_path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if text.lstrip().startswith("{"):  # the CAM++ cache's JSON
        try:
            data = json.loads(text)
            digest, size, mtime = data["sha256"], int(data["size"]), int(data["mtime_ns"])
        except (ValueError, TypeError, KeyError):
            return None
        return Record(str(digest).lower(), size, mtime) if _HEX64.match(str(digest)) else None
    digest, size, mtime = None, None, None
    for line in text.splitlines():
        if (m := _STAT.match(line.strip())) is not None:
            size, mtime = int(m[1]), int(m[2])
        elif line.strip() and not line.startswith("#") and digest is None:
            word = line.split()[0].lstrip("\\")
            digest = word.lower() if _HEX64.match(word) else None
            if digest is None:
                return None
    return Record(digest, size, mtime) if digest else None


def _write_record(path: Path, digest: str) -> None:
    st = path.stat()
    text = f"{digest}  {path.name}\n# size={st.st_size} mtime_ns={st.st_mtime_ns}\n"

    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)

    atomic_write(sidecar_path(path), write)


def _remove(path: Path) -> None:
    for p in (path, sidecar_path(path)):
        p.unlink(missing_ok=True)


def cached(path: str | os.PathLike, sha256: str | None = None, size: int | None = None) -> bool:
    """Whether ``path`` holds the right bytes, hashing it only when its record does not cover
    its current size and mtime.

    With ``sha256`` (and ``size``) given, a file that does not match is removed with its
    sidecar (False). Without, the recorded digest is the reference: no record → False; a file
    that differs from it → :class:`DownloadError`. A record written in an older format is
    rewritten in the current one once the file has been hashed (best effort: a read-only
    cache still works)."""
    path = Path(path)
    want = sha256.lower() if sha256 else None
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    record = read_record(path)
    if record is not None and (want is None or record.sha256 == want) \
            and (size is None or st.st_size == size) \
            and (record.size, record.mtime_ns) == (st.st_size, st.st_mtime_ns):
        return True
    reference = want or (record.sha256 if record else None)
    if reference is None:
        return False
    actual = sha256_file(path) if size is None or st.st_size == size else None
    if actual != reference:
        if want is not None:
            _remove(path)
            return False
        found = f"sha256 {actual[:12]}…" if actual else f"size {st.st_size}"
        raise DownloadError(f"{path}: {found} differs from the {reference[:12]}… recorded at "
                            "download; delete the file to fetch it again")
    try:
        _write_record(path, actual)
    except SpeakerDBError:
        pass
    return True


class _Bar:
    """The progress-bar object ``pooch.HTTPDownloader`` drives (``total``, ``update``,
    ``reset``, ``close``), reporting to a ``progress(done, total)`` callable."""

    def __init__(self, progress: Progress):
        self.progress, self.total, self.done = progress, None, 0

    def update(self, n: int) -> None:
        self.done += n
        total = self.total or None
        self.progress(min(self.done, total) if total else self.done, total)

    def reset(self) -> None:
        self.done = 0

    def close(self) -> None:
        pass


def _local_path(source: str | os.PathLike) -> Path | None:
    """The file a ``file://`` URL or a plain path names; None for other URLs."""
    text = os.fspath(source)
    if not _SCHEME.match(text):
        return Path(text).expanduser()
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme.lower() != "file":
        return None
    return Path(urllib.request.url2pathname(parsed.path))


def _copier(src: Path, progress: Progress | None) -> Callable:
    """A pooch downloader that copies the local file ``src``."""
    def copy(url, output_file, pooch, check_only=False):
        if check_only:
            return src.is_file()
        try:
            reader = open(src, "rb")  # closed by the with below
            total = os.fstat(reader.fileno()).st_size
        except OSError as e:
            raise DownloadError(f"{src}: cannot be read ({e.strerror or e})") from None
        done = 0
        with reader, open(output_file, "wb") as out:
            while block := reader.read(_CHUNK):
                out.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
        return None
    return copy


def _downloader(source: str, progress: Progress | None, timeout: float) -> Callable:
    import pooch

    local = _local_path(source)
    if local is not None:
        return _copier(local, progress)
    if urllib.parse.urlsplit(source).scheme.lower() not in ("http", "https"):
        raise DownloadError(f"{source}: unsupported URL (http, https, file or a path)")
    return pooch.HTTPDownloader(progressbar=_Bar(progress) if progress else False,
                                chunk_size=_CHUNK, timeout=timeout,
                                headers={"User-Agent": "speakerdb"})


def _failure(source: str, e: BaseException, want: str | None) -> DownloadError:
    """One-line DownloadError for an exception raised by pooch or requests."""
    import requests

    if isinstance(e, requests.HTTPError) and e.response is not None:
        r = e.response
        return DownloadError(f"{source}: HTTP {r.status_code} {r.reason or ''}")
    if isinstance(e, (requests.exceptions.ChunkedEncodingError,
                      requests.exceptions.ContentDecodingError)):
        return DownloadError(f"{source}: download cut short ({_reason(e)})")
    if isinstance(e, requests.RequestException):
        return DownloadError(f"{source}: download failed ({_reason(e)})")
    if isinstance(e, ValueError) and want and "hash" in str(e):
        got = re.search(r"but got ([0-9a-fA-F]{64})", str(e))
        return DownloadError(f"{source}: sha256 {got[1][:12] if got else '?'}… is not the "
                             f"expected {want[:12]}…")
    return DownloadError(f"{source}: download failed ({_reason(e)})")


def _reason(e: BaseException) -> str:
    """The socket error's words when there is one (requests wraps urllib3 wraps it), else the
    exception's own, on one line."""
    text = " ".join(str(e).split()) or type(e).__name__
    inner = re.search(r"\[Errno -?\d+\] [^'\"()]+", text)
    return inner[0].strip() if inner else text


def fetch(source: str | os.PathLike, dest: str | os.PathLike, sha256: str | None = None,
          size: int | None = None, *, progress: Progress | None = None,
          timeout: float = 60.0) -> Path:
    """``dest``, holding the bytes of ``source`` (an http(s) or file URL, or a path), verified.

    A cached ``dest`` that passes :func:`cached` is used as it is. Otherwise ``source`` is
    fetched into a temporary sibling of ``dest``, checked against ``sha256`` and ``size`` when
    given, moved over ``dest``, and its digest recorded in ``<dest>.sha256``. Nothing is left
    behind by a failure. Raises :class:`DownloadError` (naming ``source``) for a network or
    HTTP failure, a cut-short or empty download, or a sha256 or size mismatch."""
    dest = Path(dest)
    want = sha256.lower() if sha256 else None
    dest.parent.mkdir(parents=True, exist_ok=True)
    if cached(dest, want, size):
        return dest
    source = os.fspath(source)
    fetched: dict[str, str] = {}

    def write(tmp: str) -> None:
        import pooch

        os.unlink(tmp)  # pooch fills the name only once the bytes are complete and verified
        try:
            pooch.retrieve(source, known_hash=f"sha256:{want}" if want else None,
                           fname=Path(tmp).name, path=Path(tmp).parent,
                           downloader=_downloader(source, progress, timeout))
        except SpeakerDBError:
            raise
        except Exception as e:  # pooch and requests errors become one type
            if isinstance(e, OSError) and e.errno is not None:
                raise  # the cache itself cannot be written: atomic_write says so
            raise _failure(source, e, want) from None
        got = os.stat(tmp).st_size
        if got == 0:
            raise DownloadError(f"{source}: empty download")
        if size is not None and got != size:
            raise DownloadError(f"{source}: got {got} bytes, expected {size}")
        fetched["sha256"] = want or sha256_file(tmp)
        os.chmod(tmp, 0o644)
        sidecar_path(dest).unlink(missing_ok=True)  # no old record ever describes new bytes

    _quiet_pooch()
    atomic_write(dest, write)
    _write_record(dest, fetched["sha256"])
    return dest


def _quiet_pooch() -> None:
    """pooch logs every download at INFO level; speakerdb reports its own progress."""
    import pooch

    pooch.get_logger().setLevel("WARNING")

"""Downloading IDRnD's official ReDimNet release files into a local cache.

The assets hang off the GitHub release tagged ``latest`` of IDRnD/ReDimNet and are named
``{size}-{dataset}-{train_type}.pt`` (``b2-vox2-ft_lm.pt``, ``M-vb2+vox2+cnc-ft_mix.pt``), as
upstream's hubconf builds them. Upstream publishes no checksums, so the sha256 of what was
downloaded is recorded next to the file (``<file>.sha256``, sha256sum format) and checked on
every later use; an expected sha256 may also be given.

Downloads stream into a temporary file in the cache folder, are hashed on the way, and are
renamed into place only when complete (and verified), so the cache never holds a partial file.
This module does not load the file (and does not import torch); pass the returned path to
``load_redimnet``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from speakerdb.files.hashing import sha256_file as _sha256_file
from speakerdb.errors import DownloadError, UsageError

__all__ = [
    "BASE_URL", "SIZES", "DATASETS", "TRAIN_TYPES", "PUBLISHED", "DownloadError",
    "parse_release_name", "release_filename", "release_url", "fetch_release",
]

BASE_URL = "https://github.com/IDRnD/ReDimNet/releases/download/latest/"
SIZES = ("b0", "b1", "b2", "b3", "b4", "b5", "b6", "M", "S")
DATASETS = ("vox2", "vb2", "vb2+vox2+cnc")
TRAIN_TYPES = ("ptn", "ft_lm", "ft_mix")
# The table of upstream's EVALUATION.md: b-sizes on VoxCeleb2 (pretrained and LM-fine-tuned),
# M and S on VoxBlink2 (pretrained) and VoxBlink2+VoxCeleb2+CN-Celeb (mix-fine-tuned).
PUBLISHED = frozenset(
    [f"b{i}-vox2-{t}" for i in range(7) for t in ("ptn", "ft_lm")]
    + [f"{s}-{d}" for s in ("M", "S") for d in ("vb2-ptn", "vb2+vox2+cnc-ft_mix")])
_CHUNK = 1 << 20



def parse_release_name(name: str) -> tuple[str, str, str]:
    """``'b2-vox2-ft_lm'`` (``.pt`` optional) → ``('b2', 'vox2', 'ft_lm')``; UsageError if the
    name is malformed, uses an unknown size/dataset/train type, or is not a published release."""
    stem = name[:-3] if name.endswith(".pt") else name
    parts = stem.split("-")
    if len(parts) != 3:
        raise UsageError(f"release name {name!r}: expected size-dataset-train_type, e.g. b2-vox2-ft_lm")
    size, dataset, train_type = parts
    for what, value, allowed in (("size", size, SIZES), ("dataset", dataset, DATASETS),
                                 ("train type", train_type, TRAIN_TYPES)):
        if value not in allowed:
            raise UsageError(f"release name {name!r}: unknown {what} {value!r} (one of {', '.join(allowed)})")
    if stem not in PUBLISHED:
        raise UsageError(f"release name {name!r}: not a published ReDimNet release "
                         f"(published: {', '.join(sorted(PUBLISHED))})")
    return size, dataset, train_type


def release_filename(name: str) -> str:
    """The asset's file name, ``{size}-{dataset}-{train_type}.pt``."""
    return "-".join(parse_release_name(name)) + ".pt"


def release_url(name: str, base_url: str = BASE_URL) -> str:
    """Download URL of release ``name`` (the characters in names need no escaping in a path)."""
    return base_url.rstrip("/") + "/" + release_filename(name)


def _read_recorded(sidecar: Path) -> Optional[str]:
    try:
        text = sidecar.read_text().split()
    except OSError:
        return None
    return text[0].lower() if text and len(text[0]) == 64 else None


def _write_recorded(sidecar: Path, digest: str, filename: str) -> None:
    tmp = sidecar.with_name(sidecar.name + ".part")
    tmp.write_text(f"{digest}  {filename}\n")
    os.replace(tmp, sidecar)


def _download(url: str, dest: Path, opener: Callable, timeout: float,
              progress: Optional[Callable[[int, Optional[int]], None]]) -> tuple[Path, str]:
    """Stream ``url`` into a temporary file beside ``dest``; return it and the sha256 of the
    bytes received. The caller renames it into place once verified."""
    req = urllib.request.Request(url, headers={"User-Agent": "speakerdb"})
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    h, got = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out, opener(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
            total = int(length) if length and length.isdigit() else None
            while block := resp.read(_CHUNK):
                out.write(block)
                h.update(block)
                got += len(block)
                if progress:
                    progress(got, total)
            if total is not None and got != total:
                raise DownloadError(f"{url}: download cut short ({got} of {total} bytes)")
            if got == 0:
                raise DownloadError(f"{url}: empty download")
            out.flush()
            os.fsync(out.fileno())
    except urllib.error.HTTPError as e:
        Path(tmp).unlink(missing_ok=True)
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        Path(tmp).unlink(missing_ok=True)
        raise DownloadError(f"{url}: download failed ({getattr(e, 'reason', e)})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), h.hexdigest()


def fetch_release(name: str, cache_dir: str | os.PathLike, sha256: Optional[str] = None,
                  opener: Callable = urllib.request.urlopen, *, base_url: str = BASE_URL,
                  timeout: float = 60.0,
                  progress: Optional[Callable[[int, Optional[int]], None]] = None) -> Path:
    """Path of release ``name`` in ``cache_dir``, downloading it first when absent.

    sha256: expected hex digest (optional). A cached file is checked against the digest recorded
    at download (and ``sha256``); a mismatch raises DownloadError rather than using it. A cached
    file without a record is downloaded again. opener(request, timeout=) → a response with
    ``read(n)`` (``urllib.request.urlopen`` by default; tests inject their own)."""
    filename = release_filename(name)
    want = sha256.lower() if sha256 else None
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    dest, sidecar = cache / filename, cache / (filename + ".sha256")
    recorded = _read_recorded(sidecar) if dest.exists() else None
    if recorded is not None:
        actual = _sha256_file(dest)
        if actual != recorded:
            raise DownloadError(f"{dest}: sha256 {actual[:12]}… differs from the {recorded[:12]}… "
                                "recorded at download; delete the file to fetch it again")
        if want and actual != want:
            raise DownloadError(f"{dest}: sha256 {actual[:12]}… is not the expected {want[:12]}…")
        return dest
    tmp, digest = _download(release_url(name, base_url), dest, opener, timeout, progress)
    if want and digest != want:
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"{filename}: downloaded sha256 {digest[:12]}… is not the expected {want[:12]}…")
    sidecar.unlink(missing_ok=True)
    os.replace(tmp, dest)
    _write_recorded(sidecar, digest, filename)
    return dest

"""Downloading IDRnD's official ReDimNet release files into a local cache.

The assets hang off the GitHub release tagged ``latest`` of IDRnD/ReDimNet and are named
``{size}-{dataset}-{train_type}.pt`` (``b2-vox2-ft_lm.pt``, ``M-vb2+vox2+cnc-ft_mix.pt``), as
upstream's hubconf builds them. Upstream publishes no checksums, so the sha256 of what was
downloaded is recorded next to the file (``<file>.sha256``, sha256sum format, see
:mod:`speakerdb.files.download`) and checked on later use; an expected sha256 may also be
given.

Downloads go through :func:`speakerdb.files.download.fetch`: into a temporary file in the
cache folder, moved into place only when complete (and verified), so the cache never holds a
partial file. This module does not load the file (and does not import torch); pass the
returned path to ``load_redimnet``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from speakerdb.errors import DownloadError, UsageError
from speakerdb.files.download import fetch

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


def fetch_release(name: str, cache_dir: str | os.PathLike, sha256: Optional[str] = None, *,
                  base_url: str = BASE_URL, timeout: float = 60.0,
                  progress: Optional[Callable[[int, Optional[int]], None]] = None) -> Path:
    """Path of release ``name`` in ``cache_dir``, downloading it first when absent.

    sha256: expected hex digest (optional). Without it a cached file is checked against the
    digest recorded at download, and a mismatch raises DownloadError rather than using it; a
    cached file without a record is downloaded again. With it a cached file that does not match
    is downloaded again, and a download that does not match raises DownloadError."""
    dest = Path(cache_dir) / release_filename(name)
    return fetch(release_url(name, base_url), dest, sha256, progress=progress, timeout=timeout)

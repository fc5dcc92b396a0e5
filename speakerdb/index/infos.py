"""The JSON sidecar describing one saved FAISS index, and the digest of its ids."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speakerdb.errors import IndexOutOfDateError
from speakerdb.files.atomic import atomic_write

__all__ = ["IndexInfo", "ids_digest", "write_info", "read_info"]


@dataclass
class IndexInfo:
    index_key: str  # FAISS factory key, e.g. "Flat"
    index_param: str  # search-time parameters ("" for flat)
    dim: int
    ntotal: int
    model_sha256: str  # model the vectors came from
    schema_revision: str  # store schema revision at save time
    store_max_id: int  # largest segment id in the store at save time (0 when empty)
    ids_digest: str  # ids_digest() of the index's ids
    size_bytes: int  # size of the .faiss file
    created_at: str  # ISO 8601 time of saving
    space: str = "identity"  # how raw vectors were mapped before slicing: "identity" or
    # "rotation:<sha256>" (a database's learned rotation, see speakerdb.index.space)
    store_generation: int = 0  # the store generation the index reflects (0: not recorded)
    sha256: str = ""  # sha256 hex of the .faiss file's bytes ("": unknown, saved before
    # checksums were recorded)


_TYPES = {f.name: f.type for f in dataclasses.fields(IndexInfo)}
_OPTIONAL = {f.name for f in dataclasses.fields(IndexInfo)
             if f.default is not dataclasses.MISSING}


def ids_digest(ids: np.ndarray) -> str:
    """sha256 hex of the sorted ids as little-endian int64 bytes (order-independent)."""
    arr = np.sort(np.asarray(ids, dtype=np.int64).ravel())
    return hashlib.sha256(arr.astype("<i8", copy=False).tobytes()).hexdigest()


def write_info(path: str | os.PathLike, info: IndexInfo) -> None:
    """Write ``info`` as JSON to ``path`` atomically (the old file survives a failed write)."""
    text = json.dumps(dataclasses.asdict(info), indent=2, sort_keys=True) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def read_info(path: str | os.PathLike) -> IndexInfo:
    """Read an ``IndexInfo``; ``IndexOutOfDateError`` if missing, unreadable or incomplete.

    Keys the dataclass does not know are ignored (files written by a newer version).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexOutOfDateError(f"{path}: index description is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexOutOfDateError(f"{path}: unreadable index description ({e})") from None
    if not isinstance(data, dict):
        raise IndexOutOfDateError(f"{path}: index description is not a JSON object")
    missing = sorted(set(_TYPES) - _OPTIONAL - set(data))
    if missing:
        raise IndexOutOfDateError(f"{path}: index description lacks {', '.join(missing)}")
    values = {}
    for name, typ in _TYPES.items():
        if name not in data:
            continue  # optional, default applies
        v = data[name]
        want = int if typ in (int, "int") else str
        if not isinstance(v, want) or isinstance(v, bool):
            raise IndexOutOfDateError(f"{path}: {name} should be {want.__name__}, got {v!r}")
        values[name] = v
    return IndexInfo(**values)

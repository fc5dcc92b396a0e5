"""``vectors.json``: the description of a database's saved vectors, written last by every save
(it is the commit), and the digest of a set of ids."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speakerdb.errors import IndexOutOfDateError
from speakerdb.files.atomic import atomic_write
from speakerdb.index.matrix import MatrixState

__all__ = ["INFO_FILE", "SetInfo", "ids_digest", "read_info", "write_info"]

INFO_FILE = "vectors.json"
FORMAT = 1


@dataclass
class SetInfo:
    dims: tuple[int, ...]  # nested dimensions held, ascending
    ntotal: int  # live vectors
    model_sha256: str  # model the vectors came from
    schema_revision: str  # store schema revision at save time
    store_max_id: int  # largest segment id in the store at save time (0 when empty)
    ids_digest: str  # ids_digest() of the live ids
    created_at: str  # ISO 8601 time of saving
    matrix: MatrixState  # the full-precision rows (``speakerdb.index.matrix``)
    index_key: str = "Flat"  # the screen: "Flat" (exact, from the rows) or an IVF key
    index_param: str = ""  # the screen's search-time parameters ("" for flat)
    screen_file: str = ""  # file name of an IVF screen ("" for flat)
    screen_size_bytes: int = 0
    screen_sha256: str = ""
    space: str = "identity"  # how raw vectors were mapped before slicing: "identity" or
    # "rotation:<sha256>" (a database's learned rotation, see speakerdb.index.space)
    store_generation: int = 0  # the store generation the vectors reflect (0: not recorded)
    format: int = field(default=FORMAT)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["dims"], d["matrix"] = list(self.dims), self.matrix.to_dict()
        return d


_TYPES = {f.name: f.type for f in dataclasses.fields(SetInfo)}
_OPTIONAL = {f.name for f in dataclasses.fields(SetInfo)
             if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}


def ids_digest(ids: np.ndarray) -> str:
    """sha256 hex of the sorted ids as little-endian int64 bytes (order-independent)."""
    arr = np.sort(np.asarray(ids, dtype=np.int64).ravel())
    return hashlib.sha256(arr.astype("<i8", copy=False).tobytes()).hexdigest()


def write_info(path: str | os.PathLike, info: SetInfo) -> None:
    """Write ``info`` as JSON to ``path`` atomically (the old file survives a failed write)."""
    atomic_write(path, json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n")


def read_info(path: str | os.PathLike) -> SetInfo:
    """Read a ``SetInfo``; ``IndexOutOfDateError`` if missing, unreadable, incomplete or of
    another format. Keys the dataclass does not know are ignored (a newer version's)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexOutOfDateError(f"{path}: description of the vectors is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexOutOfDateError(f"{path}: unreadable description ({e})") from None
    if not isinstance(data, dict):
        raise IndexOutOfDateError(f"{path}: description is not a JSON object")
    missing = sorted(set(_TYPES) - _OPTIONAL - set(data))
    if missing:
        raise IndexOutOfDateError(f"{path}: description lacks {', '.join(missing)}")
    values = {}
    for name, typ in _TYPES.items():
        if name not in data:
            continue  # optional, default applies
        v = data[name]
        if name == "dims":
            if (not isinstance(v, list) or not v
                    or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in v)):
                raise IndexOutOfDateError(f"{path}: dims should be a list of sizes, got {v!r}")
            v = tuple(v)
        elif name == "matrix":
            try:
                v = MatrixState.from_dict(v if isinstance(v, dict) else {})
            except ValueError as e:
                raise IndexOutOfDateError(f"{path}: {e}") from None
        else:
            want = int if typ in (int, "int") else str
            if not isinstance(v, want) or isinstance(v, bool):
                raise IndexOutOfDateError(f"{path}: {name} should be {want.__name__}, got {v!r}")
        values[name] = v
    info = SetInfo(**values)
    if info.format != FORMAT:
        raise IndexOutOfDateError(f"{path}: format {info.format}, this version reads {FORMAT}")
    if info.ntotal != info.matrix.rows - info.matrix.deleted:
        raise IndexOutOfDateError(f"{path}: says {info.ntotal} vectors, its rows hold "
                                  f"{info.matrix.rows - info.matrix.deleted}")
    return info

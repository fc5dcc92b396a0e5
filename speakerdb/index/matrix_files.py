"""The files of a vector matrix (``speakerdb.index.matrix``) and what commits them: the state
its caller records, the paths of one epoch, mapping the committed rows read-only, appending
new rows after them, and the checksum of a run of rows."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speakerdb.errors import IndexOutOfDateError

__all__ = ["HASH_BLOCK", "MatrixState", "append_rows", "map_rows", "matrix_files", "rows_sha256"]

HASH_BLOCK = 65_536  # rows hashed per update


@dataclass(frozen=True)
class MatrixState:
    """What a saved matrix is: ``rows`` written (removed ones included), ``deleted`` of them
    removed, the files' ``epoch``, and the sha256 of each appended part (``parts``: a list of
    ``[first row, end row, sha256 of those rows' vector bytes]``)."""

    rows: int
    deleted: int
    epoch: int
    parts: tuple[tuple[int, int, str], ...] = ()

    def to_dict(self) -> dict:
        return {"rows": self.rows, "deleted": self.deleted, "epoch": self.epoch,
                "parts": [list(p) for p in self.parts]}

    @classmethod
    def from_dict(cls, d: dict) -> MatrixState:
        try:
            parts = tuple((int(a), int(b), str(h)) for a, b, h in d.get("parts", ()))
            out = cls(int(d["rows"]), int(d["deleted"]), int(d["epoch"]), parts)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a vector matrix description ({e})") from None
        if out.rows < 0 or not 0 <= out.deleted <= out.rows or out.epoch < 0:
            raise ValueError(f"impossible vector matrix counts: {out.to_dict()}")
        return out


def matrix_files(directory: str | os.PathLike, epoch: int, deleted: int = 0) -> dict[str, Path]:
    """{"vectors", "ids", "norms", "deleted"}: the paths of one epoch's files, the removed
    rows' file being the one of ``deleted`` removals (removals only grow within an epoch, so
    a count names one list, and a file once committed is never rewritten)."""
    base = Path(directory) / f"vectors-{int(epoch)}"
    out = {k: base.with_suffix(s) for k, s in
           (("vectors", ".f32"), ("ids", ".ids"), ("norms", ".norms"))}
    out["deleted"] = Path(directory) / f"vectors-{int(epoch)}-{int(deleted)}.deleted"
    return out


def map_rows(path: Path, dtype, shape: tuple[int, ...]) -> np.ndarray:
    """The first ``prod(shape)`` items of ``path``, mapped read-only."""
    need = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if need == 0:  # nothing to map (a space of one dimension keeps no norms)
        return np.zeros(shape, dtype)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise IndexOutOfDateError(f"{path}: vector file is missing") from None
    if size < need:
        raise IndexOutOfDateError(f"{path}: {size} bytes, its description needs {need}")
    return np.memmap(path, dtype=np.dtype(dtype).newbyteorder("<"), mode="r", shape=shape)


def append_rows(path: Path, arr: np.ndarray, row: int) -> None:
    """Write ``arr``'s rows at row ``row`` of ``path`` (cutting off anything after it: rows a
    killed save wrote but never committed), then fsync."""
    from speakerdb.files.atomic import write_error

    width = arr.shape[1] if arr.ndim == 2 else 1
    offset = row * width * arr.dtype.itemsize
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
            view = memoryview(np.ascontiguousarray(little).reshape(-1).view(np.uint8))
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise write_error(path, e) from None


def rows_sha256(x: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in range(0, x.shape[0], HASH_BLOCK):
        h.update(np.ascontiguousarray(x[a:a + HASH_BLOCK], dtype="<f4").tobytes())
    return h.hexdigest()

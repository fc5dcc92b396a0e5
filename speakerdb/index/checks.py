"""Every way a database's saved vectors can disagree with its store, as one human line each.

Lines start with what they are about: ``vectors`` (the full-precision rows and their
description) or ``screen`` (the 16-bit screen of a large set)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from speakerdb.errors import IndexOutOfDateError
from speakerdb.files.hashing import sha256_file
from speakerdb.index.infos import INFO_FILE, SetInfo, ids_digest, read_info
from speakerdb.model.prefixes import prefix

if TYPE_CHECKING:  # pragma: no cover
    from speakerdb.index.index_set import IndexSet

__all__ = ["NAMED", "ROWS_TOLERANCE", "SCREEN_TOLERANCE", "set_problems", "short_sha"]

NAMED = 10  # differing vectors named one by one; the rest are counted
ROWS_TOLERANCE = 1e-5  # full-precision rows: float noise only
SCREEN_TOLERANCE = 1e-3  # a 16-bit screen: rounding of unit vectors


def short_sha(sha: str) -> str:
    return sha if len(sha) <= 12 else sha[:12] + "…"


def _count_absent(a: np.ndarray, b: np.ndarray) -> int:
    """How many values of sorted ``a`` are not in sorted ``b``."""
    if b.size == 0:
        return int(a.size)
    pos = np.minimum(np.searchsorted(b, a), b.size - 1)
    return int(np.count_nonzero(b[pos] != a))


def _differing(s: IndexSet, ids: np.ndarray, raw: np.ndarray) -> dict[str, np.ndarray]:
    """{"vectors": ids, "screen": ids} whose copies differ from the normalised prefixes of
    their stored ``raw`` vectors by more than each copy's precision allows (ids not held are
    skipped: they are reported as missing already)."""
    ids = np.asarray(ids, dtype=np.int64)
    raw = np.asarray(raw, dtype=np.float32).reshape(ids.size, -1)
    present = s.matrix.contains(ids)
    ids, raw = ids[present], raw[present]
    bad = np.zeros(ids.size, bool)
    for d in s.dims:
        if ids.size:
            gap = np.abs(s.matrix.reconstruct(d, ids) - prefix(raw, d)).max(axis=1)
            bad |= ~(gap <= ROWS_TOLERANCE)  # NaN: bad
    out = {"vectors": ids[bad]}
    if s.screen is not None:
        held = s.screen.contains(ids)
        d0 = s.dims[0]
        gap = np.abs(s.screen.reconstruct(ids[held]) - prefix(raw[held], d0)).max(axis=1)
        out["screen"] = ids[held][~(gap <= SCREEN_TOLERANCE)]
    return out


def _vector_lines(s: IndexSet, chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> list[str]:
    named: dict[str, list[int]] = {}
    counts: dict[str, int] = {}
    for ids, raw in chunks:
        for what, bad in _differing(s, ids, raw).items():
            counts[what] = counts.get(what, 0) + bad.size
            have = named.setdefault(what, [])
            have += [int(i) for i in bad[: NAMED - len(have)]]
    out = []
    for what in sorted(named):
        out += [f"{what}: vector of segment {i} differs from the store" for i in named[what]]
        if counts[what] > len(named[what]):
            out.append(f"{what}: {counts[what] - len(named[what])} more vectors differ from "
                       "the store")
    return out


def _saved_again(s: IndexSet) -> bool:
    """Whether the description on disk is now a later save than the one this set read."""
    try:
        now = read_info(s.directory / INFO_FILE)
    except IndexOutOfDateError:
        return False
    return now.to_dict() != s.info.to_dict()


SAVED_AGAIN = ("vectors: saved again during the check (another process is writing); run check "
               "again")


def _checksum_lines(s: IndexSet) -> list[str]:
    info: SetInfo = s.info
    out = s.matrix.checksum_problems(s.directory)
    if info.screen_file and info.screen_sha256:
        path = s.directory / info.screen_file
        if path.is_file() and sha256_file(path) != info.screen_sha256:
            out.append(f"screen: {info.screen_file} does not match the checksum in {INFO_FILE} "
                       f"(sha256 {short_sha(info.screen_sha256)})")
    if out and _saved_again(s):
        return [SAVED_AGAIN]
    return [line if line.startswith("screen:") else f"vectors: {line}" for line in out]


def _file_lines(s: IndexSet) -> list[str]:
    info = s.info
    out = []
    if not (s.directory / INFO_FILE).is_file():
        out.append(f"vectors: {INFO_FILE} is missing")
    if info.screen_file and not (s.directory / info.screen_file).is_file():
        out.append(f"screen: {info.screen_file} is missing")
    return out


def set_problems(s: IndexSet, store_ids, store_max_id: int, model_sha256: str,
                 schema_revision: str, raw_sample: tuple[np.ndarray, np.ndarray] | None,
                 dims: tuple[int, ...], space: str, vectors=None,
                 checksums: bool = False) -> list[str]:
    """Disagreements of the set ``s`` (and its saved description, where there is one) with
    the store and with what the database expects (``dims``, ``space``, model, schema)."""
    store_ids = np.sort(np.asarray(store_ids, dtype=np.int64))  # cheap when already sorted
    out: list[str] = []
    if tuple(s.dims) != tuple(dims):
        return [f"vectors: hold {'/'.join(map(str, s.dims))}-D, the database uses "
                f"{'/'.join(map(str, dims))}-D"]
    have = s.ids()
    info = s.info
    if info is not None:
        lines = _file_lines(s)  # a file another process's save replaced is gone
        out += [SAVED_AGAIN] if lines and _saved_again(s) else lines
        if info.ntotal != s.ntotal:
            out.append(f"vectors: {INFO_FILE} says {info.ntotal} vectors, the set holds "
                       f"{s.ntotal}")
        elif info.ids_digest != ids_digest(have):
            out.append(f"vectors: {INFO_FILE} ids digest does not match the rows")
    if s.ntotal != store_ids.size:
        out.append(f"vectors: {s.ntotal} vectors, store has {store_ids.size}")
    missing, extra = _count_absent(store_ids, have), _count_absent(have, store_ids)
    if missing or extra:
        out.append(f"vectors: ids differ from the store ({missing} missing, {extra} extra)")
    elif info is not None and info.store_max_id != store_max_id:
        out.append(f"vectors: saved when the store's largest id was {info.store_max_id}, "
                   f"store has {store_max_id}")
    if s.screen is not None:
        if s.screen.ntotal != s.ntotal:
            out.append(f"screen: {s.screen.ntotal} vectors, the rows hold {s.ntotal}")
        elif not np.array_equal(s.screen.ids(), have):
            out.append("screen: ids differ from the rows")
    sha = info.model_sha256 if info is not None else s.model_sha256
    if sha != model_sha256:
        out.append(f"vectors: model sha256 {short_sha(sha)} but the database model is "
                   f"{short_sha(model_sha256)}")
    rev = info.schema_revision if info is not None else s.schema_revision
    if rev != schema_revision:
        out.append(f"vectors: schema revision {rev}, store {schema_revision}")
    held = info.space if info is not None else s.space
    if held != space:
        out.append(f"vectors: built in vector space {held}, the database uses {space}")
    if raw_sample is not None and len(raw_sample[0]):
        out += _vector_lines(s, [raw_sample])
    if vectors is not None:
        out += _vector_lines(s, vectors)
    if checksums and info is not None:
        out += _checksum_lines(s)
    return out

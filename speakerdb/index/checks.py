"""Every way a set of indexes can disagree with the store, as one human line each."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from speakerdb.errors import IndexOutOfDateError
from speakerdb.files.hashing import sha256_file as file_sha256
from speakerdb.index.infos import IndexInfo, ids_digest, read_info
from speakerdb.index.vector_index import VectorIndex
from speakerdb.model.prefixes import prefix

__all__ = ["checksum_problems", "index_problems", "short_sha", "vector_problems"]

NAMED = 10  # differing vectors named one by one per index; the rest are counted


def short_sha(sha: str) -> str:
    return sha if len(sha) <= 12 else sha[:12] + "…"


def _count_absent(a: np.ndarray, b: np.ndarray) -> int:
    """How many values of sorted ``a`` are not in sorted ``b``."""
    if b.size == 0:
        return int(a.size)
    pos = np.minimum(np.searchsorted(b, a), b.size - 1)
    return int(np.count_nonzero(b[pos] != a))


def _file_problems(name: str, directory: Path) -> list[str]:
    return [f"{name}: {name}{ext} is missing" for ext in (".faiss", ".json")
            if not (directory / f"{name}{ext}").is_file()]


def _info_problems(name: str, info: IndexInfo, index: VectorIndex, digest: str) -> list[str]:
    out = []
    if info.dim != index.dim:
        out.append(f"{name}: {name}.json says dimension {info.dim}, index has {index.dim}")
    if info.index_key != index.choice.key:
        out.append(f"{name}: {name}.json says {info.index_key}, index is {index.choice.key}")
    if info.ntotal != index.ntotal:
        out.append(f"{name}: {name}.json says {info.ntotal} vectors, index has {index.ntotal}")
    elif info.ids_digest != digest:
        out.append(f"{name}: {name}.json ids digest does not match the index")
    return out


def _differing(index: VectorIndex, ids: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """The ids whose index copy differs from the normalised prefix of their stored ``raw``
    vector by more than the index's precision allows (ids the index lacks are skipped: they
    are reported as missing already)."""
    ids = np.asarray(ids, dtype=np.int64)
    raw = np.asarray(raw, dtype=np.float32).reshape(ids.size, -1)
    present = index.contains(ids)
    if not present.any():
        return ids[:0]
    ids, raw = ids[present], raw[present]
    stored = index.reconstruct(ids)
    bad = ~(np.abs(stored - prefix(raw, index.dim)).max(axis=1) <= index.tolerance)  # NaN: bad
    return ids[bad]


def _sample_problems(name: str, index: VectorIndex,
                     raw_sample: tuple[np.ndarray, np.ndarray]) -> list[str]:
    return [f"{name}: vector of segment {int(i)} differs from the store"
            for i in _differing(index, raw_sample[0], raw_sample[1])]


def vector_problems(by_dim: Mapping[int, VectorIndex], dims: tuple[int, ...],
                    chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> list[str]:
    """Every stored vector compared with its copy in each index of ``dims``, one chunk of
    ``(ids, raw)`` (raw in the database's space) at a time, so memory is bounded by a chunk.
    The first ``NAMED`` differing segments of each index are named, the rest counted."""
    present = [d for d in dims if d in by_dim]
    named: dict[int, list[int]] = {d: [] for d in present}
    counts = dict.fromkeys(present, 0)
    for ids, raw in chunks:
        for d in present:
            bad = _differing(by_dim[d], ids, raw)
            counts[d] += bad.size
            named[d] += [int(i) for i in bad[: NAMED - len(named[d])]]
    out = []
    for d in present:
        out += [f"index-{d}: vector of segment {i} differs from the store" for i in named[d]]
        if counts[d] > len(named[d]):
            out.append(f"index-{d}: {counts[d] - len(named[d])} more vectors differ from the "
                       "store")
    return out


def _saved_again(json_path: Path, info: IndexInfo) -> bool:
    """Whether the JSON on disk now describes a later save than ``info`` (read at load)."""
    try:
        now = read_info(json_path)
    except IndexOutOfDateError:
        return False
    return now.sha256 != info.sha256 or now.created_at != info.created_at


def checksum_problems(infos: Mapping[int, IndexInfo], directory: Path,
                      dims: tuple[int, ...]) -> list[str]:
    """Each ``index-<dim>.faiss`` whose bytes do not hash to the sha256 its JSON held when
    ``infos`` were read (files without a recorded checksum, or missing, are left to other
    checks); a file another process saved again since is reported as such."""
    out = []
    for d in dims:
        info, path = infos.get(d), directory / f"index-{d}.faiss"
        if info is None or not info.sha256 or not path.is_file():
            continue
        if file_sha256(path) == info.sha256:
            continue
        if _saved_again(directory / f"index-{d}.json", info):
            out.append(f"index-{d}: saved again during the check (another process is "
                       "writing); run check again")
        else:
            out.append(f"index-{d}: index-{d}.faiss does not match the checksum in "
                       f"index-{d}.json (sha256 {short_sha(info.sha256)})")
    return out


def index_problems(
    by_dim: Mapping[int, VectorIndex],
    infos: Mapping[int, IndexInfo] | None,
    directory: Path | None,
    dims: tuple[int, ...],
    store_ids: np.ndarray,
    store_max_id: int,
    model_sha256: str,
    schema_revision: str,
    set_model_sha256: str,
    set_schema_revision: str,
    raw_sample: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[str]:
    """Disagreements of the indexes (and their JSON descriptions, where saved) with the store.

    ``infos``/``directory`` are None for a set never saved; the model and schema it was built
    for (``set_*``) are then compared instead of the JSONs'.
    """
    store_ids = np.sort(np.asarray(store_ids, dtype=np.int64))  # cheap when already sorted
    out: list[str] = []
    for dim in dims:
        name = f"index-{dim}"
        index = by_dim.get(dim)
        if index is None:
            out.append(f"{name}: no {dim}-D index in the set")
            continue
        if directory is not None:
            out += _file_problems(name, directory)
        have = index.ids()
        digest = ids_digest(have)
        info = infos.get(dim) if infos is not None else None
        if infos is not None and info is None:
            out.append(f"{name}: no description ({name}.json) was read")
        if info is not None:
            out += _info_problems(name, info, index, digest)
        if index.ntotal != store_ids.size:
            out.append(f"{name}: {index.ntotal} vectors, store has {store_ids.size}")
        missing = _count_absent(store_ids, have)
        extra = _count_absent(have, store_ids)
        if missing or extra:
            out.append(f"{name}: ids differ from the store ({missing} missing, {extra} extra)")
        elif info is not None and info.store_max_id != store_max_id:
            out.append(f"{name}: saved when the store's largest id was {info.store_max_id}, "
                       f"store has {store_max_id}")
        sha = info.model_sha256 if info is not None else set_model_sha256
        if sha != model_sha256:
            out.append(f"{name}: model sha256 {short_sha(sha)} but the database model is "
                       f"{short_sha(model_sha256)}")
        rev = info.schema_revision if info is not None else set_schema_revision
        if rev != schema_revision:
            out.append(f"{name}: schema revision {rev}, store {schema_revision}")
        if raw_sample is not None and len(raw_sample[0]):
            out += _sample_problems(name, index, raw_sample)
    return out

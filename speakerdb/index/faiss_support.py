"""FAISS helpers of ``VectorIndex``: the BLAS threshold for batched searches, id arrays,
the checks of an IVF index read from a file, copying mapped inverted lists into memory, and
ordering equal scores by id."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from speakerdb.errors import IndexOutOfDateError
from speakerdb.index.choose import IndexChoice

__all__ = ["BLAS_MIN_QUERIES", "blas_threshold", "check_ivf", "faiss_module", "ids_array",
           "lists_into_memory", "ties_by_id"]

BLAS_MIN_QUERIES = 16
"""Batches of at least this many queries search with FAISS's BLAS threshold lowered to this
value. FAISS's own default (128,000 in 1.15) keeps realistic batches off its matrix-product
path, which ``bench/search_scale.py`` measured several times slower for batched 256-D flat
search. Smaller batches keep FAISS's default, so single queries score exactly as before."""

_blas_lock = threading.Lock()


@contextmanager
def blas_threshold(faiss, value: int):
    """FAISS's process-wide BLAS threshold set to ``value`` for the duration (serialised)."""
    with _blas_lock:
        saved = faiss.cvar.distance_compute_blas_threshold
        faiss.cvar.distance_compute_blas_threshold = value
        try:
            yield
        finally:
            faiss.cvar.distance_compute_blas_threshold = saved


def faiss_module():
    import faiss

    return faiss


def ids_array(ids, what: str = "ids") -> np.ndarray:
    """``ids`` as a contiguous 1-D int64 array; ``ValueError`` (naming ``what``) when they are
    not one-dimensional integers."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must be integers, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def lists_into_memory(index) -> None:
    """Replace an IVF index's (mapped) inverted lists by in-memory copies: the same lists in
    the same order, so its direct map stays valid."""
    import faiss

    inv = index.invlists
    lists = faiss.ArrayInvertedLists(inv.nlist, inv.code_size)
    for lst in range(inv.nlist):
        n = inv.list_size(lst)
        if n:
            lists.add_entries(lst, n, inv.get_ids(lst), inv.get_codes(lst))
    index.replace_invlists(lists, True)
    lists.this.disown()  # the index owns it now


def ties_by_id(scores: np.ndarray, ids: np.ndarray) -> None:
    """In rows already sorted by score, order each run of equal scores by id (in place)."""
    if scores.shape[1] < 2:
        return
    for r in np.flatnonzero((scores[:, 1:] == scores[:, :-1]).any(axis=1)):
        eq = np.flatnonzero(scores[r, 1:] == scores[r, :-1])  # j: scores j and j+1 are equal
        breaks = np.flatnonzero(np.diff(eq) > 1)
        for a, b in zip(eq[np.r_[0, breaks + 1]], eq[np.r_[breaks, eq.size - 1]] + 2):
            ids[r, a:b] = np.sort(ids[r, a:b])


def check_ivf(index, choice: IndexChoice, path: Path) -> None:
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    ivf = faiss.downcast_index(index) if ivf is not None else None
    if (not isinstance(ivf, faiss.IndexIVFScalarQuantizer) or ivf.by_residual
            or ivf.sq.qtype != faiss.ScalarQuantizer.QT_fp16):
        raise IndexOutOfDateError(
            f"{path}: expected an {choice.key} index, found {type(index).__name__}")
    if ivf.nlist != choice.nlist:
        raise IndexOutOfDateError(f"{path}: has {ivf.nlist} lists, expected {choice.nlist}")
    if ivf.metric_type != faiss.METRIC_INNER_PRODUCT or not ivf.is_trained:
        raise IndexOutOfDateError(f"{path}: not a trained inner-product IVF index")
    if ivf.direct_map.type != faiss.DirectMap.Hashtable:
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)

"""Many nearest neighbours from an inverted-file (IVF) index without FAISS's result heap.

FAISS keeps a k-entry heap per thread while it scans the probed lists; for the identify
screen's shortlist (thousands of segments) that upkeep costs as much as the scan itself. A range
search has no heap: it collects every vector above a score. So each query's radius is taken from
a small sample of the stored vectors, placed where the sample predicts clearly more than k
vectors score above it; the range search over the same probed lists then holds the k best of
those lists, which a partial sort picks out. A query whose range search comes back with fewer
than k (a sample that predicted badly) is answered by the heap search instead, so the result is
always the heap search's: the k best vectors of the probed lists.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["RANGE_MIN_K", "SAMPLE_SIZE", "SampleRadius", "range_top"]

RANGE_MIN_K = 256
"""IVF searches for at least this many neighbours go through a range search."""

SAMPLE_SIZE = 8192
"""Stored vectors in the sample that sets the radius."""

MARGIN, EXTRA = 1.6, 20
"""The radius is the sample's score at rank ``MARGIN * k * sample / n + EXTRA``: about 60 % more
vectors than asked score above it, several standard deviations of the sample's error."""


class SampleRadius:
    """A flat index over a sample of an IVF index's vectors, in proportion to its lists."""

    def __init__(self, ivf, dim: int, size: int = SAMPLE_SIZE):
        import faiss

        inv, n = ivf.invlists, int(ivf.ntotal)
        parts = []
        for lst in range(inv.nlist):
            m = inv.list_size(lst)
            take = min(m, math.ceil(size * m / max(n, 1)))
            if take:
                codes = faiss.rev_swig_ptr(inv.get_codes(lst), m * inv.code_size)
                x = np.frombuffer(codes.tobytes(), np.float32).reshape(m, dim)
                parts.append(x[np.linspace(0, m - 1, take).astype(np.int64)])
        self.n = n
        self.dim = dim
        self.vectors = (np.ascontiguousarray(np.concatenate(parts)) if parts
                        else np.zeros((0, dim), np.float32))

    def radii(self, queries: np.ndarray, k: int) -> np.ndarray | None:
        """Per query, a score with clearly more than ``k`` stored vectors above it; None when
        the sample is too small to tell."""
        import faiss

        ns = self.vectors.shape[0]
        rank = math.ceil(MARGIN * k * ns / max(self.n, 1)) + EXTRA
        if ns == 0 or rank > ns:
            return None
        out = np.empty(queries.shape[0], np.float32)
        scores = np.empty(ns, np.float32)
        for i, q in enumerate(queries):  # FAISS's SIMD dot products: no BLAS thread pool
            faiss.fvec_inner_products_ny(faiss.swig_ptr(scores), faiss.swig_ptr(q),
                                         faiss.swig_ptr(self.vectors), self.dim, ns)
            out[i] = np.partition(scores, ns - rank)[ns - rank]
        return out


def range_top(ivf, queries: np.ndarray, k: int, radii: np.ndarray,
              heap_search) -> tuple[np.ndarray, np.ndarray]:
    """(scores (q, k), ids (q, k)) best first: each query's k best over the lists ``ivf``
    probes, from a range search at its radius; ``heap_search(rows)`` answers the queries whose
    range search found fewer than k."""
    nq = queries.shape[0]
    scores = np.empty((nq, k), np.float32)
    ids = np.empty((nq, k), np.int64)
    short = []
    for i in range(nq):
        _, dist, got = ivf.range_search(queries[i : i + 1], float(radii[i]))
        if dist.size < k:
            short.append(i)
            continue
        best = np.argpartition(-dist, k - 1)[:k] if dist.size > k else np.arange(k)
        best = best[np.argsort(-dist[best])]  # equal scores: the caller orders them by id
        scores[i], ids[i] = dist[best], got[best]
    if short:
        scores[short], ids[short] = heap_search(np.asarray(short))
    return scores, ids

"""Many nearest neighbours from an inverted-file (IVF) index without FAISS's result heap.

FAISS keeps a k-entry heap per thread while it scans the probed lists; for the identify
screen's shortlist (thousands of segments) that upkeep costs as much as the scan itself. A range
search has no heap: it collects every vector above a score. So the lists a query probes are
found first (FAISS's coarse quantizer), its radius is read from a sample of those lists'
vectors, placed where the sample predicts clearly more than k of them score above it, and the
range search over the same lists then holds their k best, which a partial sort picks out. A
query whose range search comes back with fewer than k (a sample that predicted badly) is
answered by the heap search instead, so the result is always the heap search's: the k best
vectors of the probed lists (up to which of equal scores make the cut).
"""

from __future__ import annotations

import math

import numpy as np

from speakerdb.index.rows import score_rows

__all__ = ["RANGE_MIN_K", "REDRAW", "SAMPLE_SIZE", "SampleRadius", "range_top"]

RANGE_MIN_K = 256
"""IVF searches for at least this many neighbours go through a range search."""

SAMPLE_SIZE = 16384
"""Stored vectors in the sample that sets the radii (about 1 in 60 at a million)."""

REDRAW = 0.1
"""The sample is redrawn once the index's size has changed by this fraction since."""

MARGIN, EXTRA = 1.6, 20
"""The radius is the probed lists' sample score at rank ``MARGIN * k * s / h + EXTRA`` (``s``
sample rows, ``h`` vectors in those lists): about 60 % more vectors than asked score above it,
several standard deviations of the sample's error."""


class SampleRadius:
    """A sample of an IVF index's vectors, drawn from every list in proportion to its size and
    kept grouped by list, so a query's radius is estimated from the lists it probes alone."""

    def __init__(self, ivf, decode, size: int = SAMPLE_SIZE):
        """ivf: the FAISS IVF index; decode: list codes (m, code_size) uint8 -> vectors."""
        import faiss

        inv, n = ivf.invlists, int(ivf.ntotal)
        self.sizes = np.array([inv.list_size(lst) for lst in range(inv.nlist)], np.int64)
        parts, taken = [], np.zeros(inv.nlist, np.int64)
        for lst in np.flatnonzero(self.sizes):
            m = int(self.sizes[lst])
            taken[lst] = min(m, math.ceil(size * m / n))
            codes = faiss.rev_swig_ptr(inv.get_codes(int(lst)), m * inv.code_size)
            rows = np.linspace(0, m - 1, taken[lst]).astype(np.int64)
            parts.append(decode(codes.reshape(m, inv.code_size)[rows]))
        self.ivf, self.taken, self.n = ivf, taken, n
        self.starts = np.concatenate([[0], np.cumsum(taken)])
        self.vectors = (np.ascontiguousarray(np.concatenate(parts), dtype=np.float32) if parts
                        else np.zeros((0, int(ivf.d)), np.float32))

    def fresh(self, n: int) -> bool:
        """Whether the sample still stands for an index now holding ``n`` vectors. It is only
        an estimate (a bad radius costs a heap search, never a wrong result), so it is redrawn
        (a quarter of a second at a million) once the count has moved by ``REDRAW``, not after
        every enrolment or deletion."""
        return abs(n - self.n) <= REDRAW * self.n

    def probe(self, queries: np.ndarray, k: int):
        """(radii (q,), lists (q, nprobe), list scores (q, nprobe)): the lists each query
        probes and a score with clearly more than ``k`` of their vectors above it; a radius is
        NaN where the sample cannot tell (or the lists hold fewer than ``k``)."""
        scores_q, lists = self.ivf.quantizer.search(queries, self.ivf.nprobe)
        radii = np.full(queries.shape[0], np.nan, np.float32)
        for i, (q, row) in enumerate(zip(queries, lists)):
            row = row[row >= 0]
            held, counts = int(self.sizes[row].sum()), self.taken[row]
            ns = int(counts.sum())
            rank = math.ceil(MARGIN * k * ns / max(held, 1)) + EXTRA
            if held < k or ns == 0 or rank > ns:
                continue
            # the sample rows of these lists: runs starts[l] .. starts[l] + counts[l]
            first = np.repeat(self.starts[row] - np.cumsum(counts) + counts, counts)
            out = score_rows(self.vectors, q[None, :], (first + np.arange(ns))[None, :])[0]
            radii[i] = np.partition(out, ns - rank)[ns - rank]
        return radii, lists, scores_q


def range_top(ivf, queries: np.ndarray, k: int, probe,
              heap_search) -> tuple[np.ndarray, np.ndarray]:
    """(scores (q, k), ids (q, k)) best first: each query's k best over the lists ``ivf``
    probes, from a range search over ``probe``'s lists at its radius; ``heap_search(rows)``
    answers the queries without a radius or whose range search found fewer than k."""
    radii, lists, list_scores = probe
    nq = queries.shape[0]
    scores = np.empty((nq, k), np.float32)
    ids = np.empty((nq, k), np.int64)
    short = []
    for i in range(nq):
        if np.isnan(radii[i]):
            short.append(i)
            continue
        _, dist, got = ivf.range_search_preassigned(
            queries[i : i + 1], float(radii[i]), lists[i : i + 1], list_scores[i : i + 1])
        if dist.size < k:
            short.append(i)
            continue
        best = np.argpartition(-dist, k - 1)[:k] if dist.size > k else np.arange(k)
        best = best[np.argsort(-dist[best])]  # equal scores: the caller orders them by id
        scores[i], ids[i] = dist[best], got[best]
    if short:
        scores[short], ids[short] = heap_search(np.asarray(short))
    return scores, ids

"""Which FAISS index type to build for a given number of vectors and dimension.

A pure function of its arguments, so catch-up and rebuild decisions can be made (and tested)
without FAISS.
"""

from __future__ import annotations

__all__ = ["FLAT_KEY", "FLAT_MAX_VECTORS", "SCREEN_DIM", "choose_index_key"]

FLAT_KEY = "Flat"
"""Exact inner-product search over every stored vector."""

FLAT_MAX_VECTORS = 200_000
"""Size from which an approximate index would pay for itself on the screening dimension.

Not acted on yet: every index is ``Flat`` for now. The planned next step is to return an
HNSW key (e.g. ``"HNSW32,Flat"``) for ``dim == SCREEN_DIM`` when ``n_vectors >=
FLAT_MAX_VECTORS``, keeping the higher dimensions flat, since they only rescore a shortlist.
"""

SCREEN_DIM = 64
"""The dimension the identify cascade screens everything with."""


def choose_index_key(n_vectors: int, dim: int) -> str:
    """FAISS factory key for an index of ``n_vectors`` unit vectors of ``dim`` values.

    Currently ``"Flat"`` for every size and dimension (exact cosine search); see
    ``FLAT_MAX_VECTORS`` for the next step.
    """
    if n_vectors < 0:
        raise ValueError(f"n_vectors must be >= 0, got {n_vectors}")
    if dim <= 0:
        raise ValueError(f"dim must be > 0, got {dim}")
    return FLAT_KEY

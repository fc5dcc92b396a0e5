"""The one place where raw 256-D model outputs become nested, L2-normalised embeddings.

A Matryoshka model's D-dimensional embedding is the first D values of its raw output, then
L2-normalised: slice first, normalise second.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DIMS", "FULL_DIM", "mean_embedding", "nested", "prefix", "unit"]

DIMS: tuple[int, ...] = (64, 128, 192, 256)
FULL_DIM = DIMS[-1]
_EPS = 1e-12


def unit(x) -> np.ndarray:
    """``x`` as float64 with its last axis scaled to unit L2 norm; an all-zero vector stays zero."""
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def prefix(raw: np.ndarray, dim: int) -> np.ndarray:
    """L2-normalised first ``dim`` values of ``raw``.

    raw: (..., 256) float; returns (..., dim) float32, each row of unit length
    (an all-zero row stays zero).
    """
    if dim not in DIMS:
        raise ValueError(f"dimension {dim} is not one of {DIMS}")
    head = np.asarray(raw, dtype=np.float32)[..., :dim]
    norm = np.linalg.norm(head, axis=-1, keepdims=True)
    return (head / np.maximum(norm, _EPS)).astype(np.float32, copy=False)


def nested(raw: np.ndarray, dims: tuple[int, ...] = DIMS) -> dict[int, np.ndarray]:
    """``{dim: prefix(raw, dim)}`` for every nested dimension."""
    return {d: prefix(raw, d) for d in dims}


def mean_embedding(raw: np.ndarray, dims: tuple[int, ...] = DIMS) -> dict[int, np.ndarray]:
    """One embedding per dimension for audio cut into several segments.

    raw: (n_segments, 256). Each segment's prefix is normalised, the prefixes are averaged and
    the mean is normalised again, so every segment counts the same at every dimension.
    """
    raw = np.atleast_2d(np.asarray(raw, dtype=np.float32))
    out = {}
    for d in dims:
        m = prefix(raw, d).mean(axis=0)
        out[d] = (m / max(float(np.linalg.norm(m)), _EPS)).astype(np.float32)
    return out

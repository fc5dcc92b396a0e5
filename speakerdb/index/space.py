"""The vector space of a database: how raw model outputs become the nested unit vectors it
indexes and queries.

A Matryoshka model's raw output is used as it is (``identity``): its 64/128/192/256-D prefixes
are trained embeddings. A model without nested prefixes (an official ReDimNet release: raw
192-D) still gets a cascade: once the database holds ``MIN_ROTATION_VECTORS`` segments, an
orthogonal rotation is learned from its own stored vectors (principal axes of the unit vectors,
by decreasing variance), stored in the database, and every index is derived from rotated vectors
whose 64/128/192-D prefixes are the screen and rescoring stages. Until then the database searches
exhaustively at the full dimension.

The trade-off: the rotation is orthogonal, so full-dimension scores are exactly the model's; the
shorter prefixes are variance-ordered truncations, weaker than trained Matryoshka prefixes (a
PCA-64 typically loses more accuracy than an MRL-64), so the cascade leans on its shortlists.
The rotation is learned once and kept: refitting would change every stored index.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import numpy as np

from speakerdb.model.prefixes import DIMS, mean_embedding, nested

__all__ = ["MIN_ROTATION_VECTORS", "ROTATION_KEY", "VectorSpace", "fit_rotation",
           "encode_rotation", "decode_rotation", "space_for"]

MIN_ROTATION_VECTORS = 1000
ROTATION_KEY = "rotation"  # settings key of a database's learned rotation


@dataclass(frozen=True)
class VectorSpace:
    dims: tuple[int, ...]  # nested dimensions indexed, ascending; the last is the full one
    rotation: np.ndarray | None = None  # (d, d) orthogonal; columns by decreasing variance
    name: str = "identity"  # "identity" or "rotation:<sha256 of the matrix>"

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """raw (..., d) → the same vectors in this space (rotated when there is a rotation)."""
        raw = np.asarray(raw, dtype=np.float32)
        return raw if self.rotation is None else (raw @ self.rotation).astype(np.float32)

    def nested(self, raw: np.ndarray) -> dict[int, np.ndarray]:
        return nested(self.transform(raw), self.dims)

    def query(self, segments_raw: np.ndarray) -> dict[int, np.ndarray]:
        """One unit vector per dimension for a query cut into segments (n, d)."""
        return mean_embedding(self.transform(segments_raw), self.dims)


def fit_rotation(raw: np.ndarray) -> np.ndarray:
    """(d, d) orthogonal matrix whose columns are the principal axes of the L2-normalised rows
    of ``raw`` (n, d), by decreasing variance, each signed so its largest entry is positive."""
    x = np.asarray(raw, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    x = x - x.mean(axis=0)
    values, vectors = np.linalg.eigh(x.T @ x / max(len(x) - 1, 1))
    order = np.argsort(values)[::-1]
    vectors = vectors[:, order]
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])])
    return (vectors * np.where(signs == 0, 1.0, signs)).astype(np.float32)


def encode_rotation(rotation: np.ndarray, n_fit: int) -> dict:
    data = np.ascontiguousarray(rotation, dtype="<f4").tobytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "dim": int(rotation.shape[0]),
            "fitted_on": int(n_fit), "data": base64.b64encode(data).decode("ascii")}


def decode_rotation(stored: dict) -> tuple[np.ndarray, str]:
    """(matrix, sha256) from ``encode_rotation``'s dict; ValueError if it does not add up."""
    data = base64.b64decode(stored["data"])
    if hashlib.sha256(data).hexdigest() != stored["sha256"]:
        raise ValueError("stored rotation does not match its sha256")
    d = int(stored["dim"])
    m = np.frombuffer(data, dtype="<f4").reshape(d, d).astype(np.float32)
    if np.abs(m.T @ m - np.eye(d)).max() > 1e-4:
        raise ValueError("stored rotation is not orthogonal")
    return m, stored["sha256"]


def space_for(model_dims: tuple[int, ...], raw_dim: int, stored: dict | None) -> VectorSpace:
    """The space of a database bound to a model with ``model_dims`` nested dimensions."""
    if tuple(model_dims) == DIMS:
        return VectorSpace(DIMS)
    if stored is None:
        return VectorSpace((raw_dim,))
    rotation, sha = decode_rotation(stored)
    dims = tuple(d for d in DIMS if d < raw_dim) + (raw_dim,)
    return VectorSpace(dims, rotation, f"rotation:{sha}")

"""The embedder interface every model implements.

An embedder maps a batch of mono waveforms at its ``sample_rate`` to raw ``(B, raw_dim)``
float32 outputs. Nothing else: slicing and normalising the nested prefixes happens in
``speakerdb.model.prefixes`` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Embedder", "model_info"]


@runtime_checkable
class Embedder(Protocol):
    name: str
    """Human name, e.g. ``spectral`` or ``campplus``."""
    sha256: str
    """Identity of the weights (or of the algorithm for weightless embedders)."""
    dims: tuple[int, ...]
    """Nested dimensions served, ascending; the last is ``raw_dim``."""
    raw_dim: int
    sample_rate: int
    """Input rate in Hz (16 000 for every model here)."""
    default_threshold: float
    """Cosine threshold at the full dimension used for verification until a database is
    calibrated (identification uses it only as a guess, when no impostor statistics exist)."""
    # An embedder may also carry ``impostor_stats``: {space_key: ImpostorModel dict} measured
    # for it (search/openset.py), from which identify derives gallery-size-aware defaults,
    # and ``default_vad``: the speech detector a new database for it uses (audio/vad.py).

    def __call__(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """waveforms: B arrays (n_i,) float32 in [-1, 1] at ``sample_rate``.
        Returns (B, raw_dim) float32 raw outputs (not normalised)."""
        ...


def model_info(embedder: Embedder) -> dict:
    """The ``model`` object of the JSON outputs."""
    return {"name": embedder.name, "sha256": embedder.sha256, "dims": list(embedder.dims)}

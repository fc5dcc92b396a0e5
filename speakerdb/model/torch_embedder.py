"""Running a torch speaker model as an ``Embedder``: device, threads, eval mode, batching.

Inputs are grouped by exact length and each group runs as one batch, so batched results equal
one-at-a-time results (no padding ever reaches the model); groups are split into batches of at
most ``max_batch`` inputs and ``max_batch_samples`` samples in all (on a CPU, one forward pass over
many long clips is slower per clip than several smaller ones: its activations leave the caches). Very short inputs are repeated up to ``min_samples`` so no model sees fewer frames than it
can pool.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch

from speakerdb.errors import UsageError
from speakerdb.model.registry import DEVICES

__all__ = ["DEVICES", "TorchEmbedder", "resolve_device", "set_threads"]


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU. Asking for CUDA without it is a UsageError."""
    if device not in DEVICES:
        raise UsageError(f"device {device!r}: choose one of {', '.join(DEVICES)}",
                         option="device")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda: no CUDA GPU is available (use device cpu)",
                         option="device")
    return torch.device(device)


def set_threads() -> None:
    """Use every core the process may run on (``SPEAKERDB_THREADS`` overrides)."""
    n = os.environ.get("SPEAKERDB_THREADS")
    try:
        want = int(n) if n else len(os.sched_getaffinity(0))
    except (AttributeError, ValueError):
        want = os.cpu_count() or 1
    if torch.get_num_threads() != want:
        torch.set_num_threads(max(1, want))


class TorchEmbedder:
    """An Embedder around ``module``: waveforms (B, n) float32 at 16 kHz → (B, raw_dim) raw."""

    sample_rate = 16000
    default_vad = "silero"  # a new database for a network cuts real audio on speech

    def __init__(self, module: torch.nn.Module, *, name: str, sha256: str, raw_dim: int,
                 dims: tuple[int, ...], default_threshold: float, device: str = "auto",
                 max_batch: int = 16, max_batch_samples: int = 48 * 16000,
                 min_samples: int = 1600):
        self.name, self.sha256, self.raw_dim, self.dims = name, sha256, raw_dim, tuple(dims)
        self.default_threshold = default_threshold
        self.device = resolve_device(device)
        self.max_batch, self.min_samples = max_batch, min_samples
        self.max_batch_samples = max_batch_samples
        set_threads()
        self.module = module.to(self.device).eval()

    def _fit(self, w: np.ndarray) -> np.ndarray:
        w = np.asarray(w, dtype=np.float32)
        if w.size == 0:
            w = np.zeros(1, np.float32)
        if w.size < self.min_samples:
            w = np.tile(w, -(-self.min_samples // w.size))[: self.min_samples]
        return w

    def __call__(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(waveforms), self.raw_dim), dtype=np.float32)
        groups: dict[int, list[int]] = defaultdict(list)
        fitted = [self._fit(w) for w in waveforms]
        for i, w in enumerate(fitted):
            groups[w.size].append(i)
        with torch.inference_mode():
            for n, idx in groups.items():
                rows = max(1, min(self.max_batch, self.max_batch_samples // n))
                for s in range(0, len(idx), rows):
                    part = idx[s : s + rows]
                    x = torch.from_numpy(np.stack([fitted[i] for i in part])).to(self.device)
                    out[part] = self.module(x).float().cpu().numpy()
        return out

"""The Matryoshka head of the default model ``campplus``: CAM++ → raw 256-D whose L2-normalised
64/128/192/256-D prefixes are each a speaker embedding (``speakerdb.model.prefixes``).

The head is one linear map stored in ``head.npz`` next to this file, written by
``scripts/train_campplus_head.py`` (its ``meta`` entry records the method, the fitting data and
the sha256 of the CAM++ weights it belongs to)::

    raw = embedding @ weight.T      embedding: CAM++'s own 192-D output (B, 192), not normalised
                                    weight:    (256, 192) float32

In the shipped file rows 0-191 are an orthonormal basis of the embedding space ordered so that
each prefix keeps the directions in which speakers vary most (the CAM++ mean direction last),
and rows 192-255 are zero. Hence, by construction, the 192-D and 256-D prefixes give exactly
CAM++'s cosine scores; 64 and 128 are its best-ordered truncations. Cross-validated EER per
dimension: ``bench/mrl_head_eer.py``.

``MatryoshkaHead`` maps the 192-D embedding (or the 1024-D pooled statistics, through CAM++'s
own dense layer) to raw 256; ``campplus_mrl(wave_model)`` wraps a ``CamppWave`` into
waveform (B, n) → raw (B, 256).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["HEAD_PATH", "RAW_DIM", "DIMS", "read_head", "MatryoshkaHead", "CamppMRL",
           "campplus_mrl"]

HEAD_PATH = Path(__file__).with_name("head.npz")
RAW_DIM = 256
DIMS = (64, 128, 192, 256)
EMBED_DIM = 192


def read_head(path: str | Path = HEAD_PATH) -> tuple[np.ndarray, dict]:
    """(weight (256, 192) float32, meta dict) from a head file; ValueError when malformed."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        if "weight" not in z or "meta" not in z:
            raise ValueError(f"{path}: not a campplus head (needs 'weight' and 'meta')")
        weight = np.asarray(z["weight"])
        meta = json.loads(str(z["meta"]))
    if weight.shape != (RAW_DIM, EMBED_DIM) or weight.dtype != np.float32:
        raise ValueError(f"{path}: weight is {weight.dtype} {weight.shape}, expected float32 "
                         f"({RAW_DIM}, {EMBED_DIM})")
    if not np.isfinite(weight).all():
        raise ValueError(f"{path}: weight has non-finite values")
    return weight, meta


class MatryoshkaHead(nn.Module):
    """CAM++ 192-D embedding (B, 192) → raw (B, 256); ``meta`` is the head file's metadata."""

    def __init__(self, weight: np.ndarray | torch.Tensor, meta: dict | None = None):
        super().__init__()
        self.register_buffer("weight", torch.as_tensor(np.asarray(weight, np.float32)))
        self.meta = dict(meta or {})

    @classmethod
    def load(cls, path: str | Path = HEAD_PATH) -> MatryoshkaHead:
        return cls(*read_head(path))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return embedding.to(self.weight.dtype) @ self.weight.T


class CamppMRL(nn.Module):
    """Waveform (B, n) float32 at 16 kHz → raw (B, 256) (``CamppWave`` then the head)."""

    def __init__(self, wave_model: nn.Module, head: MatryoshkaHead):
        super().__init__()
        self.wave_model = wave_model
        self.head = head
        self.raw_dim = RAW_DIM
        self.dims = DIMS
        self.min_samples = getattr(wave_model, "min_samples", None)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.head(self.wave_model(wave))


def campplus_mrl(wave_model: nn.Module, path: str | Path = HEAD_PATH,
                 weights_sha256: str | None = None) -> CamppMRL:
    """The campplus-MRL module around ``wave_model`` (a ``CamppWave``), in eval mode.

    ``weights_sha256``: when given, it must equal the CAM++ weights hash recorded in the head
    file (a head is only meaningful for the weights it was fitted on)."""
    head = MatryoshkaHead.load(path)
    want = head.meta.get("campplus_sha256")
    if weights_sha256 is not None and want and weights_sha256 != want:
        raise ValueError(f"{path}: head fitted for CAM++ weights {want[:12]}…, "
                         f"not {weights_sha256[:12]}…")
    return CamppMRL(wave_model, head).eval()

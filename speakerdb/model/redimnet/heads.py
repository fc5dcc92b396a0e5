"""Pooling and embedding heads of ReDimNet.

Pooling turns the frame-level output (B, D, T) into (B, 2·D) = [mean, std]:
- ``ASTP``: attentive statistics. Attention logits linear2(tanh(linear1(x_in))), softmax over
  time, per channel; x_in is x, or with global context [x, mean_t(x), sqrt(var_t(x) + 1e-7)]
  (unbiased var) giving 3·D channels. std = sqrt(clamp(E_a[x²] - mean², 1e-7)). Bottleneck 128.
- ``TSTP``: plain mean and sqrt(unbiased var + 1e-7).

Heads: official ``bn`` BatchNorm1d(2·D) + ``linear`` → embed_dim (+ ``bn2`` when emb_bn);
MRL ``projection`` = ``bn`` BatchNorm1d(2·D) + ``linear`` → embed_dim (256), prefixes are slices.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ASTP", "TSTP", "make_pooling", "MrlProjection", "ASTP_BOTTLENECK"]

ASTP_BOTTLENECK = 128


class ASTP(nn.Module):
    """Attentive statistics pooling: (B, D, T) → (B, 2·D)."""

    def __init__(self, in_dim: int, global_context_att: bool = False,
                 bottleneck_dim: int = ASTP_BOTTLENECK):
        super().__init__()
        self.global_context_att = global_context_att
        self.linear1 = nn.Conv1d(in_dim * (3 if global_context_att else 1), bottleneck_dim, 1)
        self.linear2 = nn.Conv1d(bottleneck_dim, in_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.reshape(x.shape[0], x.shape[1] * x.shape[2], x.shape[3])
        if self.global_context_att:
            mean = x.mean(dim=-1, keepdim=True).expand_as(x)
            std = torch.sqrt(torch.var(x, dim=-1, keepdim=True) + 1e-7).expand_as(x)
            x_in = torch.cat((x, mean, std), dim=1)
        else:
            x_in = x
        alpha = torch.softmax(self.linear2(torch.tanh(self.linear1(x_in))), dim=2)
        mean = torch.sum(alpha * x, dim=2)
        var = torch.sum(alpha * (x * x), dim=2) - mean * mean
        return torch.cat([mean, torch.sqrt(var.clamp(min=1e-7))], dim=1)


class TSTP(nn.Module):
    """Temporal statistics pooling: (B, D, T) → (B, 2·D) = [mean, sqrt(unbiased var + 1e-7)]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.reshape(x.shape[0], x.shape[1] * x.shape[2], x.shape[3])
        return torch.cat([x.mean(dim=-1), torch.sqrt(torch.var(x, dim=-1) + 1e-7)], dim=1)


def make_pooling(name: str, in_dim: int, global_context_att: bool) -> nn.Module:
    if name == "ASTP":
        return ASTP(in_dim, global_context_att)
    if name == "TSTP":
        return TSTP()
    raise ValueError(f"pooling {name!r} is not supported")


class MrlProjection(nn.Module):
    """Matryoshka head: (B, in_dim) → BatchNorm1d → Linear → (B, embed_dim) raw (not sliced)."""

    def __init__(self, in_dim: int, embed_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_dim)
        self.linear = nn.Linear(in_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.bn(x))

"""Inference kernels of the CAM++ network, numerically equal to the plain torch modules.

On CPU, torch's dilated Conv1d takes a slow path and 1×1 Conv1d on short inputs pays oneDNN
overhead; these functions compute the same results with matrix products. They read the weights
of the given ``nn.Conv1d`` so parameter names stay those of the official state dict.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["conv1x1", "conv_k3", "stats_pool"]


def conv1x1(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """``conv(x)`` for a 1×1 Conv1d as one matrix product (faster than the conv path on CPU
    for short inputs): (B, Cin, T) → (B, Cout, T)."""
    y = torch.matmul(conv.weight[:, :, 0], x)
    return y if conv.bias is None else y + conv.bias[:, None]


def conv_k3(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """``conv(x)`` for a kernel-3, stride-1, same-padded Conv1d without bias (any dilation d):
    one product of the stacked taps with the zero-padded input, then three shifted slices
    summed. (B, Cin, T) → (B, Cout, T). Avoids torch's slow dilated-conv path on CPU."""
    d, t, cout = conv.dilation[0], x.shape[-1], conv.out_channels
    taps = conv.weight.permute(2, 0, 1).reshape(3 * cout, -1)       # (3·Cout, Cin)
    y = torch.matmul(taps, F.pad(x, (d, d)))                        # (B, 3·Cout, T + 2d)
    return (y[:, :cout, :t] + y[:, cout : 2 * cout, d : d + t]
            + y[:, 2 * cout :, 2 * d : 2 * d + t])


def stats_pool(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T') → (B, 2C): mean and unbiased std over time."""
    return torch.cat([x.mean(-1), x.std(-1, unbiased=True)], dim=-1)

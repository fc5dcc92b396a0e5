"""Folding eval-mode BatchNorms into the convolutions and linear layers next to them.

A BatchNorm in eval mode is the affine map y = s·x + t per channel, with s = γ / sqrt(var + eps)
and t = β - mean·s. After a convolution or linear layer (weight W, bias b) it folds into
W' = s·W (per output channel), b' = s·b + t; before a linear layer it folds into W' = W·s (per
input column), b' = W·t + b. Both are exact in real arithmetic; in float32 they change only the
rounding. (A BatchNorm before a zero-padded convolution does not fold exactly: the padding
would have to be t, not 0. Those stay as ``affine`` scale/shift pairs.)
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

__all__ = ["bn_affine", "fold_bn_after", "fold_bn_before"]


def bn_affine(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel of an eval-mode BatchNorm (running statistics)."""
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or not bn.track_running_stats:
        raise TypeError(f"expected a BatchNorm with running statistics, got {type(bn).__name__}")
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var.double() + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.double()
        shift = -bn.running_mean.double() * scale
        if bn.bias is not None:
            shift = shift + bn.bias.double()
    return scale, shift


def fold_bn_after(weight: torch.Tensor, bias: Optional[torch.Tensor], bn: nn.Module,
                  channels: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(layer(x))`` for a conv or linear ``layer`` (output channels first);
    ``channels``: the BatchNorm channels that this layer's outputs are (when several layers are
    concatenated before one BatchNorm). Computed in float64, returned in the weight's dtype."""
    scale, shift = bn_affine(bn)
    scale, shift = scale[channels], shift[channels]
    if scale.numel() != weight.shape[0]:
        raise ValueError(f"{scale.numel()} BatchNorm channels for {weight.shape[0]} outputs")
    with torch.no_grad():
        w = weight.double() * scale.view((-1,) + (1,) * (weight.ndim - 1))
        b = shift if bias is None else bias.double() * scale + shift
    return w.to(weight.dtype), b.to(weight.dtype)


def fold_bn_before(weight: torch.Tensor, bias: Optional[torch.Tensor],
                   bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``linear(bn(x))`` for a Linear weight (out, in). Float64 inside."""
    if weight.ndim != 2:
        raise ValueError("folding a BatchNorm into the input of a layer needs a Linear weight")
    scale, shift = bn_affine(bn)
    if scale.numel() != weight.shape[1]:
        raise ValueError(f"{scale.numel()} BatchNorm channels for {weight.shape[1]} inputs")
    with torch.no_grad():
        w64 = weight.double()
        b = w64 @ shift
        if bias is not None:
            b = b + bias.double()
        w = w64 * scale.view(1, -1)
    return w.to(weight.dtype), b.to(weight.dtype)

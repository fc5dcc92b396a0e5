"""Convolutional building blocks of ReDimNet (2-D stage blocks, and the ConvNeXt-like block that
the 1-D blocks reuse). Parameter names follow upstream so checkpoints load strictly.

Shapes: 2-D maps are (B, C, F, T) (channels, mel bands, frames); 1-D maps are (B, C, T).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

__all__ = ["LayerNormCF", "ConvNeXtLike", "FwSE", "ResBasic", "Block2d", "squeeze_block", "groups_for"]


def groups_for(channels: int, group_divisor: Optional[int]) -> int:
    """Upstream's group count for a grouped conv over ``channels``: channels // divisor (1 if None)."""
    if group_divisor is None:
        return 1
    g = channels // group_divisor
    if g < 1:
        raise ValueError(f"group_divisor {group_divisor} is larger than {channels} channels")
    return g


class LayerNormCF(nn.Module):
    """LayerNorm over the channel axis (dim 1) of (B, C, ...) maps; population variance, eps 1e-6."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return self.weight.view(shape) * x + self.bias.view(shape)


class ConvNeXtLike(nn.Module):
    """x + pw(act(BN(concat_k dwconv_k(x)))): one grouped conv per kernel size, concatenated.

    dim 1: (B, C, T) with integer kernels; dim 2: (B, C, F, T) with (kf, kt) kernels."""

    def __init__(self, channels: int, dim: int, kernel_sizes, group_divisor: Optional[int] = 1,
                 activation: str = "gelu"):
        super().__init__()
        conv = nn.Conv1d if dim == 1 else nn.Conv2d
        bn = nn.BatchNorm1d if dim == 1 else nn.BatchNorm2d
        groups = groups_for(channels, group_divisor)
        self.dwconvs = nn.ModuleList(
            [conv(channels, channels, k, padding="same", groups=groups) for k in kernel_sizes])
        self.norm = bn(channels * len(kernel_sizes))
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.pwconv1 = conv(channels * len(kernel_sizes), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.dwconvs) == 1:
            y = self.dwconvs[0](x)
        else:
            y = torch.cat([c(x) for c in self.dwconvs], dim=1)
        return x + self.pwconv1(self.act(self.norm(y)))


class FwSE(nn.Module):
    """Frequency-wise squeeze-excitation: scale each mel band by sigmoid(MLP(mean over C, T))."""

    def __init__(self, num_freq: int, num_feats: int):
        super().__init__()
        self.squeeze = nn.Linear(num_freq, num_feats)
        self.exitation = nn.Linear(num_feats, num_freq)  # upstream's spelling

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, F, T)
        s = torch.sigmoid(self.exitation(torch.relu(self.squeeze(x.mean(dim=(1, 3))))))
        return x * s[:, None, :, None]


class ResBasic(nn.Module):
    """Residual block: relu(x + [fwSE](bn2(pw2(conv2(bn1(relu(pw1(conv1(x)))))))).

    Note the ReLU before bn1 (as upstream). With group_divisor None the 3x3 convs are dense and
    there are no pointwise convs."""

    def __init__(self, channels: int, num_freq: int, group_divisor: Optional[int], use_fwse: bool):
        super().__init__()
        c = channels
        g = groups_for(c, group_divisor)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False, groups=g)
        self.conv1pw = nn.Conv2d(c, c, 1) if group_divisor is not None else nn.Identity()
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False, groups=g)
        self.conv2pw = nn.Conv2d(c, c, 1) if group_divisor is not None else nn.Identity()
        self.bn2 = nn.BatchNorm2d(c)
        self.se = FwSE(num_freq, min(64, max(c, 32))) if use_fwse else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(torch.relu(self.conv1pw(self.conv1(x))))
        out = self.se(self.bn2(self.conv2pw(self.conv2(out))))
        return torch.relu(out + x)


class Block2d(nn.Module):
    """One 2-D stage block of ``block_type`` over (B, channels, num_freq, T); the block itself is
    the ``conv_block`` child, as upstream names it."""

    def __init__(self, channels: int, num_freq: int, block_type: str, group_divisor: Optional[int]):
        super().__init__()
        if block_type in ("convnext_like", "convnext_like_relu"):
            act = "relu" if block_type.endswith("relu") else "gelu"
            self.conv_block = ConvNeXtLike(channels, 2, [(3, 3)], group_divisor, act)
        elif block_type in ("basic_resnet", "basic_resnet_fwse"):
            self.conv_block = ResBasic(channels, num_freq, group_divisor, block_type.endswith("fwse"))
        else:
            raise ValueError(f"unknown 2-D block type {block_type!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_block(x)


def squeeze_block(c_in: int, c_out: int, group_divisor: Optional[int], relu: bool) -> nn.Sequential:
    """The conv_exp > 1 squeeze back to ``c_out`` channels: grouped 3x3 conv, BatchNorm2d with
    eps 1e-6, GELU (ReLU only when both block types are ReLU variants), 1x1 conv."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding="same", groups=groups_for(c_out, group_divisor)),
        nn.BatchNorm2d(c_out, eps=1e-6),
        nn.ReLU() if relu else nn.GELU(),
        nn.Conv2d(c_out, c_out, 1),
    )

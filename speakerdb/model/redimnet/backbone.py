"""The ReDimNet backbone: stem, stages with softmax-weighted aggregation of all earlier outputs,
final aggregation and the optional ``mfa`` 1x1 projection.

Every stage keeps C·F constant: its input is the 1-D map (B, C·F, T); it reshapes to
(B, c, f, T), shrinks f by ``stride`` with a (stride x 1) conv that grows channels by
``stride·conv_exp``, runs ``num_blocks`` 2-D blocks, squeezes back to ``stride·c`` channels when
conv_exp > 1, flattens to (B, C·F, T) again and runs the optional 1-D block.

Child indices inside a stage follow upstream's nn.Sequential so that keys such as
``stage3.2.weight`` and ``stage3.7.red_dim_conv.0.weight`` match:
0 aggregation weights, 1 to2d, 2 stride conv, 3 .. 2+num_blocks blocks, [squeeze], to1d, [1-D block].
"""

from __future__ import annotations

import torch
from torch import nn

from speakerdb.model.redimnet.blocks1d import TimeContext1d
from speakerdb.model.redimnet.blocks2d import Block2d, LayerNormCF, squeeze_block
from speakerdb.model.redimnet.config import RedimnetConfig

__all__ = ["To1d", "To2d", "LayerAggregation", "Stage", "ReDimNetBackbone", "stage_shapes"]


class To1d(nn.Module):
    """(B, c, f, T) → (B, f·c, T), frequency-major (index = f_i·c + c_i)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, f * c, t)


class To2d(nn.Module):
    """(B, f·c, T) → (B, c, f, T), the inverse of ``To1d``."""

    def __init__(self, f: int, c: int):
        super().__init__()
        self.f, self.c = f, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape
        return x.reshape(b, self.f, self.c, t).permute(0, 2, 1, 3)


class LayerAggregation(nn.Module):
    """sum_i softmax_i(w)[:, i] * x_i over a list of N (B, width, T) maps; w is [1, N, width, 1]
    (width 1 for the single-input stage 0, whose weight is frozen, as upstream)."""

    def __init__(self, n: int, width: int, requires_grad: bool = True):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1, n, width, 1), requires_grad=requires_grad)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        w = torch.softmax(self.w, dim=1)
        if len(xs) == 1:
            return w[:, 0] * xs[0]
        return (w * torch.stack(xs, dim=1)).sum(dim=1)


class Stage(nn.Sequential):
    """A ReDimNet stage; ``forward`` takes the list of all earlier 1-D outputs."""

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        mods = list(self)
        x = mods[0](xs)
        for m in mods[1:]:
            x = m(x)
        return x


def stage_shapes(cfg: RedimnetConfig) -> list[tuple[int, int]]:
    """(channels, frequency) entering each stage, and after the last one: len(stages) + 1 pairs."""
    c, f = cfg.C, cfg.F
    out = []
    for stride, *_ in cfg.stages_setup:
        out.append((c, f))
        c, f = c * stride, f // stride
    out.append((c, f))
    return out


class ReDimNetBackbone(nn.Module):
    """Features (B, 1, F, T) → frame-level output (B, out_channels or C·F, T)."""

    def __init__(self, cfg: RedimnetConfig):
        super().__init__()
        C, F = cfg.C, cfg.F
        width = C * F
        self.num_stages = len(cfg.stages_setup)
        self.stem = nn.Sequential(nn.Conv2d(1, C, 3, padding="same"), LayerNormCF(C), To1d())
        relu = "relu" in cfg.block_1d_type and "relu" in cfg.block_2d_type
        shapes = stage_shapes(cfg)
        for i, (stride, num_blocks, conv_exp, _kernels, att_red) in enumerate(cfg.stages_setup):
            c, f = shapes[i]
            c2, f2 = shapes[i + 1]
            layers: list[nn.Module] = [
                LayerAggregation(i + 1, width if i > 0 else 1, requires_grad=i > 0),
                To2d(f, c),
                nn.Conv2d(c, c2 * conv_exp, kernel_size=(stride, 1), stride=(stride, 1)),
            ]
            layers += [Block2d(c2 * conv_exp, f2, cfg.block_2d_type, cfg.group_divisor)
                       for _ in range(num_blocks)]
            if conv_exp != 1:
                layers.append(squeeze_block(c2 * conv_exp, c2, cfg.group_divisor, relu))
            layers.append(To1d())
            if att_red is not None:
                layers.append(TimeContext1d(width, width // att_red, cfg.block_1d_type))
            setattr(self, f"stage{i}", Stage(*layers))
        self.fin_wght1d = LayerAggregation(self.num_stages + 1, width,
                                           requires_grad=self.num_stages > 0)
        if cfg.out_channels is not None:
            self.mfa = nn.Sequential(nn.Conv1d(width, cfg.out_channels, 1),
                                     nn.BatchNorm1d(cfg.out_channels))
        else:
            self.mfa = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.stem(x)]
        for i in range(self.num_stages):
            outs.append(getattr(self, f"stage{i}")(outs))
        return self.mfa(self.fin_wght1d(outs))

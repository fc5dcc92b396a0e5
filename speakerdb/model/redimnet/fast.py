"""The inference graph of a ReDimNet model: the same function as ``RedimnetModel.forward``,
rearranged for speed. Built from an eval-mode model by ``FastRedimnet(model)``; its weights are
copies (changing the model's weights afterwards needs a new one).

What differs from the module-by-module (eager) graph:

- Channels-last layout. 1-D maps are (B, T, W) (time-major) and 2-D maps are (B, c, f, T)
  tensors in channels-last memory, (B, f, T, c). Grouped and depthwise convolutions run several
  times faster on CPUs in channels-last memory than in NCHW; the stage's to-2-D and to-1-D
  reshapes become one transposing copy each.
- 1-D convolutions run as channels-last (1 x k) 2-D convolutions; 1x1 convolutions are Linear
  layers; LayerNorms over channels are ``layer_norm`` over the last axis.
- Eval-mode BatchNorms are folded into the convolution or Linear layer beside them (``fold``);
  the one before a zero-padded conv (basic_resnet ``bn1``) stays an affine scale/shift.
- Layer aggregation uses softmax weights computed once, accumulated without stacking.
- Attention uses one Linear for q, k and v and ``scaled_dot_product_attention``; ASTP with
  global context splits its first layer so the [x, mean, std] concatenation is never built.

Outputs equal the eager graph's up to float rounding (cosine ≥ 0.9999; see the tests). The
layers are in ``fastlayers``; ``FastOptions`` switches single optimisations off for measurement
(``bench/redimnet_speed.py``). Measured and not kept: a traced and frozen TorchScript graph on
top (within ±8 %, 1.4 s more start-up, deprecated API), oneDNN convolutions with fused GELU or
residual add (no gain), a leaner front end (1-2 % of the time).
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from speakerdb.model.redimnet.backbone import LayerAggregation, ReDimNetBackbone, To1d, To2d
from speakerdb.model.redimnet.blocks1d import TimeContext1d
from speakerdb.model.redimnet.blocks2d import Block2d
from speakerdb.model.redimnet.fastlayers import (
    ChannelNorm,
    FastOptions,
    TimeContext,
    block2d,
    conv2d_cl,
    linear_from,
    squeeze2d,
)
from speakerdb.model.redimnet.heads import ASTP, TSTP

__all__ = ["FastRedimnet", "FastOptions", "aggregate"]


def _softmax_weights(agg: LayerAggregation) -> torch.Tensor:
    """(N, width) aggregation weights: softmax over N of the [1, N, width, 1] parameter."""
    return torch.softmax(agg.w.detach(), dim=1)[0, :, :, 0].contiguous()


def aggregate(xs: list[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    """sum_i w[i] * xs[i] over (B, T, width) maps, weights (N, width)."""
    acc = xs[0] * w[0]
    for i in range(1, len(xs)):
        acc = acc.addcmul_(xs[i], w[i])
    return acc


class FastStage(nn.Module):
    """A backbone stage on (B, T, C·F) maps: the list of earlier outputs → the next one."""

    def __init__(self, stage: nn.Sequential, opt: FastOptions):
        super().__init__()
        mods = list(stage)
        if not (isinstance(mods[0], LayerAggregation) and isinstance(mods[1], To2d)):
            raise TypeError("a stage starts with its aggregation and a To2d")
        self.register_buffer("agg", _softmax_weights(mods[0]))
        self.f, self.c = mods[1].f, mods[1].c
        self.memory_format = opt.memory_format
        layers: list[nn.Module] = [conv2d_cl(mods[2], opt=opt)]
        tail: Optional[nn.Module] = None
        for m in mods[3:]:
            if isinstance(m, Block2d):
                layers.append(block2d(m, opt))
            elif isinstance(m, nn.Sequential):
                layers.append(squeeze2d(m, opt))
            elif isinstance(m, TimeContext1d):
                tail = TimeContext(m, opt)
            elif not isinstance(m, To1d):
                raise TypeError(f"no fast form of {type(m).__name__} in a stage")
        self.layers = nn.Sequential(*layers)
        self.tcm = tail if tail is not None else nn.Identity()

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        x = aggregate(xs, self.agg)
        b, t, _ = x.shape
        x = x.view(b, t, self.f, self.c).permute(0, 3, 2, 1)
        x = x.contiguous(memory_format=self.memory_format)
        x = self.layers(x)  # (B, c, f, T)
        x = x.permute(0, 3, 2, 1).reshape(b, t, -1)  # (B, T, f·c): frequency-major, as To1d
        return self.tcm(x)


class FastBackbone(nn.Module):
    """``ReDimNetBackbone``: features (B, F, T) → time-major output (B, T, D)."""

    def __init__(self, m: ReDimNetBackbone, opt: FastOptions):
        super().__init__()
        conv, ln, _ = list(m.stem)
        self.memory_format = opt.memory_format
        self.stem = conv2d_cl(conv, opt=opt)
        self.stem_norm = ChannelNorm(ln)
        self.stages = nn.ModuleList(
            [FastStage(getattr(m, f"stage{i}"), opt) for i in range(m.num_stages)])
        self.register_buffer("fin", _softmax_weights(m.fin_wght1d))
        if isinstance(m.mfa, nn.Sequential):
            mconv, mbn = list(m.mfa)
            self.mfa: nn.Module = linear_from(mconv, bn_after=mbn, opt=opt)
        else:
            self.mfa = nn.Identity()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.stem(feats.unsqueeze(1).contiguous(memory_format=self.memory_format))
        b, _, _, t = x.shape  # (B, C, F, T)
        x = self.stem_norm(x.permute(0, 2, 3, 1))  # (B, F, T, C)
        outs = [x.transpose(1, 2).reshape(b, t, -1)]
        for stage in self.stages:
            outs.append(stage(outs))
        return self.mfa(aggregate(outs, self.fin))


class FastASTP(nn.Module):
    """``ASTP`` on (B, T, D) maps → (B, 2·D)."""

    def __init__(self, m: ASTP, opt: FastOptions):
        super().__init__()
        w1 = m.linear1.weight.detach()[:, :, 0]
        d = m.linear2.out_channels
        self.global_context_att = m.global_context_att
        self.register_buffer("w1", w1[:, :d].contiguous())
        ctx = w1[:, d:] if m.global_context_att else w1[:, :0]
        self.register_buffer("w1_ctx", ctx.contiguous())
        self.register_buffer("b1", m.linear1.bias.detach().clone())
        self.linear2 = linear_from(m.linear2, opt=opt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.global_context_att:
            mean = x.mean(dim=1)
            std = torch.sqrt(torch.var(x, dim=1) + 1e-7)
            ctx = F.linear(torch.cat([mean, std], dim=1), self.w1_ctx, self.b1)
            h = F.linear(x, self.w1) + ctx.unsqueeze(1)
        else:
            h = F.linear(x, self.w1, self.b1)
        alpha = torch.softmax(self.linear2(torch.tanh(h)), dim=1)
        mean = torch.sum(alpha * x, dim=1)
        var = torch.sum(alpha * (x * x), dim=1) - mean * mean
        return torch.cat([mean, torch.sqrt(var.clamp(min=1e-7))], dim=1)


class FastTSTP(nn.Module):
    """``TSTP`` on (B, T, D) maps → (B, 2·D)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=1), torch.sqrt(torch.var(x, dim=1) + 1e-7)], dim=1)


class FastRedimnet(nn.Module):
    """A ``RedimnetModel``'s forward pass, waveforms (B, n) → (B, raw_dim), as one optimised
    module with its own (folded, rearranged) copy of the weights, on the model's device.
    ``options`` switch single optimisations off (for measurement)."""

    def __init__(self, model: nn.Module, options: FastOptions = FastOptions()):
        super().__init__()
        if model.training:
            raise ValueError("BatchNorm folding needs a model in eval mode")
        with torch.no_grad():
            self.spec = copy.deepcopy(model.front_end())
            self.backbone = FastBackbone(model.body(), options)
            pool = model.pooling()
            if isinstance(pool, ASTP):
                self.pool: nn.Module = FastASTP(pool, options)
            elif isinstance(pool, TSTP):
                self.pool = FastTSTP()
            else:
                raise TypeError(f"no fast form of {type(pool).__name__}")
            linear, bn_after, bn_before = model.head_linear()
            self.head = linear_from(linear, bn_after, bn_before, options)
        self.eval().requires_grad_(False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        feats = self.spec(wave)  # (B, F, T)
        return self.head(self.pool(self.backbone(feats)))

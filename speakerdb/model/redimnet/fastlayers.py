"""Layers of the optimised ReDimNet inference graph (``fast``), each built from its eager
counterpart with copied weights.

Layouts: 1-D maps are time-major (B, T, C); 2-D maps are (B, C, f, T) in channels-last memory,
that is (B, f, T, C) in memory (NCHW when ``FastOptions.channels_last`` is off). BatchNorms are
folded into the layer before them (``fold``) unless ``FastOptions.fold_bn`` is off; then they run
as a per-channel scale and shift after it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import skip_init

from speakerdb.model.redimnet.blocks1d import PosEncConv, TimeContext1d, TransformerLayer
from speakerdb.model.redimnet.blocks2d import Block2d, ConvNeXtLike, LayerNormCF, ResBasic
from speakerdb.model.redimnet.fold import bn_affine, fold_bn_after, fold_bn_before

__all__ = ["FastOptions", "conv2d_fast", "linear_from", "ChannelNorm", "ChannelAffine",
           "TimeConv", "block2d", "squeeze2d", "TimeContext", "Transformer"]


@dataclass(frozen=True)
class FastOptions:
    """The optimisations that can be switched off one by one (to measure each; all on by default).

    fold_bn: fold eval-mode BatchNorms into the layer before them; channels_last: 2-D maps and
    1-D convolutions in channels-last memory; sdpa: ``scaled_dot_product_attention``."""

    fold_bn: bool = True
    channels_last: bool = True
    sdpa: bool = True

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


class ChannelAffine(nn.Module):
    """An eval-mode BatchNorm (its ``channels``) as x·scale + shift along axis ``dim`` (1 or -1)."""

    def __init__(self, bn: nn.Module, channels: slice = slice(None), dim: int = 1, ndim: int = 4):
        super().__init__()
        scale, shift = bn_affine(bn)
        dt = bn.running_mean.dtype
        shape = (-1,) if dim == -1 else (1, -1) + (1,) * (ndim - 2)
        self.register_buffer("scale", scale[channels].to(dt).reshape(shape))
        self.register_buffer("shift", shift[channels].to(dt).reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x, self.scale)


def _then(layer: nn.Module, bn: Optional[nn.Module], channels: slice, dim: int,
          ndim: int) -> nn.Module:
    return layer if bn is None else nn.Sequential(layer, ChannelAffine(bn, channels, dim, ndim))


def _copy_into(new: nn.Module, w: torch.Tensor, b: Optional[torch.Tensor]) -> None:
    with torch.no_grad():
        new.weight.copy_(w.reshape(new.weight.shape))
        if b is not None:
            new.bias.copy_(b)


def conv2d_cl(conv: nn.Conv2d, bn: Optional[nn.Module] = None, channels: slice = slice(None),
              opt: FastOptions = FastOptions()) -> nn.Module:
    """``bn(conv(x))`` (``channels`` of bn) as a Conv2d with the BatchNorm folded."""
    if conv.padding_mode != "zeros":
        raise ValueError(f"padding mode {conv.padding_mode!r} is not supported")
    w, b = conv.weight, conv.bias
    if bn is not None and opt.fold_bn:
        w, b = fold_bn_after(w, b, bn, channels)
    new = skip_init(nn.Conv2d, conv.in_channels, conv.out_channels, conv.kernel_size,
                    stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                    groups=conv.groups, bias=b is not None, device=w.device, dtype=w.dtype)
    _copy_into(new, w, b)
    new = new.to(memory_format=opt.memory_format)
    return _then(new, None if opt.fold_bn else bn, channels, 1, 4)


def linear_from(layer: nn.Module, bn_after: Optional[nn.Module] = None,
                bn_before: Optional[nn.Module] = None,
                opt: FastOptions = FastOptions()) -> nn.Module:
    """``bn_after(layer(bn_before(x)))`` over the last axis, for a Linear or a 1x1 Conv1d/Conv2d
    ``layer``: one Linear with the BatchNorms folded."""
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        k = layer.kernel_size
        if any(v != 1 for v in k) or any(v != 1 for v in layer.stride) or layer.groups != 1:
            raise ValueError("only 1x1 ungrouped stride-1 convolutions are Linear layers")
    w = layer.weight.reshape(layer.weight.shape[0], -1)
    b = layer.bias
    before = bn_before
    if bn_before is not None and opt.fold_bn:
        w, b = fold_bn_before(w, b, bn_before)
        before = None
    if bn_after is not None and opt.fold_bn:
        w, b = fold_bn_after(w, b, bn_after)
    new = skip_init(nn.Linear, w.shape[1], w.shape[0], bias=b is not None, device=w.device,
                    dtype=w.dtype)
    _copy_into(new, w, b)
    out = _then(new, None if opt.fold_bn else bn_after, slice(None), -1, 2)
    if before is not None:
        out = nn.Sequential(ChannelAffine(before, dim=-1), out)
    return out


class Pointwise2d(nn.Module):
    """A 1x1 Conv2d (then BatchNorm) on channels-last (B, C, f, T) maps as a Linear over C."""

    def __init__(self, conv: nn.Conv2d, bn: Optional[nn.Module], opt: FastOptions):
        super().__init__()
        self.linear = linear_from(conv, bn_after=bn, opt=opt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def conv2d_fast(conv: nn.Conv2d, bn: Optional[nn.Module] = None,
                opt: FastOptions = FastOptions()) -> nn.Module:
    """``bn(conv(x))`` on 2-D maps: a Linear when 1x1 in channels-last memory, else a Conv2d."""
    pointwise = conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.groups == 1
    if pointwise and opt.channels_last:
        return Pointwise2d(conv, bn, opt)
    return conv2d_cl(conv, bn, opt=opt)


class TimeConv(nn.Module):
    """A Conv1d (then BatchNorm ``channels``) on (B, T, C) maps, run as a (1 x k) Conv2d over
    (B, C, 1, T) in channels-last memory (depthwise kernels run far faster so on CPUs)."""

    def __init__(self, conv: nn.Conv1d, bn: Optional[nn.Module] = None,
                 channels: slice = slice(None), opt: FastOptions = FastOptions()):
        super().__init__()
        pad = conv.padding if isinstance(conv.padding, str) else (0, conv.padding[0])
        as2d = skip_init(nn.Conv2d, conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]),
                         stride=(1, conv.stride[0]), padding=pad, dilation=(1, conv.dilation[0]),
                         groups=conv.groups, bias=conv.bias is not None,
                         padding_mode=conv.padding_mode, device=conv.weight.device,
                         dtype=conv.weight.dtype)
        _copy_into(as2d, conv.weight, conv.bias)
        self.conv = conv2d_cl(as2d, bn, channels, opt)
        self.memory_format = opt.memory_format

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2).unsqueeze(2).contiguous(memory_format=self.memory_format))
        return y.squeeze(2).transpose(1, 2)


class ChannelNorm(nn.Module):
    """``LayerNormCF`` on channels-last data: layer_norm over the last axis."""

    def __init__(self, ln: LayerNormCF):
        super().__init__()
        self.weight = nn.Parameter(ln.weight.detach().clone())
        self.bias = nn.Parameter(ln.bias.detach().clone())
        self.eps = ln.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class ConvNeXt(nn.Module):
    """``ConvNeXtLike`` on (B, C, f, T) maps, or with ``time_major`` (its 1-D form) on
    (B, T, C) maps; the BatchNorm after the depthwise convolutions folded into them."""

    def __init__(self, m: ConvNeXtLike, opt: FastOptions, time_major: bool = False):
        super().__init__()
        c = m.pwconv1.out_channels
        depthwise = TimeConv if time_major else conv2d_cl
        self.dwconvs = nn.ModuleList([depthwise(conv, m.norm, slice(i * c, (i + 1) * c), opt)
                                      for i, conv in enumerate(m.dwconvs)])
        self.act = copy.deepcopy(m.act)
        self.pwconv1 = (linear_from(m.pwconv1, opt=opt) if time_major
                        else conv2d_fast(m.pwconv1, opt=opt))
        self.channel_dim = -1 if time_major else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.dwconvs) == 1:
            y = self.dwconvs[0](x)
        else:
            y = torch.cat([c(x) for c in self.dwconvs], dim=self.channel_dim)
        return self.pwconv1(self.act(y)).add_(x)


class ResBasic2d(nn.Module):
    """``ResBasic`` on (B, C, f, T) maps: bn2 folded; bn1, before a zero-padded conv, a
    scale/shift."""

    def __init__(self, m: ResBasic, opt: FastOptions):
        super().__init__()
        has_pw = isinstance(m.conv1pw, nn.Conv2d)
        self.conv1 = conv2d_cl(m.conv1, opt=opt)
        self.conv1pw = conv2d_fast(m.conv1pw, opt=opt) if has_pw else nn.Identity()
        self.bn1 = ChannelAffine(m.bn1)
        if has_pw:
            self.conv2 = conv2d_cl(m.conv2, opt=opt)
            self.conv2pw = conv2d_fast(m.conv2pw, m.bn2, opt)
        else:
            self.conv2 = conv2d_cl(m.conv2, m.bn2, opt=opt)
            self.conv2pw = nn.Identity()
        self.se = copy.deepcopy(m.se)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(torch.relu(self.conv1pw(self.conv1(x))))
        out = self.se(self.conv2pw(self.conv2(out)))
        return torch.relu(out + x)


def block2d(m: Block2d, opt: FastOptions) -> nn.Module:
    inner = m.conv_block
    if isinstance(inner, ConvNeXtLike):
        return ConvNeXt(inner, opt)
    if isinstance(inner, ResBasic):
        return ResBasic2d(inner, opt)
    raise TypeError(f"no fast form of {type(inner).__name__}")


def squeeze2d(m: nn.Sequential, opt: FastOptions) -> nn.Sequential:
    """The squeeze block (conv, BatchNorm2d, act, 1x1 conv) with the BatchNorm folded."""
    conv, bn, act, pw = list(m)
    return nn.Sequential(conv2d_cl(conv, bn, opt=opt), copy.deepcopy(act), conv2d_fast(pw, opt=opt))


class Transformer(nn.Module):
    """``TransformerLayer`` on (B, T, E) maps, with q, k and v from one Linear (q pre-scaled)."""

    def __init__(self, m: TransformerLayer, opt: FastOptions):
        super().__init__()
        att = m.attention
        self.num_heads, self.head_dim = att.num_heads, att.head_dim
        s = att.head_dim ** -0.5
        w = torch.cat([att.q_proj.weight * s, att.k_proj.weight, att.v_proj.weight]).detach()
        b = torch.cat([att.q_proj.bias * s, att.k_proj.bias, att.v_proj.bias]).detach()
        self.qkv = skip_init(nn.Linear, w.shape[1], w.shape[0], device=w.device, dtype=w.dtype)
        _copy_into(self.qkv, w, b)
        self.out_proj = copy.deepcopy(att.out_proj)
        self.layer_norm = copy.deepcopy(m.layer_norm)
        self.feed_forward = copy.deepcopy(m.feed_forward)
        self.final_layer_norm = copy.deepcopy(m.final_layer_norm)
        self.sdpa = opt.sdpa

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, e = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, scale=1.0)
        else:
            y = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
        h = self.layer_norm(x + self.out_proj(y.transpose(1, 2).reshape(b, t, e)))
        return self.final_layer_norm(h + self.feed_forward(h))


class PosEnc(nn.Module):
    """``PosEncConv`` on (B, T, C) maps."""

    def __init__(self, m: PosEncConv, opt: FastOptions):
        super().__init__()
        self.conv = TimeConv(m.conv, opt=opt)
        self.norm = ChannelNorm(m.norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(self.conv(x))


def _tcm_part(m: nn.Module, opt: FastOptions) -> nn.Module:
    if isinstance(m, ConvNeXtLike):
        return ConvNeXt(m, opt, time_major=True)
    if isinstance(m, TransformerLayer):
        return Transformer(m, opt)
    if isinstance(m, PosEncConv):
        return PosEnc(m, opt)
    if isinstance(m, nn.Conv1d):
        return linear_from(m, opt=opt)
    if isinstance(m, LayerNormCF):
        return ChannelNorm(m)
    if isinstance(m, nn.GELU):
        return copy.deepcopy(m)
    raise TypeError(f"no fast form of {type(m).__name__}")


class TimeContext(nn.Module):
    """``TimeContext1d`` on (B, T, W) maps."""

    def __init__(self, m: TimeContext1d, opt: FastOptions):
        super().__init__()
        red, norm = list(m.red_dim_conv)
        self.red = linear_from(red, opt=opt)
        self.norm = ChannelNorm(norm)
        self.tcm = nn.Sequential(*[_tcm_part(p, opt) for p in m.tcm])
        self.exp = linear_from(m.exp_dim_conv, opt=opt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.exp(self.tcm(self.norm(self.red(x))))

"""Recover a ReDimNet architecture from the names and shapes of a state dict.

Works on the ReDimNetWrap layout (``spec.*``, ``backbone.*``, ``pool.*``, ``bn.*``, ``linear.*``)
and on the MRL layout (the same under ``backbone.`` plus ``projection.*``).

Recovered exactly: C (stem conv), C·F and the number of stages (``fin_wght1d.w``), F (also
checked against the mel filter bank), per stage the stride (stride-conv kernel height), conv_exp
(its output channels / (stride·c)), num_blocks (block indices), att_block_red (C·F // width of
``red_dim_conv``), the 2-D block type (convnext / basic_resnet / basic_resnet_fwse), the 1-D
block type (conv+att / att / conv / fc, from the ``tcm`` children), out_channels (``mfa``),
ASTP with or without global context (``pool.linear1`` input width 3·D or D), TSTP (no pool
weights), embed_dim, emb_bn, num_classes, n_fft / win_length / pre-emphasis / a BatchNorm
``spec_norm`` (front-end buffers).

Not in the weights, so defaults are used (see ``UNRECOVERABLE``): hop_length (160, upstream's
ReDimNetWrap default and what MRL checkpoints run at), norm_signal (False), spec_norm mn vs mvn
('mn'), sample_rate / f_min / f_max (the filter bank buffer is used as is, so they do not
matter), the per-stage kernel_sizes entry (upstream never uses it; [(3, 3)]), convnext_like vs
convnext_like_relu ('convnext_like'), block_1d_type when no stage has a 1-D block ('att'),
block_2d_type when no stage has 2-D blocks ('convnext_like'), and mrl_dims (64, 128, 192, 256).
group_divisor is recovered up to equivalence: the smallest divisor that gives every grouped
conv its group count (identical computation); None when the resnet blocks have no pointwise convs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import torch

from speakerdb.errors import CheckpointFormatError
from speakerdb.model.redimnet.config import RedimnetConfig
from speakerdb.model.redimnet.heads import ASTP_BOTTLENECK

__all__ = ["infer_config", "UNRECOVERABLE", "DEFAULT_MRL_DIMS"]

DEFAULT_MRL_DIMS = (64, 128, 192, 256)
UNRECOVERABLE = {
    "hop_length": 160, "norm_signal": False, "spec_norm (mn/mvn)": "mn",
    "sample_rate/f_min/f_max": "filter bank buffer used as is", "kernel_sizes": [(3, 3)],
    "convnext_like vs convnext_like_relu": "convnext_like", "mrl_dims": DEFAULT_MRL_DIMS,
}


class _Shapes:
    """Key lookups that fail with a CheckpointFormatError naming the key."""

    def __init__(self, sd: Mapping[str, torch.Tensor], prefix: str, where: str):
        self.sd, self.prefix, self.where = sd, prefix, where

    def has(self, key: str) -> bool:
        return self.prefix + key in self.sd

    def shape(self, key: str) -> tuple[int, ...]:
        if self.prefix + key not in self.sd:
            raise CheckpointFormatError(f"{self.where}: missing {self.prefix + key}")
        return tuple(self.sd[self.prefix + key].shape)

    def fail(self, key: str, msg: str) -> None:
        raise CheckpointFormatError(f"{self.where}: {self.prefix + key} {msg}")


def _block2d_type(s: _Shapes, key: str) -> tuple[str, int, int, bool]:
    """(type, channels, groups, has_pointwise) of the 2-D block at ``key`` (… .conv_block.)."""
    if s.has(key + "dwconvs.0.weight"):
        w = s.shape(key + "dwconvs.0.weight")
        return "convnext_like", w[0], w[0] // w[1], True
    w = s.shape(key + "conv1.weight")
    kind = "basic_resnet_fwse" if s.has(key + "se.squeeze.weight") else "basic_resnet"
    return kind, w[0], w[0] // w[1], s.has(key + "conv1pw.weight")


def _block1d_type(s: _Shapes, key: str) -> str:
    t = key + "tcm."
    if s.has(t + "4.attention.q_proj.weight") and s.has(t + "0.dwconvs.0.weight"):
        return "conv+att"
    if s.has(t + "0.conv.weight") and s.has(t + "1.attention.q_proj.weight"):
        return "att"
    if s.has(t + "0.dwconvs.2.weight"):
        return "conv"
    if s.has(t + "0.weight") and s.has(t + "3.weight"):
        return "fc"
    s.fail(t + "*", "is not a known 1-D block (conv+att, att, conv, fc)")
    raise AssertionError


def _group_divisor(constraints: list[tuple[int, int]], pointwise: set[bool], where: str) -> Optional[int]:
    if pointwise == {False}:
        if any(g != 1 for _, g in constraints):
            raise CheckpointFormatError(f"{where}: grouped convolutions in blocks without pointwise convs")
        return None
    if not constraints:
        return 1
    for gd in range(1, max(c for c, _ in constraints) + 1):
        if all(c // gd == g for c, g in constraints):
            return gd
    raise CheckpointFormatError(f"{where}: no group_divisor explains the grouped convolutions "
                                f"(channels, groups) = {sorted(set(constraints))}")


def _infer_wrap(s: _Shapes) -> dict:
    cfg: dict = {}
    C = s.shape("backbone.stem.0.weight")[0]
    fin = s.shape("backbone.fin_wght1d.w")
    if len(fin) != 4 or fin[2] % C:
        s.fail("backbone.fin_wght1d.w", f"shape {list(fin)} does not fit C={C}")
    n_stages, CF = fin[1] - 1, fin[2]
    F = CF // C
    if s.has("spec.torchfbank.2.mel_scale.fb") and s.shape("spec.torchfbank.2.mel_scale.fb")[1] != F:
        s.fail("spec.torchfbank.2.mel_scale.fb", f"has {s.shape('spec.torchfbank.2.mel_scale.fb')[1]} "
               f"mel bands but the backbone needs F = {CF}/{C} = {F}")
    cfg.update(F=F, C=C)
    stages, kinds2d, kinds1d, groups, pointwise = [], set(), set(), [], set()
    c, f = C, F
    for i in range(n_stages):
        p = f"backbone.stage{i}."
        w = s.shape(p + "2.weight")
        stride, c_in = w[2], w[1]
        if c_in != c or w[3] != 1 or stride not in (1, 2, 3) or w[0] % (stride * c) or f % stride:
            s.fail(p + "2.weight", f"shape {list(w)} does not fit a stage entered with {c} "
                   f"channels and {f} bands")
        conv_exp = w[0] // (stride * c)
        c, f = c * stride, f // stride
        nb = 0
        while s.has(f"{p}{3 + nb}.conv_block.conv1.weight") or s.has(f"{p}{3 + nb}.conv_block.dwconvs.0.weight"):
            kind, ch, g, pw = _block2d_type(s, f"{p}{3 + nb}.conv_block.")
            if ch != c * conv_exp:
                s.fail(f"{p}{3 + nb}.conv_block", f"has {ch} channels, expected {c * conv_exp}")
            kinds2d.add(kind)
            groups.append((ch, g))
            pointwise.add(pw)
            nb += 1
        j = 3 + nb
        if conv_exp != 1:
            sq = s.shape(f"{p}{j}.0.weight")
            groups.append((c, (c * conv_exp) // sq[1]))
            j += 1
        red = None
        if s.has(f"{p}{j + 1}.red_dim_conv.0.weight"):
            hc = s.shape(f"{p}{j + 1}.red_dim_conv.0.weight")[0]
            red = CF // hc
            if red < 1 or CF // red != hc:
                s.fail(f"{p}{j + 1}.red_dim_conv.0.weight", f"width {hc} is not C*F // r for any r")
            kinds1d.add(_block1d_type(s, f"{p}{j + 1}."))
        stages.append((stride, nb, conv_exp, ((3, 3),), red))
    if c * f != CF:
        raise CheckpointFormatError(f"{s.where}: stages end with {c}x{f}, not C*F = {CF}")
    for name, kinds, default in (("2-D", kinds2d, "convnext_like"), ("1-D", kinds1d, "att")):
        if len(kinds) > 1:
            raise CheckpointFormatError(f"{s.where}: stages mix {name} block types {sorted(kinds)}")
    cfg.update(block_2d_type=next(iter(kinds2d), "convnext_like"),
               block_1d_type=next(iter(kinds1d), "att"), stages_setup=stages,
               group_divisor=_group_divisor(groups, pointwise, s.where))
    cfg["out_channels"] = s.shape("backbone.mfa.0.weight")[0] if s.has("backbone.mfa.0.weight") else None
    d = cfg["out_channels"] or CF
    if s.has("pool.linear1.weight"):
        w1 = s.shape("pool.linear1.weight")
        if w1[0] != ASTP_BOTTLENECK or w1[1] not in (d, 3 * d):
            s.fail("pool.linear1.weight", f"shape {list(w1)} is not ASTP over {d} channels")
        cfg.update(pooling_func="ASTP", global_context_att=w1[1] == 3 * d)
    else:
        cfg.update(pooling_func="TSTP", global_context_att=False)
    spec: dict = {}
    if not s.has("spec.torchfbank.1.flipped_filter"):
        spec["do_preemph"] = False
    if s.has("spec.torchfbank.2.mel_scale.fb"):
        n_fft = 2 * (s.shape("spec.torchfbank.2.mel_scale.fb")[0] - 1)
        if n_fft != 512:
            spec["n_fft"] = n_fft
    if s.has("spec.torchfbank.2.spectrogram.window"):
        wl = s.shape("spec.torchfbank.2.spectrogram.window")[0]
        if wl != 400:
            spec["win_length"] = wl
    if s.has("spec.spec_norm.weight"):
        spec["spec_norm"] = "bn"
    cfg["spec_params"] = spec
    return cfg


def infer_config(state_dict: Mapping[str, torch.Tensor], layout: str, where: str = "checkpoint",
                 hop_length: int = 160, mrl_dims: Optional[tuple] = None) -> RedimnetConfig:
    """The architecture of ``state_dict`` in ``layout`` 'official' (ReDimNetWrap) or 'mrl'
    (ReDimNetMRL). hop_length and (MRL) mrl_dims are not in the weights: given or defaulted."""
    if layout == "mrl":
        s = _Shapes(state_dict, "backbone.", where)
        cfg = _infer_wrap(s)
        w = _Shapes(state_dict, "", where).shape("projection.linear.weight")
        e = w[0]
        dims = tuple(mrl_dims) if mrl_dims else tuple(d for d in DEFAULT_MRL_DIMS if d < e) + (e,)
        cfg.update(embed_dim=e, mrl_dims=dims)
        head_in = w[1]
    elif layout == "official":
        s = _Shapes(state_dict, "", where)
        cfg = _infer_wrap(s)
        w = s.shape("linear.weight")
        cfg.update(embed_dim=w[0], emb_bn=s.has("bn2.weight"))
        if s.has("cls_head.2.weight"):
            cfg["num_classes"] = s.shape("cls_head.2.weight")[0]
        head_in = w[1]
    else:
        raise ValueError(f"unknown layout {layout!r}")
    pool_out = 2 * (cfg["out_channels"] or cfg["C"] * cfg["F"])
    if head_in != pool_out:
        key = "projection.linear.weight" if layout == "mrl" else "linear.weight"
        raise CheckpointFormatError(f"{where}: {key} takes {head_in} inputs, pooling gives {pool_out}")
    return RedimnetConfig(hop_length=hop_length, **cfg)

"""CAM++ with the Matryoshka head for inference: every BatchNorm folded into a neighbouring
linear map, fewer and fused tensor operations; the same function as the eager modules.

``FoldedCampp(mrl)`` takes a ``CamppMRL`` (``head.campplus_mrl``: ``CamppWave`` then the head)
and computes waveform (B, n) float32 at 16 kHz → raw (B, 256) with:

* conv → BatchNorm pairs (FCM head, TDNN, each dense layer's bottleneck) as one conv with bias;
* BatchNorm → ReLU → 1×1 conv (dense layers, transitions) as one clamp of the input followed by
  the conv with the BatchNorm scale and shift folded in: with ``s, t`` the BatchNorm scale and
  shift per channel, ``relu(s·x + t) = s·clamp(x, lo, hi) + t`` where the bound ``-t/s`` is a
  lower one for ``s > 0`` and an upper one for ``s < 0`` (``s = 0``: the constant ``relu(t)``);
* the last BatchNorm → ReLU → statistics pooling, the dense layer, its BatchNorm and the head as
  one clamp, mean and std, and one (1024 → 256) affine map (mean(s·z + t) = s·mean(z) + t,
  std(s·z + t) = |s|·std(z));
* after the TDNN the features run time-major, (B, T, C): every 1×1 conv is one matrix product
  over all frames of the batch with its bias added inside (``addmm``), ReLUs are in place and
  each dense layer writes its 32 channels straight into its block's buffer;
* the front end is ``fbank.fbank_lean`` (the same fbank in fewer passes).

Folding is done in float64 and stored in float32. Outputs equal the eager model's up to float32
rounding (on speech: max abs difference ~1e-4 on raw outputs of norm ~10, cosine ≥ 1 - 1e-6).
``FoldedCampp`` runs the network as a frozen TorchScript trace per device (``freeze=False``:
eagerly); ``min_samples`` and short-input tiling are those of the wrapped ``CamppWave``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speakerdb.model.campplus.fbank import fbank_lean, mel_banks, povey_window
from speakerdb.model.campplus.network import SEG_LEN

__all__ = ["FoldedCampp", "FoldedNet", "bn_scale_shift", "fold_conv_bn", "fold_bn_relu",
           "trace_example"]


def bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) float64 of an eval-mode BatchNorm: ``bn(x) = scale·x + shift`` (the one
    implementation, ``speakerdb.model.redimnet.fold.bn_affine``)."""
    from speakerdb.model.redimnet.fold import bn_affine

    return bn_affine(bn)


def fold_conv_bn(weight: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm,
                 bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) float64 of ``bn(conv(x))`` for a conv with ``weight`` (Cout, ...) and
    optional ``bias``."""
    scale, shift = bn_scale_shift(bn)
    w = weight.double() * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    b = shift if bias is None else shift + scale * bias.double()
    return w, b


def fold_bn_relu(bn: nn.modules.batchnorm._BatchNorm):
    """``relu(bn(x)) = scale·clamp(x, lo, hi) + shift`` per channel: (scale, shift, lo, hi),
    float64 vectors (±inf where a side is unbounded)."""
    scale, shift = bn_scale_shift(bn)
    bound = -shift / torch.where(scale == 0, torch.ones_like(scale), scale)
    inf = torch.full_like(scale, float("inf"))
    lo = torch.where(scale > 0, bound, -inf)
    hi = torch.where(scale < 0, bound, inf)
    zero = scale == 0
    lo, hi = torch.where(zero, 0.0, lo), torch.where(zero, 0.0, hi)
    shift = torch.where(zero, shift.clamp_min(0), shift)
    return scale, shift, lo, hi


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).contiguous()


def _conv2d(conv: nn.Conv2d, bn) -> nn.Conv2d:
    w, b = fold_conv_bn(conv.weight, bn)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                    conv.padding, bias=True)
    out.weight.data, out.bias.data = _f32(w), _f32(b)
    return out.to(memory_format=torch.channels_last).requires_grad_(False)


class _Block2d(nn.Module):
    def __init__(self, blk):
        super().__init__()
        self.conv1 = _conv2d(blk.conv1, blk.bn1)
        self.conv2 = _conv2d(blk.conv2, blk.bn2)
        self.shortcut = None if blk.shortcut is None else _conv2d(*blk.shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x), inplace=True))
        y += x if self.shortcut is None else self.shortcut(x)
        return F.relu(y, inplace=True)


class _Fcm(nn.Module):
    def __init__(self, fcm):
        super().__init__()
        self.conv1 = _conv2d(fcm.conv1, fcm.bn1)
        self.blocks = nn.Sequential(*[_Block2d(b) for b in (*fcm.layer1, *fcm.layer2)])
        self.conv2 = _conv2d(fcm.conv2, fcm.bn2)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, 80) → (B, 320, T)."""
        x = feats.transpose(1, 2)[:, None].contiguous(memory_format=torch.channels_last)
        x = self.blocks(F.relu(self.conv1(x), inplace=True))
        return F.relu(self.conv2(x), inplace=True).flatten(1, 2)


class _PreAct(nn.Module):
    """BatchNorm → ReLU → 1×1 conv (optionally followed by conv → BatchNorm) on time-major
    features (B, T, C): a clamp, then one product with the folded weight and bias."""

    def __init__(self, bn, conv: nn.Conv1d, post_bn=None):
        super().__init__()
        scale, shift, lo, hi = fold_bn_relu(bn)
        w = conv.weight.double()[:, :, 0]
        b = w @ shift
        w = w * scale
        if post_bn is not None:
            ps, pt = bn_scale_shift(post_bn)
            w, b = w * ps[:, None], b * ps + pt
        self.register_buffer("weight_t", _f32(w.T))
        self.register_buffer("bias", _f32(b))
        self.register_buffer("lo", _f32(lo))
        self.two_sided = bool(torch.isfinite(hi).any())
        self.register_buffer("hi", _f32(hi))

    def forward(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) → (B·T, Cout); written into ``out`` (a (B·T, Cout) view) when given."""
        z = torch.maximum(x, self.lo)
        if self.two_sided:
            z = torch.minimum(z, self.hi)
        z = z.view(-1, z.shape[-1])
        if out is None:
            return torch.addmm(self.bias, z, self.weight_t)
        return torch.addmm(self.bias, z, self.weight_t, out=out)


class _Layer(nn.Module):
    """One dense CAM layer: (B, T, C) → (B, T, 32) written into ``out``."""

    def __init__(self, layer):
        super().__init__()
        self.bottleneck = _PreAct(layer.nonlinear1.batchnorm, layer.linear1,
                                  layer.nonlinear2.batchnorm)
        cam = layer.cam_layer
        conv = cam.linear_local
        self.d = conv.dilation[0]
        self.growth = conv.out_channels
        taps = conv.weight.permute(2, 0, 1).reshape(3 * conv.out_channels, -1)
        self.register_buffer("taps_t", _f32(taps.T))                  # (128, 3·32)
        self.register_buffer("w1_t", _f32(cam.linear1.weight[:, :, 0].T))
        self.register_buffer("b1", _f32(cam.linear1.bias))
        self.register_buffer("w2_t", _f32(cam.linear2.weight[:, :, 0].T))
        self.register_buffer("b2", _f32(cam.linear2.bias))

    def forward(self, x: torch.Tensor, out: torch.Tensor) -> None:
        b, t = x.shape[0], x.shape[1]
        h = self.bottleneck(x).relu_()                                 # (B·T, 128)
        hc = h.shape[-1]
        h3 = h.view(b, t, hc)
        # segment means: avg_pool2d over time of the channels-last view (B, 128, T, 1)
        seg = F.avg_pool2d(h3.view(b, t, 1, hc).permute(0, 3, 1, 2), (SEG_LEN, 1),
                           (SEG_LEN, 1), ceil_mode=True)               # (B, 128, S, 1)
        ctx = seg.view(b, hc, -1).transpose(1, 2) + h3.mean(1, keepdim=True)   # (B, S, 128)
        ctx = ctx.reshape(-1, hc)
        gate = torch.sigmoid(torch.addmm(self.b2, torch.addmm(self.b1, ctx, self.w1_t).relu_(),
                                         self.w2_t)).view(b, -1, self.growth)   # (B, S, 32)
        d, g = self.d, self.growth
        y = torch.mm(h, self.taps_t).view(b, t, 3 * g)                # (B, T, 3·32)
        out.copy_(y[..., g : 2 * g])
        out[:, d:] += y[:, :-d, :g]
        out[:, :-d] += y[:, d:, 2 * g :]
        out *= gate.repeat_interleave(SEG_LEN, dim=1)[:, :t]


class _Block(nn.Module):
    """Dense block on time-major features; its input is written into the first ``cin``
    channels of the (B, T, cout) buffer by the caller (``buffer``), the layers fill the rest."""

    def __init__(self, block):
        super().__init__()
        self.cin, self.growth = block.cin, block.growth
        self.layers = nn.ModuleList(_Layer(layer) for layer in block.children())
        self.cout = self.cin + len(self.layers) * self.growth

    def forward(self, out: torch.Tensor) -> torch.Tensor:
        c = self.cin
        for layer in self.layers:
            layer(out[..., :c], out[..., c : c + self.growth])
            c += self.growth
        return out


class _Tail(nn.Module):
    """Last BatchNorm → ReLU → stats pooling → dense → BatchNorm → head as clamp, mean/std and
    one affine map (B, T', 512) → (B, raw)."""

    def __init__(self, xvector, head_weight: torch.Tensor):
        super().__init__()
        scale, shift, lo, hi = fold_bn_relu(xvector.out_nonlinear.batchnorm)
        wd = xvector.dense.linear.weight.double()[:, :, 0]               # (192, 1024)
        ds, dt = bn_scale_shift(xvector.dense.nonlinear.batchnorm)
        c = scale.numel()
        bias = wd[:, :c] @ shift
        wd = torch.cat([wd[:, :c] * scale, wd[:, c:] * scale.abs()], dim=1)
        h = head_weight.double()
        self.register_buffer("weight_t", _f32((h @ (wd * ds[:, None])).T))
        self.register_buffer("bias", _f32(h @ (bias * ds + dt)))
        self.register_buffer("lo", _f32(lo))
        self.two_sided = bool(torch.isfinite(hi).any())
        self.register_buffer("hi", _f32(hi))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.maximum(x, self.lo)
        if self.two_sided:
            z = torch.minimum(z, self.hi)
        stats = torch.cat([z.mean(1), z.std(1, unbiased=True)], dim=-1)
        return torch.addmm(self.bias, stats, self.weight_t)


class FoldedNet(nn.Module):
    """The traceable part: waveform (B, n ≥ 720) float32 → raw (B, 256), no checks."""

    def __init__(self, mrl):
        super().__init__()
        net = mrl.wave_model.model
        self.register_buffer("window", povey_window())
        self.register_buffer("mel_t", mel_banks().T.contiguous())
        self.head = _Fcm(net.head)
        xv = net.xvector
        lin = xv.tdnn.linear
        w, b = fold_conv_bn(lin.weight, xv.tdnn.nonlinear.batchnorm)
        self.tdnn = nn.Conv1d(lin.in_channels, lin.out_channels, lin.kernel_size, lin.stride,
                              lin.padding, bias=True).requires_grad_(False)
        self.tdnn.weight.data, self.tdnn.bias.data = _f32(w), _f32(b)
        self.blocks = nn.ModuleList(_Block(getattr(xv, f"block{i}")) for i in (1, 2, 3))
        self.transits = nn.ModuleList(
            _PreAct(getattr(xv, f"transit{i}").nonlinear.batchnorm,
                    getattr(xv, f"transit{i}").linear) for i in (1, 2, 3))
        self.tail = _Tail(xv, mrl.head.weight)
        self.eval()

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        feats = fbank_lean(wave, self.window, self.mel_t)              # (B, T, 80)
        feats = feats - feats.mean(dim=1, keepdim=True)
        x = self.tdnn(self.head(feats))                                # (B, 128, T')
        b, t = x.shape[0], x.shape[2]
        buf = x.new_empty((b, t, self.blocks[0].cout))                 # time-major from here
        torch.clamp_min(x.transpose(1, 2), 0.0, out=buf[..., : x.shape[1]])
        for i, (block, transit) in enumerate(zip(self.blocks, self.transits)):
            block(buf)
            if i + 1 < len(self.blocks):
                nxt = self.blocks[i + 1]
                new = buf.new_empty((b, t, nxt.cout))
                transit(buf, new.view(-1, nxt.cout)[:, : nxt.cin])
                buf = new
            else:
                buf = transit(buf).view(b, t, -1)
        return self.tail(buf)


class FoldedCampp(nn.Module):
    """Waveform (B, n) float32 at 16 kHz → raw (B, 256), folded from a ``CamppMRL``.

    ``freeze=True`` (default) runs ``FoldedNet`` as a frozen TorchScript trace per device
    (``speakerdb.model.optimize.FrozenTrace``; about 1 s on the first call), ``False`` runs it
    eagerly. Inputs shorter than ``min_samples`` are tiled as ``CamppWave`` does."""

    def __init__(self, mrl, freeze: bool = True):
        super().__init__()
        from speakerdb.model.optimize import FrozenTrace

        self.min_samples = mrl.wave_model.min_samples
        self.raw_dim, self.dims = mrl.raw_dim, mrl.dims
        net = FoldedNet(mrl)
        self.net = FrozenTrace(net, trace_example) if freeze else net

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 1:
            wave = wave[None]
        if wave.dim() != 2:
            raise ValueError(f"FoldedCampp expects (B, n) samples, got {tuple(wave.shape)}")
        wave = wave.to(torch.float32)
        n = wave.shape[1]
        if n == 0:
            wave = wave.new_zeros((wave.shape[0], self.min_samples))
        elif n < self.min_samples:
            wave = wave.repeat(1, -(-self.min_samples // n))[:, : self.min_samples]
        return self.net(wave.contiguous())


def trace_example(device: torch.device) -> tuple[torch.Tensor]:
    """Tracing input: 0.5 s of seeded noise (one 100-frame segment, every op on its path)."""
    g = torch.Generator().manual_seed(0)
    return (0.1 * torch.randn((1, 8000), generator=g)).to(device),

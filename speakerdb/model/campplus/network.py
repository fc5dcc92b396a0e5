"""CAM++ speaker network (3D-Speaker ``CAMPPlus``, feat_dim 80, embedding 192) in plain torch.

Written from the published architecture; parameter and buffer names equal the official state
dict keys (937 entries), so ``load_state_dict(strict=True)`` takes the released weights.

Shapes (B batch, T fbank frames, T' = ceil(T / 2)):

* input features (B, T, 80): mean-normalised log-mel fbank (``fbank.py``).
* ``head`` (FCM): 2-D convs over (1, 80, T) → (32, 10, T) → flattened (B, 320, T).
* ``xvector.tdnn``: conv k5 stride 2 → (B, 128, T'); dense blocks of 12/24/16 CAM layers
  (growth 32) with transitions 512→256, 1024→512, 1024→512; BN+ReLU → (B, 512, T').
* statistics pooling: mean and unbiased std over time → (B, 1024).
* ``xvector.dense``: 1×1 conv 1024→192 (no bias) + BatchNorm (affine=False), no ReLU → (B, 192).

Inference only (eval mode). The unbiased std needs T' ≥ 2, i.e. T ≥ 3 frames (n ≥ 720 samples):
the official model returns NaN below that. Here features shorter than ``MIN_FRAMES`` are tiled
in time up to 3 frames, and ``CamppWave`` tiles waveforms shorter than ``MIN_SAMPLES``;
for inputs at or above those sizes the output equals the official model's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speakerdb.model.campplus.fbank import FRAME_LENGTH, FRAME_SHIFT, fbank, mean_normalise
from speakerdb.model.campplus.ops import conv1x1, conv_k3, stats_pool

__all__ = ["CAMPPlus", "CamppWave", "MIN_FRAMES", "MIN_SAMPLES", "EMBED_DIM"]

MIN_FRAMES = 3
"""Fewest fbank frames the network pools without NaN (T' = 2 after the stride-2 TDNN)."""
MIN_SAMPLES = FRAME_LENGTH + (MIN_FRAMES - 1) * FRAME_SHIFT
"""720 samples (45 ms at 16 kHz): the waveform length giving ``MIN_FRAMES`` frames."""
EMBED_DIM = 192
SEG_LEN = 100
"""Frames per segment of the CAM context pooling."""


class _Norm(nn.Module):
    """``batchnorm`` (BatchNorm1d) optionally followed by ReLU; named like the official
    ``get_nonlinear`` Sequential so keys read ``<owner>.batchnorm.*``."""

    def __init__(self, channels: int, relu: bool = True, affine: bool = True):
        super().__init__()
        self.batchnorm = nn.BatchNorm1d(channels, affine=affine)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.batchnorm(x)
        return F.relu(x) if self.relu else x


class _ResBlock2d(nn.Module):
    """Basic 2-D residual block; ``stride`` applies to frequency only."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = None
        if stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels, channels, 1, stride=(stride, 1), bias=False),
                nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class _FCM(nn.Module):
    """Feature calibration head: (B, F, T) → (B, 32 · F/8, T)."""

    def __init__(self, feat_dim: int = 80, channels: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(_ResBlock2d(channels, 2), _ResBlock2d(channels, 1))
        self.layer2 = nn.Sequential(_ResBlock2d(channels, 2), _ResBlock2d(channels, 1))
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * (feat_dim // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x[:, None])))
        x = self.layer2(self.layer1(x))
        x = F.relu(self.bn2(self.conv2(x)))
        return x.flatten(1, 2)


class _Tdnn(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 5, stride: int = 2):
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2,
                                bias=False)
        self.nonlinear = _Norm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class _CamLayer(nn.Module):
    """Context-aware masking: local conv times a sigmoid gate from utterance + segment context.

    The gate is a 1×1 conv stack applied to (global mean + mean of the frame's 100-frame
    segment), which is constant within a segment, so it is computed once per segment and
    repeated: (B, 128, T) → (B, 32, T)."""

    def __init__(self, channels: int, out: int, kernel: int, dilation: int):
        super().__init__()
        if kernel != 3:
            raise ValueError("CAM layers use kernel size 3 (see ops.conv_k3)")
        self.linear_local = nn.Conv1d(channels, out, kernel, padding=(kernel - 1) // 2 * dilation,
                                      dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(channels, channels // 2, 1)
        self.linear2 = nn.Conv1d(channels // 2, out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[-1]
        seg = F.avg_pool1d(x, SEG_LEN, SEG_LEN, ceil_mode=True)     # (B, C, ceil(T/100))
        ctx = seg + x.mean(-1, keepdim=True)
        gate = torch.sigmoid(conv1x1(F.relu(conv1x1(ctx, self.linear1)), self.linear2))
        gate = gate.repeat_interleave(SEG_LEN, dim=-1)[..., :t]
        return conv_k3(x, self.linear_local) * gate


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int, bottleneck: int, kernel: int, dilation: int):
        super().__init__()
        self.nonlinear1 = _Norm(cin)
        self.linear1 = nn.Conv1d(cin, bottleneck, 1, bias=False)
        self.nonlinear2 = _Norm(bottleneck)
        self.cam_layer = _CamLayer(bottleneck, growth, kernel, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(conv1x1(self.nonlinear1(x), self.linear1)))


class _DenseBlock(nn.Module):
    """``layers`` dense CAM layers; each appends ``growth`` channels (children ``tdnnd1..``).

    Outputs are written into one preallocated (B, cin + layers·growth, T) tensor instead of
    concatenating at every layer."""

    def __init__(self, layers: int, cin: int, growth: int, bottleneck: int, kernel: int,
                 dilation: int):
        super().__init__()
        self.cin, self.growth, self.layers = cin, growth, layers
        for i in range(layers):
            self.add_module(f"tdnnd{i + 1}",
                            _DenseLayer(cin + i * growth, growth, bottleneck, kernel, dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape
        out = x.new_empty((b, self.cin + self.layers * self.growth, t))
        out[:, : self.cin] = x
        c = self.cin
        for layer in self.children():
            out[:, c : c + self.growth] = layer(out[:, :c])
            c += self.growth
        return out


class _Transit(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.nonlinear = _Norm(cin)
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv1x1(self.nonlinear(x), self.linear)


class _Dense(nn.Module):
    """(B, 1024) → (B, 192): 1×1 conv without bias, BatchNorm without affine, no ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)
        self.nonlinear = _Norm(cout, relu=False, affine=False)

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(stats[..., None]))[..., 0]


class _XVector(nn.Module):
    """Children in execution order: tdnn, block1, transit1, ..., out_nonlinear, dense."""

    def __init__(self, cin: int, embed_dim: int, growth: int = 32, bottleneck: int = 128,
                 init_channels: int = 128):
        super().__init__()
        self.tdnn = _Tdnn(cin, init_channels)
        c = init_channels
        for i, (layers, dilation) in enumerate(zip((12, 24, 16), (1, 2, 2)), start=1):
            self.add_module(f"block{i}", _DenseBlock(layers, c, growth, bottleneck, 3, dilation))
            c += layers * growth
            self.add_module(f"transit{i}", _Transit(c, c // 2))
            c //= 2
        self.out_nonlinear = _Norm(c)
        self.dense = _Dense(2 * c, embed_dim)

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 320, T) → (B, 512, T'): everything before the statistics pooling."""
        x = self.tdnn(x)
        for i in (1, 2, 3):
            x = getattr(self, f"transit{i}")(getattr(self, f"block{i}")(x))
        return self.out_nonlinear(x)


class CAMPPlus(nn.Module):
    """CAM++: features (B, T, 80) → raw embedding (B, 192). See the module docstring."""

    def __init__(self, feat_dim: int = 80, embed_dim: int = EMBED_DIM):
        super().__init__()
        self.feat_dim = feat_dim
        self.head = _FCM(feat_dim)
        # channels-last 2-D conv weights: ~10-20 % faster head on CPU (oneDNN); values,
        # names and shapes are unchanged and load_state_dict keeps the layout.
        self.head.to(memory_format=torch.channels_last)
        self.xvector = _XVector(self.head.out_channels, embed_dim)

    def _check(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.dim() != 3 or feats.shape[-1] != self.feat_dim:
            raise ValueError(f"CAMPPlus expects (B, T, {self.feat_dim}) features, "
                             f"got {tuple(feats.shape)}")
        t = feats.shape[1]
        if t == 0:
            feats = feats.new_zeros((feats.shape[0], MIN_FRAMES, self.feat_dim))
        elif t < MIN_FRAMES:  # tile in time; the official model gives NaN here
            feats = feats.repeat(1, -(-MIN_FRAMES // t), 1)[:, :MIN_FRAMES]
        return feats

    def trace(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """Intermediates for debugging: ``head_out`` (B, 320, T), ``prepool`` (B, 512, T'),
        ``stats`` (B, 1024), ``embedding`` (B, 192)."""
        head_out = self.head(self._check(feats).transpose(1, 2))
        prepool = self.xvector.frames(head_out)
        stats = stats_pool(prepool)
        return {"head_out": head_out, "prepool": prepool, "stats": stats,
                "embedding": self.xvector.dense(stats)}

    def pooled(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, 80) → (B, 1024) statistics: [mean(512), unbiased std(512)]."""
        return stats_pool(self.xvector.frames(self.head(self._check(feats).transpose(1, 2))))

    def embed_from_pooled(self, stats: torch.Tensor) -> torch.Tensor:
        """(B, 1024) statistics → (B, 192) raw embedding."""
        return self.xvector.dense(stats)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, 80) mean-normalised fbank → (B, 192) raw embedding (not normalised)."""
        return self.embed_from_pooled(self.pooled(feats))


class CamppWave(nn.Module):
    """Waveform (B, n) float32 in [-1, 1] at 16 kHz → fbank → mean-normalise → CAM++.

    Rows of one batch share a length (callers group inputs by length; nothing is padded with
    silence). Waveforms shorter than ``min_samples`` (default 720 = ``MIN_SAMPLES``) are tiled
    (repeated end to end) up to it, so no input yields NaN; an empty input becomes silence."""

    def __init__(self, model: CAMPPlus, min_samples: int = MIN_SAMPLES):
        super().__init__()
        if min_samples < MIN_SAMPLES:
            raise ValueError(f"min_samples must be at least {MIN_SAMPLES}")
        self.model = model
        self.min_samples = min_samples

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """(n,) or (B, n) waveform → (B, T, 80) mean-normalised features in the model's dtype
        (the fbank runs in float32, or float64 for a float64 model)."""
        if wave.dim() == 1:
            wave = wave[None]
        if wave.dim() != 2:
            raise ValueError(f"CamppWave expects (B, n) samples, got {tuple(wave.shape)}")
        dtype = self.model.head.conv1.weight.dtype
        wave = wave.to(torch.float64 if dtype == torch.float64 else torch.float32)
        n = wave.shape[1]
        if n == 0:
            wave = wave.new_zeros((wave.shape[0], self.min_samples))
        elif n < self.min_samples:
            wave = wave.repeat(1, -(-self.min_samples // n))[:, : self.min_samples]
        return mean_normalise(fbank(wave)).to(dtype)

    def pooled(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, n) → (B, 1024) pooled statistics."""
        return self.model.pooled(self.features(wave))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, n) → (B, 192) raw embeddings."""
        return self.model(self.features(wave))

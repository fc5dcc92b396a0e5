"""1-D (time-context) blocks of ReDimNet and the transformer layer they use.

A stage's 1-D block works on the flattened map (B, C·F, T): reduce to hC = C·F // att_block_red
channels, run the time-context module ``tcm``, expand back and add the input.
Parameter names follow upstream so checkpoints load strictly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from speakerdb.model.redimnet.blocks2d import ConvNeXtLike, LayerNormCF

__all__ = ["MultiHeadAttention", "FeedForward", "TransformerLayer", "PosEncConv", "TimeContext1d", "gelu_tanh"]

def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of GELU (HF ``gelu_new``)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class MultiHeadAttention(nn.Module):
    """Self-attention over (B, T, E) with ``num_heads`` heads, no mask, no dropout."""

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"attention width {embed_dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, e = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:  # (B, T, E) -> (B, H, T, D)
            return y.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

        q = heads(self.q_proj(x) * (self.head_dim ** -0.5))
        att = torch.softmax(q @ heads(self.k_proj(x)).transpose(-1, -2), dim=-1)
        y = (att @ heads(self.v_proj(x))).transpose(1, 2).reshape(b, t, e)
        return self.out_proj(y)


class FeedForward(nn.Module):
    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.intermediate_dense = nn.Linear(hidden, intermediate)
        self.output_dense = nn.Linear(intermediate, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_dense(gelu_tanh(self.intermediate_dense(x)))


class TransformerLayer(nn.Module):
    """Post-norm encoder layer on channels-first (B, E, T): LN(x + att(x)) then LN(y + FF(y));
    4 heads, LayerNorm eps 1e-6, tanh-GELU feed-forward of width ``n_mlp``."""

    def __init__(self, n_state: int, n_mlp: int, n_head: int = 4):
        super().__init__()
        self.attention = MultiHeadAttention(n_state, n_head)
        self.layer_norm = nn.LayerNorm(n_state, eps=1e-6)
        self.feed_forward = FeedForward(n_state, n_mlp)
        self.final_layer_norm = nn.LayerNorm(n_state, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)
        h = self.layer_norm(h + self.attention(h))
        h = self.final_layer_norm(h + self.feed_forward(h))
        return h.transpose(1, 2)


class PosEncConv(nn.Module):
    """x + LN(depthwise conv_k(x)) over (B, C, T): a convolutional position encoding."""

    def __init__(self, channels: int, kernel: int = 59):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.norm = LayerNormCF(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(self.conv(x))


def _tcm(block_type: str, hc: int) -> nn.Sequential:
    if block_type == "conv+att":
        return nn.Sequential(*[ConvNeXtLike(hc, 1, [k], 1) for k in (7, 19, 31, 59)],
                             TransformerLayer(hc, hc, 4))
    if block_type == "att":
        return nn.Sequential(PosEncConv(hc, 59), TransformerLayer(hc, 2 * hc, 4))
    if block_type == "conv":
        return nn.Sequential(*[ConvNeXtLike(hc, 1, [7, 15, 31], 1) for _ in range(4)])
    if block_type == "fc":
        return nn.Sequential(nn.Conv1d(hc, 2 * hc, 1), LayerNormCF(2 * hc), nn.GELU(),
                             nn.Conv1d(2 * hc, hc, 1))
    raise ValueError(f"unknown 1-D block type {block_type!r}")


class TimeContext1d(nn.Module):
    """x + expand(tcm(reduce(x))) over (B, channels, T), reduced width ``hidden``."""

    def __init__(self, channels: int, hidden: int, block_type: str):
        super().__init__()
        self.red_dim_conv = nn.Sequential(nn.Conv1d(channels, hidden, 1), LayerNormCF(hidden))
        self.tcm = _tcm(block_type, hidden)
        self.exp_dim_conv = nn.Conv1d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.exp_dim_conv(self.tcm(self.red_dim_conv(x)))

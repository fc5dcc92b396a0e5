"""``RedimnetModel``: a whole ReDimNet speaker model (front end → backbone → pooling → head).

Two module layouts, so that upstream state dicts load strictly as they are:

- official (``OfficialRedimnet``): ``spec``, ``backbone``, ``pool``, ``bn``, ``linear``
  [, ``bn2``][, ``cls_head``] — ReDimNetWrap;
- MRL (``MrlRedimnet``): ``backbone.{spec,backbone,pool}`` and ``projection.{bn,linear}`` —
  ReDimNetMRL, whose wrapped ReDimNetWrap has its bn/linear replaced by Identity.

All methods take waveforms (B, n) (or (B, 1, n)) float at 16 kHz, equal lengths within a batch,
and run in float32; the model is built in eval mode (BatchNorm uses running statistics).

``forward`` runs the optimised inference graph (``fast.FastRedimnet``: channels-last layout,
BatchNorms folded) when ``optimized`` is True (the default), the model is in eval mode
and autograd is off (``torch.no_grad`` / ``torch.inference_mode``); otherwise, and always in
``eager_forward``, ``trace`` and the other methods, it runs module by module. The optimised graph
is built on first use and rebuilt whenever the device, dtype or any weight changes.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from speakerdb.model.redimnet.backbone import ReDimNetBackbone
from speakerdb.model.redimnet.config import RedimnetConfig, resolve_spec_params
from speakerdb.model.redimnet.frontend import MelFrontEnd
from speakerdb.model.redimnet.heads import MrlProjection, make_pooling

__all__ = ["RedimnetModel", "OfficialRedimnet", "MrlRedimnet", "build_model"]


class RedimnetModel(nn.Module):
    """Base of both layouts. Attributes: ``config``, ``kind`` ('official' | 'mrl'), ``raw_dim``
    (192 official, 256 MRL), ``hop_length`` (samples), ``mrl_dims`` (None or (64, 128, 192, 256)),
    ``feature_dim`` (F mel bands), ``sample_rate`` (Hz), ``min_samples`` (shortest input accepted)."""

    config: RedimnetConfig
    optimized: bool = True

    def _init_common(self, cfg: RedimnetConfig) -> None:
        self.config = cfg
        self.kind = cfg.kind
        self.raw_dim = cfg.embed_dim
        self.hop_length = cfg.hop_length
        self.mrl_dims = cfg.mrl_dims
        self.feature_dim = cfg.F
        spec = resolve_spec_params(cfg.spec_params)
        self.sample_rate = int(spec["sample_rate"])
        self.min_samples = max(int(spec["n_fft"]) // 2 + 1, cfg.hop_length)

    # the parts, whichever layout holds them
    def front_end(self) -> MelFrontEnd:
        """The mel front end: waveforms (B, n) → log-mel features (B, F, T)."""
        raise NotImplementedError

    def body(self) -> ReDimNetBackbone:
        """The backbone: features (B, 1, F, T) → frame-level output (B, D, T)."""
        raise NotImplementedError

    def pooling(self) -> nn.Module:
        """The temporal pooling: (B, D, T) → (B, 2·D)."""
        raise NotImplementedError

    def _head_bn(self) -> nn.Module:
        raise NotImplementedError

    def _head_out(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def head_linear(self) -> tuple[nn.Module, Optional[nn.Module], Optional[nn.Module]]:
        """(Linear, BatchNorm after it or None, BatchNorm before it or None) of the head."""
        raise NotImplementedError

    @staticmethod
    def _wave(wave: torch.Tensor) -> torch.Tensor:
        if wave.ndim == 1:
            wave = wave.unsqueeze(0)
        if wave.ndim == 3 and wave.shape[1] == 1:
            wave = wave[:, 0]
        if wave.ndim != 2:
            raise ValueError(f"expected waveforms (B, n), got shape {tuple(wave.shape)}")
        return wave.float()

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, n) → log-mel features (B, F, 1 + n // hop_length) float32."""
        return self.front_end()(self._wave(wave))

    def backbone_out(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, n) → frame-level backbone output (B, out_channels or C·F, T), after mfa."""
        return self.body()(self.features(wave).unsqueeze(1))

    def pooled(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, n) → pooled statistics (B, 2·D)."""
        return self.pooling()(self.backbone_out(wave))

    def pooled_bn(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, n) → pooled statistics after the head's BatchNorm (B, 2·D): the final Linear's input."""
        return self._head_bn()(self.pooled(wave))

    def embed_from_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, 2·D) pooled statistics → (B, raw_dim) raw embedding."""
        return self._head_out(pooled)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, n) → (B, raw_dim) raw embedding (not normalised; MRL prefixes are slices).
        The optimised graph when ``optimized`` and in eval mode without autograd, else eager."""
        if self.optimized and not self.training and not torch.is_grad_enabled():
            return self.fast_module()(self._wave(wave))
        return self.eager_forward(wave)

    def eager_forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``forward`` module by module, as upstream computes it."""
        return self._head_out(self.pooled(wave))

    def _apply(self, fn, recurse=True):  # .to(), .cuda(), .float() ... replace tensors
        self.__dict__.pop("_fast_tensors", None)
        self.__dict__.pop("_fast_cache", None)
        return super()._apply(fn, recurse)

    def _weights_key(self) -> tuple:
        """Device, dtype and the sum of the version counters of every weight (a counter goes up
        at each in-place change, ``load_state_dict`` included)."""
        tensors = self.__dict__.get("_fast_tensors")
        if tensors is None:
            tensors = self.__dict__["_fast_tensors"] = [*self.parameters(), *self.buffers()]
        try:
            version = sum(t._version for t in tensors)
        except RuntimeError:  # inference tensors carry no version counter (nor change outside it)
            version = -1
        return tensors[0].device, tensors[0].dtype, version

    def fast_module(self) -> nn.Module:
        """The optimised inference graph (``fast.FastRedimnet``) for the current weights and
        device; built on first use (a fraction of a second), cached outside the module tree."""
        from speakerdb.model.redimnet.fast import FastRedimnet

        key = self._weights_key()
        cached = self.__dict__.get("_fast_cache")
        if cached is None or cached[0] != key:
            cached = (key, FastRedimnet(self))
            self.__dict__["_fast_cache"] = cached
        return cached[1]

    def trace(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every intermediate of one pass: ``features`` (B, F, T), ``backbone_out`` (B, D, T),
        ``pooled`` (B, 2·D), ``pooled_bn`` (B, 2·D) and ``embedding`` (B, raw_dim)."""
        feats = self.features(wave)
        body = self.body()(feats.unsqueeze(1))
        pooled = self.pooling()(body)
        return {"features": feats, "backbone_out": body, "pooled": pooled,
                "pooled_bn": self._head_bn()(pooled), "embedding": self._head_out(pooled)}


class OfficialRedimnet(RedimnetModel):
    """IDRnD ReDimNetWrap layout. A classification head (num_classes set) is built so the
    state dict loads, but never applied: the output is the speaker embedding."""

    def __init__(self, cfg: RedimnetConfig):
        super().__init__()
        self._init_common(cfg)
        self.backbone = ReDimNetBackbone(cfg)
        self.spec = MelFrontEnd(cfg.F, cfg.hop_length, resolve_spec_params(cfg.spec_params))
        self.pool = make_pooling(cfg.pooling_func, cfg.pool_in_dim, cfg.global_context_att)
        self.bn = nn.BatchNorm1d(cfg.pool_out_dim)
        self.linear = nn.Linear(cfg.pool_out_dim, cfg.embed_dim)
        self.bn2: Optional[nn.Module] = nn.BatchNorm1d(cfg.embed_dim) if cfg.emb_bn else None
        if cfg.num_classes is not None:
            self.cls_head = nn.Sequential(nn.ReLU(), nn.Dropout(cfg.class_dropout),
                                          nn.Linear(cfg.embed_dim, cfg.num_classes), nn.Identity())

    def front_end(self):
        return self.spec

    def body(self):
        return self.backbone

    def pooling(self):
        return self.pool

    def _head_bn(self):
        return self.bn

    def _head_out(self, x):
        x = self.linear(self.bn(x))
        return self.bn2(x) if self.bn2 is not None else x

    def head_linear(self):
        return self.linear, self.bn2, self.bn


class _MrlTrunk(nn.Module):
    def __init__(self, cfg: RedimnetConfig):
        super().__init__()
        self.backbone = ReDimNetBackbone(cfg)
        self.spec = MelFrontEnd(cfg.F, cfg.hop_length, resolve_spec_params(cfg.spec_params))
        self.pool = make_pooling(cfg.pooling_func, cfg.pool_in_dim, cfg.global_context_att)


class MrlRedimnet(RedimnetModel):
    """sappho192/redimnet-mrl ReDimNetMRL layout: raw 256-D output whose prefixes are the
    nested embeddings."""

    def __init__(self, cfg: RedimnetConfig):
        super().__init__()
        self._init_common(cfg)
        self.backbone = _MrlTrunk(cfg)
        self.projection = MrlProjection(cfg.pool_out_dim, cfg.embed_dim)

    def front_end(self):
        return self.backbone.spec

    def body(self):
        return self.backbone.backbone

    def pooling(self):
        return self.backbone.pool

    def _head_bn(self):
        return self.projection.bn

    def _head_out(self, x):
        return self.projection(x)

    def head_linear(self):
        return self.projection.linear, None, self.projection.bn


def build_model(cfg: RedimnetConfig) -> RedimnetModel:
    """A freshly initialised model for ``cfg`` (random weights, real front-end buffers), eval mode."""
    model = MrlRedimnet(cfg) if cfg.kind == "mrl" else OfficialRedimnet(cfg)
    return model.eval()

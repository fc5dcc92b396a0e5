"""The ReDimNet architecture description: ``ReDimNetWrap`` keyword arguments, made explicit.

Upstream builds a model as ``ReDimNetWrap(**model_config)``; ``RedimnetConfig.from_model_config``
does the same with upstream's defaults, rejects arguments upstream would reject, and refuses
options this implementation does not run (TF feature front ends, the TF-optimised layout,
poolings other than ASTP/TSTP).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

from speakerdb.errors import CheckpointFormatError

__all__ = [
    "RedimnetConfig",
    "Stage",
    "BLOCK_1D_TYPES",
    "BLOCK_2D_TYPES",
    "POOLINGS",
    "SPEC_DEFAULTS",
    "DEFAULT_STAGES",
    "resolve_spec_params",
]

BLOCK_1D_TYPES = ("att", "conv+att", "conv", "fc")
BLOCK_2D_TYPES = ("convnext_like", "convnext_like_relu", "basic_resnet", "basic_resnet_fwse")
POOLINGS = ("ASTP", "TSTP")

# A stage: (stride, num_blocks, conv_exp, kernel_sizes, att_block_red). kernel_sizes is carried
# along but, as upstream, never used (every 2-D block uses 3x3 kernels).
Stage = tuple  # (int, int, int, tuple[tuple[int, int], ...], Optional[int])

DEFAULT_STAGES = (  # ReDimNetWrap's default: the "M" layout
    (1, 2, 1, ((3, 3),), 12), (2, 2, 1, ((3, 3),), 12), (1, 3, 1, ((3, 3),), 12),
    (2, 4, 1, ((3, 3),), 8), (1, 4, 1, ((3, 3),), 8), (2, 4, 1, ((3, 3),), 4),
)

# MelBanks keyword arguments and their defaults (n_mels and hop_length come from the wrapper).
SPEC_DEFAULTS: dict[str, Any] = {
    "sample_rate": 16000, "n_fft": 512, "win_length": 400, "f_min": 20, "f_max": 7600,
    "do_spec_aug": False, "norm_signal": False, "do_preemph": True, "spec_norm": "mn",
    "freq_start_bin": 0, "num_apply_spec_aug": 1, "freq_mask_width": (0, 8),
    "time_mask_width": (0, 10),
}
_SPEC_NORMS = ("mn", "mvn", "bn")


def resolve_spec_params(spec_params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Upstream's MelBanks arguments with defaults filled in; unknown keys are an error.
    Spec augmentation keys are accepted and ignored (training only)."""
    spec = dict(SPEC_DEFAULTS)
    for k, v in (spec_params or {}).items():
        if k not in SPEC_DEFAULTS:
            raise CheckpointFormatError(f"spec_params key {k!r} is not a MelBanks argument")
        spec[k] = v
    if spec["spec_norm"] not in _SPEC_NORMS:
        raise CheckpointFormatError(f"spec_params spec_norm {spec['spec_norm']!r} is not one of {_SPEC_NORMS}")
    return spec


def _norm_stage(st: Any, i: int) -> Stage:
    try:
        stride, nb, exp, ks, red = st
        ks = tuple(tuple(int(a) for a in (k if isinstance(k, (list, tuple)) else (k,))) for k in ks)
        out = (int(stride), int(nb), int(exp), ks, None if red is None else int(red))
    except (TypeError, ValueError):
        raise CheckpointFormatError(f"stages_setup[{i}] = {st!r:.60} is not (stride, num_blocks, "
                                    "conv_exp, kernel_sizes, att_block_red)") from None
    if out[0] not in (1, 2, 3) or out[1] < 0 or out[2] < 1 or (out[4] is not None and out[4] < 1):
        raise CheckpointFormatError(f"stages_setup[{i}] = {st!r:.60} has an invalid value")
    return out


@dataclass
class RedimnetConfig:
    """Everything needed to build a ReDimNet (official head) or MRL-ReDimNet (``mrl_dims`` set).

    Units: F mel bands, C stem channels, hop_length samples at ``spec_params['sample_rate']``."""

    F: int = 72
    C: int = 16
    block_1d_type: str = "att"
    block_2d_type: str = "convnext_like"
    stages_setup: tuple = DEFAULT_STAGES
    group_divisor: Optional[int] = 4
    out_channels: Optional[int] = None
    embed_dim: int = 192
    num_classes: Optional[int] = None
    class_dropout: float = 0.0
    feat_agg_dropout: float = 0.0
    head_activation: Optional[str] = None
    hop_length: int = 160
    pooling_func: str = "ASTP"
    feat_type: str = "pt"
    global_context_att: bool = False
    emb_bn: bool = False
    spec_params: dict = field(default_factory=lambda: {
        "do_spec_aug": False, "freq_mask_width": (0, 6), "time_mask_width": (0, 8)})
    return_all_outputs: bool = False
    tf_optimized_arch: bool = False
    mrl_dims: Optional[tuple] = None  # MRL models only: nested dims, last == embed_dim

    def __post_init__(self) -> None:
        self.stages_setup = tuple(_norm_stage(s, i) for i, s in enumerate(self.stages_setup))
        self.spec_params = dict(self.spec_params or {})
        if self.mrl_dims is not None:
            self.mrl_dims = tuple(int(d) for d in self.mrl_dims)
        self.validate()

    @property
    def kind(self) -> str:
        return "official" if self.mrl_dims is None else "mrl"

    @property
    def pool_in_dim(self) -> int:
        return self.out_channels if self.out_channels is not None else self.C * self.F

    @property
    def pool_out_dim(self) -> int:
        return 2 * self.pool_in_dim

    def validate(self) -> None:
        """Raise CheckpointFormatError for arguments this implementation cannot build."""
        def bad(msg: str) -> None:
            raise CheckpointFormatError(f"ReDimNet config: {msg}")

        if self.block_1d_type not in BLOCK_1D_TYPES:
            bad(f"block_1d_type {self.block_1d_type!r} is not one of {BLOCK_1D_TYPES}")
        if self.block_2d_type not in BLOCK_2D_TYPES:
            bad(f"block_2d_type {self.block_2d_type!r} is not one of {BLOCK_2D_TYPES}")
        if self.pooling_func not in POOLINGS:
            bad(f"pooling_func {self.pooling_func!r} is not supported (only {POOLINGS})")
        if self.feat_type not in ("pt", "pt_mel"):
            bad(f"feat_type {self.feat_type!r} (TensorFlow front ends) is not supported")
        if self.tf_optimized_arch:
            bad("tf_optimized_arch=True is not supported")
        if self.global_context_att and self.pooling_func != "ASTP":
            bad("global_context_att needs ASTP pooling")
        if int(self.F) < 1 or int(self.C) < 1 or int(self.hop_length) < 1:
            bad("F, C and hop_length must be positive")
        f = self.F
        for i, (stride, *_rest) in enumerate(self.stages_setup):
            if f % stride:
                bad(f"stage {i}: frequency size {f} is not divisible by its stride {stride}")
            f //= stride
        for k in ("hop_length", "n_mels"):
            if k in self.spec_params:
                bad(f"spec_params must not contain {k!r} (it is a model argument)")
        resolve_spec_params(self.spec_params)
        if self.mrl_dims is not None and (self.mrl_dims[-1] != self.embed_dim
                                           or list(self.mrl_dims) != sorted(set(self.mrl_dims))):
            bad(f"mrl_dims {self.mrl_dims} must ascend and end with embed_dim {self.embed_dim}")

    @classmethod
    def from_model_config(cls, model_config: Mapping[str, Any], **extra: Any) -> "RedimnetConfig":
        """Upstream ``ReDimNetWrap(**model_config)`` semantics: missing keys take the defaults,
        unknown keys are an error."""
        names = {f.name for f in fields(cls)} - {"mrl_dims"}
        unknown = sorted(set(model_config) - names)
        if unknown:
            raise CheckpointFormatError(
                f"model_config has arguments ReDimNetWrap does not take: {', '.join(map(str, unknown))}")
        return cls(**dict(model_config), **extra)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, not tuples) that ``RedimnetConfig(**d)`` turns back into this."""
        def plain(v: Any) -> Any:
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v
        return plain(asdict(self))

    def architecture(self) -> dict[str, Any]:
        """The subset of fields that tensor shapes determine (used to compare configs)."""
        keys = ("F", "C", "block_1d_type", "block_2d_type", "stages_setup", "group_divisor",
                "out_channels", "embed_dim", "num_classes", "pooling_func", "global_context_att",
                "emb_bn", "mrl_dims")
        return {k: getattr(self, k) for k in keys}

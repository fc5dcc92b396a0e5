"""ReDimNet and MRL-ReDimNet speaker models in plain torch.

``load_redimnet(path)`` reads an IDRnD release file, an upstream MRL training checkpoint or
speakerdb's own file and returns a ``RedimnetModel`` (eval mode, CPU): waveforms (B, n) float32
at 16 kHz → raw (B, raw_dim) embeddings, 192-D (official) or 256-D (MRL, whose 64/128/192-D
embeddings are prefixes: slice, then L2-normalise with ``speakerdb.model.prefixes``).

``forward`` runs an optimised inference graph (``fast``: channels-last layout, BatchNorms folded;
the same outputs up to float rounding) in eval mode without autograd; ``load_redimnet(path,
optimized=False)`` or ``model.eager_forward`` run the network module by module instead.

The names below are imported lazily (PEP 562), so importing this package, or its torch-free
``release`` module (``fetch_release``, ``release_url``), does not import torch.

Modules: ``config`` (RedimnetConfig), ``frontend`` (log-mel), ``blocks2d`` / ``blocks1d`` /
``backbone`` / ``heads`` (the network), ``model`` (RedimnetModel), ``fast`` / ``fastlayers`` /
``fold`` (the optimised inference graph), ``infer`` (architecture from tensor shapes), ``loader``
(load_redimnet), ``release`` (official downloads).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "load_redimnet",
    "save_redimnet",
    "RedimnetModel",
    "OfficialRedimnet",
    "MrlRedimnet",
    "RedimnetConfig",
    "build_model",
    "infer_config",
    "check_state_dict",
    "model_from_state_dict",
    "UNRECOVERABLE",
    "fetch_release",
    "release_url",
]

_WHERE = {
    "load_redimnet": "loader", "save_redimnet": "loader", "check_state_dict": "loader",
    "model_from_state_dict": "loader", "RedimnetModel": "model", "OfficialRedimnet": "model",
    "MrlRedimnet": "model", "build_model": "model", "RedimnetConfig": "config",
    "infer_config": "infer", "UNRECOVERABLE": "infer", "fetch_release": "release",
    "release_url": "release",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""Loading ReDimNet checkpoints into ``RedimnetModel``.

- ``redimnet-official``: built from ``model_config`` as ReDimNetWrap keyword arguments (defaults
  for missing keys), then validated key by key against the state dict.
- ``redimnet-mrl``: the embedded training ``config`` is ignored (upstream's files state C=12/att
  while the weights are C=16/conv+att); the architecture is inferred from tensor shapes
  (``infer.infer_config``) and the hop is 160 samples unless given.
- ``speakerdb`` files of kind ``redimnet``: config stored by ``save_redimnet``.

Every mismatch raises CheckpointFormatError naming the file and the first offending key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

import torch

from speakerdb.errors import CheckpointFormatError
from speakerdb.model.checkpoint import read_checkpoint, save_speakerdb_model
from speakerdb.model.redimnet.config import RedimnetConfig
from speakerdb.model.redimnet.infer import infer_config
from speakerdb.model.redimnet.model import RedimnetModel, build_model

__all__ = ["load_redimnet", "model_from_state_dict", "check_state_dict", "save_redimnet", "SPEAKERDB_KIND"]

SPEAKERDB_KIND = "redimnet"


def _fmt(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def check_state_dict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], where: str) -> None:
    """Compare ``state_dict`` with what ``model`` needs, key by key, in the model's order; raise
    CheckpointFormatError naming the first key whose shape differs, then any missing or
    unexpected keys."""
    expected = model.state_dict()
    for k, v in expected.items():
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape):
            raise CheckpointFormatError(
                f"{where}: {k} has shape {_fmt(state_dict[k].shape)}, the model needs {_fmt(v.shape)}")
    missing = [k for k in expected if k not in state_dict]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointFormatError(f"{where}: missing {missing[0]}{more}")
    unexpected = [k for k in state_dict if k not in expected]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointFormatError(f"{where}: unexpected {unexpected[0]}{more}")
    for k, v in state_dict.items():
        if v.is_floating_point() != expected[k].is_floating_point():
            raise CheckpointFormatError(f"{where}: {k} has dtype {v.dtype}, expected {expected[k].dtype}")


def model_from_state_dict(cfg: RedimnetConfig, state_dict: Mapping[str, torch.Tensor],
                          where: str) -> RedimnetModel:
    """Build ``cfg``, check ``state_dict`` against it key by key, load it strictly; eval mode."""
    try:
        model = build_model(cfg)
    except (ValueError, RuntimeError) as e:
        raise CheckpointFormatError(f"{where}: cannot build the model ({e})") from None
    check_state_dict(model, state_dict, where)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def load_redimnet(path: str | os.PathLike, *, hop_length: Optional[int] = None,
                  optimized: bool = True) -> RedimnetModel:
    """Load an official ReDimNet release, an upstream MRL-ReDimNet training checkpoint (stage 1
    or stage 2, any optimizer state) or speakerdb's own ReDimNet file.

    hop_length overrides the hop (samples) the file implies: model_config's for official files,
    160 for MRL files (not stored in them). optimized: whether ``forward`` runs the optimised
    inference graph (``fast``; the default) or module by module (eager, for comparison; also
    reachable as ``model.eager_forward``). Returns a ``RedimnetModel`` in eval mode on the CPU
    with ``checkpoint_format`` set."""
    where = str(path)
    fmt, payload = read_checkpoint(path)
    if fmt == "redimnet-official":
        mc = dict(payload["model_config"])
        if hop_length is not None:
            mc["hop_length"] = hop_length
        try:
            cfg = RedimnetConfig.from_model_config(mc)
        except CheckpointFormatError as e:
            raise CheckpointFormatError(f"{where}: {e}") from None
        except (TypeError, ValueError) as e:
            raise CheckpointFormatError(f"{where}: bad model_config ({e})") from None
        model = model_from_state_dict(cfg, payload["state_dict"], where)
    elif fmt == "redimnet-mrl":
        sd = payload["model_state_dict"]
        cfg = infer_config(sd, "mrl", where, hop_length=hop_length or 160)
        model = model_from_state_dict(cfg, sd, where)
    elif fmt == "speakerdb" and payload["speakerdb_model"]["kind"] == SPEAKERDB_KIND:
        try:
            cfg = RedimnetConfig(**dict(payload["speakerdb_model"]["config"]))
        except (TypeError, CheckpointFormatError) as e:
            raise CheckpointFormatError(f"{where}: bad ReDimNet config ({e})") from None
        if hop_length is not None:
            cfg.hop_length = hop_length
        model = model_from_state_dict(cfg, payload["state_dict"], where)
    else:
        kind = payload["speakerdb_model"]["kind"] if fmt == "speakerdb" else fmt
        raise CheckpointFormatError(f"{where}: a {kind} model, not a ReDimNet")
    model.checkpoint_format = fmt
    model.optimized = optimized
    return model


def save_redimnet(model: RedimnetModel, path: str | os.PathLike) -> str:
    """Save ``model`` (config + weights) as a speakerdb model file; returns its sha256."""
    return save_speakerdb_model(Path(path), SPEAKERDB_KIND, model.config.to_dict(), model.state_dict())

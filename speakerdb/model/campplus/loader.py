"""Loading the CAM++ weight file into :class:`CAMPPlus`, checked before the strict load.

The file must be a plain state dict (``torch.load(weights_only=True)``; never unsafe loading)
whose keys and tensor shapes equal those of ``CAMPPlus()``: 937 entries. Any deviation raises
:class:`speakerdb.errors.CheckpointFormatError` with one line naming the file and the first
offending key.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from speakerdb.errors import CheckpointFormatError
from speakerdb.model.campplus.network import CAMPPlus

__all__ = ["load_campplus", "check_state_dict"]


def check_state_dict(state: object, where: str, model: CAMPPlus | None = None) -> None:
    """Raise CheckpointFormatError unless ``state`` maps exactly the keys of ``model``'s state
    dict to tensors of the same shapes (and floating/integer kind)."""
    if not isinstance(state, Mapping):
        raise CheckpointFormatError(
            f"{where}: not a CAM++ state dict (top level is {type(state).__name__})")
    want = (model or CAMPPlus()).state_dict()
    for key, ref in want.items():
        if key not in state:
            raise CheckpointFormatError(f"{where}: missing key {key!r} (not a CAM++ state dict)")
        got = state[key]
        if not isinstance(got, torch.Tensor):
            raise CheckpointFormatError(f"{where}: {key!r} is a {type(got).__name__}, "
                                        "not a tensor")
        if tuple(got.shape) != tuple(ref.shape):
            raise CheckpointFormatError(f"{where}: {key!r} has shape {tuple(got.shape)}, "
                                        f"expected {tuple(ref.shape)}")
        if got.is_floating_point() != ref.is_floating_point():
            raise CheckpointFormatError(f"{where}: {key!r} has dtype {got.dtype}, "
                                        f"expected {ref.dtype}")
    for key in state:
        if key not in want:
            raise CheckpointFormatError(f"{where}: unexpected key {key!r} (not a CAM++ "
                                        "state dict)")


def load_campplus(path: str | os.PathLike) -> CAMPPlus:
    """The CAM++ model from the state-dict file ``path``, in eval mode, float32, on the CPU."""
    where = str(path)
    if not Path(path).is_file():
        raise CheckpointFormatError(f"{where}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError,
            OSError) as e:
        raise CheckpointFormatError(f"{where}: cannot be read as a torch state dict "
                                    f"({type(e).__name__}: {e})") from e
    model = CAMPPlus()
    check_state_dict(state, where, model)
    model.load_state_dict(state, strict=True)
    return model.float().eval()

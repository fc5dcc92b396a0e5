"""Safe reading of model checkpoint files and detection of their format.

Every file is read with ``torch.load(weights_only=True)``: only tensors, plain Python data and
the few numpy globals listed in ``_allow_list`` can be built, so a malicious pickle is refused
before anything in it runs. There is never a fallback to unsafe loading.

Formats, recognised from the content (never from the file name):

``redimnet-official``
    IDRnD ReDimNet release asset: ``{'model_config': dict, 'state_dict': OrderedDict}``.
``redimnet-mrl``
    sappho192/redimnet-mrl training checkpoint: ``model_state_dict`` (``backbone.*`` and
    ``projection.*``) plus training bookkeeping (``epoch``, ``optimizer_state_dict``, ``config``...).
``campplus-state-dict``
    A plain CAM++ state dict (``xvector.*`` / ``head.*`` tensors; 937 entries in the 3D-Speaker file).
``speakerdb``
    speakerdb's own file: ``{'speakerdb_model': {'format_version': 1, 'kind': str, 'config': dict},
    'state_dict': {name: tensor}}``, written by ``save_speakerdb_model``.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speakerdb.files.hashing import sha256_file
from speakerdb.errors import CheckpointFormatError

__all__ = [
    "FORMATS",
    "SPEAKERDB_FORMAT_VERSION",
    "read_checkpoint",
    "detect_format",
    "save_speakerdb_model",
    "sha256_file",
    "describe_keys",
]

FORMATS = ("redimnet-official", "redimnet-mrl", "campplus-state-dict", "speakerdb")
SPEAKERDB_FORMAT_VERSION = 1
_MRL_BOOKKEEPING = ("epoch", "global_step", "optimizer_state_dict", "scheduler_state_dict",
                    "best_val_loss", "best_eer", "config")
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")
_BOILERPLATE = ("Weights only load failed", "In PyTorch 2.6", "Please file an issue",
                "Check the documentation", "WeightsUnpickler error")


def _allow_list() -> list:
    """The globals training checkpoints need beyond tensors: a numpy.float64 scalar
    (``best_eer``) is pickled as ``numpy._core.multiarray.scalar(numpy.dtype('float64'), bytes)``,
    and building the dtype needs its class ``numpy.dtypes.Float64DType`` as well.
    Files written under numpy 1.x name the scalar function ``numpy.core.multiarray.scalar``;
    the same function object is allowed under that name too (without importing the deprecated
    ``numpy.core`` package)."""
    scalar = np._core.multiarray.scalar  # numpy >= 2 (the version this project pins)
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, type(np.dtype("float64"))]


def describe_keys(d: Mapping, limit: int = 8) -> str:
    """``'a', 'b', ... (N keys)``: a short, one-line description of a mapping's keys."""
    keys = [repr(k)[:40] for k in list(d.keys())[:limit]]
    more = ", ..." if len(d) > limit else ""
    return f"{', '.join(keys)}{more} ({len(d)} keys)"


def _first_line(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _weights_only_reason(msg: str) -> tuple[str, str]:
    """Classify torch's weights-only refusal: ``('global', name)`` for a disallowed global,
    ``('refused', line)`` for another disallowed construct, ``('damaged', line)`` otherwise."""
    m = _GLOBAL_RE.search(msg)
    if m:
        return "global", m.group(1)
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(_BOILERPLATE)]
    line = _first_line(useful[0] if useful else (lines[-1] if lines else "unreadable pickle"))
    if "Can only build" in line or "allowlist" in line.lower() or "allowed global" in line:
        return "refused", line
    return "damaged", line


def _load(path: Path) -> Any:
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointFormatError(f"{path}: truncated or not a PyTorch checkpoint (empty file)")
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        raise CheckpointFormatError(
            f"{path}: truncated or not a PyTorch checkpoint (neither a zip archive nor a pickle; "
            f"starts with {head!r})")
    try:
        with torch.serialization.safe_globals(_allow_list()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        kind, reason = _weights_only_reason(str(e))
        if kind == "global":
            raise CheckpointFormatError(
                f"{path}: refused: the pickle needs the unsafe global {reason} "
                "(only tensors and plain data are loaded; nothing in the file was run)") from None
        if kind == "refused":
            raise CheckpointFormatError(f"{path}: refused: {reason}") from None
        raise CheckpointFormatError(
            f"{path}: truncated or not a PyTorch checkpoint (unpickling failed: {reason})") from None
    except (RuntimeError, EOFError, ValueError, OSError, AttributeError, ImportError,
            IndexError, KeyError, TypeError) as e:
        msg = str(e)
        if "central directory" in msg:
            msg = "zip archive without its central directory"
        elif "PytorchStreamReader" in msg:
            msg = msg.split(".")[0]
        raise CheckpointFormatError(
            f"{path}: truncated or not a PyTorch checkpoint ({type(e).__name__}: {_first_line(msg, 100)})"
        ) from None


def _is_state_dict(d: Any) -> bool:
    return isinstance(d, Mapping) and len(d) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def detect_format(payload: Any, where: str = "checkpoint") -> str:
    """One of ``FORMATS`` for a loaded payload, or CheckpointFormatError naming ``where`` and
    what was found."""
    if not isinstance(payload, Mapping):
        raise CheckpointFormatError(
            f"{where}: not a known checkpoint format (found a {type(payload).__name__}, "
            "expected a dict)")
    keys = set(payload.keys())
    if "speakerdb_model" in keys:
        meta = payload["speakerdb_model"]
        if not (isinstance(meta, Mapping) and isinstance(meta.get("kind"), str)
                and isinstance(meta.get("config"), Mapping) and "state_dict" in keys):
            raise CheckpointFormatError(f"{where}: damaged speakerdb model file (header {meta!r:.80})")
        if meta.get("format_version") != SPEAKERDB_FORMAT_VERSION:
            raise CheckpointFormatError(
                f"{where}: speakerdb model format_version {meta.get('format_version')!r} is not "
                f"supported (this version reads {SPEAKERDB_FORMAT_VERSION})")
        if not _is_state_dict(payload["state_dict"]):
            raise CheckpointFormatError(f"{where}: speakerdb model file has no tensor state_dict")
        return "speakerdb"
    if {"model_config", "state_dict"} <= keys:
        if not isinstance(payload["model_config"], Mapping) or not _is_state_dict(payload["state_dict"]):
            raise CheckpointFormatError(
                f"{where}: looks like a ReDimNet release but model_config/state_dict have the wrong types")
        return "redimnet-official"
    if "model_state_dict" in keys and keys & set(_MRL_BOOKKEEPING):
        sd = payload["model_state_dict"]
        if not _is_state_dict(sd):
            raise CheckpointFormatError(f"{where}: training checkpoint whose model_state_dict holds no tensors")
        if not (any(k.startswith("backbone.backbone.") for k in sd)
                and any(k.startswith("projection.") for k in sd)):
            raise CheckpointFormatError(
                f"{where}: a training checkpoint, but not of an MRL-ReDimNet "
                f"(model_state_dict keys: {describe_keys(sd, 4)})")
        return "redimnet-mrl"
    if _is_state_dict(payload) and all(k.startswith(("xvector.", "head.")) for k in keys) \
            and any(k.startswith("xvector.") for k in keys):
        return "campplus-state-dict"
    raise CheckpointFormatError(
        f"{where}: not a known checkpoint format (top-level keys: {describe_keys(payload)})")


def read_checkpoint(path: str | os.PathLike) -> tuple[str, dict]:
    """Load ``path`` safely on the CPU and return ``(format, payload)``; ``format`` is one of
    ``FORMATS`` and ``payload`` the loaded top-level dict (tensors on the CPU).

    Raises CheckpointFormatError (one line naming the file) for a missing, truncated, unsafe or
    unrecognised file."""
    p = Path(path)
    if not p.exists():
        raise CheckpointFormatError(f"{p}: no such checkpoint file")
    if p.is_dir():
        raise CheckpointFormatError(f"{p}: is a directory, not a checkpoint file")
    payload = _load(p)
    return detect_format(payload, str(p)), payload


def _plain(value: Any, where: str) -> Any:
    """Check that a config holds only plain data (str, numbers, bools, None, lists, dicts)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise ValueError(f"{where}: config keys must be strings")
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise ValueError(f"{where}: {type(value).__name__} is not plain data")


def save_speakerdb_model(path: str | os.PathLike, kind: str, config: Mapping,
                         state_dict: Mapping[str, torch.Tensor]) -> str:
    """Write speakerdb's own model file atomically and return its sha256.

    kind: model family (e.g. ``redimnet``); config: plain data (tuples become lists);
    state_dict: name → tensor (stored on the CPU). The file loads with ``weights_only=True``
    and no allow-list."""
    if not isinstance(kind, str) or not kind:
        raise ValueError("kind must be a non-empty string")
    cfg = _plain(dict(config), "config")
    sd = {}
    for k, v in state_dict.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise ValueError(f"state_dict entry {k!r} is not a named tensor")
        sd[k] = v.detach().to("cpu").contiguous().clone()
    obj = {"speakerdb_model": {"format_version": SPEAKERDB_FORMAT_VERSION, "kind": kind,
                               "config": cfg}, "state_dict": sd}
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    from speakerdb.files.atomic import atomic_write

    atomic_write(dest, lambda tmp: torch.save(obj, tmp))
    return sha256_file(dest)

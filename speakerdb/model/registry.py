"""Model specs: a built-in name or a checkpoint path, resolved to an Embedder."""

from __future__ import annotations

from pathlib import Path

from speakerdb.errors import CheckpointFormatError, UsageError
from speakerdb.model.base import Embedder

__all__ = ["BUILTIN", "load_embedder"]

BUILTIN = {
    "spectral": "deterministic spectral-statistics embedder (no weights; for tests and demos)",
}


def load_embedder(spec: str) -> Embedder:
    """The embedder for ``spec``: a name from ``BUILTIN`` or a path to a checkpoint file."""
    if spec == "spectral":
        from speakerdb.model.spectral import SpectralEmbedder

        return SpectralEmbedder()
    path = Path(spec)
    if path.exists():
        if path.is_dir():
            raise UsageError(f"{spec}: is a directory, not a model checkpoint")
        raise CheckpointFormatError(
            f"{spec}: checkpoint files are not supported by this version "
            f"(built-in models: {', '.join(BUILTIN)})"
        )
    raise UsageError(
        f"unknown model {spec!r}: not a built-in name ({', '.join(BUILTIN)}) nor an existing file"
    )

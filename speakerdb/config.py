"""Defaults and the on-disk layout of a database home directory.

A home (``--home``, ``SPEAKERDB_HOME``, default ``indexes/default``) holds ``home.json`` (how to
reach the metadata store), the SQLite file when no other URL was given, and the FAISS indexes
with their infos JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_HOME",
    "DEFAULT_MODEL",
    "default_model",
    "HOME_FILE",
    "SQLITE_FILE",
    "CascadeConfig",
    "IngestConfig",
    "resolve_home",
    "read_home_file",
    "write_home_file",
]

DEFAULT_HOME = Path("indexes") / "default"
DEFAULT_MODEL = "campplus"  # CAM++ with the packaged Matryoshka head
HOME_FILE = "home.json"
SQLITE_FILE = "speakerdb.sqlite"


@dataclass(frozen=True)
class CascadeConfig:
    """Shortlist sizes of the identify cascade: 64-D screen keeps ``k64`` segments, 128-D
    rescoring keeps ``k128``, 192-D keeps ``k192``; the 256-D scores rank those."""

    k64: int = 1000
    k128: int = 300
    k192: int = 100
    top_k: int = 5  # speakers reported
    aggregation: str = "max"

    def __post_init__(self):
        from speakerdb.errors import UsageError

        if not (self.k64 >= self.k128 >= self.k192 >= 1):
            raise UsageError(
                f"shortlist sizes must shrink: got 64:{self.k64} 128:{self.k128} 192:{self.k192}"
            )
        if self.top_k < 1:
            raise UsageError(f"--top-k must be at least 1, got {self.top_k}")


@dataclass(frozen=True)
class IngestConfig:
    files_per_batch: int = 32  # one store transaction per batch
    embed_batch: int = 16  # segments per embedder call, bucketed by length
    index_flush_s: float = 30.0  # indexes are saved at most this often (and at the end)
    retry_failed: bool = False
    extensions: tuple[str, ...] = field(
        default=(".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".mp4", ".opus")
    )


def default_model() -> str:
    """The model used when none is named: ``$SPEAKERDB_MODEL``, else ``DEFAULT_MODEL``."""
    return os.environ.get("SPEAKERDB_MODEL") or DEFAULT_MODEL


def resolve_home(home: str | os.PathLike | None) -> Path:
    if home is None:
        home = os.environ.get("SPEAKERDB_HOME") or DEFAULT_HOME
    return Path(home)


def read_home_file(home: Path) -> dict | None:
    p = home / HOME_FILE
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def write_home_file(home: Path, data: dict) -> None:
    tmp = home / (HOME_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, home / HOME_FILE)

"""The vector tier: what ingest, identify, check and speaker management need from the index
layer, and the registry of its implementations.

A database's ``home.json`` names its tier (``"vectors"``; absent: ``faiss``, as every home
created before the name was recorded). ``open_tier`` builds the named one: the FAISS tier
(``speakerdb/index/faiss_tier.py``) or the Qdrant tier (``speakerdb/index/qdrant_tier.py``,
where home.json's ``qdrant`` says ``{"location": ..., "collection": ...}``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from speakerdb.errors import UnknownEngineError

if TYPE_CHECKING:  # pragma: no cover - names for annotations only
    from speakerdb.config import CascadeConfig
    from speakerdb.index.space import VectorSpace
    from speakerdb.search.cascade import Hit
    from speakerdb.store.home_lock import HomeLock
    from speakerdb.store.store import Store

__all__ = ["DEFAULT_TIER", "TIERS", "VectorTier", "open_tier", "tier_kind"]

DEFAULT_TIER = "faiss"


@runtime_checkable
class VectorTier(Protocol):
    """The vectors of one database, derived from its store (the source of truth) and kept
    level with it. ``space``: the vector space vectors are stored in (``rebuild`` after
    changing it); ``generation``: the store generation held; ``home_lock``: the home's
    writer lock, under which alone the tier saves."""

    space: VectorSpace
    generation: int
    read_only: bool
    flush_s: float
    home_lock: HomeLock

    @property
    def is_open(self) -> bool: ...

    @property
    def dirty(self) -> bool:
        """Whether changes in memory are not saved yet."""
        ...

    def open(self, catch_up: bool = True) -> str: ...

    def ensure_open(self) -> None: ...

    def plan(self) -> str: ...

    def saved_generation(self) -> int:
        """The store generation the saved vectors reflect (0: not recorded)."""
        ...

    def dims(self) -> tuple[int, ...]: ...

    def count(self) -> int: ...

    def add(self, ids: np.ndarray, raw: np.ndarray,
            generation: tuple[int, int] | None = None) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def owners_changed(self, ids: np.ndarray) -> None:
        """The recordings or speakers of segments ``ids`` changed in the store (a merge): a
        tier that keeps them beside the vectors writes them again."""
        ...

    def search_cascade(self, query: Mapping[int, np.ndarray],
                       config: CascadeConfig) -> list[Hit]: ...

    def search_exhaustive(self, query: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` best hits for ``query`` at its own dimension, one of ``dims()``."""
        ...

    def follow(self, generation: int) -> tuple[int, int]: ...

    def flush(self, force: bool = False) -> bool: ...

    def close(self) -> None:
        """Let go of what is loaded (mapped files included); unsaved changes are lost."""
        ...

    def rebuild(self, save: bool = True) -> None: ...

    def problems(self, quick: bool = False) -> list[str]: ...

    def describe(self) -> dict:
        """What the saved vectors are and the bytes each part takes (empty: none saved)."""
        ...


def _faiss(directory: Path, store: Store, model_sha256: str, revision: str,
           space: VectorSpace, read_only: bool = False) -> VectorTier:
    from speakerdb.index.faiss_tier import FaissTier

    return FaissTier(directory, store, model_sha256, revision, space, read_only=read_only)


def _qdrant(directory: Path, store: Store, model_sha256: str, revision: str,
            space: VectorSpace, read_only: bool = False) -> VectorTier:
    from speakerdb.config import read_home_file
    from speakerdb.index.qdrant_link import default_collection
    from speakerdb.index.qdrant_tier import QdrantTier

    where = (read_home_file(directory) or {}).get("qdrant") or {}
    if not where.get("location"):
        raise UnknownEngineError(f"{directory}: home.json names the qdrant vector tier but no "
                                 "qdrant location")
    return QdrantTier(directory, store, model_sha256, revision, space, where["location"],
                      where.get("collection") or default_collection(directory),
                      read_only=read_only)


# name -> factory(directory, store, model_sha256, revision, space, read_only=...)
TIERS: dict[str, Callable[..., VectorTier]] = {"faiss": _faiss, "qdrant": _qdrant}


def tier_kind(home_info: Mapping) -> str:
    """The tier a home's ``home.json`` names (absent: the FAISS tier)."""
    return str(home_info.get("vectors") or DEFAULT_TIER)


def open_tier(kind: str, directory: Path, store: Store, model_sha256: str, revision: str,
              space: VectorSpace, read_only: bool = False) -> VectorTier:
    """The vector tier ``kind`` of the database in ``directory`` (not loaded yet: ``open``);
    an unregistered kind is an UnknownEngineError."""
    try:
        factory = TIERS[kind]
    except KeyError:
        raise UnknownEngineError(f"{directory}: unknown vector tier {kind!r} in home.json "
                                 f"(known: {', '.join(sorted(TIERS))})") from None
    return factory(directory, store, model_sha256, revision, space, read_only=read_only)

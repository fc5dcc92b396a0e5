"""Deciding, from the saved description alone, how to bring it level with the store."""

from __future__ import annotations

from typing import Literal

import numpy as np

from speakerdb.index.infos import SetInfo, ids_digest

__all__ = ["CatchUp", "catch_up_plan"]

CatchUp = Literal["current", "append", "rebuild"]


def catch_up_plan(info: SetInfo, store_ids: np.ndarray, store_max_id: int) -> CatchUp:
    """What the saved vectors described by ``info`` need to agree with the store.

    ``current``: it holds exactly the store's ids. ``append``: it holds exactly the store's
    ids up to ``info.store_max_id`` (nothing it holds was deleted since it was saved) and only
    newer ids are missing. ``rebuild``: anything else (deleted or rewritten segments, an
    index ahead of the store, a damaged description).

    store_ids: the store's segment ids, sorted ascending; store_max_id: their maximum (0 when
    empty). Model and schema agreement are the caller's to check.
    """
    store_ids = np.asarray(store_ids, dtype=np.int64)
    if info.ntotal == store_ids.size and info.ids_digest == ids_digest(store_ids):
        return "current"
    older = store_ids[: np.searchsorted(store_ids, info.store_max_id, side="right")]
    if (info.ntotal == older.size and older.size < store_ids.size
            and info.ids_digest == ids_digest(older)):
        return "append"
    return "rebuild"

"""Every way a database's Qdrant collection can disagree with its store, as one human line
each (``check``), and the repair that uploads again what differs (``check --repair``)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from speakerdb.index.checks import NAMED, ROWS_TOLERANCE, short_sha
from speakerdb.index.qdrant_link import vector_name
from speakerdb.index.qdrant_tier import _unit_prefixes

__all__ = ["differing", "problems", "repair"]

SAMPLE = 64  # segments compared by check --quick
CHUNK = 500  # points retrieved per request


def differing(tier, ids: np.ndarray, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids whose point's vectors differ from the store's, ids whose payload does), of the
    segments ``ids`` with stored vectors ``raw``; points that are missing are skipped (they
    are counted as missing)."""
    ids = np.asarray(ids, np.int64)
    want = _unit_prefixes(tier.space.transform(raw), tier.space.dims)
    owners = tier.store.segment_owners(ids)
    bad_vec, bad_pay = [], []
    pos = {int(i): k for k, i in enumerate(ids)}
    for a in range(0, ids.size, CHUNK):
        with tier._call("reading points"):
            points = tier.client.retrieve(tier.collection, [int(i) for i in ids[a : a + CHUNK]],
                                          with_vectors=True, with_payload=True)
        for p in points:
            i, k = int(p.id), pos[int(p.id)]
            vec = p.vector if isinstance(p.vector, dict) else {}
            for d in tier.space.dims:
                have = vec.get(vector_name(d))
                if have is None or len(have) != d or not (
                        np.abs(np.asarray(have, np.float32) - want[d][k]).max()
                        <= ROWS_TOLERANCE):
                    bad_vec.append(i)
                    break
            rec, spk = owners.get(i, (None, None))
            pay = p.payload or {}
            if (pay.get("segment"), pay.get("recording"), pay.get("speaker")) != (i, rec, spk):
                bad_pay.append(i)
    return np.asarray(bad_vec, np.int64), np.asarray(bad_pay, np.int64)


def _layout_lines(tier, meta: dict) -> list[str]:
    want = {vector_name(d): d for d in tier.space.dims}
    if meta["sizes"] != want:
        have = "/".join(str(v) for v in sorted(meta["sizes"].values())) or "no"
        return [f"vectors: the collection holds {have}-D vectors, the database uses "
                f"{'/'.join(map(str, tier.space.dims))}-D"]
    out = []
    if meta.get("model_sha256") != tier.model_sha256:
        out.append(f"vectors: model sha256 {short_sha(str(meta.get('model_sha256')))} but the "
                   f"database model is {short_sha(tier.model_sha256)}")
    if meta.get("schema_revision") != tier.revision:
        out.append(f"vectors: schema revision {meta.get('schema_revision')}, store "
                   f"{tier.revision}")
    if meta.get("space") != tier.space.name:
        out.append(f"vectors: built in vector space {meta.get('space')}, the database uses "
                   f"{tier.space.name}")
    return out


def _named(what: str, ids: list[int], count: int) -> list[str]:
    out = [f"vectors: {what} of segment {i} differs from the store" for i in ids[:NAMED]]
    if count > len(out):
        out.append(f"vectors: {count - len(out)} more {what}s differ from the store")
    return out


def _chunks(tier, quick: bool, store_ids: np.ndarray) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    if not quick:
        return tier.store.vectors()
    if not store_ids.size:
        return ()
    pick = np.unique(np.linspace(0, store_ids.size - 1, SAMPLE).astype(int))
    return tier.store.vectors(store_ids[pick])


def problems(tier, quick: bool = False) -> list[str]:
    """Disagreements of the collection with the store (empty: none). Full: every point id,
    vector and payload; ``quick``: the point count and ``SAMPLE`` segments spread over the
    ids."""
    meta = tier._meta()
    where = f"{tier.collection} at {tier.location}"
    if meta is None:
        return [f"vectors: the Qdrant collection {where} is missing"]
    out = _layout_lines(tier, meta)
    if out:
        return out
    store_ids = tier.store.segment_ids()
    with tier._call("counting points"):
        n = int(tier.client.count(tier.collection, exact=True).count)
    if n != store_ids.size:
        out.append(f"vectors: {n} points in {where}, store has {store_ids.size}")
    if not quick:
        held = tier.point_ids()
        missing = np.setdiff1d(store_ids, held).size
        extra = np.setdiff1d(held, store_ids).size
        if missing or extra:
            out.append(f"vectors: ids differ from the store ({missing} missing, {extra} extra)")
    vec_ids: list[int] = []
    pay_ids: list[int] = []
    counts = [0, 0]
    for ids, raw in _chunks(tier, quick, store_ids):
        bad_vec, bad_pay = differing(tier, ids, raw)
        counts[0] += bad_vec.size
        counts[1] += bad_pay.size
        vec_ids += bad_vec[: NAMED - len(vec_ids)].tolist()
        pay_ids += bad_pay[: NAMED - len(pay_ids)].tolist()
    out += _named("vector", vec_ids, counts[0]) + _named("payload", pay_ids, counts[1])
    return out


def repair(tier) -> tuple[int, int]:
    """Make a collection of the right layout agree with the store: points of deleted segments
    removed, missing points uploaded, points whose vectors or payload differ uploaded again.
    Returns (points uploaded, points removed)."""
    added, removed = tier._sync_ids()
    again = 0
    for ids, raw in tier.store.vectors():
        bad_vec, bad_pay = differing(tier, ids, raw)
        bad = np.union1d(bad_vec, bad_pay)
        if bad.size:
            keep = np.isin(ids, bad)
            tier._upsert(ids[keep], raw[keep])
            again += bad.size
    return added + again, removed

"""identify's searches on the Qdrant tier: the cascade as one Query API request, and the
exhaustive search at one dimension. Both give ``speakerdb.search.cascade.Hit``s, best first
(ties: the smaller segment id first), like the FAISS tier's."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from speakerdb.index.qdrant_link import vector_name
from speakerdb.search.cascade import Hit

__all__ = ["cascade", "cascade_request", "exhaustive"]


def cascade_request(dims, query: Mapping[int, np.ndarray], config):
    """(prefetch, final dimension, limit) of the cascade for ``query`` ({dim: unit vector}):
    nested prefetches from the screen (innermost, ``shortlist[0]`` at the first dimension)
    through every later stage that cuts its shortlist (one that keeps all changes nothing and
    is left out), the query itself ranking what the last one kept at the last dimension."""
    from qdrant_client import models as m

    dims = tuple(sorted(dims))
    stages = config.stages(dims) or [(dims[0], config.shortlist[0])]
    if len(dims) == 1:  # no nested prefixes: the screen is the whole search
        return None, dims[0], stages[0][1]
    inner, size = None, None
    for d, kept in stages:
        if size is not None and kept >= size:
            continue
        inner = m.Prefetch(query=np.asarray(query[d], np.float32).tolist(),
                           using=vector_name(d), limit=int(kept), prefetch=inner)
        size = kept
    return inner, dims[-1], int(size)


def _ranked(ids: list[int], scores: np.ndarray, per_dim: dict[int, np.ndarray],
            last: int) -> list[Hit]:
    ids_a = np.asarray(ids, np.int64)
    order = np.lexsort((ids_a, -scores))
    dims = sorted(per_dim)
    return [Hit(int(ids_a[i]), float(scores[i]), {d: float(per_dim[d][i]) for d in dims})
            for i in order]


def cascade(tier, query: Mapping[int, np.ndarray], config) -> list[Hit]:
    """The cascade's hits for ``query`` (at most the last stage's shortlist): one request;
    every dimension's score of the final hits is computed from the vectors it returns."""
    dims = tuple(tier.space.dims)
    prefetch, last, limit = cascade_request(dims, query, config)
    names = [vector_name(d) for d in dims]
    with tier._call("searching"):
        points = tier.client.query_points(
            tier.collection, prefetch=prefetch,
            query=np.asarray(query[last], np.float32).tolist(), using=vector_name(last),
            limit=limit, with_payload=False, with_vectors=names).points
    if not points:
        return []
    per_dim = {}
    for d in dims:
        v = np.asarray([p.vector[vector_name(d)] for p in points], np.float32)
        per_dim[d] = v @ np.asarray(query[d], np.float32)
    if len(dims) == 1:
        per_dim = {last: per_dim[last]}
    return _ranked([int(p.id) for p in points], per_dim[last], per_dim, last)


def exhaustive(tier, query: np.ndarray, k: int) -> list[Hit]:
    """The ``k`` best hits at ``query``'s own dimension, scoring every point (exact search,
    not the server's HNSW graph)."""
    from qdrant_client import models as m

    from speakerdb.index.qdrant_link import is_server

    d = int(np.shape(query)[-1])
    if d not in tier.space.dims:
        raise ValueError(f"no {d}-D vectors (dimensions: {list(tier.space.dims)})")
    with tier._call("searching"):
        points = tier.client.query_points(
            tier.collection, query=np.asarray(query, np.float32).tolist(),
            using=vector_name(d), limit=int(k), with_payload=False, with_vectors=False,
            search_params=m.SearchParams(exact=True) if is_server(tier.location) else None
        ).points  # (local mode always searches exactly, and warns of the parameter)
    scores = np.asarray([p.score for p in points], np.float64)
    return _ranked([int(p.id) for p in points], scores, {d: scores}, d)

"""Clustering window embeddings into speakers: average-linkage agglomerative clustering on
cosine distance (scipy), cut at a distance threshold, or at a given number of clusters."""

from __future__ import annotations

import numpy as np

__all__ = ["cluster_windows", "default_distance"]

# cosine distance at which clusters stop merging, per model (tuned on speech-dev's dev split
# of speakers, see bench/diarization.py); other models use 1 - their verification threshold
DISTANCES = {"campplus": 0.70}


def default_distance(embedder) -> float:
    return DISTANCES.get(embedder.name, 1.0 - float(embedder.default_threshold))


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cluster_windows(x: np.ndarray, distance: float, num_speakers: int | None = None,
                    max_speakers: int | None = None, weights=None,
                    min_share: float = 0.05) -> np.ndarray:
    """Cluster labels 0..k-1 (by first appearance) for the rows of ``x`` (windows, in time
    order). ``num_speakers``: exactly that many clusters (fewer if there are fewer windows);
    else clusters closer than ``distance`` merge, at most ``max_speakers``. Clusters holding
    less than ``min_share`` of the windows' ``weights`` (seconds) join the nearest larger one,
    unless ``num_speakers`` asks for them."""
    from scipy.cluster.hierarchy import fcluster, linkage

    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1 or num_speakers == 1:
        return np.zeros(n, dtype=np.int64)
    u = _unit(x)
    z = linkage(u, method="average", metric="cosine")
    if num_speakers is not None:
        labels = fcluster(z, t=min(num_speakers, n), criterion="maxclust")
    else:
        labels = fcluster(z, t=distance, criterion="distance")
        if max_speakers is not None and labels.max() > max_speakers:
            labels = fcluster(z, t=max_speakers, criterion="maxclust")
        labels = _absorb_small(u, labels, np.ones(n) if weights is None else
                               np.asarray(weights, dtype=np.float64), min_share)
    return _by_appearance(labels)


def _absorb_small(u, labels, weights, min_share):
    """Clusters below ``min_share`` of the total weight moved to the nearest other cluster."""
    labels = labels.copy()
    total = weights.sum()
    while True:
        ids = np.unique(labels)
        if len(ids) < 2:
            return labels
        mass = np.array([weights[labels == i].sum() for i in ids])
        small = int(mass.argmin())
        if mass[small] >= min_share * total:
            return labels
        cents = _unit(np.stack([u[labels == i].mean(axis=0) for i in ids]))
        sims = cents @ cents[small]
        sims[small] = -np.inf
        labels[labels == ids[small]] = ids[int(sims.argmax())]


def _by_appearance(labels) -> np.ndarray:
    order: dict[int, int] = {}
    for lab in labels:
        order.setdefault(int(lab), len(order))
    return np.array([order[int(lab)] for lab in labels], dtype=np.int64)

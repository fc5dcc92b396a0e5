"""The Qdrant vector tier: latency, recall@1 and speaker agreement of its cascade (one Query API
request with nested prefetch) against exhaustive search, on the engines that run here.

    python -m bench.qdrant_tier [--local-n 5000] [--edge-n 100000] [--queries 200] [--json OUT]

No Qdrant server runs on this machine, so two engines stand in, each labelled in the output:

1. ``local``: qdrant-client's local mode (pure Python and NumPy, brute force: no HNSW) behind
   the real ``QdrantTier``, two databases derived from one store of ``--local-n`` segments:
   the FAISS tier (baseline: its exhaustive 256-D search) and the Qdrant tier in memory.
   Reports each search's latency as a ratio to the FAISS exhaustive one, recall@1 of the
   Qdrant cascade's best segment against FAISS exhaustive search, top-speaker agreement (max
   rule) and the largest score difference between the two tiers' cascades.
2. ``edge``: qdrant-edge-py (Qdrant's own engine in process: its segments, HNSW graph and
   prefetch planner, without a server's network hop) with ``--edge-n`` segments in the
   collection's layout (d64 with an HNSW graph, d128..d256 plain, cosine); the cascade
   request the tier sends, and the engine's exact 256-D search (baseline, ratio 1.0), against
   NumPy exhaustive 256-D search on the same unit vectors for recall.

Vectors and probes: ``bench/speaker_vectors.py`` (the default model's spectrum on speech-dev;
80 % new segments of stored speakers, 20 % unseen speakers). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import speaker_vectors as vec
from speakerdb.config import CascadeConfig
from speakerdb.model.prefixes import DIMS, nested

CFG = CascadeConfig()


def _ms(samples: list[float]) -> dict:
    a = np.asarray(samples) * 1000
    return {"p50_ms": round(float(np.median(a)), 3), "p95_ms": round(float(np.percentile(a, 95)), 3)}


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def local_mode(n: int, queries: int, tmp: Path) -> dict:
    """FAISS tier against the Qdrant tier (qdrant-client local mode, in memory), one store."""
    from speakerdb.api import SpeakerDB
    from speakerdb.model.registry import load_embedder
    from speakerdb.store.engine import home_store_url

    real, real_spk = vec.real_embeddings()
    spec = vec.spectrum(real, real_spk)
    raw, speaker, means = vec.synthetic_store(spec, n, seed=n)
    qraw, _ = vec.synthetic_queries(spec, means, queries, seed=n + 1)
    emb = load_embedder("campplus", "cpu")
    home_f, home_q = tmp / "faiss", tmp / "qdrant"
    SpeakerDB.create(home_f, model="campplus", embedder=emb).close()
    db = SpeakerDB.open(home_f, catch_up=False, embedder=emb)
    vec.write_store(db.store.engine, raw, speaker)
    db.close()
    faiss, faiss_open_s = _timed(lambda: SpeakerDB.open(home_f, embedder=emb))
    store = home_store_url(home_f)
    qdrant, qdrant_open_s = _timed(lambda: SpeakerDB.create(
        home_q, model="campplus", db_url=store, embedder=emb, vectors="qdrant",
        qdrant=":memory:"))
    times: dict[str, list[float]] = {k: [] for k in ("faiss_exhaustive", "faiss_cascade",
                                                     "qdrant_cascade", "qdrant_exhaustive")}
    seg_agree = spk_agree = exact_agree = 0
    max_diff = 0.0
    try:
        for i in range(queries):
            q = faiss.space.query(qraw[i][None])
            fe, t = _timed(lambda: faiss.indexes.search_exhaustive(q[256], CFG.kept))
            times["faiss_exhaustive"].append(t)
            fc, t = _timed(lambda: faiss.indexes.search_cascade(q, CFG))
            times["faiss_cascade"].append(t)
            qc, t = _timed(lambda: qdrant.indexes.search_cascade(q, CFG))
            times["qdrant_cascade"].append(t)
            qe, t = _timed(lambda: qdrant.indexes.search_exhaustive(q[256], CFG.kept))
            times["qdrant_exhaustive"].append(t)
            seg_agree += qc[0].segment_id == fe[0].segment_id
            spk_agree += speaker[qc[0].segment_id - 1] == speaker[fe[0].segment_id - 1]
            exact_agree += [h.segment_id for h in qe] == [h.segment_id for h in fe]
            if [h.segment_id for h in qc] == [h.segment_id for h in fc]:
                max_diff = max(max_diff, max(abs(a.scores[d] - b.scores[d])
                                             for a, b in zip(qc, fc) for d in DIMS))
            else:
                max_diff = float("inf")
    finally:
        faiss.close()
        qdrant.close()
    base = float(np.median(times["faiss_exhaustive"]))
    return {
        "engine": "qdrant-client local mode (pure Python, brute force), in memory, through "
                  "QdrantTier; baseline: the FAISS tier's exhaustive 256-D search",
        "segments": n, "queries": queries, "shortlist": list(CFG.shortlist),
        "open_s": {"faiss_build": round(faiss_open_s, 2), "qdrant_upload": round(qdrant_open_s, 2)},
        "latency": {k: {**_ms(v), "ratio_to_faiss_exhaustive":
                        round(float(np.median(v)) / base, 2)} for k, v in times.items()},
        "qdrant_cascade_recall_at_1": seg_agree / queries,
        "qdrant_cascade_speaker_agreement": spk_agree / queries,
        "qdrant_exhaustive_same_top100_as_faiss": exact_agree / queries,
        "max_score_difference_qdrant_vs_faiss_cascade": max_diff,
    }


def _edge_shard(path: Path, x: np.ndarray, batch: int = 2000):
    import qdrant_edge as qe

    params = {f"d{d}": qe.EdgeVectorParams(
        size=d, distance=qe.Distance.Cosine,
        hnsw_config=qe.HnswIndexConfig(m=16 if d == DIMS[0] else 0, ef_construct=100,
                                       full_scan_threshold=10000)) for d in DIMS}
    shard = qe.EdgeShard.create(str(path), qe.EdgeConfig(vectors=params))
    for a in range(0, x.shape[0], batch):
        parts = nested(x[a : a + batch], DIMS)
        points = [qe.Point(a + i + 1, {f"d{d}": parts[d][i].tolist() for d in DIMS},
                           {"segment": a + i + 1}) for i in range(parts[DIMS[0]].shape[0])]
        shard.update(qe.UpdateOperation.upsert_points(points))
    return shard


def _edge_cascade(q: dict, cfg: CascadeConfig):
    """The tier's request (``qdrant_search.cascade_request``) in qdrant-edge's types."""
    import qdrant_edge as qe

    inner, size = None, None
    for d, kept in cfg.stages(DIMS):
        if size is not None and kept >= size:
            continue
        inner = qe.Prefetch(limit=int(kept), query=qe.Query.Nearest(q[d].tolist(), using=f"d{d}"),
                            prefetches=None if inner is None else [inner])
        size = kept
    return qe.QueryRequest(limit=int(size), prefetches=[inner],
                           query=qe.Query.Nearest(q[256].tolist(), using="d256"))


def edge(n: int, queries: int, tmp: Path) -> dict:
    """Qdrant's engine in process (qdrant-edge-py) at ``n`` segments."""
    try:
        import qdrant_edge as qe
    except ImportError as e:
        return {"skipped": f"qdrant-edge-py is not installed ({e})"}
    real, real_spk = vec.real_embeddings()
    spec = vec.spectrum(real, real_spk)
    raw, speaker, means = vec.synthetic_store(spec, n, seed=n)
    qraw, _ = vec.synthetic_queries(spec, means, queries, seed=n + 1)
    shard, upload_s = _timed(lambda: _edge_shard(tmp / "edge", raw))
    _, optimize_s = _timed(shard.optimize)
    full = nested(raw, (256,))[256]
    small = CascadeConfig((1000, 1000, 100))
    times: dict[str, list[float]] = {k: [] for k in (
        "edge_exact_256", "edge_cascade", "edge_cascade_1000", "edge_screen_hnsw_64",
        "edge_screen_exact_64", "numpy_exhaustive_256")}
    seg = spk = seg_small = 0
    screen_overlap = []
    exact = qe.SearchParams(exact=True)
    for i in range(queries):
        q = nested(qraw[i][None], DIMS)
        q = {d: v[0] for d, v in q.items()}
        scores, t = _timed(lambda: full @ q[256])
        top = int(np.argmax(scores)) + 1
        times["numpy_exhaustive_256"].append(t)
        _, t = _timed(lambda: shard.query(qe.QueryRequest(
            limit=CFG.kept, query=qe.Query.Nearest(q[256].tolist(), using="d256"),
            params=exact)))
        times["edge_exact_256"].append(t)
        got, t = _timed(lambda: shard.query(_edge_cascade(q, CFG)))
        times["edge_cascade"].append(t)
        seg += int(got[0].id) == top
        spk += speaker[int(got[0].id) - 1] == speaker[top - 1]
        got, t = _timed(lambda: shard.query(_edge_cascade(q, small)))
        times["edge_cascade_1000"].append(t)
        seg_small += int(got[0].id) == top
        screen = {}
        for name, params in (("hnsw", None), ("exact", exact)):
            hits, t = _timed(lambda: shard.query(qe.QueryRequest(
                limit=CFG.shortlist[0], query=qe.Query.Nearest(q[64].tolist(), using="d64"),
                params=params)))
            times[f"edge_screen_{name}_64"].append(t)
            screen[name] = {int(h.id) for h in hits}
        screen_overlap.append(len(screen["hnsw"] & screen["exact"]) / max(1, len(screen["exact"])))
    info = shard.info()
    shard.close()
    base = float(np.median(times["edge_exact_256"]))
    return {
        "engine": "qdrant-edge-py (Qdrant's engine in process, no server or network); d64 HNSW "
                  "m=16 ef_construct=100, d128..d256 plain; baseline: the engine's exact 256-D "
                  "search; recall against NumPy exhaustive 256-D search",
        "segments": n, "queries": queries, "shortlist": list(CFG.shortlist),
        "upload_s": round(upload_s, 1), "optimize_s": round(optimize_s, 1),
        "indexed_vectors": int(info.indexed_vectors_count),
        "latency": {k: {**_ms(v), "ratio_to_edge_exact": round(float(np.median(v)) / base, 3)}
                    for k, v in times.items()},
        "edge_cascade_recall_at_1": seg / queries,
        "edge_cascade_speaker_agreement": spk / queries,
        "edge_cascade_1000_recall_at_1": seg_small / queries,
        "hnsw_screen_recall_of_exact_screen": round(float(np.mean(screen_overlap)), 4),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--local-n", type=int, default=5000)
    ap.add_argument("--edge-n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.local_n:
            out["local"] = local_mode(args.local_n, args.queries, Path(tmp))
            print(json.dumps({"local": out["local"]}), file=sys.stderr)
        if args.edge_n:
            out["edge"] = edge(args.edge_n, args.queries, Path(tmp))
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()

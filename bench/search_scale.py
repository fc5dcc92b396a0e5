"""Search at scale: the identify cascade against exhaustive 256-D search at N segments.

    python -m bench.search_scale [--sizes 100000,1000000] [--queries 10000] [--no-open]
                                 [--hnsw-max 200000] [--library-only] [--json OUT]

Vectors: generated with the spectrum of the default model's real embeddings of speech-dev
(``bench/speaker_vectors.py``: per-dimension between/within-speaker variances in the Matryoshka
basis; speakers of 50..150 segments); the realism check prints same- and different-speaker
cosines of real and generated vectors. Probes: 80 % new segments of stored speakers, 20 %
unseen speakers.

For each N: the library's index set (``IndexSet.build``: the screen ``choose_index`` picks,
flat 128/192/256) with its build time and memory; exhaustive 256-D flat search (the
baseline) and the cascade, one query at a time and in batches, with recall@1 / recall@10 of
the cascade's segments against exhaustive search and speaker-level top-1 agreement (max rule);
the same cascade with other 64-D screens (flat, SQ8, HNSW up to ``--hnsw-max``); then, unless
``--no-open``, a real database of N segments (SQLite + vectors): its first open (the build)
and second open as processes of their own (wall time and peak RSS), and ``speakerdb
identify FILE`` against ``speakerdb embed FILE`` end to end (the time identify adds to the
model's, and identify's peak RSS), with what the home holds on disk.

Memory: the search structures are measured from the set itself (the full-precision rows,
their ids and prefix norms, and the screen as FAISS serialises it), next to what one index
per nested dimension at full precision would take (the layout before: 64+128+192+256 floats
per segment).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import speaker_vectors as vec
from speakerdb.config import CascadeConfig
from speakerdb.index import IndexSet
from speakerdb.index.faiss_support import BLAS_MIN_QUERIES
from speakerdb.model.prefixes import DIMS, nested, prefix
from speakerdb.search.cascade import cascade_search, cascade_search_many

CFG = CascadeConfig()
BATCH = 64


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class RawScreen:
    """A plain FAISS index over rows 0..n-1 answering for segment ids 1..n."""

    def __init__(self, index):
        self.index, self.ntotal = index, index.ntotal

    def search(self, q, k):
        s, i = self.index.search(np.ascontiguousarray(q, dtype=np.float32), k)
        return s, np.where(i >= 0, i + 1, -1)


def per_query_ms(fn, items) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = [fn(x) for x in items]
    return 1e3 * (time.perf_counter() - t0) / len(items), out


def agreement(casc: list[list], exact_ids: np.ndarray, speaker_of: np.ndarray) -> dict:
    """Per probe: recall@1, recall@10 and speaker top-1 agreement (the speaker of the best
    segment: the max rule) of cascade hit lists against exhaustive search's ids."""
    r1, r10, spk = [], [], []
    for hits, ex in zip(casc, exact_ids):
        got = [h.segment_id for h in hits]
        r1.append(bool(got) and got[0] == ex[0])
        r10.append(len(set(got[:10]) & set(ex[:10].tolist())) / 10)
        spk.append(bool(got) and speaker_of[got[0]] == speaker_of[ex[0]])
    return {"recall@1": np.array(r1), "recall@10": np.array(r10), "speaker_top1": np.array(spk)}


def set_memory(iset) -> dict:
    """Bytes of the set's search structures, measured: the rows, ids and prefix norms held,
    and the screen as FAISS serialises it (its vectors, ids and lists)."""
    rows = iset.matrix.nbytes()
    screen = iset.screen.serialized_bytes() if iset.screen is not None else 0
    per_dim = iset.ntotal * sum(iset.dims) * 4
    return {"rows_gb": rows / 1e9, "screen_gb": screen / 1e9, "total_gb": (rows + screen) / 1e9,
            "per_dim_copies_gb": per_dim / 1e9, "ratio": per_dim / max(rows + screen, 1)}


def bench_size(n: int, spec, args, report: dict) -> None:
    import faiss

    print(f"\n=== N = {n:,} segments ===", flush=True)
    t0 = time.perf_counter()
    stream = n >= args.stream_from
    speaker, means, chunks = vec.synthetic_chunks(spec, n, seed=n)
    raw = None if stream else vec.synthetic_store(spec, n, seed=n)[0]
    qraw, qlabel = vec.synthetic_queries(spec, means, args.queries, seed=n + 1)
    speaker_of = np.concatenate([[-1], speaker])  # by segment id (ids are 1..n)
    ids = np.arange(1, n + 1, dtype=np.int64)
    if stream:
        print(f"{n:,} vectors of {means.shape[0]:,} speakers generated while the set is built "
              f"(--stream-from {args.stream_from:,}: never held twice)", flush=True)
    else:
        print(f"generated {n:,} vectors of {means.shape[0]:,} speakers in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    row = {"n": n, "speakers": int(means.shape[0]), "queries": args.queries, "streamed": stream}

    rss0 = rss_gb()
    t0 = time.perf_counter()
    where = Path(tempfile.gettempdir()) / "unused"
    if stream:
        iset = IndexSet.from_chunks(where, ((ids[a : a + x.shape[0]], x) for a, x in chunks()),
                                    n, "0" * 64, "bench")
    else:
        iset = IndexSet.build(where, ids, raw, "0" * 64, "bench")
    row["build_s"] = time.perf_counter() - t0
    row["screen"] = {"key": iset.by_dim[64].choice.key, "param": iset.by_dim[64].choice.param}
    row["memory"] = set_memory(iset)
    row["rss_growth_gb"] = rss_gb() - rss0
    m = row["memory"]
    print(f"vector set: screen {row['screen']['key']} {row['screen']['param']}, built in "
          f"{row['build_s']:.1f} s; search structures {m['total_gb']:.3f} GB (rows "
          f"{m['rows_gb']:.3f}, screen {m['screen_gb']:.3f}) against {m['per_dim_copies_gb']:.3f} "
          f"GB for one full-precision index per dimension ({m['ratio']:.2f}x); peak RSS "
          f"{rss_gb():.1f} GB", flush=True)
    by_dim = iset.by_dim
    q = nested(qraw, DIMS)
    one = [{d: q[d][i] for d in DIMS} for i in range(args.queries)]
    known = qlabel >= 0

    # exhaustive 256-D (the baseline): exact ids for every query (batched), timings
    t0 = time.perf_counter()
    _, exact_ids = by_dim[256].search(q[256], 10)
    ex_batch_ms = 1e3 * (time.perf_counter() - t0) / args.queries
    # FAISS's own flat search at two BLAS thresholds: a plain IndexFlatIP of the same vectors
    # (a second copy: not when streamed)
    flat256 = faiss.IndexFlatIP(256)
    if raw is not None:
        flat256.add(prefix(raw, 256))
    blas = {}
    thresholds = (BLAS_MIN_QUERIES, faiss.cvar.distance_compute_blas_threshold)
    for threshold in thresholds if raw is not None else ():
        saved = faiss.cvar.distance_compute_blas_threshold
        faiss.cvar.distance_compute_blas_threshold = threshold
        t0 = time.perf_counter()
        for a in range(0, min(args.queries, 4 * BATCH), BATCH):
            flat256.search(q[256][a : a + BATCH], 10)
        blas[threshold] = 1e3 * (time.perf_counter() - t0) / min(args.queries, 4 * BATCH)
        single = min(args.queries, 20)
        blas[f"single-{threshold}"], _ = per_query_ms(
            lambda i: flat256.search(q[256][i : i + 1], 10), range(single))
        faiss.cvar.distance_compute_blas_threshold = saved
    flat256.reset()  # frees this second copy of the 256-D vectors
    single = min(args.queries, args.single_exhaustive)
    ex_ms, _ = per_query_ms(lambda i: by_dim[256].search(q[256][i : i + 1], 10), range(single))
    row["exhaustive"] = {"ms": ex_ms, "batched_ms": ex_batch_ms,
                         "blas_threshold_ms": {str(k): v for k, v in blas.items()}}
    lo, hi = BLAS_MIN_QUERIES, faiss.cvar.distance_compute_blas_threshold
    print(f"exhaustive 256-D flat: {ex_ms:.2f} ms/query single; batched {ex_batch_ms:.2f} "
          "ms/query." + (f" FAISS BLAS threshold {lo} vs {hi}: batches of {BATCH} "
                         f"{blas[lo]:.2f} vs {blas[hi]:.2f} ms/query, single queries "
                         f"{blas[f'single-{lo}']:.2f} vs {blas[f'single-{hi}']:.2f} ms"
                         if blas else ""), flush=True)

    def cascade_row(name: str, indexes, build_s: float | None = None) -> dict:
        # accuracy over every probe from the batched cascade (tests/unit/test_cascade.py: it
        # returns exactly what one query at a time does); time per query in batches of BATCH
        t0 = time.perf_counter()
        hits = []
        for a in range(0, args.queries, BATCH):
            hits += cascade_search_many(indexes, {d: q[d][a : a + BATCH] for d in DIMS}, CFG)
        batch_ms = 1e3 * (time.perf_counter() - t0) / args.queries
        # paired timing: each query's exhaustive search right before its cascade, so load from
        # anything else on the machine falls on both alike; medians of the pairs. The probes
        # timed are spread over known and unseen voices alike. The exhaustive search streams
        # the whole 256-D index through the caches, so each cascade starts cold; "steady" times
        # the same cascades back to back, as a service answering identify queries runs them.
        timed = np.linspace(0, args.queries - 1, min(args.queries, args.single_exhaustive))
        t_ex, t_cas = [], []
        for i in timed.astype(int):
            t0 = time.perf_counter()
            by_dim[256].search(q[256][i : i + 1], 10)
            t1 = time.perf_counter()
            cascade_search(indexes, one[i], CFG)
            t_ex.append(t1 - t0)
            t_cas.append(time.perf_counter() - t1)
        steady_ms, _ = per_query_ms(lambda i: cascade_search(indexes, one[i], CFG),
                                    timed.astype(int))
        ex_med, ms = 1e3 * float(np.median(t_ex)), 1e3 * float(np.median(t_cas))
        per = agreement(hits, exact_ids, speaker_of)
        acc = {k: float(v.mean()) for k, v in per.items()}
        split = {f"{k}_{who}": float(v[m].mean()) if m.any() else None
                 for k, v in per.items() if k != "recall@10"
                 for who, m in (("known", known), ("unseen", ~known))}
        out = {"screen": name, "ms": ms, "exhaustive_ms": ex_med, "speedup": ex_med / ms,
               "mean_ms": 1e3 * float(np.mean(t_cas)), "steady_ms": steady_ms,
               "steady_speedup": ex_med / steady_ms, "batched_ms": batch_ms,
               "batched_speedup": ex_batch_ms / batch_ms, **acc, **split, "build_s": build_s}
        print(f"  {name:<28} {ms:7.2f} ms vs {ex_med:6.1f} {out['speedup']:6.1f}x | steady "
              f"{steady_ms:6.2f} ms {out['steady_speedup']:5.1f}x | batched "
              f"{batch_ms:6.2f} ms "
              f"{out['batched_speedup']:5.1f}x | r@1 {acc['recall@1']:.4f} (known "
              f"{out['recall@1_known']:.4f}) r@10 {acc['recall@10']:.4f} speaker "
              f"{acc['speaker_top1']:.4f} (known {out['speaker_top1_known']:.4f}, "
              f"unseen {out['speaker_top1_unseen'] or 0:.4f})"
              + (f" | build {build_s:.1f} s" if build_s is not None else ""), flush=True)
        return out

    sizes = ", ".join(f"k{d} {k}" for d, k in CFG.stages(DIMS))
    print(f"cascade ({sizes}), {args.queries} "
          f"probes in batches of {BATCH} for accuracy; single-query ms are medians of "
          f"{min(args.queries, args.single_exhaustive)} queries each timed right after its "
          "exhaustive search (cold caches); steady: the same queries back to back:", flush=True)
    row["cascade"] = [cascade_row(f"library: {row['screen']['key']}", by_dim, row["build_s"])]
    if args.library_only or stream:
        if stream and not args.library_only:
            print("  (alternative screens skipped: streamed sets hold the vectors once)")
        if not args.no_open:
            iset = by_dim = None  # noqa: F841 - the set's memory back first
            gc.collect()
            row["open"] = open_database(raw if raw is not None else chunks, speaker, args)
        report["sizes"].append(row)
        return
    x64 = np.ascontiguousarray(nested(raw, (64,))[64])
    alternatives = []
    flat = faiss.IndexFlatIP(64)
    t0 = time.perf_counter()
    flat.add(x64)
    alternatives.append(("Flat", flat, time.perf_counter() - t0))
    sq = faiss.IndexScalarQuantizer(64, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    t0 = time.perf_counter()
    sq.train(x64)
    sq.add(x64)
    alternatives.append(("SQ8", sq, time.perf_counter() - t0))
    if n <= args.hnsw_max:
        hnsw = faiss.IndexHNSWFlat(64, 32, faiss.METRIC_INNER_PRODUCT)
        t0 = time.perf_counter()
        hnsw.add(x64)
        screen_k = CFG.stages(DIMS)[0][1]
        hnsw.hnsw.efSearch = screen_k  # fewer than k results come back when efSearch < k
        alternatives.append((f"HNSW32 (efSearch {screen_k})", hnsw, time.perf_counter() - t0))
    else:
        print(f"  (HNSW skipped above --hnsw-max {args.hnsw_max:,}: its build adds only a few "
              "thousand vectors/s on this machine)", flush=True)
    for name, index, build_s in alternatives:
        screen_set = {**by_dim, 64: RawScreen(index)}
        row["cascade"].append(cascade_row(f"64-D {name}", screen_set, build_s))
        del screen_set
    del alternatives, flat, sq, x64
    if not args.no_open:
        row["open"] = open_database(raw, speaker, args)
    report["sizes"].append(row)


def run_process(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, peak RSS GB, result) of ``cmd`` run as a process of its own."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr[-2000:]}")
    return wall, int(p.stderr.strip().splitlines()[-1]) / 2**20, p


def open_database(raw, speaker: np.ndarray, args) -> dict:
    """A real database of these vectors: bulk-written store; its first open (builds the
    vectors) and second open, each a process of its own; then ``speakerdb identify`` against
    ``speakerdb embed`` of a real speech file, end to end, twice each (the better kept)."""
    from speakerdb.api import SpeakerDB
    from speakerdb.model.registry import load_embedder

    emb = load_embedder("campplus", "cpu")
    probe = next(iter(sorted(vec.SPEECH.rglob("*.wav"))), None)
    py = sys.executable
    opener = ("import sys, time; from speakerdb.api import SpeakerDB; t0 = time.perf_counter(); "
              "db = SpeakerDB.open(sys.argv[1]); db.indexes.ensure_open(); "
              "print(time.perf_counter() - t0, db.indexes.plan()); db.close()")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        home = Path(tmp) / "home"
        SpeakerDB.create(home, model="campplus", embedder=emb).close()
        t0 = time.perf_counter()
        db = SpeakerDB.open(home, catch_up=False)
        vec.write_store(db.store.engine, raw if isinstance(raw, np.ndarray) else raw(), speaker)
        db.close()
        write_s = time.perf_counter() - t0
        build_wall, build_rss, _ = run_process([py, "-c", opener, str(home)])
        open_wall, open_rss, p = run_process([py, "-c", opener, str(home)])
        open_s, plan = float(p.stdout.split()[0]), p.stdout.split()[1]
        with SpeakerDB.open(home) as db:
            described = db.indexes.describe()
        cli = [py, "-m", "speakerdb"]
        embed = [run_process([*cli, "embed", str(probe), "--model", "campplus", "--json"])
                 for _ in range(2)] if probe else []
        ident = [run_process([*cli, "identify", str(probe), "--home", str(home), "--json"])
                 for _ in range(2)] if probe else []
        files = {p.name: p.stat().st_size for p in home.iterdir() if p.is_file()}
    store = sum(v for k, v in files.items() if k.startswith("speakerdb.sqlite"))
    vectors = sum(v for k, v in files.items() if k.startswith(("vectors", "screen")))
    n = speaker.size
    out = {"store_write_s": write_s, "first_open_build_s": build_wall,
           "first_open_peak_rss_gb": build_rss, "open_process_s": open_wall,
           "open_s": open_s, "open_peak_rss_gb": open_rss, "plan_after_open": plan,
           "vectors": described,
           "embed_process_s": min(w for w, _, _ in embed) if embed else None,
           "identify_process_s": min(w for w, _, _ in ident) if ident else None,
           "identify_peak_rss_gb": max(r for _, r, _ in ident) if ident else None,
           "disk": {"store_gb": store / 1e9, "vectors_gb": vectors / 1e9,
                    "home_gb": sum(files.values()) / 1e9,
                    "home_gb_per_million": sum(files.values()) / 1e9 * 1e6 / n,
                    "files": files}}
    if embed:
        out["identify_minus_embed_s"] = out["identify_process_s"] - out["embed_process_s"]
    print(f"database: store written in {write_s:.1f} s; first open (build) {build_wall:.1f} s, "
          f"peak RSS {build_rss:.2f} GB; second open {open_s:.3f} s in a {open_wall:.2f} s "
          f"process (plan then: {plan}), peak RSS {open_rss:.2f} GB", flush=True)
    if embed:
        print(f"  speakerdb identify {out['identify_process_s']:.2f} s vs speakerdb embed "
              f"{out['embed_process_s']:.2f} s: +{out['identify_minus_embed_s']:.2f} s; identify "
              f"peak RSS {out['identify_peak_rss_gb']:.2f} GB", flush=True)
    d = out["disk"]
    print(f"  home {d['home_gb']:.2f} GB ({d['home_gb_per_million']:.2f} GB per million "
          f"segments): store {d['store_gb']:.2f} GB, vectors {d['vectors_gb']:.2f} GB", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=10000)
    ap.add_argument("--single-exhaustive", type=int, default=300,
                    help="queries timed one at a time, each paired with an exhaustive search")
    ap.add_argument("--hnsw-max", type=int, default=200_000)
    ap.add_argument("--no-open", action="store_true")
    ap.add_argument("--library-only", action="store_true",
                    help="time the library's own screen only, not the flat/SQ8/HNSW alternatives")
    ap.add_argument("--stream-from", type=int, default=5_000_000,
                    help="from this size the vectors are generated as the set is built, never "
                         "held twice (no FAISS flat copy, no alternative screens)")
    ap.add_argument("--tmp", default=None, help="folder for the temporary databases")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    import faiss

    real, real_spk = vec.real_embeddings()
    spec = vec.spectrum(real, real_spk)
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads; spectrum from "
          f"{real.shape[0]} real embeddings of {np.unique(real_spk).size} speakers")
    x, s, _ = vec.synthetic_store(spec, 50_000)
    report = {"faiss": faiss.__version__, "threads": faiss.omp_get_max_threads(),
              "realism": {}, "sizes": []}
    print(f"{'realism':<10} {'dim':>4} {'same mean':>10} {'same sd':>8} {'diff mean':>10} "
          f"{'diff sd':>8}")
    for d in (64, 256):
        for name, (a, b) in (("real", (real, real_spk)), ("generated", (x, s))):
            r = vec.pair_cosines(a, b, d)
            report["realism"][f"{name}-{d}"] = r
            print(f"{name:<10} {d:>4} {r[0]:>10.3f} {r[1]:>8.3f} {r[2]:>10.3f} {r[3]:>8.3f}")
    del x, s
    for n in (int(v) for v in args.sizes.split(",")):
        bench_size(n, spec, args, report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How long `check` takes: the full check (every stored vector compared with each index, every
index file hashed against its JSON) and `check --quick` (64 vectors) on a real database of N
synthetic segments.

    python -m bench.check_time [--size 100000] [--million] [--tmp DIR] [--json OUT]

Vectors: ``bench/speaker_vectors.py`` (the spectrum of the default model's real embeddings of
speech-dev; speakers of 50..150 segments). The store is bulk-written (SQLite), the first open
builds and saves the indexes (a 64-D IVF screen from 200k segments), then each check runs on a
fresh open, as `speakerdb check` does. ``--million`` times N = 1,000,000 instead. Prints one
JSON document (also written to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import speaker_vectors as vec
from speakerdb.api import SpeakerDB


def write_store(home: Path, raw: np.ndarray, speaker: np.ndarray) -> None:
    with SpeakerDB.open(home, catch_up=False) as db:
        vec.write_store(db.store.engine, raw, speaker)


def timed_check(home: Path, quick: bool) -> dict:
    t0 = time.perf_counter()
    with SpeakerDB.open(home, catch_up=False) as db:
        report = db.check(quick=quick)
    wall = time.perf_counter() - t0
    if not report.ok:
        raise SystemExit(f"bench: check failed on a fresh database: {report.problems}")
    return {"mode": report.mode, "check_s": round(report.seconds, 3),
            "with_open_s": round(wall, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--million", action="store_true", help="N = 1,000,000")
    ap.add_argument("--tmp", default=None, help="folder for the temporary database")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    import faiss

    from speakerdb.model.registry import load_embedder

    n = 1_000_000 if args.million else args.size
    real, real_spk = vec.real_embeddings()
    raw, speaker, _ = vec.synthetic_store(vec.spectrum(real, real_spk), n)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        home = Path(tmp) / "home"
        SpeakerDB.create(home, model="campplus", embedder=load_embedder("campplus", "cpu")).close()
        t0 = time.perf_counter()
        write_store(home, raw, speaker)
        write_s = time.perf_counter() - t0
        del raw, speaker
        t0 = time.perf_counter()
        with SpeakerDB.open(home) as db:  # builds and saves the indexes
            screen = db.indexes.describe()[min(db.indexes.dims())]["index_key"]
        build_s = time.perf_counter() - t0
        index_bytes = sum(p.stat().st_size for p in [*home.glob("vectors-*"),
                                                     *home.glob("screen-*")])
        full = timed_check(home, quick=False)
        quick = timed_check(home, quick=True)
    out = {"segments": n, "threads": faiss.omp_get_max_threads(), "screen": screen,
           "index_gb": round(index_bytes / 1e9, 3), "store_write_s": round(write_s, 1),
           "first_open_build_s": round(build_s, 1), "full": full, "quick": quick,
           "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

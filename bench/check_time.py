"""How long `check` takes: the full check (every stored vector compared with each index, every
index file hashed against its JSON) and `check --quick` (64 vectors) on a real database of N
synthetic segments.

    python bench/check_time.py [--size 100000] [--million] [--tmp DIR] [--json OUT]

Vectors: ``bench/_vectors.py`` (the spectrum of the default model's real embeddings of
speech-dev; speakers of 50..150 segments). The store is bulk-written (SQLite), the first open
builds and saves the indexes (a 64-D IVF screen from 200k segments), then each check runs on a
fresh open, as `speakerdb check` does. ``--million`` times N = 1,000,000 instead. Prints one
JSON document (also written to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _vectors as vec  # noqa: E402

from speakerdb.api import SpeakerDB  # noqa: E402


def write_store(home: Path, raw: np.ndarray, speaker: np.ndarray) -> None:
    """Speakers, one recording per speaker and its segments, written straight to SQLite."""
    from sqlalchemy import insert

    from speakerdb.store.models import Recording, Segment, Speaker

    with SpeakerDB.open(home, catch_up=False) as db:
        engine = db.store.engine
        labels = np.unique(speaker)
        with engine.begin() as c:
            c.execute(insert(Speaker.__table__), [{"id": int(s) + 1, "label": f"spk{s:06d}"}
                                                  for s in labels])
            c.execute(insert(Recording.__table__), [
                {"id": int(s) + 1, "sha256": f"{int(s):064x}", "path": f"synthetic/{s}.wav",
                 "speaker_id": int(s) + 1, "duration_s": 300.0, "sample_rate": 16000,
                 "channels": 1, "source": "synthetic"} for s in labels])
        start = 3.0 * (np.arange(speaker.size) - np.searchsorted(speaker, speaker))
        for a in range(0, raw.shape[0], 100_000):
            part = raw[a : a + 100_000].astype("<f4")
            with engine.begin() as c:
                c.execute(insert(Segment.__table__), [
                    {"id": a + i + 1, "recording_id": int(speaker[a + i]) + 1,
                     "start_s": float(start[a + i]), "end_s": float(start[a + i]) + 3.0,
                     "vector": part[i].tobytes()}
                    for i in range(part.shape[0])])


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
            screen = db.indexes.set.by_dim[64].choice.key
        build_s = time.perf_counter() - t0
        index_bytes = sum(p.stat().st_size for p in home.glob("index-*.faiss"))
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

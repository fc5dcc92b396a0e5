"""Model speed: embeddings/s for 3 s and 10 s clips at batch 1 and 16, and the end-to-end ingest
rate on real speech against pure model time (the pipeline's overhead).

    flock /tmp/speakerdb-bench.lock python bench/model_speed.py [--model SPEC] [--speech DIR]
        [--device cpu|cuda|auto] [--eager]

Clips are seeded noise at 0.1 sigma (model time does not depend on content). Pure model time for
the ingest ratio is measured on the very segments the ingest embeds, with the same embedder, in
the same run (before and after the ingest; the mean of the two). ``model/wall`` is pure model
time over ingest wall time: 0.9 or more means the decode, write and bookkeeping add at most
about 10 %. ``--eager`` runs campplus without the optimised path (``optimize=False``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from speakerdb.api import SpeakerDB
from speakerdb.audio import AudioPolicy, prepare
from speakerdb.config import IngestConfig
from speakerdb.ingest.runner import embed_segments
from speakerdb.model.registry import load_embedder

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech-dev"


def clips_per_second(emb, seconds: float, batch: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
             for _ in range(batch)]
    emb(clips)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        emb(clips)
        times.append(time.perf_counter() - t0)
    return batch / float(np.median(times))


def ingest_overhead(emb, spec: str, speech: Path) -> tuple[float, float, dict]:
    """(pure model seconds, ingest wall seconds, ingest stats) on every file under ``speech``."""
    files = sorted(speech.rglob("*.wav"))
    segs = [s.samples for f in files for s in prepare(f, AudioPolicy()).segments]
    embed_segments(emb, segs[:2], 16)

    def model_time() -> float:
        t0 = time.perf_counter()
        embed_segments(emb, segs, 16)
        return time.perf_counter() - t0

    before = model_time()
    with tempfile.TemporaryDirectory() as tmp:
        with SpeakerDB.create(Path(tmp) / "home", model=spec, embedder=emb) as db:
            t0 = time.perf_counter()
            stats = db.ingest([speech], config=IngestConfig())
            wall = time.perf_counter() - t0
    return (before + model_time()) / 2, wall, stats.as_dict()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--speech", type=Path, default=SPEECH)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--eager", action="store_true", help="campplus without the optimised path")
    args = ap.parse_args()
    emb = load_embedder(args.model, args.device, optimize=not args.eager)
    print(f"model {emb.name} ({emb.sha256[:12]}){' eager' if args.eager else ''}, "
          f"device {args.device}, module {type(emb.module).__name__}")
    print(f"{'clip':>6} {'batch':>6} {'emb/s':>8} {'RTF':>7}")
    for seconds in (3.0, 10.0):
        for batch in (1, 16):
            rate = clips_per_second(emb, seconds, batch, args.repeats if batch == 1 else 2)
            print(f"{seconds:>5.0f}s {batch:>6} {rate:>8.2f} {1 / (rate * seconds):>7.4f}")
    if not args.speech.exists():
        print(f"ingest: skipped (no speech at {args.speech})", file=sys.stderr)
        return 0
    model_s, wall, stats = ingest_overhead(emb, args.model, args.speech)
    n, sec = stats["inputs"], stats["seconds"]
    print(f"ingest of {n} files ({stats['segments']} segments): {n / wall:.2f} files/s, "
          f"wall {wall:.2f} s = decode {sec['decode']:.2f} + embed {sec['embed']:.2f} + "
          f"write {sec['write']:.2f} + other {wall - sum(sec.values()):.2f}")
    print(f"pure model {model_s:.2f} s on the same segments: model/wall {model_s / wall:.3f} "
          f"(overhead {100 * (wall / model_s - 1):.1f} % of model time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

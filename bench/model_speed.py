"""Model speed: embeddings/s for 3 s and 10 s clips at batch 1 and 16, and the end-to-end ingest
rate on real speech as a ratio to pure model time (the pipeline's overhead).

    python bench/model_speed.py [--model SPEC] [--speech DIR] [--device cpu|cuda|auto]

Clips are seeded noise at 0.1 sigma (model time does not depend on content). Pure model time for
the ingest ratio is measured on the very segments the ingest embeds, in the same run.
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


def ingest_overhead(spec: str, device: str, speech: Path) -> tuple[float, float, int]:
    files = sorted(speech.rglob("*.wav"))
    emb = load_embedder(spec, device)
    segs = [s.samples for f in files for s in prepare(f, AudioPolicy()).segments]
    embed_segments(emb, segs[:2], 16)
    t0 = time.perf_counter()
    embed_segments(emb, segs, 16)
    model_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        with SpeakerDB.create(Path(tmp) / "home", model=spec, embedder=emb) as db:
            t0 = time.perf_counter()
            db.ingest([speech], config=IngestConfig())
            wall = time.perf_counter() - t0
    return model_s, wall, len(files)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--speech", type=Path, default=SPEECH)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    emb = load_embedder(args.model, args.device)
    print(f"model {emb.name} ({emb.sha256[:12]}), device {args.device}")
    print(f"{'clip':>6} {'batch':>6} {'emb/s':>8} {'RTF':>7}")
    for seconds in (3.0, 10.0):
        for batch in (1, 16):
            rate = clips_per_second(emb, seconds, batch, args.repeats if batch == 1 else 2)
            print(f"{seconds:>5.0f}s {batch:>6} {rate:>8.2f} {1 / (rate * seconds):>7.4f}")
    if not args.speech.exists():
        print(f"ingest: skipped (no speech at {args.speech})", file=sys.stderr)
        return 0
    model_s, wall, n = ingest_overhead(args.model, args.device, args.speech)
    print(f"ingest of {n} files: pure model {model_s:.2f} s, end to end {wall:.2f} s, "
          f"overhead {100 * (wall / model_s - 1):.1f} % (ratio {wall / model_s:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

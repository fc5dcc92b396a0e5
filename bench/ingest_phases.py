"""Ingest throughput by phase on real speech, one transaction per file against batches.

    python bench/ingest_phases.py [SPEECH_DIR] [--model spectral]

Prints files/s and seconds per phase (decode, embed, write) for each batch size, and the speed of
each run as a ratio against the one-file-per-transaction baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from speakerdb.api import SpeakerDB
from speakerdb.config import IngestConfig

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech-dev"


def run(source: Path, model: str, batch: int) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        with SpeakerDB.create(Path(tmp) / "home", model=model) as db:
            t0 = time.perf_counter()
            stats = db.ingest([source], config=IngestConfig(files_per_batch=batch))
            wall = time.perf_counter() - t0
    return wall, stats.as_dict()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--model", default="spectral")
    ap.add_argument("--batches", default="1,8,32,128")
    args = ap.parse_args()
    if not args.source.exists():
        print(f"bench: no speech at {args.source}", file=sys.stderr)
        return 2
    print(f"source {args.source}, model {args.model}")
    print(f"{'batch':>6} {'files':>6} {'wall s':>8} {'files/s':>8} {'decode':>7} {'embed':>7} "
          f"{'write':>7} {'vs batch 1':>10}")
    base = None
    for b in (int(x) for x in args.batches.split(",")):
        wall, s = run(args.source, args.model, b)
        base = base or wall
        sec = s["seconds"]
        print(f"{b:>6} {s['inputs']:>6} {wall:>8.2f} {s['inputs'] / wall:>8.1f} "
              f"{sec['decode']:>7.2f} {sec['embed']:>7.2f} {sec['write']:>7.2f} {base / wall:>9.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The store on SQLite against PostgreSQL: ingest write phase and identify latency, same data.

    python bench/store_backends.py [--speakers 20] [--utterances 10] [--probes 50]
                                   [--batch 32] [--db-url postgresql+psycopg://...]

Builds a synthetic corpus (speakers x utterances of 1.5 s), ingests it with the spectral model
into a home on SQLite and a home on PostgreSQL (``--db-url``, an empty database; without it a
throwaway server is started as the tests do: ``tests/pg.py``, Debian's ``postgresql``), then
identifies ``--probes`` files in each (every request reads the store generation first, as a
server does). Prints the write phase (seconds, and per file), identify latency (median and
p90, ms), and PostgreSQL's numbers as ratios of SQLite's measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RATE = 16000


def write_corpus(root: Path, speakers: int, utterances: int) -> list[Path]:
    """Speaker folders of harmonic voices with a per-speaker pitch and noise (1.5 s each)."""
    import soundfile as sf

    paths = []
    t = np.arange(int(1.5 * RATE)) / RATE
    for k in range(speakers):
        rng = np.random.default_rng(k)
        f0, weights = 90 + 9 * k, rng.uniform(0.2, 1.0, 8)
        d = root / f"spk{k:03d}"
        d.mkdir(parents=True, exist_ok=True)
        for j in range(utterances):
            r = np.random.default_rng(1000 * k + j)
            wave = sum(w * np.sin(2 * np.pi * f0 * (h + 1) * (1 + 0.01 * r.standard_normal()) * t)
                       for h, w in enumerate(weights))
            wave = 0.1 * wave / np.abs(wave).max() + 0.005 * r.standard_normal(t.size)
            p = d / f"utt{j}.wav"
            sf.write(p, wave.astype(np.float32), RATE, subtype="PCM_16")
            paths.append(p)
    return paths


def measure(home: Path, db_url: str | None, corpus: Path, probes: list[Path],
            batch: int) -> dict:
    from speakerdb.api import SpeakerDB
    from speakerdb.config import IngestConfig

    with SpeakerDB.create(home, model="spectral", db_url=db_url) as db:
        stats = db.ingest([corpus], config=IngestConfig(files_per_batch=batch, workers=0))
        db.identify(probes[0])  # warm: the gallery and caches
        times, answers = [], []
        for p in probes:
            t0 = time.perf_counter()
            r = db.identify(p)
            times.append(time.perf_counter() - t0)
            answers.append((r.speaker, r.score))
    times.sort()
    return {"write_s": stats.write_s, "files": stats.added,
            "identify_ms": 1000 * statistics.median(times),
            "identify_p90_ms": 1000 * times[int(0.9 * (len(times) - 1))], "answers": answers}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speakers", type=int, default=20)
    ap.add_argument("--utterances", type=int, default=10)
    ap.add_argument("--probes", type=int, default=50)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--db-url", default=None, help="an empty PostgreSQL database")
    args = ap.parse_args()
    server = None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = write_corpus(root / "corpus", args.speakers, args.utterances)
        probes = paths[:: max(1, len(paths) // args.probes)][: args.probes]
        url = args.db_url
        if url is None:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.pg import _bin_dir, _start

            if _bin_dir() is None:
                print("bench: no PostgreSQL (give --db-url, or install Debian's postgresql)",
                      file=sys.stderr)
                return 2
            server = _start()
            url = server.url(server.create_database())
        try:
            sqlite = measure(root / "home-sqlite", None, root / "corpus", probes, args.batch)
            pg = measure(root / "home-pg", url, root / "corpus", probes, args.batch)
        finally:
            if server is not None:
                server.pg_ctl("stop", "-m", "immediate")
                import shutil

                shutil.rmtree(server.data, ignore_errors=True)
    same = all(a[0] == b[0] and abs(a[1] - b[1]) <= 1e-6
               for a, b in zip(sqlite["answers"], pg["answers"]))
    n = sqlite["files"]
    print(f"{n} files ({args.speakers} speakers x {args.utterances}), batch {args.batch}, "
          f"{len(probes)} probes; same answers: {same}")
    print(f"{'store':<11} {'write s':>8} {'ms/file':>8} {'identify ms':>12} {'p90 ms':>8}")
    for name, m in (("sqlite", sqlite), ("postgresql", pg)):
        print(f"{name:<11} {m['write_s']:>8.3f} {1000 * m['write_s'] / max(n, 1):>8.2f} "
              f"{m['identify_ms']:>12.2f} {m['identify_p90_ms']:>8.2f}")
    print(f"postgresql / sqlite: write {pg['write_s'] / max(sqlite['write_s'], 1e-9):.2f}x, "
          f"identify {pg['identify_ms'] / max(sqlite['identify_ms'], 1e-9):.2f}x")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

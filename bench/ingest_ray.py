"""Ingest on Ray against local ingest: files/s on the same files in the same run.

    flock /tmp/speakerdb-bench.lock python -m bench.ingest_ray [--speech DIR] [--files K]
        [--model campplus] [--formats wav,m4a] [--rounds R] [--cpus N] [--json OUT]

The files: the first K (default all 293) of speech-dev's manifest as they are (wav), and
AAC copies of the same files in an .m4a (MP4) container made in a temporary folder (PyAV,
as ``bench/ingest_scale.py`` makes them). For each format, a local ingest (``--engine local``,
the default worker processes: one per core) and a Ray ingest (``--engine ray``, its default
actors: one per two CPUs) into fresh databases with the same model (default the real default
model, campplus), ``--rounds`` times (default 2), alternating which runs first. Ray runs on a local Ray started once
beforehand with ``--cpus`` CPUs (default: the cores), as a cluster is running before an ingest
is given to it; its start-up is reported apart (``ray_start_s``). The databases' models are
loaded before the clock starts; the Ray actors load theirs on the clock.

Prints JSON: per format and round, files/s of each engine over the ingest's wall time and
their phase seconds; per format, the median files/s of each engine and ``ray_over_local``,
the ratio of the medians (target on 2 cores: 0.8 or more), and each round's ratio; plus the
load average before and after each round (other work on the machine skews a round whose load
changed midway: the rounds and the alternating order are there to see it).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech-dev"


def _manifest(rows: list[dict], root: Path, suffix: str | None, out: Path) -> Path:
    """A manifest of ``rows`` under ``root``, the files' suffix replaced by ``suffix``."""
    with open(out, "w") as fh:
        fh.write("path,speaker\n")
        for r in rows:
            p = root / r["path"]
            fh.write(f"{p.with_suffix(suffix) if suffix else p},{r['speaker']}\n")
    return out


def _m4a_copies(rows: list[dict], speech: Path, dst: Path) -> None:
    import soundfile as sf

    from bench.ingest_scale import _write_m4a

    for r in rows:
        x, rate = sf.read(speech / r["path"], dtype="float32", always_2d=True)
        assert rate == 16000, f"{r['path']}: {rate} Hz (the copies are written at 16 kHz)"
        p = (dst / r["path"]).with_suffix(".m4a")
        p.parent.mkdir(parents=True, exist_ok=True)
        _write_m4a(p, x.mean(axis=1))


def _ingest(manifest: Path, home: Path, model: str, engine: str) -> dict:
    from speakerdb.api import SpeakerDB
    from speakerdb.config import IngestConfig

    with SpeakerDB.create(home, model=model, device="cpu") as db:
        db.embedder  # loaded before the clock starts, for both engines
        t0 = time.perf_counter()
        stats = db.ingest([manifest], config=IngestConfig(engine=engine))
        wall = time.perf_counter() - t0
        assert db.check().ok
    doc = stats.as_dict()
    return {"files_per_s": round(stats.inputs / wall, 3), "wall_s": round(wall, 2),
            "added": stats.added, "failed": stats.failed, "seconds": doc["seconds"],
            "workers": stats.workers}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speech", type=Path, default=SPEECH)
    ap.add_argument("--files", type=int, default=0, help="the first K files (0: all)")
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--formats", default="wav,m4a")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not (args.speech / "manifest.csv").exists():
        print(f"ingest_ray: no speech-dev at {args.speech}", file=sys.stderr)
        return 2
    rows = list(csv.DictReader(open(args.speech / "manifest.csv")))
    rows = rows[: args.files] if args.files else rows
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # the Ray workers import speakerdb from here (an installed speakerdb needs nothing)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    import ray

    doc = {"files": len(rows), "model": args.model, "cpus": args.cpus,
           "load_before": os.getloadavg()}
    t0 = time.perf_counter()
    ray.init(num_cpus=args.cpus, object_store_memory=500 * 2**20, include_dashboard=False,
             log_to_driver=False)
    doc["ray_start_s"] = round(time.perf_counter() - t0, 2)
    try:
        with tempfile.TemporaryDirectory(prefix="ingest-ray-") as tmp:
            tmp = Path(tmp)
            for k, fmt in enumerate(args.formats.split(",")):
                if fmt == "wav":
                    manifest = _manifest(rows, args.speech, None, tmp / "wav.csv")
                else:
                    _m4a_copies(rows, args.speech, tmp / "m4a")
                    manifest = _manifest(rows, tmp / "m4a", ".m4a", tmp / "m4a.csv")
                rounds = []
                for r in range(args.rounds):
                    order = ("local", "ray") if (k + r) % 2 == 0 else ("ray", "local")
                    load = os.getloadavg()[0]
                    runs = {e: _ingest(manifest, tmp / f"{fmt}-{r}-{e}", args.model, e)
                            for e in order}
                    runs.update(order=list(order), load=[round(load, 2),
                                                         round(os.getloadavg()[0], 2)],
                                ray_over_local=round(runs["ray"]["files_per_s"]
                                                     / runs["local"]["files_per_s"], 3))
                    rounds.append(runs)
                    print(f"ingest_ray: {fmt} round {r}: ray/local = {runs['ray_over_local']}"
                          f" (load {runs['load']})", file=sys.stderr, flush=True)
                med = {e: statistics.median(x[e]["files_per_s"] for x in rounds)
                       for e in ("local", "ray")}
                doc[fmt] = {"local_files_per_s": med["local"], "ray_files_per_s": med["ray"],
                            "ray_over_local": round(med["ray"] / med["local"], 3),
                            "rounds": rounds}
    finally:
        ray.shutdown()
    doc["load_after"] = os.getloadavg()
    text = json.dumps(doc, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

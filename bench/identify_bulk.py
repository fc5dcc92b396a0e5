"""Bulk identify: probes/s of ``speakerdb identify MANIFEST`` against a database of N segments.

    python -m bench.identify_bulk [--size 1000000] [--probes 10000] [--batch 16] [--json OUT]

The database: the default model's real embeddings of 2 files of each of 48 speech-dev speakers
(ingested), among ``--size`` segments in all; the rest are generated distractors with the spectrum
of that model's real embeddings (``bench/speaker_vectors.py``), written straight into the store.
A second database holds the same real recordings alone. Probes: ``--probes`` crops (2-6 s) of
the speech-dev files not ingested, three quarters of them from the 48 enrolled speakers and the
rest from the 15 speakers never enrolled (the right answer: ``unknown``), listed in a manifest
whose ``speaker`` column is the truth.

Each database answers the same manifest with ``speakerdb identify MANIFEST --json -q`` run as a
process of its own (``/usr/bin/time``: peak RSS): probes/s, the share of the wall time in decode,
embed and search (identify's own summary), and the accuracy of its decisions at its own
operating point; the probes/s at N segments as a ratio of those against the small database,
measured in the same run. Crops of one file are not independent trials: the accuracy figures are
of this probe set, not a model evaluation (``bench/eval_speech_dev.py`` is).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import speaker_vectors as vec

ENROLLED, ENROLL_FILES = 48, 2


def split(speech: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(files to ingest, [(probe source file, truth)]): the first ``ENROLLED`` speakers
    (sorted) give ``ENROLL_FILES`` files each to the database and the rest as probes; the
    others' files are all probes, their truth a label no database holds."""
    speakers = sorted(p for p in speech.iterdir() if p.is_dir() and any(p.glob("*.wav")))
    enroll, probes = [], []
    for i, d in enumerate(speakers):
        files = sorted(d.glob("*.wav"))
        if i < ENROLLED and len(files) > ENROLL_FILES:
            enroll += files[:ENROLL_FILES]
            probes += [(f, d.name) for f in files[ENROLL_FILES:]]
        else:
            probes += [(f, f"never-enrolled:{d.name}") for f in files]
    return enroll, probes


def write_probes(sources: list[tuple[Path, str]], n: int, folder: Path, seed: int = 0) -> Path:
    """``n`` wav crops of 2-6 s of the ``sources`` (3/4 known, 1/4 unknown) and their manifest."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    known = [s for s in sources if not s[1].startswith("never-enrolled:")]
    unknown = [s for s in sources if s[1].startswith("never-enrolled:")]
    n_known = n * 3 // 4
    picks = [known[i] for i in rng.integers(0, len(known), n_known)] + \
        [unknown[i] for i in rng.integers(0, len(unknown), n - n_known)]
    cache: dict[Path, tuple[np.ndarray, int]] = {}
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "probes.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "speaker"])
        for i, (src, truth) in enumerate(picks):
            if src not in cache:
                cache[src] = sf.read(src, dtype="float32", always_2d=True)
            wave, rate = cache[src]
            length = min(wave.shape[0], int(rng.uniform(2.0, 6.0) * rate))
            start = int(rng.integers(0, wave.shape[0] - length + 1))
            name = f"p{i:05d}.wav"
            sf.write(folder / name, wave[start : start + length], rate)
            w.writerow([name, truth])
    return manifest


def build_home(home: Path, enroll: list[Path], size: int, spec) -> dict:
    """A home with ``size - n_real`` generated distractor segments, then the real files
    ingested; returns what it took."""
    from speakerdb.api import SpeakerDB

    SpeakerDB.create(home, model="campplus").close()
    out = {"distractors": 0, "write_s": 0.0}
    listing = home / "enroll.csv"
    with listing.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "speaker"])
        w.writerows([f.resolve(), f.parent.name] for f in enroll)
    with SpeakerDB.open(home, catch_up=False) as db:
        stats = db.ingest([listing], layout="manifest")
        real = stats.segments
    n = max(0, size - real)
    if n:
        # the distractors' ids follow the real segments'
        from sqlalchemy import text

        t0 = time.perf_counter()
        speaker, _, chunks = vec.synthetic_chunks(spec, n, seed=size)
        with SpeakerDB.open(home, catch_up=False) as db:
            engine = db.store.engine
            with engine.connect() as c:
                ids = [c.execute(text(f"select coalesce(max(id), 0) from {t}")).scalar()
                       for t in ("speakers", "recordings", "segments")]
            vec.write_store(engine, chunks(), speaker, offsets=tuple(ids))
        out.update(distractors=n, write_s=time.perf_counter() - t0)
    t0 = time.perf_counter()
    with SpeakerDB.open(home) as db:  # catches the vectors up with the store
        db.indexes.ensure_open()
        out["segments"] = db.indexes.describe()["ntotal"]
    out["index_s"] = time.perf_counter() - t0
    out["real_segments"] = real
    return out


def identify(home: Path, manifest: Path, batch: int) -> dict:
    """``speakerdb identify MANIFEST --json -q`` as a process: its summary, wall and peak RSS."""
    cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "speakerdb", "identify",
           str(manifest), "--home", str(home), "--batch", str(batch), "--json", "-q"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"identify failed ({p.returncode}): {p.stderr[-2000:]}")
    doc = json.loads(p.stdout)
    s = doc["summary"]
    sec = s["seconds"]
    return {"process_s": wall, "peak_rss_gb": int(p.stderr.strip().splitlines()[-1]) / 2**20,
            "summary": s, "share": {k: sec[k] / s["wall_s"] for k in ("decode", "embed", "search")},
            "errors": sum(r.get("error") is not None for r in doc["results"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--probes", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--speech", type=Path, default=vec.SPEECH)
    ap.add_argument("--tmp", default=None, help="folder for the databases and probes")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not any(args.speech.glob("*/*.wav")):
        raise SystemExit(f"bench: no speech at {args.speech}")
    enroll, sources = split(args.speech)
    real, real_spk = vec.real_embeddings(speech=args.speech)
    spec = vec.spectrum(real, real_spk)
    report: dict = {"size": args.size, "probes": args.probes, "batch": args.batch,
                    "enrolled_files": len(enroll), "enrolled_speakers": ENROLLED}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        manifest = write_probes(sources, args.probes, tmp / "probes")
        print(f"{args.probes} probes written in {time.perf_counter() - t0:.1f} s", flush=True)
        homes = {"small": (tmp / "small", 0), "large": (tmp / "large", args.size)}
        for name, (home, size) in homes.items():
            built = build_home(home, enroll, size, spec)
            print(f"{name} database: {built['segments']:,} segments ({built['real_segments']} "
                  f"real, {built['distractors']:,} generated; written in {built['write_s']:.1f} "
                  f"s, vectors built in {built['index_s']:.1f} s)", flush=True)
            r = identify(home, manifest, args.batch)
            r["database"] = built
            report[name] = r
            s, sh, a = r["summary"], r["share"], r["summary"]["accuracy"]
            print(f"  identify: {s['probes_per_s']:.1f} probes/s (process {r['process_s']:.1f} "
                  f"s, peak RSS {r['peak_rss_gb']:.2f} GB); decode {100 * sh['decode']:.1f} %, "
                  f"embed {100 * sh['embed']:.1f} %, search {100 * sh['search']:.1f} % of "
                  f"{s['wall_s']:.1f} s", flush=True)
            if a is not None:
                print(f"  decisions: correct {a['correct']['rate']:.4f}; enrolled: correct "
                      f"matches {a['correct_matches']['rate']:.4f}, wrong matches "
                      f"{a['wrong_matches']['rate']:.4f}, misses {a['misses']['rate']:.4f}; "
                      f"never enrolled: correct rejections "
                      f"{a['correct_rejections']['rate']:.4f}, false accepts "
                      f"{a['false_accepts']['rate']:.4f}", flush=True)
    ratio = report["large"]["summary"]["probes_per_s"] / report["small"]["summary"]["probes_per_s"]
    report["probes_per_s_ratio_large_vs_small"] = ratio
    print(f"probes/s at {args.size:,} segments: {ratio:.3f}x of those at "
          f"{report['small']['database']['segments']} segments", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

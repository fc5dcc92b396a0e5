"""Ingest at VoxCeleb scale: files/s with worker processes, the model's share of wall time, and a
kill -9 in the middle of a large ingest.

    flock /tmp/speakerdb-bench.lock python bench/ingest_scale.py [--files 100000] [--tmp DIR]
        [--json OUT] [--workers N] [--formats wav,m4a] [--speech DIR] [--speech-files K]
        [--embedder hash|spectral] [--kill-embedder hash|spectral] [--skip-model]
        [--skip-kill] [--keep]

1. Builds, in a temporary folder (``--tmp DIR``; removed at the end unless ``--keep``), one
   VoxCeleb-layout tree per format, ``<fmt>/idNNNNN/<video>/<utt>.<fmt>``, of ``--files`` short
   utterances (1.5-4 s) cut from the speech-dev wavs: random crops, gain and speed (0.9-1.1x,
   soxr resampling); the m4a tree holds the same utterances as AAC (PyAV). The files are made by
   a process pool. Disk: about 90 KB per wav file and 15 KB per m4a file (100000 files: ~9 GB
   of wav), plus the databases (see ``store_bytes_per_file``).
2. Ingests each tree with ``--workers`` W = 0, 1 and N (N = ``--workers``, default the cores),
   each in a child process (``SpeakerDB.ingest``, as ``speakerdb ingest --workers W`` runs it)
   into a fresh database; the model there is ``--embedder hash`` (default: the spectral
   embedder's identity with vectors drawn from a hash of the samples, near-free, so that the
   pipeline, not the model, is measured) or ``spectral`` (the tests' embedder, ~8 ms a clip).
   Reports files/s (over the ingest's own wall time), each as a ratio against workers 0 in
   this run, the phase seconds (decode = the workers' seconds summed; wait = the model's
   process waiting for decoded audio), the store's size on disk per file, and peak RSS: the
   largest single process (``wait4``'s ``ru_maxrss``) and the whole process tree (VmRSS of the
   ingest and its workers summed, sampled every 0.1 s).
3. On speech-dev (``--speech-files K``: the first K files of its manifest; default all 293)
   with the default model ``campplus`` (weights fetched into ~/.cache/speakerdb on first use;
   see README "Models"): ingest wall time against pure model time on the same segments
   (``embed_segments``, after a warm-up pass, before and after the ingests, the mean), printed
   as the model's share of wall time for workers 0 and N (target: 0.9 or more with N workers),
   once with each speech detector: ``silero`` (the default for campplus; Silero runs in the
   decoding workers, or in the model's process without workers) and ``energy``.
4. A kill -9: ``speakerdb ingest --workers N`` of the m4a tree (a child process, ``spectral``
   model; ``--kill-embedder hash``: the library's ingest with the near-free embedder) killed
   once about half of the inputs are stored, its workers seen gone, a re-run,
   then every file in exactly once (as many distinct paths and contents as files) and
   ``speakerdb check`` exit 0.

``--files 2000`` takes about two minutes on 2 cores (the build ~20 s, the files/s runs ~40 s,
campplus ~90 s, the kill -9 ~15 s); the time grows with ``--files`` but for the campplus part.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech-dev"
RATE = 16000
STORE_FILE = "speakerdb.sqlite"  # speakerdb.store.engine.HOME_STORE_FILE (checked in main)
_ALPHABET = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"))


# building the trees (runs in a process pool) -------------------------------------------------
_cache: dict[str, np.ndarray] = {}


def _source(path: str) -> np.ndarray:
    """Mono float32 at 16 kHz of one speech-dev file (kept per process)."""
    if path not in _cache:
        import soundfile as sf
        import soxr

        x, sr = sf.read(path, dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        _cache[path] = soxr.resample(x, sr, RATE).astype(np.float32) if sr != RATE else x
    return _cache[path]


def _utterance(src: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    speed = rng.uniform(0.9, 1.1)
    want = int(rng.uniform(1.5, 4.0) * speed * RATE)  # source samples for 1.5-4 s of output
    start = int(rng.integers(0, max(1, len(src) - want)))
    x = src[start : start + want]
    import soxr

    x = soxr.resample(x, int(round(RATE * speed)), RATE)  # played back `speed` times faster
    return (rng.uniform(0.2, 0.9) * x / max(float(np.abs(x).max()), 1e-6)).astype(np.float32)


def _write_m4a(path: Path, x: np.ndarray) -> None:
    import av

    with av.open(str(path), mode="w", format="ipod") as out:
        stream = out.add_stream("aac", rate=RATE, layout="mono")
        for i in range(0, len(x), 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[None, i : i + 1024]),
                                               format="fltp", layout="mono")
            frame.sample_rate, frame.pts = RATE, i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _make(root: str, formats: tuple[str, ...], jobs: list[tuple[str, str, int]]) -> int:
    import soundfile as sf

    for rel, src, seed in jobs:
        x = _utterance(_source(src), np.random.default_rng(seed))
        for fmt in formats:
            p = Path(root) / fmt / f"{rel}.{fmt}"
            p.parent.mkdir(parents=True, exist_ok=True)
            if fmt == "wav":
                sf.write(p, x, RATE, subtype="PCM_16")
            else:
                _write_m4a(p, x)
    return len(jobs)


def plan(files: int, sources: dict[str, list[str]], seed: int = 0) -> list[tuple[str, str, int]]:
    """(``idNNNNN/<video>/<utt>``, source wav, seed) per file: ~25 utterances per speaker over
    a few videos; each speaker draws from one speech-dev speaker's files."""
    rng = np.random.default_rng(seed)
    speakers = sorted(sources)
    n_spk = max(1, files // 25)
    out = []
    for i in range(files):
        k = i % n_spk
        spk_rng = np.random.default_rng([seed, k])
        videos = ["".join(spk_rng.choice(_ALPHABET, 11)) for _ in range(4)]
        src = sources[speakers[k % len(speakers)]]
        out.append((f"id{10000 + k:05d}/{videos[(i // n_spk) % 4]}/{i // n_spk + 1:05d}",
                    src[int(rng.integers(len(src)))], seed * 10_000_019 + i))
    return out


def build(root: Path, files: int, formats: tuple[str, ...], speech: Path, workers: int) -> float:
    """Writes the trees under ``root``; returns the seconds it took."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    sources: dict[str, list[str]] = {}
    with open(speech / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            sources.setdefault(row["speaker"], []).append(str(speech / row["path"]))
    jobs = plan(files, sources)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = [jobs[i : i + 100] for i in range(0, len(jobs), 100)]
        done = sum(pool.map(_make, [str(root)] * len(parts), [formats] * len(parts), parts))
    assert done == files
    return time.perf_counter() - t0


# measuring ingests ---------------------------------------------------------------------------
def cli(*args) -> list[str]:
    return [sys.executable, "-m", "speakerdb", *map(str, args)]


def _children() -> dict[int, list[int]]:
    """{pid: its child pids} from /proc."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return children


def _tree_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and its descendants, summed (KiB)."""
    children = _children()
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")), 0)
        except OSError:
            pass
    return total


def hash_embedder():
    """The spectral embedder's identity with a near-free body: each segment's vector comes
    from a hash of its samples (deterministic, unit, 256-D), so the pipeline is what is timed."""
    import hashlib

    from speakerdb.model.spectral import SpectralEmbedder

    class HashEmbedder(SpectralEmbedder):
        def __call__(self, waves):
            out = np.empty((len(waves), self.raw_dim), np.float32)
            for i, w in enumerate(waves):
                seed = int.from_bytes(hashlib.blake2b(np.asarray(w).tobytes(), digest_size=8)
                                      .digest(), "little")
                v = np.random.default_rng(seed).standard_normal(self.raw_dim)
                out[i] = v / np.linalg.norm(v)
            return out

    return HashEmbedder()


def child(tree: str, home: str, workers: str, embedder: str) -> int:
    """One timed ingest (run by ``run_ingest`` as a child process): its stats as JSON."""
    from speakerdb.api import SpeakerDB
    from speakerdb.config import IngestConfig

    emb = hash_embedder() if embedder == "hash" else None
    made = Path(home).exists()  # a re-run (the kill -9 step) opens the same database again
    opened = SpeakerDB.open(home, embedder=emb) if made else \
        SpeakerDB.create(home, model="spectral", embedder=emb)
    with opened as db:
        t0 = time.perf_counter()
        stats = db.ingest([tree], config=IngestConfig(workers=int(workers)))
        wall = time.perf_counter() - t0
    doc = stats.as_dict()
    doc.pop("failures")
    print(json.dumps({"ingest_s": wall, **doc}))
    return 0


def run_ingest(tree: Path, home: Path, workers: int, files: int, embedder: str) -> dict:
    out, err = home.parent / f"{home.name}.out", home.parent / f"{home.name}.err"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen([sys.executable, __file__, "--child", str(tree), str(home),
                                 str(workers), embedder], stdout=o, stderr=e)
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.wait(0.1):
            peak[0] = max(peak[0], _tree_rss_kib(proc.pid))

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stop.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"ingest failed ({proc.returncode}): {err.read_text()[-2000:]}")
    doc = json.loads(out.read_text())
    size = sum(p.stat().st_size for p in home.rglob("*") if p.is_file())
    ingest_s = doc["ingest_s"]
    return {"workers": doc["workers"], "inputs": doc["inputs"], "added": doc["added"],
            "failed": doc["failed"], "ingest_s": round(ingest_s, 3), "process_s": round(wall, 3),
            "files_per_s": round(doc["inputs"] / ingest_s, 1), "seconds": doc["seconds"],
            "store_bytes_per_file": round(size / files), "peak_rss_mib": {
                "largest_process": round(usage.ru_maxrss / 1024, 1),
                "tree": round(peak[0] / 1024, 1)}}


def throughput(root: Path, formats, counts: list[int], files: int, embedder: str) -> dict:
    out: dict = {}
    for fmt in formats:
        runs = []
        for w in counts:
            r = run_ingest(root / fmt, root / f"home-{fmt}-{w}", w, files, embedder)
            r["vs_workers_0"] = round(r["files_per_s"] / runs[0]["files_per_s"], 2) if runs else 1.0
            runs.append(r)
            s = r["seconds"]
            print(f"{fmt:>4} workers {w:>2}: {r['files_per_s']:>7.1f} files/s "
                  f"({r['vs_workers_0']:.2f}x)  ingest {r['ingest_s']:.1f} s  decode {s['decode']:.1f} "
                  f"embed {s['embed']:.1f} write {s['write']:.1f} wait {s['wait']:.1f} s  "
                  f"store {r['store_bytes_per_file']} B/file  peak RSS "
                  f"{r['peak_rss_mib']['largest_process']:.0f} MiB (tree "
                  f"{r['peak_rss_mib']['tree']:.0f} MiB)  failed {r['failed']}", flush=True)
            shutil.rmtree(root / f"home-{fmt}-{w}")
        out[fmt] = runs
    return out


def model_share(speech: Path, limit: int | None, counts: list[int], tmp: Path) -> dict:
    """campplus on speech-dev: ingest wall seconds against pure model seconds on the same
    segments, per workers, for each speech detector (silero, the default; energy)."""
    from speakerdb.audio import AudioPolicy, prepare, with_vad
    from speakerdb.model.registry import load_embedder

    with open(speech / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:limit]
    manifest = tmp / "speech.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "speaker"])
        w.writerows([str(speech / r["path"]), r["speaker"]] for r in rows)
    emb = load_embedder("campplus")
    out = {"files": len(rows), "by_vad": {}}
    for vad in ("silero", "energy"):
        policy = with_vad(AudioPolicy(), vad)
        segs = [s.samples for r in rows for s in prepare(speech / r["path"], policy).segments]
        out["by_vad"][vad] = _share(emb, manifest, len(rows), segs, vad, counts, tmp)
    return out


def _share(emb, manifest: Path, files: int, segs: list, vad: str, counts: list[int],
           tmp: Path) -> dict:
    from speakerdb.api import SpeakerDB
    from speakerdb.config import IngestConfig
    from speakerdb.ingest.runner import embed_segments

    def model_s() -> float:
        t0 = time.perf_counter()
        embed_segments(emb, segs, 16)
        return time.perf_counter() - t0

    model_s()  # warm-up: the frozen graph specialises on the batch shapes it meets first
    before, walls = model_s(), {}
    for n in counts:
        home = tmp / f"home-campplus-{vad}-{n}"
        with SpeakerDB.create(home, model="campplus", embedder=emb, vad=vad) as db:
            t0 = time.perf_counter()
            stats = db.ingest([manifest], config=IngestConfig(workers=n))
            walls[n] = (time.perf_counter() - t0, stats.as_dict())
        shutil.rmtree(home)
    model = (before + model_s()) / 2
    out = {"segments": len(segs), "model_s": round(model, 2), "runs": []}
    for n, (wall, s) in walls.items():
        out["runs"].append({"workers": n, "wall_s": round(wall, 2), "model_share": round(model / wall, 3),
                            "files_per_s": round(files / wall, 1),
                            "seconds": s["seconds"]})
        print(f"campplus speech-dev, vad {vad} ({len(segs)} segments) workers {n}: "
              f"wall {wall:.1f} s, model alone {model:.1f} s, model share {model / wall:.2f}",
              flush=True)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill9(tree: Path, home: Path, workers: int, files: int, embedder: str) -> dict:
    """Kill -9 an ingest of ``tree`` at about half, re-run it, count and check. ``spectral``:
    ``speakerdb ingest`` itself; ``hash``: the library's ingest (what the command runs) with
    the near-free embedder, in a child process like the files/s runs."""
    if embedder == "spectral":
        subprocess.run(cli("init", "--home", home, "--model", "spectral"), check=True,
                       capture_output=True)
        run = cli("ingest", tree, "--home", home, "--workers", workers, "-q")
        rerun = cli("ingest", tree, "--home", home, "--workers", workers, "--json", "-q")
    else:
        run = rerun = [sys.executable, __file__, "--child", str(tree), str(home), str(workers),
                       embedder]

    def stored() -> int:
        if not (home / STORE_FILE).is_file():  # not made yet
            return 0
        con = sqlite3.connect(home / STORE_FILE, timeout=5)
        try:
            return sum(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                       for t in ("recordings", "failures"))
        except sqlite3.OperationalError:
            return 0
        finally:
            con.close()

    proc = subprocess.Popen(run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and stored() < files // 2:
        time.sleep(0.05)
    kids = _children().get(proc.pid, [])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = stored()
    deadline = time.time() + 5
    while any(map(_alive, kids)) and time.time() < deadline:
        time.sleep(0.1)
    again = subprocess.run(rerun, capture_output=True, text=True)
    if again.returncode:
        raise RuntimeError(f"the re-run failed: {again.stderr[-2000:]}")
    doc = json.loads(again.stdout)
    con = sqlite3.connect(home / STORE_FILE)
    try:
        rec, paths, shas = con.execute("SELECT count(*), count(DISTINCT path), "
                                       "count(DISTINCT sha256) FROM recordings").fetchone()
        failed = con.execute("SELECT count(*) FROM failures").fetchone()[0]
    finally:
        con.close()
    check = subprocess.run(cli("check", "--home", home, "--json"), capture_output=True, text=True)
    out = {"killed": proc.returncode == -signal.SIGKILL, "stored_at_kill": at_kill,
           "workers_left_after_kill": sum(map(_alive, kids)), "resumed_added": doc["added"],
           "resumed_skipped": doc["skipped"], "recordings": rec, "distinct_paths": paths,
           "distinct_contents": shas, "failures": failed, "check_exit": check.returncode}
    out["ok"] = (out["killed"] and rec + failed == files and rec == paths == shas
                 and check.returncode == 0 and out["workers_left_after_kill"] == 0)
    print(f"kill -9 at {at_kill}/{files} stored, workers left {out['workers_left_after_kill']}; "
          f"re-run added {doc['added']}, skipped {doc['skipped']}; recordings {rec} (distinct "
          f"paths {paths}, contents {shas}), failures {failed}; check exit {check.returncode}: "
          f"{'OK' if out['ok'] else 'FAILED'}", flush=True)
    return out


def main() -> int:
    from speakerdb.ingest.pool import default_workers
    from speakerdb.store.engine import HOME_STORE_FILE

    assert HOME_STORE_FILE == STORE_FILE, HOME_STORE_FILE
    if sys.argv[1:2] == ["--child"]:
        return child(*sys.argv[2:6])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--tmp", type=Path, default=None, help="where the trees go (default: TMPDIR)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--formats", default="wav,m4a")
    ap.add_argument("--speech", type=Path, default=SPEECH)
    ap.add_argument("--embedder", choices=("hash", "spectral"), default="hash",
                    help="for the files/s runs (hash: near-free, the pipeline alone)")
    ap.add_argument("--speech-files", type=int, default=None,
                    help="speech-dev files for the campplus runs (default: all)")
    ap.add_argument("--kill-embedder", choices=("hash", "spectral"), default="spectral",
                    help="the kill -9 step: spectral runs `speakerdb ingest` itself; hash the "
                         "library's ingest with the near-free embedder (for large --files)")
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--skip-kill", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the trees")
    args = ap.parse_args()
    if not (args.speech / "manifest.csv").exists():
        print(f"bench: no speech at {args.speech}", file=sys.stderr)
        return 2
    formats = tuple(args.formats.split(","))
    counts = sorted({0, 1, args.workers})
    base = Path(tempfile.mkdtemp(prefix="ingest-scale-", dir=args.tmp))
    doc: dict = {"files": args.files, "workers": args.workers, "cores": os.cpu_count(),
                 "formats": list(formats)}
    try:
        doc["build_s"] = round(build(base, args.files, formats, args.speech, args.workers), 1)
        print(f"built {args.files} files x {len(formats)} formats in {doc['build_s']} s under "
              f"{base}", flush=True)
        doc["embedder"] = args.embedder
        doc["throughput"] = throughput(base, formats, counts, args.files, args.embedder)
        if not args.skip_model:
            doc["campplus"] = model_share(args.speech, args.speech_files,
                                          sorted({0, args.workers}), base)
        if not args.skip_kill and "m4a" in formats:
            doc["kill9"] = kill9(base / "m4a", base / "home-kill9", args.workers, args.files,
                                 args.kill_embedder)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if doc.get("kill9", {}).get("ok", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())

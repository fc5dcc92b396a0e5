"""Identify latency over HTTP while the server ingests: N threads x M identify requests on
loopback against a real uvicorn server, with an ingest of a synthetic corpus running in the
server process at the same time (through the library, as ``speakerdb ingest`` would).

    python -m bench.server_load [--threads 8] [--requests 25] [--ingest-speakers 20]

Prints p50/p95 latency, the error count (must be 0) and whether the ingest completed; exits 1
otherwise. Uses the deterministic ``spectral`` model: no weights needed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def run_load(threads: int = 8, requests: int = 25, ingest_speakers: int = 20,
             gallery_speakers: int = 8, workdir: Path | None = None) -> dict:
    """Build a gallery, serve it, identify held-out voices from ``threads`` threads while
    ``ingest_speakers`` more speakers are ingested; returns the figures."""
    import httpx

    from speakerdb.api import SpeakerDB
    from tests.server.conftest import serve, wav_bytes
    from tests.synth import write_corpus

    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="speakerdb-load-")) if own else workdir
    try:
        write_corpus(work / "gallery", speakers=gallery_speakers)
        write_corpus(work / "more", speakers=ingest_speakers, first_speaker=100)
        home = work / "home"
        with SpeakerDB.create(home, model="spectral") as db:
            db.ingest([work / "gallery"])
        probes = [(k, wav_bytes(k, 7)) for k in range(gallery_speakers)]
        with serve(home) as served:
            ingest_result: dict = {}

            def ingest():
                try:
                    stats = served.db.ingest([work / "more"])
                    ingest_result["added"] = stats.added
                except Exception as e:  # noqa: BLE001 - reported, not raised, by the bench
                    ingest_result["error"] = f"{type(e).__name__}: {e}"

            def worker(t: int) -> tuple[list[float], list[str]]:
                latencies, errors = [], []
                with httpx.Client(base_url=served.url, timeout=60) as c:
                    for i in range(requests):
                        k, data = probes[(t + i) % len(probes)]
                        t0 = time.perf_counter()
                        try:
                            r = c.post("/identify", files={"audio": ("p.wav", data, "audio/wav")})
                            best = r.json()["candidates"][:1] if r.status_code == 200 else []
                            ok = [c["speaker"] for c in best] == [f"spk{k:02d}"]
                            if not ok:
                                errors.append(f"{r.status_code} {r.text[:120]}")
                        except httpx.HTTPError as e:
                            errors.append(repr(e))
                        latencies.append(time.perf_counter() - t0)
                return latencies, errors

            ingester = threading.Thread(target=ingest)
            t0 = time.perf_counter()
            ingester.start()
            with ThreadPoolExecutor(threads) as pool:
                results = list(pool.map(worker, range(threads)))
            ingester.join()
            wall = time.perf_counter() - t0
            counts = served.db.store.counts()
            check_ok = served.db.check().ok
        lat = sorted(x for r, _ in results for x in r)
        errors = [e for _, errs in results for e in errs]
        expected = ingest_speakers * 3
        return {
            "requests": len(lat), "errors": len(errors), "error_samples": errors[:3],
            "p50_ms": 1000 * statistics.median(lat),
            "p95_ms": 1000 * lat[min(len(lat) - 1, int(0.95 * len(lat)))],
            "wall_s": wall, "ingest": ingest_result,
            "ingest_complete": ingest_result.get("added") == expected
            and counts["recordings"] == (gallery_speakers + ingest_speakers) * 3,
            "check_ok": check_ok,
        }
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--requests", type=int, default=25, help="identify requests per thread")
    ap.add_argument("--ingest-speakers", type=int, default=20)
    a = ap.parse_args()
    import os

    os.environ.setdefault("SPEAKERDB_MODEL", "spectral")
    r = run_load(a.threads, a.requests, a.ingest_speakers)
    print(f"identify: {r['requests']} requests from {a.threads} threads in {r['wall_s']:.2f} s")
    print(f"latency:  p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms")
    print(f"errors:   {r['errors']} {r['error_samples'] if r['errors'] else ''}")
    print(f"ingest:   {r['ingest']} complete={r['ingest_complete']}; check ok={r['check_ok']}")
    return 0 if r["errors"] == 0 and r["ingest_complete"] and r["check_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

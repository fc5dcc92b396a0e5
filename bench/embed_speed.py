"""Default-model (campplus) embedding speed step by step: eager against the optimised path on
real speech, with the agreement of their outputs.

    flock /tmp/speakerdb-bench.lock python bench/embed_speed.py [--speech DIR] [--every 4]
        [--repeats 3] [--sweep]

Inputs: the segments the ingest makes (``AudioPolicy()``) of every ``--every``-th speech-dev file,
then fixed crops of 3 s and 10 s at batch 1. Each step is the same weights in another form, run
through a ``TorchEmbedder`` like the product (front end included, exact-length batching):

* ``eager``          ``CamppMRL`` (``CamppWave`` + head), the reference (``optimize=False``);
* ``eager+freeze``   the same, as a frozen TorchScript trace (``FrozenTrace``);
* ``folded``         ``FoldedNet`` run eagerly: BatchNorm folded, time-major, lean fbank;
* ``folded+freeze``  ``FoldedNet`` frozen: the default (``load_embedder("campplus")``).

Every repeat times each step once, in turn (interleaved); figures are medians, as emb/s and as
ratios to ``eager`` in the same run. ``min cos`` is the least cosine to ``eager`` over every
input, ``max |d|`` the largest absolute difference of raw outputs (norm ~10). ``--sweep``
adds ms per clip of the default at batch 1-16 for 3 s and 10 s clips (for ``max_batch_samples``).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech-dev"
STEPS = ("eager", "eager+freeze", "folded", "folded+freeze")


def build_steps() -> tuple[dict, float]:
    """The four embedders over one loaded model, and the seconds the default's first call
    (tracing and freezing) took."""
    from speakerdb.model.campplus.folded import FoldedCampp, FoldedNet, trace_example
    from speakerdb.model.optimize import FrozenTrace
    from speakerdb.model.registry import load_embedder
    from speakerdb.model.torch_embedder import TorchEmbedder

    eager = load_embedder("campplus", "cpu", optimize=False)
    mrl = eager.module

    def wrap(module):
        return TorchEmbedder(module, name=eager.name, sha256=eager.sha256, raw_dim=256,
                             dims=eager.dims, default_threshold=eager.default_threshold,
                             device="cpu", min_samples=eager.min_samples,
                             max_batch=eager.max_batch, max_batch_samples=eager.max_batch_samples)

    folded = FoldedCampp(mrl, freeze=False)
    assert isinstance(folded.net, FoldedNet)
    frozen = FoldedCampp(mrl, freeze=True)
    steps = {"eager": eager, "eager+freeze": wrap(FrozenTrace(mrl, trace_example)),
             "folded": wrap(folded), "folded+freeze": wrap(frozen)}
    t0 = time.perf_counter()
    steps["folded+freeze"]([np.zeros(1600, np.float32)])
    startup = time.perf_counter() - t0
    steps["eager+freeze"]([np.zeros(1600, np.float32)])
    return steps, startup


def speech_segments(speech: Path, every: int) -> list[np.ndarray]:
    from speakerdb.audio import AudioPolicy, prepare

    with open(speech / "manifest.csv", newline="") as f:
        paths = [speech / r["path"] for r in csv.DictReader(f)][::every]
    return [s.samples for p in paths for s in prepare(p, AudioPolicy()).segments]


def timed(steps: dict, inputs: list[np.ndarray], repeats: int) -> tuple[dict, dict]:
    """Median seconds per step over interleaved repeats, and each step's first outputs."""
    times: dict[str, list[float]] = {k: [] for k in steps}
    outs: dict[str, np.ndarray] = {}
    for emb in steps.values():  # warm-up
        emb(inputs[:2])
    for _ in range(repeats):
        for k, emb in steps.items():
            t0 = time.perf_counter()
            out = emb(inputs)
            times[k].append(time.perf_counter() - t0)
            outs[k] = out
    return {k: float(np.median(v)) for k, v in times.items()}, outs


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = (a64 * b64).sum(1) / np.linalg.norm(a64, axis=1) / np.linalg.norm(b64, axis=1)
    return float(cos.min()), float(np.abs(a64 - b64).max())


def report(title: str, n: int, audio_s: float, secs: dict, outs: dict) -> None:
    print(f"\n{title}: {n} inputs, {audio_s:.0f} s of audio")
    print(f"{'step':<14} {'emb/s':>8} {'x eager':>8} {'RTF':>8} {'min cos':>10} {'max |d|':>9}")
    for k in STEPS:
        cos, diff = agreement(outs[k], outs["eager"])
        print(f"{k:<14} {n / secs[k]:>8.2f} {secs['eager'] / secs[k]:>7.2f}x "
              f"{secs[k] / audio_s:>8.4f} {1 - cos:>10.1e} {diff:>9.1e}")


def sweep(emb, seconds: float, batches=(1, 2, 4, 8, 16), repeats: int = 3) -> None:
    rng = np.random.default_rng(0)
    n = int(seconds * 16000)
    clips = [(0.1 * rng.standard_normal(n)).astype(np.float32) for _ in range(max(batches))]
    module = emb.module
    import torch

    row = []
    with torch.inference_mode():
        for b in batches:
            x = torch.from_numpy(np.stack(clips[:b]))
            module(x)
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                module(x)
                ts.append(time.perf_counter() - t0)
            row.append(f"b{b} {1000 * float(np.median(ts)) / b:.1f}")
    print(f"{seconds:>4.0f} s clips, ms per clip: " + "  ".join(row))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speech", type=Path, default=SPEECH)
    ap.add_argument("--every", type=int, default=4, help="use every N-th file (1: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sweep", action="store_true", help="batch sweep of the default")
    args = ap.parse_args()
    if not (args.speech / "manifest.csv").exists():
        print(f"bench: no speech at {args.speech}", file=sys.stderr)
        return 2
    import torch

    steps, startup = build_steps()
    print(f"campplus on cpu, {torch.get_num_threads()} threads; first call of the default "
          f"(trace + freeze) {startup:.2f} s")
    segs = speech_segments(args.speech, args.every)
    secs, outs = timed(steps, segs, args.repeats)
    report(f"speech-dev segments (every {args.every}. file)", len(segs),
           sum(len(s) for s in segs) / 16000, secs, outs)
    for seconds in (3.0, 10.0):
        n = int(seconds * 16000)
        crops = [s[:n] for s in segs if len(s) >= n][:8]
        secs, outs = timed(steps, crops, args.repeats)
        report(f"{seconds:.0f} s crops, batch 1", len(crops), len(crops) * seconds, secs, outs)
    if args.sweep:
        print()
        for seconds in (3.0, 10.0):
            sweep(steps["folded+freeze"], seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""ReDimNet embedders: the optimised inference graph against the eager (module by module)
forward pass, on real speech crops, with the same weights in the same run.

    flock /tmp/speakerdb-bench.lock python bench/redimnet_speed.py \
        [--models mrl-redimnet-b2-best.pt,redimnet-official-b2.pt] [--fixtures DIR]
        [--speech DIR] [--repeats 3] [--device cpu|cuda]

For each fixture checkpoint (seeded random weights in the real structure, so the timings are
honest) and crop length (3 s, 10 s), both embedders (``TorchEmbedder`` over
``load_redimnet(path, optimized=...)``, numpy in, numpy out: end to end) embed the same 1 and 8
crops, interleaved eager / optimised, ``--repeats`` times; figures are medians. Printed: emb/s
of each, their ratio, and the lowest cosine between the two embeddings of any crop.

Per-step figures (model forward, 1 crop, the same lengths, 2·repeats + 1 times): the optimised
graph with one optimisation switched off at a time (``FastOptions``), as a speed-up over eager,
so each step's share shows as the drop when it is off; the front end's share of each pass; and
the one-off cost of building the optimised graph.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from speakerdb.model.redimnet import load_redimnet
from speakerdb.model.redimnet.fast import FastOptions, FastRedimnet
from speakerdb.model.torch_embedder import TorchEmbedder, set_threads

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "redimnet" / "checkpoints"
SPEECH = ROOT.parent / "shared" / "data" / "speech-dev"
MODELS = "mrl-redimnet-b2-best.pt,redimnet-official-b2.pt"
RATE = 16000
VARIANTS = {
    "all on": FastOptions(),
    "no BatchNorm folding": FastOptions(fold_bn=False),
    "no channels-last": FastOptions(channels_last=False),
    "no fused attention": FastOptions(sdpa=False),
}


def crops(speech: Path, seconds: float, count: int) -> list[np.ndarray]:
    """The first ``seconds`` of the first ``count`` files (sorted by path) that long."""
    n = int(seconds * RATE)
    out = []
    for f in sorted(speech.rglob("*.wav")):
        if sf.info(f).frames >= n:
            x, sr = sf.read(f, dtype="float32", frames=n)
            assert sr == RATE and x.ndim == 1, f
            out.append(x)
            if len(out) == count:
                return out
    raise SystemExit(f"{speech}: fewer than {count} files of {seconds} s")


def timer(device: torch.device):
    def run(fn):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, out
    return run


def interleaved(fns: dict, repeats: int, clock) -> dict[str, float]:
    """Median seconds of each function, run in turn ``repeats`` times after one warm-up each."""
    for fn in fns.values():
        clock(fn)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(clock(fn)[0])
    return {k: float(np.median(v)) for k, v in times.items()}


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def end_to_end(path: Path, clips: dict, args, clock) -> None:
    embs = {}
    for name, optimized in (("eager", False), ("optimised", True)):
        model = load_redimnet(path, optimized=optimized)
        embs[name] = TorchEmbedder(model, name=name, sha256="", raw_dim=model.raw_dim,
                                   dims=(model.raw_dim,), default_threshold=0.5,
                                   device=args.device, min_samples=model.min_samples)
    print(f"{'crop':>5} {'clips':>5} {'eager emb/s':>12} {'optimised emb/s':>16} {'ratio':>6} "
          f"{'min cos':>10}")
    for seconds, batch in clips:
        x = clips[seconds, batch]
        t = interleaved({k: (lambda e=e: e(x)) for k, e in embs.items()}, args.repeats, clock)
        cos = min_cosine(embs["eager"](x), embs["optimised"](x))
        print(f"{seconds:>4.0f}s {batch:>5} {batch / t['eager']:>12.2f} "
              f"{batch / t['optimised']:>16.2f} {t['eager'] / t['optimised']:>6.2f} {cos:>10.7f}",
              flush=True)


def per_step(path: Path, clips: dict, args, clock, device: torch.device) -> None:
    model = load_redimnet(path).to(device)
    t_build, _ = clock(lambda: FastRedimnet(model))
    graphs = {k: FastRedimnet(model, opt) for k, opt in VARIANTS.items()}
    print(f"building the optimised graph: {t_build * 1000:.0f} ms (once per process and device)")
    for seconds in sorted({s for s, _ in clips}):
        x = torch.from_numpy(clips[seconds, 1][0])[None].to(device)
        fns = {"eager": lambda: model.eager_forward(x), "front end": lambda: model.features(x)}
        fns.update({k: (lambda g=g: g(x)) for k, g in graphs.items()})
        with torch.inference_mode():
            t = interleaved(fns, 2 * args.repeats + 1, clock)
        steps = ", ".join(f"{k} {t['eager'] / t[k]:.2f}x" for k in VARIANTS)
        print(f"{seconds:>4.0f}s, 1 clip, over eager ({t['eager'] * 1000:.0f} ms): {steps}; "
              f"front end {100 * t['front end'] / t['eager']:.1f} % of eager, "
              f"{100 * t['front end'] / t['all on']:.1f} % of optimised", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=MODELS, help="comma-separated checkpoint file names")
    ap.add_argument("--fixtures", type=Path, default=FIXTURES)
    ap.add_argument("--speech", type=Path, default=SPEECH)
    ap.add_argument("--seconds", default="3,10")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args()
    set_threads()
    device = torch.device(args.device)
    clock = timer(device)
    seconds = [float(s) for s in args.seconds.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    clips = {}
    for s in seconds:
        pool = crops(args.speech, s, max(batches))
        for b in batches:
            clips[s, b] = pool[:b]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"repeats {args.repeats} (medians)")
    for name in args.models.split(","):
        path = args.fixtures / name
        print(f"\n== {name}")
        end_to_end(path, clips, args, clock)
        per_step(path, clips, args, clock, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""GPU speed of speakerdb's models: embeddings/s in fp32 and under bf16 / fp16 autocast, with the
cosine of each embedding to the fp32 one (the CPU path stays the default; this only measures).

1. Here (needs soundfile and speech-dev), write the inputs: real speech crops, 64 of 3 s and 32 of
   10 s at 16 kHz (int16, compressed; 10 s crops join a speaker's files end to end)::

       python bench/model_gpu.py --prepare .devcarry/gpu_crops.npz [--speech DIR]

2. On the GPU machine (torch with CUDA and numpy are enough: nothing here imports soundfile,
   soxr, faiss or SQLAlchemy), from the repository root::

       PYTHONPATH=. python bench/model_gpu.py --crops .devcarry/gpu_crops.npz \\
           --weights .devcarry/campplus_cn_en_common.pt \\
           [--redimnet .devcarry/redimnet-official-b2.pt ...] --out .devcarry/gpu.json

   Smoke test on a CPU (a few minutes: autocast is slow there): add ``--device cpu --quick``.

Models are built by speakerdb's own loader, ``load_embedder`` (``campplus``: the weight file is
verified and copied into a temporary cache; ``--redimnet``: a checkpoint path), and timed
through the module it wraps, on inputs already on the device. Builds: when ``load_embedder``
has an ``optimize``-like keyword, its eager and optimised builds; else, when the loaded modules
carry a boolean ``optimized`` switch, the same model with it off (``eager``) and on
(``optimized``); else the default build, plus for CAM++ the folded module
(``speakerdb.model.campplus.folded``) when the library has one that is not the default.

For each model and clip length: batches 1, 16, 64 (3 s) and 1, 16 (10 s), in

* ``fp32-strict``: TF32 off for cuDNN and matmul; its embeddings are the reference;
* ``fp32``: torch's defaults (cuDNN convolutions may use TF32, matmul does not);
* ``bf16`` / ``fp16``: ``torch.autocast(device, dtype)`` around the whole forward;
* ``bf16/fb32`` / ``fp16/fb32`` (CAM++ only): the same, but its fbank computed in float32
  outside autocast (ReDimNet's front end always is).

emb/s excludes warm-up; ``torch.cuda.synchronize`` brackets each timing. Cosines compare every
crop's raw embedding (computed at batch 16) with the first build's ``fp32-strict`` one: min and
mean. On the GPU the whole run takes about a minute after CUDA start-up.
One table is printed; ``--out`` also writes the results as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT.parent / "shared" / "data" / "speech-dev"
RATE = 16000
BATCHES = {3: (1, 16, 64), 10: (1, 16)}
CROPS = {3: 64, 10: 32}
OPT_KEYWORDS = ("optimize", "optimise", "optimized", "optimised")


# --------------------------------------------------------------------------- inputs (here)

def prepare(out: Path, speech: Path) -> None:
    """Write ``out`` (.npz): ``crops_3s`` (64, 48000) and ``crops_10s`` (32, 160000) int16."""
    import soundfile as sf

    by_speaker: dict[str, list[np.ndarray]] = {}
    for f in sorted(speech.rglob("*.wav")):
        x, rate = sf.read(f, dtype="float32", always_2d=True)
        if rate != RATE:
            raise SystemExit(f"{f}: {rate} Hz, expected {RATE}")
        by_speaker.setdefault(f.parent.name, []).append(x.mean(axis=1))
    speakers = sorted(by_speaker)
    crops: dict[int, list[np.ndarray]] = {3: [], 10: []}
    # 3 s: the middle of single files, speakers taken in turn
    n3 = 3 * RATE
    queue = [(s, i) for i in range(max(map(len, by_speaker.values()))) for s in speakers]
    for s, i in queue:
        files = by_speaker[s]
        if i < len(files) and len(files[i]) >= n3 and len(crops[3]) < CROPS[3]:
            a = (len(files[i]) - n3) // 2
            crops[3].append(files[i][a : a + n3])
    # 10 s: consecutive pieces of each speaker's files joined end to end, speakers in turn
    n10 = 10 * RATE
    joined = {s: np.concatenate(by_speaker[s]) for s in speakers}
    k = 0
    while len(crops[10]) < CROPS[10]:
        took = False
        for s in speakers:
            if (k + 1) * n10 <= len(joined[s]) and len(crops[10]) < CROPS[10]:
                crops[10].append(joined[s][k * n10 : (k + 1) * n10])
                took = True
        if not took:
            raise SystemExit(f"{speech}: not enough speech for {CROPS[10]} crops of 10 s")
        k += 1
    if len(crops[3]) < CROPS[3]:
        raise SystemExit(f"{speech}: only {len(crops[3])} files of at least 3 s")

    def q(c):
        return np.round(np.clip(np.stack(c), -1, 32767 / 32768) * 32768).astype(np.int16)

    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, crops_3s=q(crops[3]), crops_10s=q(crops[10]))
    print(f"{out}: {len(crops[3])} x 3 s, {len(crops[10])} x 10 s, "
          f"{out.stat().st_size / 1e6:.1f} MB")


def load_crops(path: Path, quick: bool) -> dict[int, torch.Tensor]:
    with np.load(path) as z:
        crops = {3: z["crops_3s"], 10: z["crops_10s"]}
    if quick:
        crops = {3: crops[3][:2]}
    return {s: torch.from_numpy(c.astype(np.float32) / 32768.0) for s, c in crops.items()}


# --------------------------------------------------------------------------- models

def optimize_keyword() -> str | None:
    from speakerdb.model.registry import load_embedder

    params = inspect.signature(load_embedder).parameters
    return next((k for k in OPT_KEYWORDS if k in params), None)


def load(spec: str, device: str, **kwargs) -> torch.nn.Module:
    """The module speakerdb embeds with (``load_embedder(...).module``), on ``device``."""
    from speakerdb.model.registry import load_embedder

    return load_embedder(spec, device, **kwargs).module


def _flagged(module: torch.nn.Module) -> list[tuple[torch.nn.Module, str]]:
    """(submodule, attribute) for every boolean ``optimized``-like switch in ``module``."""
    return [(m, k) for m in module.modules() for k in OPT_KEYWORDS
            if isinstance(getattr(m, k, None), bool)]


def _folded_campplus(module: torch.nn.Module, device: str):
    """The folded CAM++ built from the eager ``module``, when the library has one that is not
    already what ``load_embedder`` returns; else None."""
    try:
        from speakerdb.model.campplus.folded import FoldedCampp
    except ImportError:
        return None
    if any(isinstance(m, FoldedCampp) for m in module.modules()):
        return None
    return FoldedCampp(module).to(device).eval()


def builds(spec: str, device: str, keyword: str | None):
    """[(label, make)]: each ``make()`` returns a module to time. With an ``optimize``-like
    keyword of ``load_embedder``: its eager and optimised builds; else the default build and,
    where its modules carry an ``optimized`` switch, that build with the switch off and on; for
    CAM++, also the folded module when the library has one outside the default path."""
    if keyword:
        return [("eager", lambda: load(spec, device, **{keyword: False})),
                ("optimized", lambda: load(spec, device, **{keyword: True}))]
    module = load(spec, device)
    flags = _flagged(module)
    out = []
    if flags:
        def switched(value: bool):
            for m, k in flags:
                setattr(m, k, value)
            return module

        out = [("eager", lambda: switched(False)), ("optimized", lambda: switched(True))]
    else:
        out = [("default", lambda: module)]
    if spec == "campplus" and not flags:
        try:
            folded = _folded_campplus(module, device)
        except Exception as e:  # noqa: BLE001 - an unfinished optimised path is reported, not fatal
            print(f"campplus folded: cannot build ({type(e).__name__}: {e})")
            folded = None
        if folded is not None:
            out.append(("folded", lambda: folded))
    return out


@contextlib.contextmanager
def fp32_front_end(device_type: str):
    """Compute CAM++'s fbank outside autocast, wherever a speakerdb module calls it; yields a
    list whose length counts the calls (0: this build does not call it)."""
    from speakerdb.model.campplus import fbank as fb

    orig, calls = fb.fbank, []

    def fbank(*a, **k):
        calls.append(1)
        with torch.autocast(device_type, enabled=False):
            return orig(*a, **k)

    users = [m for name, m in list(sys.modules.items())
             if name.startswith("speakerdb.") and getattr(m, "fbank", None) is orig]
    for m in users:
        m.fbank = fbank
    try:
        yield calls
    finally:
        for m in users:
            m.fbank = orig


@contextlib.contextmanager
def tf32(allowed: bool):
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = allowed
    torch.backends.cuda.matmul.allow_tf32 = allowed and old[1]
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


MODES = {
    "fp32-strict": (None, False),
    "fp32": (None, False),
    "bf16": (torch.bfloat16, False),
    "fp16": (torch.float16, False),
    "bf16/fb32": (torch.bfloat16, True),
    "fp16/fb32": (torch.float16, True),
}


@contextlib.contextmanager
def mode(name: str, device_type: str):
    dtype, front32 = MODES[name]
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode())
        if name == "fp32-strict":
            stack.enter_context(tf32(False))
        if dtype is not None:
            stack.enter_context(torch.autocast(device_type, dtype=dtype))
        calls = stack.enter_context(fp32_front_end(device_type)) if front32 else None
        yield calls


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(module, x: torch.Tensor, device: torch.device, min_s: float, warm: int,
         least: int = 3) -> float:
    """Embeddings per second of ``module(x)``: ``warm`` untimed calls (their mean time sizes the
    timed block), then one block of calls lasting about ``min_s`` seconds."""
    module(x)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(warm):
        module(x)
    sync(device)
    per_call = (time.perf_counter() - t0) / warm
    n = max(least, min(1000, int(np.ceil(min_s / max(per_call, 1e-6)))))
    t0 = time.perf_counter()
    for _ in range(n):
        module(x)
    sync(device)
    return n * x.shape[0] / (time.perf_counter() - t0)


def embed_all(module, crops: torch.Tensor) -> np.ndarray:
    out = [module(crops[i : i + 16]).float().cpu() for i in range(0, len(crops), 16)]
    return torch.cat(out).double().numpy()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --------------------------------------------------------------------------- main

def run(args) -> int:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device (use --device cpu for a smoke test)", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    crops = {s: c.to(device) for s, c in load_crops(args.crops, args.quick).items()}
    batches = {s: tuple(b for b in BATCHES[s] if b <= len(crops[s])) or (len(crops[s]),)
               for s in crops}
    if args.weights:  # speakerdb's loader verifies the file and copies it into this cache
        os.environ["SPEAKERDB_CACHE"] = tempfile.mkdtemp(prefix="speakerdb-gpu-bench-")
        os.environ["SPEAKERDB_CAMPPLUS_WEIGHTS"] = str(Path(args.weights).resolve())
    specs = ([] if args.no_campplus else ["campplus"]) + [str(p) for p in args.redimnet]
    keyword = optimize_keyword()
    min_s = 0.05 if args.quick else args.min_time
    warm = 1 if args.quick else 3
    least = 1 if args.quick else 3

    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda"
            else platform.processor() or "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "tf32_default": {"cudnn": torch.backends.cudnn.allow_tf32,
                             "matmul": torch.backends.cuda.matmul.allow_tf32},
            "threads": torch.get_num_threads(), "optimize_keyword": keyword,
            "crops": {f"{s}s": len(c) for s, c in crops.items()}}
    print(f"device {info['device']}, torch {info['torch']}, CUDA {info['cuda']}, "
          f"cuDNN {info['cudnn']}; load_embedder keyword for an optimised build: "
          f"{keyword or 'none'}")
    rows = []
    header = (f"{'model':<28} {'build':<9} {'clip':>4} {'mode':<11} "
              + " ".join(f"{'b' + str(b):>8}" for b in (1, 16, 64))
              + f" {'cos min':>10} {'cos mean':>10}")
    print("emb/s per batch size; cosine of every crop's embedding to fp32-strict\n" + header)
    for spec in specs:
        name = "campplus" if spec == "campplus" else Path(spec).name
        ref: dict[int, np.ndarray] = {}
        t0 = time.perf_counter()
        variants = builds(spec, args.device, keyword)
        for variant, make in variants:
            module = make()
            sync(device)
            build_s = time.perf_counter() - t0
            modes = list(MODES) if spec == "campplus" else [m for m in MODES if "fb32" not in m]
            for seconds, x in crops.items():
                for m in modes:
                    with mode(m, device.type) as calls:
                        try:
                            e = embed_all(module, x)
                        except RuntimeError as err:  # e.g. a dtype the device lacks
                            print(f"{name:<28} {variant:<9} {seconds:>3}s {m:<11} "
                                  f"failed: {str(err).splitlines()[0][:60]}")
                            continue
                        if calls is not None and not calls:
                            print(f"{name:<28} {variant:<9} {seconds:>3}s {m:<11} n/a (no "
                                  "separate front end in this build)")
                            continue
                        speeds = {b: rate(module, x[:b], device, min_s, warm, least)
                                  for b in batches[seconds]}
                    if m == "fp32-strict" and seconds not in ref:
                        ref[seconds] = e
                    finite = np.isfinite(e).all(axis=1)
                    c = cosines(ref[seconds][finite], e[finite]) if finite.any() else np.array(
                        [np.nan])
                    row = {"model": name, "build": variant, "clip_s": seconds, "mode": m,
                           "emb_per_s": {str(b): v for b, v in speeds.items()},
                           "cos_min": float(c.min()), "cos_mean": float(c.mean()),
                           "nonfinite": int((~finite).sum()), "build_s": build_s}
                    rows.append(row)
                    cells = " ".join(f"{speeds[b]:>8.1f}" if b in speeds else f"{'':>8}"
                                     for b in (1, 16, 64))
                    bad = f"  ({row['nonfinite']} non-finite)" if row["nonfinite"] else ""
                    print(f"{name:<28} {variant:<9} {seconds:>3}s {m:<11} {cells} "
                          f"{row['cos_min']:>10.6f} {row['cos_mean']:>10.6f}{bad}", flush=True)
            t0 = time.perf_counter()
        del module, variants
        if device.type == "cuda":
            torch.cuda.empty_cache()
    total = time.perf_counter() - t_start
    print(f"total {total:.1f} s (after imports)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"info": info, "rows": rows, "total_s": total},
                                       indent=1))
        print(f"wrote {args.out}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prepare", type=Path, metavar="OUT.npz",
                    help="write the speech crops (needs soundfile) and exit")
    ap.add_argument("--speech", type=Path, default=SPEECH)
    ap.add_argument("--crops", type=Path, help="the .npz written by --prepare")
    ap.add_argument("--weights", help="CAM++ weight file (default: speakerdb's cache)")
    ap.add_argument("--redimnet", type=Path, action="append", default=[],
                    help="a ReDimNet checkpoint to time as well (repeatable)")
    ap.add_argument("--no-campplus", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--min-time", type=float, default=0.2,
                    help="seconds of timed calls per figure")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: two 3 s crops, single timed calls")
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    args = ap.parse_args()
    if args.prepare:
        prepare(args.prepare, args.speech)
        return 0
    if not args.crops:
        ap.error("--crops is required (make it with --prepare)")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())

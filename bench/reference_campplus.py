"""speakerdb's CAM++ against the original 3D-Speaker CAM++: throughput on the same real speech in
the same run, and the agreement of their embeddings.

The original code is run beside the project, never copied into it::

    git clone https://github.com/modelscope/3D-Speaker ../3D-Speaker     # once
    flock /tmp/speakerdb-bench.lock python bench/reference_campplus.py \\
        [--reference-dir DIR] [--speech DIR] [--limit N] [--repeats R]

``--reference-dir`` defaults to ``$SPEAKERDB_REFERENCE_3DSPEAKER``, else ``../3D-Speaker`` beside
the repository; the bench needs its ``speakerlab/models/campplus/{DTDNN,layers}.py`` and
``speakerlab/process/processor.py``. torchaudio is not needed: when it does not import, the one
function the reference front end calls, ``torchaudio.compliance.kaldi.fbank``, is Kaldi's
fbank computed by the ``kaldi-native-fbank`` package (``pip install -e '.[bench]'``; Kaldi's
own C++ algorithm, independent of speakerdb's fbank); the modules of ``speakerlab`` that only
training uses are stubbed when their packages (scipy) are missing.

Inputs: every wav under ``--speech`` decoded once with ``speakerdb.audio.prepare`` and cut into
the segments ingest makes. Pipelines, each on every segment:

* ``reference``: ``infer_sv.py``'s path, one segment at a time: ``FBank(80, 16000,
  mean_nor=True)`` (kaldi fbank, mean normalisation) then ``CAMPPlus(feat_dim=80,
  embedding_size=192)`` holding the same weight file (strict load), eval, ``no_grad``.
* ``speakerdb 1-by-1``: ``load_embedder("campplus", "cpu")`` called on one segment at a time.
* ``speakerdb ingest``: ``speakerdb.ingest.runner.embed_segments`` with the ingest batch size.

Same thread count for all (every core). Start-up (imports, weights, warm-up) is excluded. The
segments are taken in the read batches of ingest (``files_per_batch`` files); on each read batch
the three pipelines run one after another, in the order A B C, then C B A on the next, so drift
and other load on the machine fall on all of them alike. A round covers every segment; seconds
are the median over ``--repeats`` rounds (default 1: a round takes about 2.5 minutes on 2
cores), and the ratio to the reference is given both from those totals and as the median (and
range) over the read batches of every round. The ratio is speakerdb's throughput over the
reference's (the target is at least 1.2). Cosines compare
the reference's 192-D embedding with speakerdb's 192-D CAM++ embedding recovered from its raw
256-D output through the Matryoshka head (``raw = e @ W.T``, so ``e = raw @ pinv(W.T)``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT.parent / "shared" / "data" / "speech-dev"
FIXTURES = ROOT.parent / "shared" / "fixtures" / "campplus"
ENV = "SPEAKERDB_REFERENCE_3DSPEAKER"
NEEDED = ("speakerlab/models/campplus/DTDNN.py", "speakerlab/models/campplus/layers.py",
          "speakerlab/process/processor.py")


def reference_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg).expanduser().resolve()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser().resolve()
    return (ROOT.parent / "3D-Speaker").resolve()


def missing_reference(ref: Path) -> str | None:
    absent = [p for p in NEEDED if not (ref / p).is_file()]
    if not absent:
        return None
    return (f"reference CAM++ not found: {ref} lacks {absent[0]} (run `git clone "
            f"https://github.com/modelscope/3D-Speaker {ref}`, or give --reference-dir / "
            f"${ENV})")


def knf_fbank(waveform: torch.Tensor, num_mel_bins: int = 23,
                       sample_frequency: float = 16000.0, dither: float = 0.0) -> torch.Tensor:
    """``torchaudio.compliance.kaldi.fbank(waveform, num_mel_bins, sample_frequency, dither)``
    (the options the reference passes; the rest at Kaldi's defaults, as in torchaudio) computed
    by kaldi-native-fbank on the first channel: (frames, num_mel_bins) float32."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = float(sample_frequency)
    opts.frame_opts.dither = float(dither)
    opts.mel_opts.num_bins = int(num_mel_bins)
    computer = knf.OnlineFbank(opts)
    computer.accept_waveform(float(sample_frequency), waveform[0].tolist())
    computer.input_finished()
    frames = [np.asarray(computer.get_frame(i), np.float32)
              for i in range(computer.num_frames_ready)]
    if not frames:
        return torch.empty(0, dtype=waveform.dtype)
    return torch.from_numpy(np.stack(frames))


def kaldi_module() -> str:
    """Make ``import torchaudio.compliance.kaldi as Kaldi`` work: the real torchaudio when it
    imports, else modules of that name whose ``fbank`` is ``knf_fbank``. Returns which
    one is in use."""
    try:
        import torchaudio.compliance.kaldi  # noqa: F401

        return "torchaudio " + getattr(sys.modules["torchaudio"], "__version__", "?")
    except Exception:  # noqa: BLE001 - absent or broken: kaldi-native-fbank stands in
        for name in [m for m in sys.modules if m == "torchaudio" or m.startswith("torchaudio.")]:
            del sys.modules[name]
    try:
        from importlib.metadata import version

        import kaldi_native_fbank  # noqa: F401
    except ImportError:
        raise SystemExit("neither torchaudio nor kaldi-native-fbank imports: "
                         "pip install -e '.[bench]'") from None
    top = types.ModuleType("torchaudio")
    compliance = types.ModuleType("torchaudio.compliance")
    kaldi = types.ModuleType("torchaudio.compliance.kaldi")
    kaldi.fbank = knf_fbank
    compliance.kaldi = kaldi
    top.compliance = compliance
    sys.modules.update({"torchaudio": top, "torchaudio.compliance": compliance,
                        "torchaudio.compliance.kaldi": kaldi})
    return f"kaldi-native-fbank {version('kaldi-native-fbank')}"


def import_reference(ref: Path):
    """(CAMPPlus class, FBank class, description of the fbank in use) from the checkout, which
    is imported as the package ``speakerlab`` rooted there (no change to ``sys.path``)."""
    kaldi = kaldi_module()
    try:
        import scipy  # noqa: F401
    except ImportError:  # augmentation (training only) needs scipy; FBank does not
        stub = types.ModuleType("speakerlab.process.augmentation")

        class NoiseReverbCorrupter:  # placeholder, never called here
            def __init__(self, *a, **k):
                raise RuntimeError("augmentation is not available in this benchmark")

        stub.NoiseReverbCorrupter = NoiseReverbCorrupter
        sys.modules["speakerlab.process.augmentation"] = stub
    root = types.ModuleType("speakerlab")
    root.__path__ = [str(ref / "speakerlab")]  # a namespace package in the checkout
    sys.modules["speakerlab"] = root
    from speakerlab.models.campplus.DTDNN import CAMPPlus
    from speakerlab.process.processor import FBank

    return CAMPPlus, FBank, kaldi


def git_commit(ref: Path) -> str:
    try:
        r = subprocess.run(["git", "-C", str(ref), "rev-parse", "--show-toplevel", "HEAD"],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = r.stdout.split()
    if r.returncode or len(lines) != 2 or Path(lines[0]).resolve() != ref.resolve():
        return "not a git checkout"
    return lines[1][:12]


def pick(files: list[Path], limit: int | None) -> list[Path]:
    """``limit`` files spread evenly over the sorted list (all when None)."""
    if not limit or limit >= len(files):
        return files
    idx = np.unique(np.linspace(0, len(files) - 1, limit).round().astype(int))
    return [files[i] for i in idx]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def to_campplus192(raw: np.ndarray) -> np.ndarray:
    """speakerdb's raw output → the 192-D CAM++ embedding it was made from."""
    if raw.shape[1] == 192:
        return raw
    from speakerdb.model.campplus.head import read_head

    weight, _ = read_head()  # (256, 192): raw = e @ weight.T
    return np.asarray(raw, np.float64) @ np.linalg.pinv(weight.astype(np.float64).T)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference-dir", default=None,
                    help=f"3D-Speaker checkout (default ${ENV}, else ../3D-Speaker)")
    ap.add_argument("--speech", type=Path, default=SPEECH)
    ap.add_argument("--limit", type=int, default=None, help="use N files spread over the set")
    ap.add_argument("--repeats", type=int, default=1, help="timed rounds per pipeline")
    args = ap.parse_args()

    ref_dir = reference_dir(args.reference_dir)
    if (why := missing_reference(ref_dir)) is not None:
        print(why, file=sys.stderr)
        return 2
    if not args.speech.is_dir():
        print(f"no speech at {args.speech} (give --speech DIR)", file=sys.stderr)
        return 2

    from speakerdb.audio import AudioPolicy, prepare
    from speakerdb.config import IngestConfig
    from speakerdb.ingest.runner import embed_segments
    from speakerdb.model.campplus.fbank import fbank as sdb_fbank
    from speakerdb.model.campplus.fbank import mean_normalise
    from speakerdb.model.campplus.weights import CAMPPLUS, ensure_weights
    from speakerdb.model.registry import load_embedder

    CAMPPlus, FBank, kaldi_impl = import_reference(ref_dir)
    import torchaudio.compliance.kaldi as Kaldi

    # --- start-up: weights, models, audio (not timed)
    weights = ensure_weights(CAMPPLUS)
    ref_model = CAMPPlus(feat_dim=80, embedding_size=192)
    ref_model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True),
                              strict=True)
    ref_model.eval()
    feature_extractor = FBank(80, sample_rate=16000, mean_nor=True)
    emb = load_embedder("campplus", "cpu")
    batch = IngestConfig().embed_batch
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)

    files = pick(sorted(args.speech.rglob("*.wav")), args.limit)
    per_read = IngestConfig().files_per_batch
    prepared = [[s.samples for s in prepare(f, AudioPolicy()).segments] for f in files]
    chunks = [[s for p in prepared[i : i + per_read] for s in p]
              for i in range(0, len(files), per_read)]
    segs = [s for c in chunks for s in c]
    audio_s = sum(len(s) for s in segs) / 16000
    lens = sorted(len(s) / 16000 for s in segs)

    def reference(segments):
        out = np.zeros((len(segments), 192), np.float32)
        for i, s in enumerate(segments):
            wav = torch.from_numpy(s)
            feat = feature_extractor(wav).unsqueeze(0)
            with torch.no_grad():
                out[i] = ref_model(feat).detach().squeeze(0).cpu().numpy()
        return out

    def one_by_one(segments):
        return np.concatenate([emb([s]) for s in segments])

    def ingest(segments):
        return embed_segments(emb, segments, batch)

    print(f"reference: {ref_dir} (commit {git_commit(ref_dir)}), fbank: {kaldi_impl}")
    print(f"speakerdb: {emb.name} ({emb.sha256[:12]}), raw {emb.raw_dim}-D; ingest batch {batch}")
    print(f"torch {torch.__version__}, {threads} threads; {len(files)} files -> {len(segs)} "
          f"segments, {audio_s:.1f} s of audio ({lens[0]:.1f}-{lens[-1]:.1f} s, median "
          f"{statistics.median(lens):.1f} s)")

    # --- front end: the reference's kaldi fbank against speakerdb's, on every segment
    raw_d = cmn_d = total = 0.0
    cells = off = 0
    for s in segs:
        w = torch.from_numpy(s)
        a = Kaldi.fbank(w[None], num_mel_bins=80, sample_frequency=16000, dither=0)
        b = sdb_fbank(w)[0]
        raw_d = max(raw_d, float((a - b).abs().max()))
        diff = (a - a.mean(0) - mean_normalise(b)).abs()
        cmn_d, total = max(cmn_d, float(diff.max())), total + float(diff.sum())
        cells, off = cells + diff.numel(), off + int((diff > 1e-4).sum())
    print(f"fbank, reference kaldi vs speakerdb: max |diff| raw {raw_d:.1e}, mean-normalised "
          f"{cmn_d:.1e}, mean {total / cells:.1e}; {100 * off / cells:.3f} % of cells off by "
          f"> 1e-4 (float32 rounding in near-silent cells)")
    if FIXTURES.is_dir():
        import soundfile as sf

        worst_cos, worst_abs = 1.0, 0.0
        wavs = sorted(FIXTURES.glob("*.wav"))
        for wav in wavs:
            want = FIXTURES / wav.name.replace(".wav", ".embedding_from_torchaudio_fbank.npy")
            if not want.is_file():
                continue
            got = reference([sf.read(wav, dtype="float32")[0]])
            exp = np.load(want)[None]
            worst_cos = min(worst_cos, float(cosines(got, exp)[0]))
            worst_abs = max(worst_abs, float(np.abs(got - exp).max()))
        print(f"reference pipeline vs the torchaudio fixture embeddings ({len(wavs)} wavs): "
              f"1 - cos <= {1 - worst_cos:.1e}, max |diff| {worst_abs:.1e}")

    # --- warm-up (not timed)
    short_long = [segs[int(np.argmin([len(s) for s in segs]))],
                  segs[int(np.argmax([len(s) for s in segs]))]]
    for fn in (reference, one_by_one, ingest):
        fn(short_long)

    pipes = [("reference", reference), ("speakerdb 1-by-1", one_by_one),
             ("speakerdb ingest", ingest)]
    walls = {name: [] for name, _ in pipes}  # per round: seconds over every segment
    cpus = {name: [] for name, _ in pipes}
    chunk_walls = {name: [] for name, _ in pipes}  # per read batch, all rounds
    outs: dict[str, list[np.ndarray]] = {name: [] for name, _ in pipes}
    step = 0
    for r in range(args.repeats):
        wall = dict.fromkeys(walls, 0.0)
        cpu = dict.fromkeys(walls, 0.0)
        for chunk in chunks:
            for name, fn in (pipes if step % 2 == 0 else pipes[::-1]):
                c0, t0 = time.process_time(), time.perf_counter()
                out = fn(chunk)
                dt = time.perf_counter() - t0
                wall[name] += dt
                cpu[name] += time.process_time() - c0
                chunk_walls[name].append(dt)
                if r == 0:
                    outs[name].append(out)
            step += 1
        for name in walls:
            walls[name].append(wall[name])
            cpus[name].append(cpu[name] / wall[name])
        print(f"round {r + 1}: " + ", ".join(f"{n} {wall[n]:.2f} s" for n, _ in pipes),
              flush=True)

    base = statistics.median(walls["reference"])
    print(f"\n{'pipeline':<18} {'seconds':>8} {'clips/s':>8} {'RTF':>7} {'cpu/wall':>8} "
          f"{'x ref':>6}  x ref per read batch: median (min-max)")
    for name, _ in pipes:
        t = statistics.median(walls[name])
        per = [a / b for a, b in zip(chunk_walls["reference"], chunk_walls[name])]
        print(f"{name:<18} {t:>8.2f} {len(segs) / t:>8.2f} {t / audio_s:>7.4f} "
              f"{statistics.median(cpus[name]):>8.2f} {base / t:>6.2f}  "
              f"{statistics.median(per):.2f} ({min(per):.2f}-{max(per):.2f})")
    print(f"(seconds: median over {args.repeats} round(s) of {len(chunks)} read batches; x ref: "
          "the reference's seconds over the pipeline's, target >= 1.2; cpu/wall near the "
          f"thread count ({threads}) means no other load)")

    got = {name: np.concatenate(o) for name, o in outs.items()}
    for name in ("speakerdb 1-by-1", "speakerdb ingest"):
        c = cosines(got["reference"], to_campplus192(got[name]))
        print(f"cosine reference vs {name} (192-D, per segment): min {c.min():.9f}, "
              f"mean {c.mean():.9f} (1 - cos max {1 - c.min():.1e})")
    d = np.abs(got["speakerdb 1-by-1"] - got["speakerdb ingest"]).max()
    print(f"speakerdb 1-by-1 vs ingest batches: max |diff| of raw outputs {d:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

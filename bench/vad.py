"""Speech detection measured: EER and top-1 on speech-dev with the energy gate and with
Silero VAD, on clean files and on each file's speech (2 s) inside 8 s of silence, noise or
music (built deterministically from the file and generated signals).

    python -m bench.vad [--model campplus] [--json OUT]

Every file is a probe against every speaker's mean embedding (its own speaker's mean without
that file: leave one file out); enrollment is the clean files cut the same way as the probes
(the database's one choice). The energy gate run is the baseline of the same run. Prints one
JSON document (also written to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from speakerdb.audio import AudioPolicy, Waveform, prepare, with_vad
from speakerdb.errors import AudioError
from speakerdb.eval.metrics import eer
from speakerdb.eval.trials import labelled_files
from speakerdb.ingest.runner import embed_segments
from speakerdb.model.prefixes import mean_embedding
from speakerdb.model.registry import load_embedder

SPEECH_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech-dev"
RATE = 16000
SPEECH_S, TOTAL_S = 2.0, 8.0


def pink(n: int, rng) -> np.ndarray:
    """Pink-ish noise (white noise through a one-pole low-pass and a 1/f-like sum)."""
    w = rng.standard_normal(n)
    spec = np.fft.rfft(w)
    f = np.arange(len(spec))
    spec[1:] /= np.sqrt(f[1:])
    x = np.fft.irfft(spec, n)
    return x / np.sqrt(np.mean(x ** 2))


def music(n: int, rng) -> np.ndarray:
    """Chords of three harmonic notes every 0.5 s with a decaying envelope and a click on
    each beat: tonal, rhythmic, not speech."""
    t = np.arange(n) / RATE
    x = np.zeros(n)
    beat = int(0.5 * RATE)
    for b in range(0, n, beat):
        seg = slice(b, min(n, b + beat))
        tt = t[seg] - t[b]
        env = np.exp(-3 * tt)
        root = 110 * 2 ** (rng.integers(0, 12) / 12)
        for ratio in (1, 1.26, 1.5):
            for h in range(1, 6):
                x[seg] += env * np.sin(2 * np.pi * root * ratio * h * tt) / h
        x[b: b + 400] += rng.standard_normal(min(400, n - b)) * np.exp(-np.arange(min(400, n - b)) / 80)
    return x / np.sqrt(np.mean(x ** 2))


BACKGROUND_RMS = {"silence": 10 ** (-70 / 20), "noise": 0.02, "music": 0.03}


def condition(x: np.ndarray, cond: str, seed: int) -> np.ndarray:
    """The file's speech for ``cond``: ``clean`` as it is; ``crop`` 2 s from its middle;
    else those 2 s at a random place inside 8 s of ``cond``."""
    if cond == "clean":
        return x
    n = int(SPEECH_S * RATE)
    a = max(0, (len(x) - n) // 2)
    speech = x[a: a + n]
    if cond == "crop":
        return speech
    rng = np.random.default_rng(seed)
    total = int(TOTAL_S * RATE)
    if cond == "silence":
        bg = rng.standard_normal(total)
    elif cond == "noise":
        bg = pink(total, rng)
    else:
        bg = music(total, rng)
    out = BACKGROUND_RMS[cond] * bg
    at = int(rng.integers(0, total - len(speech)))
    out[at: at + len(speech)] += speech
    return np.clip(out, -1, 1).astype(np.float32)


def embed(embedder, x, policy):
    try:
        segs = prepare(Waveform(x, RATE), policy).segments
    except AudioError:
        return None
    raw = embed_segments(embedder, [s.samples for s in segs], 16)
    return mean_embedding(raw, embedder.dims)[max(embedder.dims)]


def measure(embedder, files, signals, vad: str, conds) -> dict:
    policy = with_vad(AudioPolicy(), vad)
    speakers = sorted({f.speaker for f in files})
    spk = np.array([speakers.index(f.speaker) for f in files])
    enrol = [embed(embedder, x, policy) for x in signals]
    dim = max(embedder.dims)
    e = np.stack([v if v is not None else np.zeros(dim, np.float32) for v in enrol])
    sums = np.zeros((len(speakers), dim))
    counts = np.zeros(len(speakers))
    for i, v in enumerate(enrol):
        if v is not None:
            sums[spk[i]] += v
            counts[spk[i]] += 1
    out = {}
    for cond in conds:
        t0 = time.perf_counter()
        target, nontarget, top1, failed = [], [], 0, 0
        for i, x in enumerate(signals):
            q = embed(embedder, condition(x, cond, i), policy)
            if q is None:
                failed += 1
                continue
            own = sums.copy()
            cnt = counts.copy()
            if enrol[i] is not None:
                own[spk[i]] -= e[i]
                cnt[spk[i]] -= 1
            means = own / np.maximum(cnt, 1)[:, None]
            means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
            s = means @ q
            s[cnt == 0] = -1
            target.append(s[spk[i]])
            nontarget.extend(np.delete(s, spk[i])[np.delete(cnt, spk[i]) > 0])
            top1 += int(np.argmax(s) == spk[i])
        out[cond] = {"eer_pct": round(100 * eer(np.array(target), np.array(nontarget)), 2),
                     "top1": round(top1 / len(signals), 4), "failed": failed,
                     "probes": len(signals), "seconds": round(time.perf_counter() - t0, 1)}
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--data", default=str(SPEECH_DEV))
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    from speakerdb.audio import load

    root, files = labelled_files(args.data)
    files = [f for f in files if sum(g.speaker == f.speaker for g in files) >= 2]
    signals = [load(root / f.path).samples for f in files]
    embedder = load_embedder(args.model, "cpu")
    conds = ("clean", "crop", "silence", "noise", "music")
    doc = {"model": embedder.name, "files": len(files),
           "speakers": len({f.speaker for f in files}),
           "conditions": {"crop": "2 s from the middle of the file",
                          "silence": "those 2 s inside 8 s of noise at -70 dBFS",
                          "noise": "inside 8 s of pink noise at RMS 0.02",
                          "music": "inside 8 s of generated chords at RMS 0.03"},
           "energy": measure(embedder, files, signals, "energy", conds),
           "silero": measure(embedder, files, signals, "silero", conds)}
    text = json.dumps(doc, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return doc


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Fit the Matryoshka head of the default model ``campplus`` and write
``speakerdb/model/campplus/head.npz``.

    python scripts/train_campplus_head.py ../shared/data/speech-dev
    python scripts/train_campplus_head.py CORPUS [--out PATH] [--weights FILE] [--cache DIR]

CORPUS is a folder with ``manifest.csv`` (columns ``path,speaker`` and optionally ``source``;
``path`` relative to the folder) or with one sub-folder of audio files per speaker. Any format
speakerdb reads is accepted; audio is mixed to mono and resampled to 16 kHz. The shipped file
was made from ../shared/data/speech-dev (public sources: LibriSpeech files from github
resemble-ai/Resemblyzer@15d828ed, VCTK from auspicious3000/autovc@c1827a60, LibriVox from
cmusphinx/pocketsphinx@511126b4, Picovoice/eagle@5d97c54e samples; see its README).

The head (``fit_head``; applied by ``speakerdb/model/campplus/head.py``) is

    raw[:192] = R' e     e = CAM++'s own 192-D embedding, R a 192x192 rotation
    raw[192:] = 0

The columns of R are the eigenvectors, largest first, of the speaker-weighted second moment of
unit CAM++ embeddings of the clean files and of label-preserving degraded clips (1-2 s crops,
clean or with babble / coloured noise, ``AUG_RECIPES``), taken in the complement of the clean
mean direction, which comes last. So the 192-D prefix is CAM++'s embedding rotated (its cosine
scores equal CAM++'s exactly, and so do the 256-D ones), and each shorter prefix keeps the
directions in which speakers vary most. The method was chosen by speaker-disjoint
cross-validation against PCA, a between/within-scatter (LDA trace-ratio) ordering and fitted
extra dimensions: ``bench/mrl_head_eer.py``.

Deterministic: fixed seeds, crop and mix recipes, batches, float64 fitting. The fitting data
(counts, sha256 of the audio, sources), the recipes and the CAM++ weights' sha256 are written
into the file's ``meta``. About 2 minutes on 2 CPU cores for speech-dev.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speakerdb.eval.degrade import SR, babble, coloured_noise, crop, mix, rng_for
from speakerdb.model.campplus.fit import fit_head, unit

ROOT = Path(__file__).resolve().parents[1]
AUDIO_EXT = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus")
HEAD_PATH = ROOT / "speakerdb" / "model" / "campplus" / "head.npz"
VERSION = 1


# --------------------------------------------------------------------------------------------
# corpus


@dataclass(frozen=True)
class Item:
    path: str            # absolute path
    rel: str             # path relative to the corpus root (stable identifier)
    speaker: str
    recording: str       # original recording: files sharing it are one session


def read_corpus(root: str | os.PathLike) -> list[Item]:
    """Items of a labelled speech folder, sorted by relative path.

    ``manifest.csv`` (``path,speaker[,source]``) when present; the recording of a file is the
    ``source`` text before `` [split`` (speech-dev's convention), else the file itself.
    Otherwise every audio file in ``<root>/<speaker>/`` (one level) is an item."""
    root = Path(root)
    items = []
    manifest = root / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="") as f:
            for r in csv.DictReader(f):
                src = (r.get("source") or "").split(" [split")[0].strip() or r["path"]
                items.append(Item(str(root / r["path"]), r["path"], r["speaker"], src))
    else:
        for spk in sorted(p for p in root.iterdir() if p.is_dir()):
            for f in sorted(spk.iterdir()):
                if f.suffix.lower() in AUDIO_EXT:
                    rel = f"{spk.name}/{f.name}"
                    items.append(Item(str(f), rel, spk.name, rel))
    if not items:
        raise SystemExit(f"{root}: no labelled audio (no manifest.csv, no <speaker>/ folders)")
    return sorted(items, key=lambda it: it.rel)


def load_wave(path: str) -> np.ndarray:
    from speakerdb.audio import load

    return load(path).samples.astype(np.float32)


def corpus_digest(items: list[Item], waves: list[np.ndarray]) -> str:
    """sha256 over (relative path, speaker, 16-bit PCM of the 16 kHz audio) of every item."""
    h = hashlib.sha256()
    for it, w in zip(items, waves):
        h.update(f"{it.rel}\t{it.speaker}\n".encode())
        h.update(np.round(np.clip(w, -1, 1) * 32767).astype("<i2").tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# the evaluation condition (recipes in speakerdb.eval.degrade)


def degrade_test(i: int, items: list[Item], waves: list[np.ndarray], pool: list[int],
                 seed: int, rep: int = 0, seconds: float = 1.0, talkers: int = 3,
                 snr_db: float = 5.0, talkers_out: list | None = None) -> np.ndarray:
    """The evaluation's test-side signal for item ``i``: a ``seconds`` crop mixed at
    ``snr_db`` with babble of ``talkers`` other speakers (one file each, from ``pool``:
    indices of items, never of ``i``'s speaker). Deterministic in (seed, rep, item).
    ``talkers_out``: when given, the babble speakers' names are appended to it."""
    rng = rng_for("test", seed, items[i].rel) if rep == 0 else rng_for("test", seed, rep,
                                                                           items[i].rel)
    n = int(round(seconds * SR))
    target = crop(waves[i], n, rng)
    others = sorted({items[j].speaker for j in pool} - {items[i].speaker})
    spk = rng.choice(len(others), size=talkers, replace=False)
    files = []
    for s in sorted(spk):
        if talkers_out is not None:
            talkers_out.append(others[s])
        cands = [j for j in pool if items[j].speaker == others[s]]
        files.append(waves[cands[int(rng.integers(len(cands)))]])
    return mix(target, babble(files, n, rng), snr_db)


# --------------------------------------------------------------------------------------------
# CAM++ features


class Campp:
    """CAM++ pooled statistics of waveforms, in fixed batches of equal-length clips.

    ``cache``: optional folder; each batch's result is stored under the sha1 of its samples,
    so reruns (and the benchmark's cross-validation) do not recompute. Results with and
    without the cache are identical (same batches)."""

    def __init__(self, weights: str | os.PathLike | None = None,
                 cache: str | os.PathLike | None = None, batch: int = 16):
        import torch

        from speakerdb.model.campplus.loader import load_campplus
        from speakerdb.model.campplus.network import CamppWave
        from speakerdb.model.campplus.weights import CAMPPLUS, ensure_weights, sha256_file

        self.torch = torch
        path = Path(weights) if weights else ensure_weights(CAMPPLUS)
        self.weights_sha256 = CAMPPLUS.sha256 if not weights else sha256_file(path)
        self.net = CamppWave(load_campplus(path)).eval()
        self.cache = Path(cache) if cache else None
        if self.cache:
            self.cache.mkdir(parents=True, exist_ok=True)
        self.batch = batch
        self.seconds = 0.0

    def _run(self, clips: list[np.ndarray]) -> np.ndarray:
        x = np.stack(clips).astype(np.float32)
        key = None
        if self.cache:
            key = self.cache / (hashlib.sha1(x.tobytes() + repr(x.shape).encode()).hexdigest()
                                + ".npy")
            if key.is_file():
                return np.load(key)
        t = time.perf_counter()
        with self.torch.inference_mode():
            out = self.net.pooled(self.torch.from_numpy(x)).numpy().astype(np.float32)
        self.seconds += time.perf_counter() - t
        if key is not None:
            tmp = key.with_suffix(f".{os.getpid()}.tmp.npy")
            np.save(tmp, out)
            os.replace(tmp, key)
        return out

    def pooled(self, waves: list[np.ndarray]) -> np.ndarray:
        """(N, 1024) float32 statistics; clips of one length are batched in input order."""
        out = np.zeros((len(waves), 1024), np.float32)
        by_len: dict[int, list[int]] = {}
        for i, w in enumerate(waves):
            by_len.setdefault(len(w), []).append(i)
        for n in sorted(by_len):
            idx = by_len[n]
            for k in range(0, len(idx), self.batch):
                part = idx[k:k + self.batch]
                out[part] = self._run([waves[i] for i in part])
        return out

    def embed(self, stats: np.ndarray) -> np.ndarray:
        """(N, 1024) statistics → (N, 192) CAM++ embeddings (its own dense layer + BN)."""
        with self.torch.inference_mode():
            e = self.net.model.embed_from_pooled(self.torch.from_numpy(
                np.asarray(stats, np.float32)))
        return e.numpy().astype(np.float32)

    def dense_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) in float64 with embed(s) = W @ s + b (1x1 conv followed by affine-free BN)."""
        d = self.net.model.xvector.dense
        sd = {k: v.double().numpy() for k, v in d.state_dict().items()}
        w = next(v for k, v in sd.items() if k.endswith("weight") and v.ndim == 3)[:, :, 0]
        mean = next(v for k, v in sd.items() if k.endswith("running_mean"))
        var = next(v for k, v in sd.items() if k.endswith("running_var"))
        eps = next(m.eps for m in d.modules() if hasattr(m, "running_var"))
        inv = 1.0 / np.sqrt(var + eps)
        return w * inv[:, None], -mean * inv


# --------------------------------------------------------------------------------------------
# fitting data: clean files plus label-preserving degradations


AUG_RECIPES: tuple[tuple[float, str, float, float], ...] = (
    # (crop seconds, noise kind, SNR low dB, SNR high dB); one clip per recipe and file
    (1.0, "clean", 0, 0),
    (1.0, "babble3", 0, 10),
    (1.5, "babble", 5, 20),
    (1.5, "colour", 0, 15),
    (2.0, "babble3", 0, 10),
    (2.0, "clean", 0, 0),
)
"""Short crops (1-2 s, at least as short as the 2.35 s shortest file) clean or mixed with
babble of other speakers of the fitting set (3 talkers, or 1-4) or coloured Gaussian noise
(spectral exponent uniform in [0, 2]) at a uniform SNR."""

def fit_clips(items: list[Item], waves: list[np.ndarray], train: list[int], seed: int = 0,
              recipes=AUG_RECIPES) -> tuple[list[np.ndarray], list[int]]:
    """Degraded clips of every item in ``train`` and the item each comes from. Babble comes
    from other speakers within ``train`` only. Deterministic in (seed, item, recipe)."""
    clips, src = [], []
    by_spk: dict[str, list[int]] = {}
    for j in train:
        by_spk.setdefault(items[j].speaker, []).append(j)
    speakers = sorted(by_spk)
    for i in train:
        others = [s for s in speakers if s != items[i].speaker]
        for r, (sec, kind, lo, hi) in enumerate(recipes):
            rng = rng_for("fit", seed, items[i].rel, r)
            n = int(round(sec * SR))
            x = crop(waves[i], n, rng)
            if kind != "clean":
                snr = float(rng.uniform(lo, hi))
                if kind == "colour":
                    noise = coloured_noise(n, rng, float(rng.uniform(0.0, 2.0)))
                else:
                    talkers = 3 if kind == "babble3" else int(rng.integers(1, 5))
                    pick = rng.choice(len(others), size=min(talkers, len(others)), replace=False)
                    files = [waves[by_spk[others[s]][int(rng.integers(len(by_spk[others[s]])))]]
                             for s in sorted(pick)]
                    noise = babble(files, n, rng)
                x = mix(x, noise, snr)
            clips.append(x)
            src.append(i)
    return clips, src


# --------------------------------------------------------------------------------------------
# the head: an ordered rotation of CAM++'s embedding


# --------------------------------------------------------------------------------------------
# cross-validation folds (used by bench/mrl_head_eer.py)


def speaker_folds(items: list[Item], k: int, seed: int) -> dict[str, int]:
    """Speaker → fold in 0..k-1: speakers with several recordings and the rest are each
    shuffled (seeded) and dealt round-robin, so every fold gets both kinds."""
    recs: dict[str, set] = {}
    for it in items:
        recs.setdefault(it.speaker, set()).add(it.recording)
    out: dict[str, int] = {}
    rng = rng_for("folds", seed, k)
    start = 0
    for multi in (True, False):
        group = sorted(s for s, r in recs.items() if (len(r) > 1) == multi)
        perm = rng.permutation(len(group))
        for pos, g in enumerate(perm):
            out[group[g]] = (start + pos) % k
        start = (start + len(group)) % k
    return out


# --------------------------------------------------------------------------------------------
# main


MAX_SECONDS = 30.0
"""Whole-file embeddings use at most the first 30 s (speech-dev's longest file is 18 s)."""


def data_sources(root: Path) -> list[str]:
    """``[count] repository@commit [licence]`` lines from a manifest's ``source`` column."""
    import re

    manifest = root / "manifest.csv"
    if not manifest.is_file():
        return []
    counts: dict[str, int] = {}
    with open(manifest, newline="") as f:
        for r in csv.DictReader(f):
            m = re.search(r"github:([^:\s]+)", r.get("source") or "")
            key = f"github:{m.group(1)}" if m else "(no repository given)"
            lic = (r.get("license") or "").split(" (")[0]
            counts[f"{key} [{lic}]"] = counts.get(f"{key} [{lic}]", 0) + 1
    return [f"{n} files from {k}" for k, n in sorted(counts.items())]


def embeddings_for_fit(campp: Campp, items: list[Item], waves: list[np.ndarray],
                       train: list[int], seed: int = 0):
    """(clean embeddings of ``train``, their speakers, degraded-clip embeddings, speakers)."""
    n = int(MAX_SECONDS * SR)
    clean = campp.embed(campp.pooled([waves[i][:n] for i in train]))
    clips, src = fit_clips(items, waves, train, seed)
    aug = campp.embed(campp.pooled(clips))
    spk = [items[i].speaker for i in train]
    return clean, spk, aug, [items[i].speaker for i in src]


def write_head(path: Path, weight: np.ndarray, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, weight=np.asarray(weight, np.float32),
             meta=np.array(json.dumps(meta, sort_keys=True)))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path, help="folder with manifest.csv or <speaker>/ folders")
    ap.add_argument("--out", type=Path, default=HEAD_PATH, help=f"default {HEAD_PATH}")
    ap.add_argument("--weights", help="CAM++ weight file (default: ensure_weights(CAMPPLUS))")
    ap.add_argument("--cache", help="folder caching CAM++ statistics per batch (optional)")
    ap.add_argument("--seed", type=int, default=0, help="augmentation seed (default 0)")
    args = ap.parse_args(argv)

    import torch

    t0 = time.perf_counter()
    items = read_corpus(args.corpus)
    waves = [load_wave(it.path) for it in items]
    speakers = sorted({it.speaker for it in items})
    if len(speakers) < 2:
        raise SystemExit(f"{args.corpus}: need at least 2 speakers, found {len(speakers)}")
    campp = Campp(args.weights, cache=args.cache)
    clean, spk, aug, aug_spk = embeddings_for_fit(campp, items, waves,
                                                  list(range(len(items))), args.seed)
    weight = fit_head(clean, spk, aug, aug_spk)
    seconds = sum(min(len(w), int(MAX_SECONDS * SR)) for w in waves) / SR
    meta = {
        "format": "speakerdb campplus matryoshka head",
        "version": VERSION,
        "method": "ordered-rotation",
        "formula": "raw = weight @ e, e = CAM++ 192-D embedding (dense layer + BN, no ReLU)",
        "description": (
            "rows 0-191: rotation of the CAM++ embedding; columns ordered by the "
            "speaker-weighted second moment of unit embeddings (clean files + degraded clips), "
            "the mean direction last; rows 192-255: zero (256-D prefix == 192-D == CAM++)"),
        "dims": [64, 128, 192, 256],
        "extra": "zero",
        "campplus_sha256": campp.weights_sha256,
        "data": {
            "corpus": args.corpus.resolve().name,
            "files": len(items),
            "speakers": len(speakers),
            "seconds": round(seconds, 2),
            "audio_sha256": corpus_digest(items, waves),
            "sources": data_sources(args.corpus),
        },
        "augmentation": {"seed": args.seed, "recipes": [list(r) for r in AUG_RECIPES],
                         "clips": len(aug)},
        "script": "scripts/train_campplus_head.py",
        "torch": torch.__version__.split("+")[0],
        "numpy": np.__version__,
    }
    write_head(args.out, weight, meta)
    # the designed relation: cosine of the 192-D prefix equals CAM++'s cosine
    e = unit(clean)
    raw = clean @ np.asarray(weight, np.float32).astype(np.float64).T
    gap = np.abs(unit(raw[:, :192]) @ unit(raw[:, :192]).T - e @ e.T).max()
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"{args.out}: {len(items)} files, {len(speakers)} speakers, {seconds:.0f} s of audio, "
          f"{len(aug)} degraded clips; 192-D cosine vs CAM++ max |diff| {gap:.1e}; "
          f"sha256 {digest[:16]}…; {time.perf_counter() - t0:.0f} s "
          f"(CAM++ {campp.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

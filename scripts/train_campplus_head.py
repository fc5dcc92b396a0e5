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
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SR = 16000
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
# deterministic signal recipes


def rng_for(*key) -> np.random.Generator:
    """A generator seeded by a stable hash of ``key`` (strings and ints)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()) & 0xFFFFFFFF)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def crop(x: np.ndarray, n: int, rng: np.random.Generator, tries: int = 20) -> np.ndarray:
    """A random window of ``n`` samples (the whole signal tiled if shorter), retried until
    its RMS is at least half the signal's so that crops are not pauses."""
    if len(x) <= n:
        return np.resize(x, n).astype(np.float32)
    floor = 0.5 * rms(x)
    for i in range(tries):
        o = int(rng.integers(0, len(x) - n + 1))
        w = x[o:o + n]
        if rms(w) >= floor or i == tries - 1:
            return w.astype(np.float32)
    raise AssertionError


def mix(target: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """target + noise scaled to ``snr_db`` (RMS over the whole window)."""
    g = rms(target) / rms(noise) * 10.0 ** (-snr_db / 20.0)
    return (target + g * noise).astype(np.float32)


def babble(waves: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Sum of one random ``n``-sample crop of each wave, each scaled to unit RMS."""
    out = np.zeros(n, np.float64)
    for w in waves:
        c = crop(w, n, rng)
        out += c / rms(c)
    return out.astype(np.float32)


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


def coloured_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise with a 1/f**exponent power spectrum (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / f ** (exponent / 2.0), n).astype(np.float32)


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Speed perturbation (tempo and pitch, like sox ``speed``): resample by 1/factor."""
    import soxr

    return soxr.resample(x, SR * factor, SR, quality="HQ").astype(np.float32)


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


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float64)."""
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _fix_sign(v: np.ndarray) -> np.ndarray:
    """Deterministic column signs: the largest-magnitude entry of each column positive."""
    idx = np.argmax(np.abs(v), axis=0)
    s = np.sign(v[idx, np.arange(v.shape[1])])
    s[s == 0] = 1
    return v * s


def _eig_desc(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w, v = np.linalg.eigh((a + a.T) / 2)
    order = np.argsort(-w, kind="stable")
    return w[order], _fix_sign(v[:, order])


def second_moment(x: np.ndarray, labels, weighting: str = "speaker") -> np.ndarray:
    """E[x x'] of the rows of ``x``: every row equal (``"row"``) or every class equal
    (``"speaker"``: the mean over classes of each class's own mean of x x')."""
    x = np.asarray(x, np.float64)
    if weighting == "row":
        return x.T @ x / len(x)
    labels = np.asarray(labels)
    classes = sorted(set(labels.tolist()))
    c = np.zeros((x.shape[1],) * 2)
    for k in classes:
        xk = x[labels == k]
        c += xk.T @ xk / len(xk)
    return c / len(classes)


def ordered_rotation(x: np.ndarray, labels, mean_dir: np.ndarray | None,
                     weighting: str = "speaker") -> np.ndarray:
    """(192, 192) orthogonal R whose columns are the eigenvectors of the second moment of the
    unit rows ``x`` (weighted per ``weighting``), largest first, within the complement of
    ``mean_dir``; ``mean_dir`` (normalised) is the last column. ``mean_dir=None``: plain
    uncentred PCA ordering."""
    x = unit(x)
    d = x.shape[1]
    c = second_moment(x, labels, weighting)
    if mean_dir is None:
        return _eig_desc(c)[1]
    q = unit(mean_dir)[:, None]
    basis, _ = np.linalg.qr(np.concatenate([q, np.eye(d)], axis=1))
    b = basis[:, 1:d]                                 # orthonormal basis of q's complement
    _, v = _eig_desc(b.T @ c @ b)
    sign = 1.0 if q.sum() >= 0 else -1.0
    return np.concatenate([_fix_sign(b @ v), sign * q], axis=1)


def fit_head(clean_emb: np.ndarray, clean_labels, aug_emb: np.ndarray, aug_labels
             ) -> np.ndarray:
    """The shipped head: (256, 192) float64 weight with raw = weight @ e.

    * Rows 0..191: R' with R = ``ordered_rotation`` of the unit CAM++ embeddings of the clean
      files and of their degraded clips (``fit_clips``), every speaker weighted equally, with
      the direction of the clean files' mean last. Short prefixes keep the directions along
      which speakers (and their degraded queries) vary most; the common mean direction is a
      near-constant offset to every cosine, so it is left to the full 192-D.
    * Rows 192..255: zero, so the 256-D prefix equals the 192-D one, i.e. CAM++'s own cosine.
      (Extra dimensions fitted on the 1024-D statistics CAM++'s dense layer discards gained
      ~2-3 % EER on average in cross-validation but were worse than CAM++ on some folds;
      see bench/mrl_head_eer.py.)
    """
    clean = unit(clean_emb)
    x = np.concatenate([clean, unit(aug_emb)])
    labels = np.concatenate([np.asarray(clean_labels), np.asarray(aug_labels)])
    r = ordered_rotation(x, labels, mean_dir=clean.mean(0), weighting="speaker")
    return np.concatenate([r.T, np.zeros((256 - r.shape[1], r.shape[0]))])


def lda_rotation(x: np.ndarray, labels, blocks=(64, 64, 64)) -> np.ndarray:
    """Alternative evaluated in the benchmark (not shipped): a rotation whose first 64, 128
    columns solve the trace-ratio problem max tr(U'SbU)/tr(U'SwU) (between- vs within-speaker
    scatter of the unit rows) in the complement of the columns before them."""
    x = unit(x)
    labels = np.asarray(labels)
    classes = sorted(set(labels.tolist()))
    means = np.array([x[labels == k].mean(0) for k in classes])
    sw = sum(np.cov(x[labels == k].T, bias=True) for k in classes) / len(classes)
    db = means - means.mean(0)
    sb = db.T @ db / len(classes)
    d = x.shape[1]
    basis, cols = np.eye(d), []
    for k in blocks:
        b, w = basis.T @ sb @ basis, basis.T @ sw @ basis
        k = min(k, basis.shape[1])
        lam = 0.0
        for _ in range(100):           # Wang et al. (2007) trace-ratio iteration
            u = _eig_desc(b - lam * w)[1][:, :k]
            new = float(np.trace(u.T @ b @ u) / np.trace(u.T @ w @ u))
            if abs(new - lam) <= 1e-12 * max(1.0, abs(new)):
                break
            lam = new
        cols.append(basis @ u)
        full = np.concatenate(cols, axis=1)
        basis = _eig_desc(np.eye(d) - full @ full.T)[1][:, : d - full.shape[1]]
    if basis.shape[1]:
        cols.append(basis)
    return _fix_sign(np.concatenate(cols, axis=1))


def null_extras(stats: np.ndarray, labels, dense_w: np.ndarray, emb_rms: float,
                alpha: float = 0.2, k: int = 64, reg: float = 0.1):
    """Alternative evaluated in the benchmark (not shipped): ``k`` LDA directions of the part
    of the 1024-D statistics in the null space of CAM++'s dense layer, scaled so their RMS
    norm is ``alpha`` times ``emb_rms``. Returns f(stats) -> (N, k)."""
    s = np.asarray(stats, np.float64)
    p = np.eye(s.shape[1]) - np.linalg.pinv(dense_w) @ dense_w
    r = s @ p.T
    mu = r.mean(0)
    r = r - mu
    labels = np.asarray(labels)
    classes = sorted(set(labels.tolist()))
    means = np.array([r[labels == c].mean(0) for c in classes])
    sw = sum(np.cov(r[labels == c].T, bias=True) for c in classes) / len(classes)
    sw = sw + reg * np.trace(sw) / len(sw) * np.eye(len(sw))
    db = means - means.mean(0)
    sb = db.T @ db / len(classes)
    lw, vw = np.linalg.eigh(sw)
    white = vw / np.sqrt(lw)
    a = white @ _eig_desc(white.T @ sb @ white)[1][:, :k]
    scale = alpha * emb_rms / np.sqrt(np.mean(np.sum((r @ a) ** 2, axis=1)))
    return lambda st: scale * ((np.asarray(st, np.float64) @ p.T - mu) @ a)


# --------------------------------------------------------------------------------------------
# evaluation helpers (used by bench/mrl_head_eer.py)


def eer(target: np.ndarray, nontarget: np.ndarray) -> float:
    """Equal error rate (fraction), exact from the sorted scores: the miss and false-alarm
    rates at every threshold, linearly interpolated where they cross."""
    t = np.asarray(target, np.float64)
    n = np.asarray(nontarget, np.float64)
    scores = np.concatenate([t, n])
    is_t = np.concatenate([np.ones(len(t)), np.zeros(len(n))])
    order = np.argsort(scores, kind="stable")
    scores, is_t = scores[order], is_t[order]
    # threshold just above scores[k] (accept > threshold): misses = targets at or below it
    miss = np.concatenate([[0.0], np.cumsum(is_t)]) / len(t)
    fa = 1.0 - np.concatenate([[0.0], np.cumsum(1 - is_t)]) / len(n)
    # only thresholds between distinct scores are operating points
    keep = np.concatenate([[True], scores[1:] != scores[:-1], [True]])
    miss, fa = miss[keep], fa[keep]
    d = miss - fa                       # rises from -1 to +1
    k = int(np.argmax(d >= 0))
    if d[k] == 0 or k == 0:
        return float(miss[k])
    # interpolate between operating points k-1 and k
    a = d[k - 1] / (d[k - 1] - d[k])
    return float(miss[k - 1] + a * (miss[k] - miss[k - 1]))


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

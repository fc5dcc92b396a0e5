"""Speaker-like vectors for the search benchmarks: real embeddings of speech-dev, their
per-dimension spectrum, and synthetic stores of any size drawn from that spectrum.

Real: every speech-dev file is cut into 3 s crops (hop 1.5 s, the whole file when shorter) and
embedded by the default model; the raw 256-D outputs are cached under
``~/.cache/speakerdb/search-scale`` by model sha256.

Synthetic: in the model's raw coordinates (the Matryoshka head's ordered basis, where the
speaker-weighted second moment is diagonal) dimension ``i`` of a speaker's mean is drawn from
N(mu_i, b_i) and each of its segments adds N(0, w_i): ``mu`` is the real global mean, ``b`` the
between-speaker and ``w`` the within-speaker variance measured on the real embeddings. Speakers
hold 50..150 segments (uniform), like a VoxCeleb-sized corpus (about 100 utterances each).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech-dev"
CACHE = Path.home() / ".cache" / "speakerdb" / "search-scale"
CROP_S, HOP_S = 3.0, 1.5


def real_embeddings(model: str = "campplus",
                    speech: Path = SPEECH) -> tuple[np.ndarray, np.ndarray]:
    """(raw (n, 256) float32, speaker index (n,) int) of 3 s crops of every speech-dev file."""
    from speakerdb.audio import AudioPolicy, prepare
    from speakerdb.ingest.runner import embed_segments
    from speakerdb.model.registry import load_embedder

    emb = load_embedder(model, "cpu")
    path = CACHE / f"{model}-{emb.sha256[:16]}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["raw"], z["speaker"]
    files = sorted(speech.rglob("*.wav"))
    if not files:
        raise SystemExit(f"bench: no speech at {speech}")
    names = sorted({f.parent.name for f in files})
    crops, spk = [], []
    rate, crop, hop = 16000, int(CROP_S * 16000), int(HOP_S * 16000)
    for f in files:
        wave = np.concatenate([s.samples for s in prepare(f, AudioPolicy()).segments])
        starts = range(0, max(1, wave.size - crop + 1), hop) if wave.size > crop else [0]
        for s in starts:
            crops.append(wave[s : s + crop])
            spk.append(names.index(f.parent.name))
    print(f"embedding {len(crops)} crops of {len(files)} files ({rate} Hz) with {model} "
          "(cached afterwards)", file=sys.stderr)
    raw = embed_segments(emb, crops, 16)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, raw=raw.astype(np.float32), speaker=np.asarray(spk))
    return raw.astype(np.float32), np.asarray(spk)


@dataclass(frozen=True)
class Spectrum:
    mu: np.ndarray  # (d,) global mean
    between: np.ndarray  # (d,) variance of speaker means
    within: np.ndarray  # (d,) variance of segments around their speaker's mean


def spectrum(raw: np.ndarray, speaker: np.ndarray) -> Spectrum:
    """Per-dimension between- and within-speaker variances (unbiased for the means' noise)."""
    labels = np.unique(speaker)
    means = np.stack([raw[speaker == s].mean(0) for s in labels])
    counts = np.array([(speaker == s).sum() for s in labels])
    resid = raw - means[np.searchsorted(labels, speaker)]
    within = (resid**2).sum(0) / max(1, raw.shape[0] - labels.size)
    between = np.maximum(means.var(0, ddof=1) - within * np.mean(1 / counts), 0.0)
    return Spectrum(raw.mean(0), between, within)


def speaker_sizes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Segments per speaker (50..150 each) summing to exactly ``n``."""
    sizes = []
    left = n
    while left > 0:
        k = min(left, int(rng.integers(50, 151)))
        sizes.append(k)
        left -= k
    return np.asarray(sizes)


def synthetic_chunks(spec: Spectrum, n: int, seed: int = 0, chunk: int = 200_000):
    """(speaker (n,) int32, speaker means (S, d) float32, chunks): ``chunks()`` yields
    ``(start, raw (m, d) float32)`` blocks of the store in order, the same values on every
    call, so that a store too large to hold twice is generated as it is consumed."""
    rng = np.random.default_rng(seed)
    sizes = speaker_sizes(n, rng)
    d = spec.mu.size
    means = (spec.mu + rng.standard_normal((sizes.size, d)) * np.sqrt(spec.between)).astype(
        np.float32)
    speaker = np.repeat(np.arange(sizes.size, dtype=np.int32), sizes)
    state = rng.bit_generator.state
    sd = np.sqrt(spec.within).astype(np.float32)

    def chunks():
        r = np.random.default_rng()
        r.bit_generator.state = state
        for s in range(0, n, chunk):  # chunks keep the float64 temporaries small
            e = min(n, s + chunk)
            yield s, means[speaker[s:e]] + r.standard_normal((e - s, d), dtype=np.float32) * sd

    return speaker, means, chunks


def synthetic_store(spec: Spectrum, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
    """(raw (n, d) float32, speaker (n,) int32, speaker means (S, d) float32)."""
    speaker, means, chunks = synthetic_chunks(spec, n, seed)
    raw = np.empty((n, spec.mu.size), np.float32)
    for s, x in chunks():
        raw[s : s + x.shape[0]] = x
    return raw, speaker, means


def synthetic_queries(spec: Spectrum, means: np.ndarray, q: int, known: float = 0.8,
                      seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``q`` probes: a share ``known`` are new segments of stored speakers (label = speaker),
    the rest come from unseen speakers (label -1)."""
    rng = np.random.default_rng(seed)
    d = spec.mu.size
    n_known = int(round(q * known))
    who = rng.integers(0, means.shape[0], n_known)
    new = spec.mu + rng.standard_normal((q - n_known, d)) * np.sqrt(spec.between)
    centres = np.concatenate([means[who], new]).astype(np.float32)
    raw = centres + rng.standard_normal((q, d)).astype(np.float32) * np.sqrt(spec.within)
    labels = np.concatenate([who, -np.ones(q - n_known, int)])
    return raw.astype(np.float32), labels


def pair_cosines(raw: np.ndarray, speaker: np.ndarray, dim: int, pairs: int = 20000,
                 seed: int = 2) -> tuple[float, float, float, float]:
    """(mean, sd) of same-speaker and of different-speaker cosines at the ``dim`` prefix."""
    rng = np.random.default_rng(seed)
    x = raw[:, :dim] / np.linalg.norm(raw[:, :dim], axis=1, keepdims=True)
    a, b = rng.integers(0, x.shape[0], (2, pairs * 4))
    keep = a != b
    a, b = a[keep], b[keep]
    same = speaker[a] == speaker[b]
    cos = np.einsum("ij,ij->i", x[a], x[b])
    t = cos[same][:pairs] if same.any() else np.array([np.nan])
    nt = cos[~same][:pairs]
    if same.sum() < 100:  # rare at large sizes: draw same-speaker pairs directly
        order = np.argsort(speaker, kind="stable")
        i = rng.integers(0, x.shape[0] - 1, pairs)
        i = i[speaker[order[i]] == speaker[order[i + 1]]]
        t = np.einsum("ij,ij->i", x[order[i]], x[order[i + 1]])
    return float(t.mean()), float(t.std()), float(nt.mean()), float(nt.std())


def write_store(engine, chunks, speaker: np.ndarray, offsets: tuple[int, int, int] = (0, 0, 0)
                ) -> None:
    """Speakers, one recording per speaker and its segments (3 s each, the vectors of
    ``chunks``: ``(start, raw)`` blocks in order, or one raw array), written straight into the
    store behind ``engine`` in transactions of 100,000 rows; their ids follow ``offsets``
    (the largest speaker, recording and segment ids already there)."""
    from sqlalchemy import insert

    from speakerdb.store.models import Recording, Segment, Speaker

    if isinstance(chunks, np.ndarray):
        chunks = [(0, chunks)]
    o_spk, o_rec, o_seg = offsets
    labels = np.unique(speaker)
    with engine.begin() as c:
        c.execute(insert(Speaker.__table__), [{"id": o_spk + int(s) + 1, "label": f"spk{s:06d}"}
                                              for s in labels])
        c.execute(insert(Recording.__table__), [
            {"id": o_rec + int(s) + 1, "sha256": f"{int(s):064x}", "path": f"synthetic/{s}.wav",
             "speaker_id": o_spk + int(s) + 1, "duration_s": 300.0, "sample_rate": 16000,
             "channels": 1, "source": "synthetic"} for s in labels])
    start = 3.0 * (np.arange(speaker.size) - np.searchsorted(speaker, speaker))
    for s0, block in chunks:
        for a in range(s0, s0 + block.shape[0], 100_000):
            part = block[a - s0 : a - s0 + 100_000].astype("<f4")
            with engine.begin() as c:
                c.execute(insert(Segment.__table__), [
                    {"id": o_seg + a + i + 1, "recording_id": o_rec + int(speaker[a + i]) + 1,
                     "start_s": float(start[a + i]), "end_s": float(start[a + i]) + 3.0,
                     "vector": part[i].tobytes()}
                    for i in range(part.shape[0])])

"""Embedding one piece of audio for a query: prepare, embed every segment, combine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speakerdb.audio import AudioInput, AudioPolicy, describe, load, prepare
from speakerdb.audio.gates import check_gate, check_signal_gate, gated_policy
from speakerdb.errors import AudioError
from speakerdb.ingest.runner import embed_segments
from speakerdb.model.base import Embedder
from speakerdb.model.prefixes import mean_embedding

__all__ = ["AudioEmbedding", "decode_gated", "embed_audio", "embed_gated", "embedding_of"]


@dataclass(frozen=True)
class AudioEmbedding:
    input: str
    duration_s: float
    segments: int
    raw: np.ndarray  # (raw_dim,) float32: the model output (mean over segments if several)
    nested: dict[int, np.ndarray]  # {dim: (dim,) unit vector}
    segments_raw: np.ndarray  # (segments, raw_dim) float32: each segment's model output

    def as_dict(self, raw: bool = False) -> dict:
        d = {
            "input": self.input,
            "duration_s": round(self.duration_s, 3),
            "segments": self.segments,
            "embeddings": {str(k): [float(x) for x in v] for k, v in self.nested.items()},
        }
        if raw:
            d["raw"] = [float(x) for x in self.raw]
        return d


def embed_audio(
    embedder: Embedder, audio: AudioInput, policy: AudioPolicy = AudioPolicy(), *, name=None
) -> AudioEmbedding:
    """Embed ``audio``; long audio is cut into segments whose embeddings are averaged per dim."""
    prepared = prepare(audio, policy, name=name)
    raw = embed_segments(embedder, [s.samples for s in prepared.segments], batch=16)
    if not np.all(np.isfinite(raw)):
        raise AudioError(prepared.name, "the model returned NaN or infinite values")
    return AudioEmbedding(
        input=prepared.name,
        duration_s=prepared.duration_s,
        segments=len(prepared.segments),
        raw=raw.mean(axis=0),
        nested=mean_embedding(raw, embedder.dims),
        segments_raw=raw,
    )


def decode_gated(audio: AudioInput, policy: AudioPolicy, gate: float, name=None, *,
                 regions=None):
    """Decode and segment ``audio`` (``Prepared``) under a duration gate: less than ``gate``
    seconds of signal is a TooShortError naming the measured and required seconds.
    ``regions``: as ``audio.prepare``'s."""
    name = describe(audio) if name is None else name
    wave = load(audio, name=name, max_duration_s=policy.max_duration_s)
    check_signal_gate(wave.samples, gate, policy, name)
    prepared = prepare(wave, gated_policy(policy, gate), name=name, regions=regions)
    check_gate(prepared, gate, policy)
    return prepared


def embedding_of(prepared, raw: np.ndarray, dims) -> AudioEmbedding:
    """The ``AudioEmbedding`` of ``prepared`` from its segments' raw outputs ``raw``; NaN or
    infinite outputs are an AudioError."""
    if not np.all(np.isfinite(raw)):
        raise AudioError(prepared.name, "the model returned NaN or infinite values")
    return AudioEmbedding(prepared.name, prepared.duration_s, len(prepared.segments),
                          raw.mean(axis=0), mean_embedding(raw, dims), raw)


def embed_gated(embedder, audio: AudioInput, policy: AudioPolicy, gate: float, name=None):
    """``embed_audio`` with a duration gate: less than ``gate`` seconds of signal is a
    TooShortError naming the measured and required seconds."""
    prepared = decode_gated(audio, policy, gate, name)
    raw = embed_segments(embedder, [s.samples for s in prepared.segments], batch=16)
    return embedding_of(prepared, raw, embedder.dims)

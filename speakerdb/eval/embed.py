"""Embeddings for an evaluation run: every (file, condition) pair is embedded once per model.

A file is loaded once (mono, 16 kHz), the condition applied (``speakerdb.eval.conditions``,
babble talkers drawn from other speakers' files), and the result cut into segments like any
query (``prepare``'s policy), embedded in length-bucketed batches and averaged per dimension.
Inputs the audio policy rejects are kept as errors with their reason, not raised: a run goes on
and reports how many trials it could not score.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speakerdb.audio import AudioPolicy, Waveform, load, segment
from speakerdb.errors import AudioError
from speakerdb.eval.conditions import CLEAN, Condition, apply_condition, babble_partners
from speakerdb.eval.trials import LabelledFile
from speakerdb.ingest.runner import embed_segments
from speakerdb.model.base import Embedder
from speakerdb.model.prefixes import mean_embedding

__all__ = ["EmbeddingCache", "Job"]

_SR = 16000


@dataclass(frozen=True)
class Job:
    """One input to embed: ``path`` relative to the run's root, under ``condition``."""

    path: str
    condition: Condition = CLEAN

    @property
    def key(self) -> tuple[str, str]:
        return (self.path, self.condition.name)


class EmbeddingCache:
    """Nested embeddings of (file, condition) pairs for one model, computed once each.

    ``files``: the labelled files of the run (for babble partners; their speakers must be known
    for a condition with babble). ``progress(n)`` is called as inputs are done."""

    def __init__(self, embedder: Embedder, root: Path, files: Sequence[LabelledFile] = (),
                 policy: AudioPolicy | None = None, batch: int = 64, audio_cache: int = 512):
        self.embedder, self.root = embedder, Path(root)
        self.files = list(files)
        self.speaker = {f.path: f.speaker for f in self.files}
        self.policy = policy or AudioPolicy()
        self.batch = batch
        self.vectors: dict[tuple[str, str], dict[int, np.ndarray]] = {}
        self.errors: dict[tuple[str, str], str] = {}
        self._audio: OrderedDict[str, np.ndarray] = OrderedDict()
        self._audio_cap = audio_cache

    # audio -----------------------------------------------------------------------------------
    def samples(self, path: str) -> np.ndarray:
        """Mono 16 kHz samples of ``path`` (relative to the root), kept in a small LRU."""
        if path in self._audio:
            self._audio.move_to_end(path)
            return self._audio[path]
        x = load(self.root / path).samples
        self._audio[path] = x
        if len(self._audio) > self._audio_cap:
            self._audio.popitem(last=False)
        return x

    def signal(self, job: Job) -> np.ndarray:
        """The 16 kHz samples ``job`` embeds: the file with its condition applied."""
        x = self.samples(job.path)
        if job.condition.is_clean:
            return x
        others = ()
        if job.condition.babble:
            spk = self.speaker.get(job.path)
            if spk is None:
                raise AudioError(job.path, "babble needs the file's speaker (give labelled files)")
            partners = babble_partners(job.condition, job.path, spk, self.files)
            others = [self.samples(p.path) for p in partners]
        return apply_condition(job.condition, x, job.path, others)

    # embedding -------------------------------------------------------------------------------
    def ensure(self, jobs: Sequence[Job], progress: Callable[[int], None] | None = None) -> None:
        """Embed every job not done yet, in batches; failures go to ``errors``."""
        todo = list(dict.fromkeys(j for j in jobs if j.key not in self.vectors
                                  and j.key not in self.errors))
        for start in range(0, len(todo), self.batch):
            part = todo[start:start + self.batch]
            segs, owner = [], []
            for j in part:
                try:
                    pieces = segment(Waveform(self.signal(j), _SR), self.policy, name=j.path)
                except AudioError as e:
                    self.errors[j.key] = str(e)
                    continue
                segs.extend(s.samples for s in pieces)
                owner.extend([j] * len(pieces))
            if segs:
                raw = embed_segments(self.embedder, segs, batch=16)
                for j in dict.fromkeys(owner):
                    rows = raw[[k for k, o in enumerate(owner) if o is j]]
                    if np.all(np.isfinite(rows)):
                        self.vectors[j.key] = mean_embedding(rows, self.embedder.dims)
                    else:
                        self.errors[j.key] = f"{j.path}: the model returned NaN or inf"
            if progress:
                progress(len(part))

    def matrix(self, jobs: Sequence[Job], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(len(jobs), dim) unit vectors and a boolean mask of the jobs that have one."""
        out = np.zeros((len(jobs), dim), np.float32)
        ok = np.zeros(len(jobs), bool)
        for i, j in enumerate(jobs):
            v = self.vectors.get(j.key)
            if v is not None:
                out[i], ok[i] = v[dim], True
        return out, ok

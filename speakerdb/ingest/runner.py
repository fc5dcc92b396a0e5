"""Runner: reader → embedder → writer, with per-phase timings. The parts are passed in."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from speakerdb.ingest.reader import Decoded, ReadBatch
from speakerdb.model.base import Embedder
from speakerdb.store.records import FailureIn, LabelIn, RecordingIn

__all__ = ["IngestStats", "Written", "Writer", "Runner", "embed_segments"]


@dataclass
class IngestStats:
    inputs: int = 0
    added: int = 0  # recordings inserted by this run
    segments: int = 0  # segments inserted by this run
    skipped: int = 0  # already in the database (also: stored by another process meanwhile)
    failed: int = 0
    labelled: int = 0  # stored unlabelled recordings given the label this run names
    relabelled: int = 0  # stored recordings whose other label this run replaced (relabel)
    workers: int = 0  # decoding processes beside the model (0: decoded in this process)
    decode_s: float = 0.0  # reading, hashing, decoding (with workers: their seconds, summed)
    embed_s: float = 0.0
    write_s: float = 0.0
    wait_s: float = 0.0  # this process waiting for decoded batches
    failures: list[dict] = field(default_factory=list)
    engine: dict | None = None  # what an engine other than the local one reports of its run
    # stored recordings this run names with another label: {input, stored, given, applied}
    label_conflicts: list[dict] = field(default_factory=list)
    # with diarize: new recordings holding several voices: {input, voices, shares, kept}
    multi_voice: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        if d["engine"] is None:
            del d["engine"]
        d["seconds"] = {k: round(d.pop(f"{k}_s"), 4) for k in ("decode", "embed", "write",
                                                                    "wait")}
        return d


@dataclass(frozen=True)
class Written:
    """What one batch's transaction actually inserted."""

    segments: int
    recordings: int
    labels: frozenset = frozenset()  # sha256s of stored recordings given their new label


class Writer(Protocol):
    def write(self, recordings: list[RecordingIn], failures: list[FailureIn],
              labels: list[LabelIn] = ()) -> Written | int:
        """Store one batch in one transaction, with the ``labels`` of stored recordings;
        returns what was inserted (a plain int: the segments, every recording given counted
        as inserted)."""
        ...


def embed_segments(embedder: Embedder, segments: list[np.ndarray], batch: int) -> np.ndarray:
    """Raw outputs (n, raw_dim) for ``segments``, embedded in batches of similar length."""
    out = np.zeros((len(segments), embedder.raw_dim), dtype=np.float32)
    order = sorted(range(len(segments)), key=lambda i: len(segments[i]))
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        out[idx] = embedder([segments[i] for i in idx])
    return out


class Runner:
    """Loops over the reader's batches; one writer call (one transaction) per batch.

    Labels a batch gives for stored recordings are written in its transaction: always for an
    unlabelled recording, for one with another label only with ``relabel`` (else reported).
    """

    def __init__(
        self,
        reader: Iterable[ReadBatch],
        embedder: Embedder,
        writer: Writer,
        embed_batch: int = 16,
        progress: Callable[[int], None] | None = None,
        relabel: bool = False,
        diarize: str | None = None,
        policy=None,
    ):
        self.reader, self.embedder, self.writer = reader, embedder, writer
        self.embed_batch, self.progress, self.relabel = embed_batch, progress, relabel
        self.diarize, self.policy = diarize, policy
        self.multi_voice: list[dict] = []

    def run(self) -> IngestStats:
        stats = IngestStats()
        for batch in self.reader:
            stats.inputs += batch.n_inputs
            stats.skipped += batch.skipped
            stats.decode_s += batch.decode_s
            stats.embed_s += batch.embed_s
            stats.wait_s += batch.wait_s

            t0 = time.perf_counter()
            decoded, split_failures = self._voices(batch.decoded)
            recordings, failures = self._embed(decoded)
            failures = batch.failures + split_failures + failures
            stats.embed_s += time.perf_counter() - t0

            t0 = time.perf_counter()
            labels = [x for x in batch.labels if x.stored is None or self.relabel]
            if labels:
                written = self.writer.write(recordings, failures, labels)
            else:
                written = self.writer.write(recordings, failures)
            stats.write_s += time.perf_counter() - t0
            if isinstance(written, int):
                written = Written(written, len(recordings))
            _count_labels(stats, batch.labels, written.labels)
            stats.segments += written.segments
            stats.added += written.recordings
            stats.skipped += len(recordings) - written.recordings
            stats.failed += len(failures)
            stats.failures.extend(
                {"input": f.path, "reason": f.reason, "error": f.message} for f in failures
            )
            if self.progress:
                self.progress(batch.n_inputs)
        stats.multi_voice = self.multi_voice
        return stats

    def _voices(self, decoded: list[Decoded]) -> tuple[list[Decoded], list[FailureIn]]:
        """With ``diarize``: each recording whose samples are at hand (not embedded while it
        was read) checked for several voices; with ``dominant`` cut to its largest voice."""
        if self.diarize is None:
            return decoded, []
        from dataclasses import replace

        from speakerdb.diarize.voices import split_voices
        from speakerdb.errors import AudioError

        out, failures = [], []
        for d in decoded:
            if d.raw is not None:
                out.append(d)
                continue
            try:
                report, prepared = split_voices(d.prepared, self.embedder, self.policy,
                                                self.diarize, self.embed_batch)
            except AudioError as e:
                failures.append(FailureIn(d.prepared.name, d.sha256, e.reason, str(e)))
                continue
            if report is not None:
                self.multi_voice.append({**report, "sha256": d.sha256,
                                         "speaker": d.item.speaker})
            out.append(replace(d, prepared=prepared) if prepared is not d.prepared else d)
        return out, failures

    def _embed(self, decoded: list[Decoded]) -> tuple[list[RecordingIn], list[FailureIn]]:
        segs = [s.samples for d in decoded if d.raw is None for s in d.prepared.segments]
        raw = embed_segments(self.embedder, segs, self.embed_batch)
        recordings, failures, at = [], [], 0
        for d in decoded:
            n = len(d.prepared.segments)
            if d.raw is not None:  # embedded while it was read
                vecs = d.raw
            else:
                vecs = raw[at : at + n]
                at += n
            if not np.all(np.isfinite(vecs)):
                failures.append(
                    FailureIn(d.prepared.name, d.sha256, "embedding_nan",
                              f"{d.prepared.name}: the model returned NaN or infinite values")
                )
                continue
            recordings.append(
                RecordingIn(
                    sha256=d.sha256,
                    path=d.prepared.name,
                    speaker=d.item.speaker,
                    duration_s=d.prepared.duration_s,
                    sample_rate=d.prepared.sample_rate,
                    channels=d.prepared.channels,
                    source=d.item.source,
                    starts=[s.start_s for s in d.prepared.segments],
                    ends=[s.end_s for s in d.prepared.segments],
                    raw=vecs,
                )
            )
        return recordings, failures


def _count_labels(stats: IngestStats, given: list[LabelIn], applied: frozenset) -> None:
    for x in given:
        if x.stored is None:
            stats.labelled += x.sha256 in applied
        else:
            stats.relabelled += x.sha256 in applied
            stats.label_conflicts.append({"input": x.input, "stored": x.stored,
                                          "given": x.given, "applied": x.sha256 in applied})

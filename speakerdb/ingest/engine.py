"""Ingest engines: what turns the items of an ingest into batches for the writer.

An ``IngestJob`` says what to ingest (the items, the model, the audio policy and duration
gate, the batch settings, how to look up what is stored). An engine runs it and hands every
batch (``RecordingIn``s, ``FailureIn``s, ``LabelIn``s) to the same writer
(``speakerdb/ingest/writer.py``: one store transaction per batch, then the vector tier), so
the database it leaves is the same whichever engine ran. ``LocalEngine`` is this process's
reader → embedder → writer pipeline (``reader.py``, ``runner.py``); with ``workers`` the
reading (hashing, decoding) runs in that many processes beside the model (``pool.py``).
``RayEngine`` (``ray_engine.py``, the ``ray`` extra) spreads the reading and the embedding over
a Ray cluster and hands the same batches to the same writer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from speakerdb.errors import UnknownEngineError, UsageError

if TYPE_CHECKING:  # pragma: no cover - names for annotations only
    from speakerdb.audio import AudioPolicy
    from speakerdb.ingest.runner import IngestStats, Writer
    from speakerdb.ingest.sources import SourceItem
    from speakerdb.model.base import Embedder

__all__ = ["ENGINES", "IngestEngine", "IngestJob", "LocalEngine", "ingest_engine"]


@dataclass(frozen=True)
class IngestJob:
    """What to ingest. ``known(shas)``: the content hashes to skip (already stored);
    ``labels(shas)``: the labels stored recordings have (None: labels are not compared);
    ``gate_s``: the seconds of signal an input needs (below: a ``too_short`` failure);
    ``workers``: processes that read and decode beside the model (0: this process reads)."""

    items: Sequence[SourceItem]
    embedder: Embedder
    policy: AudioPolicy
    gate_s: float
    known: Callable[[list[str]], set[str]]
    labels: Callable[[list[str]], dict[str, str | None]] | None = None
    files_per_batch: int = 32
    embed_batch: int = 16
    relabel: bool = False
    progress: Callable[[int], None] | None = None
    workers: int = 0
    diarize: str | None = None  # None, or "all" / "dominant": see IngestConfig


class IngestEngine(Protocol):
    def run(self, job: IngestJob, writer: Writer) -> IngestStats:
        """Ingest ``job``: every batch to ``writer.write``; returns the run's counts."""
        ...


class LocalEngine:
    """Reader (hash, skip, decode) → duration gate → embedder → writer; the reader in this
    process, or in ``job.workers`` processes (``pool.PoolReader``)."""

    def run(self, job: IngestJob, writer: Writer) -> IngestStats:
        from speakerdb.audio.gates import gate_batches, gated_policy
        from speakerdb.ingest.reader import Reader
        from speakerdb.ingest.runner import Runner, embed_segments

        if job.workers < 0:
            raise UsageError(f"workers {job.workers}: must be 0 or more", option="workers")
        embedder, batch = job.embedder, job.embed_batch
        items, policy = list(job.items), gated_policy(job.policy, job.gate_s)

        def embed(segs):
            return embed_segments(embedder, segs, batch)

        if job.workers > 0:
            from speakerdb.ingest.pool import PoolReader

            reader = PoolReader(items, job.known, policy, job.files_per_batch, job.workers,
                                embed=embed, labels=job.labels)
        else:
            reader = Reader(items, job.known, policy, job.files_per_batch, embed=embed,
                            labels=job.labels)
        stats = Runner(gate_batches(reader, job.gate_s, job.policy), embedder, writer, batch,
                       job.progress, job.relabel, diarize=job.diarize,
                       policy=job.policy).run()
        stats.workers = job.workers
        return stats


def _ray(**options) -> IngestEngine:
    from speakerdb.ingest.ray_engine import RayEngine

    return RayEngine(**options)


ENGINES: dict[str, Callable[..., IngestEngine]] = {"local": LocalEngine, "ray": _ray}


def ingest_engine(kind: str = "local", **options) -> IngestEngine:
    """The ingest engine registered as ``kind``, made with ``options`` (the ray engine's:
    ``options``, a ``RayOptions``; ``spec``, the ``EmbedderSpec`` its actors load); an
    unknown one is an UnknownEngineError."""
    try:
        factory = ENGINES[kind]
    except KeyError:
        raise UnknownEngineError(f"unknown ingest engine {kind!r} (known: "
                                 f"{', '.join(sorted(ENGINES))})") from None
    return factory(**options)

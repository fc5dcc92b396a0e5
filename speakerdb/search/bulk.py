"""Identifying many inputs: decode a batch of inputs, embed all their segments together, search
each; the answers in input order, with the seconds of each phase and, where an input's true
speaker is known, how the system's own decisions fared.

``probe_items`` expands folders and CSV manifests the way ingest does (``ingest.sources``):
a folder's first level or a manifest's ``speaker`` column is the truth of its inputs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from speakerdb.audio.gates import gate_seconds
from speakerdb.config import CascadeConfig, check_finite, check_score_norm
from speakerdb.errors import AudioError, UsageError
from speakerdb.ingest.runner import embed_segments
from speakerdb.ingest.sources import AUDIO_EXTENSIONS, SourceItem, discover
from speakerdb.search.decoding import Pending, decoded
from speakerdb.search.query import embedding_of

__all__ = ["OUTCOMES", "Answer", "Tally", "Timings", "identify_many", "probe_items"]

OUTCOMES = ("correct_match", "wrong_match", "miss", "correct_rejection", "false_accept")
"""What one answered input with a known truth came to, at the system's own decision:
``correct_match`` (match, speaker == truth), ``wrong_match`` (match, another speaker),
``miss`` (unknown although the truth is enrolled), ``correct_rejection`` (unknown, the truth
is not in the database), ``false_accept`` (match although the truth is not enrolled)."""

BATCH_AUDIO_S = 600.0
"""A batch is embedded once its inputs hold this many seconds of audio, whatever their count
(a batch of long inputs stays within memory)."""

SEGMENTS_PER_CALL = 16
"""Segments per model call (of similar length: ``ingest.runner.embed_segments``)."""


@dataclass
class Timings:
    """Seconds spent decoding (read, resample, gate, segment; with workers: their seconds
    summed), embedding and searching, and waiting for the workers' decoded inputs."""

    decode_s: float = 0.0
    embed_s: float = 0.0
    search_s: float = 0.0
    wait_s: float = 0.0
    workers: int = 0  # decoding processes beside the model (0: the model's process decodes)

    def as_dict(self) -> dict:
        return {"decode": round(self.decode_s, 4), "embed": round(self.embed_s, 4),
                "search": round(self.search_s, 4), "wait": round(self.wait_s, 4)}


@dataclass(frozen=True)
class Answer:
    """One input's answer: ``result`` (an ``IdentifyResult``) or the ``error`` that stopped it;
    ``truth`` its known speaker and ``outcome`` (one of ``OUTCOMES``) when both are there."""

    input: str
    truth: str | None = None
    result: object | None = None
    error: AudioError | None = None
    outcome: str | None = None

    @property
    def correct(self) -> bool | None:
        if self.outcome is None:
            return None
        return self.outcome in ("correct_match", "correct_rejection")

    def as_dict(self) -> dict:
        """``IdentifyResult.as_dict()`` (or ``{input, error}``), with ``truth``, ``outcome``
        and ``correct`` where the truth is known."""
        d = self.result.as_dict() if self.error is None else \
            {"input": self.input, "error": str(self.error)}
        if self.truth is not None:
            d.update(truth=self.truth, outcome=self.outcome, correct=self.correct)
        return d


def outcome(decision: str, speaker: str | None, truth: str, enrolled: bool) -> str:
    """The ``OUTCOMES`` entry of a decision for an input whose true speaker is ``truth``."""
    if decision == "match":
        if not enrolled:
            return "false_accept"
        return "correct_match" if speaker == truth else "wrong_match"
    return "miss" if enrolled else "correct_rejection"


def probe_items(sources: Iterable[str | Path], layout: str = "auto"
                ) -> tuple[list[SourceItem], bool]:
    """The inputs named by ``sources`` and whether any came from a folder or manifest.

    A folder or a ``.csv`` file is expanded by ``ingest.sources.discover`` under ``layout``
    (``speaker`` of each item: the truth, or None); any other path is one input as given, even
    when it does not exist (reading it is then that input's error). A missing path without an
    audio file's extension is taken for a folder or manifest: a UsageError, as is a folder or
    manifest with no audio files in it."""
    items: list[SourceItem] = []
    bulk = False
    for src in sources:
        p = Path(src)
        listed = p.is_dir() or p.suffix.lower() == ".csv" or \
            (layout == "manifest" and p.is_file()) or \
            (not p.exists() and p.suffix.lower() not in AUDIO_EXTENSIONS)
        if listed:
            found = discover([p], layout)
            if not found:  # nothing to identify is a mistake in the command, not an answer
                what = "folder holds" if p.is_dir() else "manifest lists"
                raise UsageError(f"{src}: the {what} no audio files to identify")
            items.extend(found)
            bulk = True
        else:
            items.append(SourceItem(p, None, "file"))
    return items, bulk


def identify_many(db, inputs: Iterable, *, batch: int = 16, timings: Timings | None = None,
                  cascade: CascadeConfig = CascadeConfig(), threshold: float | None = None,
                  min_margin: float = 0.0, exhaustive: bool = False, score_norm: str = "none",
                  cohort=None, cohort_top: int | None = None,
                  min_duration_s: float | None = None,
                  workers: int | None = None) -> Iterator[Answer]:
    """``SpeakerDB.identify_many``: checks the options now, then returns the generator of
    answers (``inputs`` are read lazily, a batch at a time). ``workers``: processes that
    decode beside the model (``search.decoding``); None: one per core when ``inputs`` is a
    sequence longer than one batch (``ingest.pool.resolve_workers``), else none."""
    check_score_norm(score_norm)
    check_finite("min_margin", min_margin)
    if threshold is not None:
        check_finite("threshold", threshold)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UsageError(f"batch must be a positive number of inputs, got {batch!r}",
                         option="batch")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 0):
        raise UsageError(f"workers must be 0 or more processes, got {workers!r}",
                         option="workers")
    if workers is None:
        from speakerdb.ingest.pool import resolve_workers

        workers = resolve_workers(None, len(inputs), batch) if hasattr(inputs, "__len__") else 0
    gate = gate_seconds(min_duration_s, db.gates.min_query_s)
    search = dict(cascade=cascade, threshold=threshold, min_margin=min_margin,
                  exhaustive=exhaustive, score_norm=score_norm, cohort=cohort,
                  cohort_top=cohort_top)
    timings = Timings() if timings is None else timings
    timings.workers = workers
    return _answers(db, inputs, batch, gate, search, timings)


@dataclass
class _Batch:
    items: list[Pending] = field(default_factory=list)
    seconds: float = 0.0


def _answers(db, inputs, batch, gate, search, timings: Timings) -> Iterator[Answer]:
    embedder = db.embedder  # loaded (and checked against the database) before any timing
    enrolled: set[str] | None = None
    pending = _Batch()
    for item in decoded(inputs, db.policy, gate, batch, timings.workers, timings):
        pending.items.append(item)
        if item.prepared is not None:
            pending.seconds += item.prepared.duration_s
        if len(pending.items) >= batch or pending.seconds >= BATCH_AUDIO_S:
            if enrolled is None and any(p.truth is not None for p in pending.items):
                enrolled = {s.label for s in db.speakers()}
            yield from _finish(db, embedder, pending.items, search, timings, enrolled)
            pending = _Batch()
    if pending.items:
        if enrolled is None and any(p.truth is not None for p in pending.items):
            enrolled = {s.label for s in db.speakers()}
        yield from _finish(db, embedder, pending.items, search, timings, enrolled)


def _finish(db, embedder, items: list[Pending], search: dict, timings: Timings,
            enrolled: set[str] | None) -> Iterator[Answer]:
    """Embed the batch's segments together, then search and answer each input in order."""
    ok = [p for p in items if p.error is None]
    t0 = time.perf_counter()
    raw = embed_segments(embedder, [s.samples for p in ok for s in p.prepared.segments],
                         SEGMENTS_PER_CALL)
    timings.embed_s += time.perf_counter() - t0
    t0 = time.perf_counter()
    db.refresh()  # what other processes wrote meanwhile, once a batch
    timings.search_s += time.perf_counter() - t0
    at = 0
    for p in items:
        if p.error is not None:
            yield Answer(p.name, p.truth, error=p.error)
            continue
        n = len(p.prepared.segments)
        rows, at = raw[at: at + n], at + n
        t0 = time.perf_counter()
        try:
            result = db.identify_embedding(embedding_of(p.prepared, rows, embedder.dims),
                                           **search)
        except AudioError as e:
            result = e
        timings.search_s += time.perf_counter() - t0
        if isinstance(result, AudioError):
            yield Answer(p.name, p.truth, error=result)
            continue
        got = None if p.truth is None else \
            outcome(result.decision, result.speaker, p.truth, p.truth in enrolled)
        yield Answer(p.name, p.truth, result, outcome=got)


def _rate(count: int, total: int) -> dict:
    return {"count": count, "rate": None if total == 0 else round(count / total, 6)}


@dataclass
class Tally:
    """Counts over a run's answers (``add`` each) and the run's summary."""

    inputs: int = 0
    answered: int = 0
    failed: int = 0
    outcomes: dict = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    def add(self, answer: Answer) -> None:
        self.inputs += 1
        if answer.error is not None:
            self.failed += 1
            return
        self.answered += 1
        if answer.outcome is not None:
            self.outcomes[answer.outcome] += 1

    def accuracy(self) -> dict | None:
        """Counts and rates of ``OUTCOMES`` over the answered inputs with a known truth (None
        when there are none): correct and wrong matches and misses as shares of the inputs
        whose truth is enrolled, correct rejections and false accepts of those whose truth is
        not; ``correct`` (correct matches and rejections) of all of them."""
        o = self.outcomes
        known = o["correct_match"] + o["wrong_match"] + o["miss"]
        unknown = o["correct_rejection"] + o["false_accept"]
        if known + unknown == 0:
            return None
        return {
            "with_truth": known + unknown,
            "enrolled": known,
            "not_enrolled": unknown,
            "correct_matches": _rate(o["correct_match"], known),
            "wrong_matches": _rate(o["wrong_match"], known),
            "misses": _rate(o["miss"], known),
            "correct_rejections": _rate(o["correct_rejection"], unknown),
            "false_accepts": _rate(o["false_accept"], unknown),
            "correct": _rate(o["correct_match"] + o["correct_rejection"], known + unknown),
        }

    def summary(self, timings: Timings, wall_s: float) -> dict:
        return {
            "inputs": self.inputs,
            "answered": self.answered,
            "failed": self.failed,
            "probes_per_s": round(self.answered / wall_s, 3) if wall_s > 0 else None,
            "wall_s": round(wall_s, 4),
            "seconds": timings.as_dict(),
            "workers": timings.workers,
            "accuracy": self.accuracy(),
        }

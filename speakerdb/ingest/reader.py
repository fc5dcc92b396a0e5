"""Reader: inputs → content hash → skip what is known → decode, check and segment, in batches.

Files are hashed and decoded a block at a time (never read whole); the segments of a long input
are embedded as they are cut (``embed``), so that memory holds a bounded number of them.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from speakerdb.audio import AudioPolicy, Prepared, Segment
from speakerdb.audio.inputs import AudioSource, audio_input, file_error
from speakerdb.errors import AudioError
from speakerdb.ingest.sources import SourceItem
from speakerdb.audio.names import display_name
from speakerdb.store.records import FailureIn, LabelIn

__all__ = ["Decoded", "ReadBatch", "Reader", "LONG_SEGMENTS", "triage"]

LONG_SEGMENTS = 32  # an input with more segments has them embedded while it is read
_CHUNK = 1 << 20


@dataclass
class Decoded:
    item: SourceItem
    sha256: str
    prepared: Prepared
    raw: np.ndarray | None = None  # (segments, raw_dim) when embedded while read


@dataclass
class ReadBatch:
    """One store transaction's worth of inputs."""

    decoded: list[Decoded] = field(default_factory=list)
    failures: list[FailureIn] = field(default_factory=list)
    skipped: int = 0  # already in the database (or already known to fail)
    # labels given for skipped inputs that are stored recordings with no or another label
    labels: list[LabelIn] = field(default_factory=list)
    n_inputs: int = 0
    decode_s: float = 0.0
    embed_s: float = 0.0  # embedding the segments of long inputs while they were read
    wait_s: float = 0.0  # the main process waiting for this batch (decoding it, in process)


def _stamp(path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _hash_one(item: SourceItem) -> tuple[str, object]:
    """(sha256, what to decode): the ``AudioSource`` of an in-memory input, or the size and
    time stamp of a file (hashed a block at a time); or ("", FailureIn). Every input is first
    checked by ``audio_input``, so a missing file fails here as it fails in decode."""
    name = display_name(item.path)
    if item.error is not None:
        return "", FailureIn(name, "", item.reason, f"{name}: {item.error}")
    try:
        src = audio_input(item.path, name)
        if src.path is None:  # in memory (enroll)
            return hashlib.sha256(src.read_bytes()).hexdigest(), src
        stamp = _stamp(src.path)
        h = hashlib.sha256()
        with open(src.path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    except AudioError as e:
        return "", FailureIn(name, "", e.reason, str(e))
    except OSError as e:
        e = file_error(name, e)
        return "", FailureIn(name, "", e.reason, str(e))
    return h.hexdigest(), stamp


class TooLong(Exception):
    """An input with more segments than a reader without an embedder may hold."""


class _Embedding:
    """The segments of one input; past ``LONG_SEGMENTS`` they are embedded (``embed``) and
    their samples dropped, ``LONG_SEGMENTS`` at a time. Without ``embed`` and with a
    ``limit``, an input with more than ``limit`` segments is ``TooLong``."""

    def __init__(self, embed, lock, limit: int | None = None):
        self.embed, self.lock, self.limit = embed, lock, limit
        self.segments: list[Segment] = []
        self.raw: list[np.ndarray] = []
        self.signal_s = 0.0  # of the embedded segments
        self.seconds = 0.0  # spent embedding
        self.held = 0  # segments still holding samples

    def add(self, s: Segment, policy: AudioPolicy) -> None:
        self.segments.append(s)
        self.held += 1
        if self.embed is not None and self.held > LONG_SEGMENTS:
            self.flush(policy)
        elif self.embed is None and self.limit is not None and self.held > self.limit:
            raise TooLong()

    def flush(self, policy: AudioPolicy) -> None:
        from speakerdb.audio import TARGET_RATE, signal_seconds

        at = len(self.segments) - self.held
        todo = self.segments[at:]
        if not todo:
            return
        t0 = time.perf_counter()
        with self.lock:
            self.raw.append(self.embed([s.samples for s in todo]))
        self.seconds += time.perf_counter() - t0
        self.signal_s += sum(signal_seconds(s.samples, TARGET_RATE, policy.silence_dbfs)
                             for s in todo)
        empty = np.zeros(0, np.float32)
        self.segments[at:] = [replace(s, samples=empty) for s in todo]
        self.held = 0


def _open(item: SourceItem, sha: str, data, policy: AudioPolicy):
    """The ``Preparing`` of one input, or its FailureIn."""
    from speakerdb.audio.stream import Preparing

    name = display_name(item.path)
    try:
        return Preparing(data if isinstance(data, AudioSource) else item.path, policy, name=name)
    except AudioError as e:
        return FailureIn(name, sha, e.reason, str(e))


def _open_whole(item: SourceItem, sha: str, data, policy: AudioPolicy):
    """``_open``, the whole signal decoded (``Preparing.whole``)."""
    p = _open(item, sha, data, policy)
    if isinstance(p, FailureIn):
        return p
    try:
        p.whole()
    except AudioError as e:
        return FailureIn(p.name, sha, e.reason, str(e))
    return p


def decode_many(todo: list[tuple], policy: AudioPolicy, embed, lock,
                limit: int | None = None, map_=map) -> list[tuple]:
    """``_decode_one`` of each ``(item, sha, data)`` (``map_``: e.g. a thread pool's map);
    a ``TooLong`` input gives ``(None, 0.0)``. With Silero VAD, the inputs' whole signals are
    decoded first and scored together (``audio.vad.silero_regions_many``)."""
    opened = [None] * len(todo)
    if policy.vad == "silero":
        from speakerdb.audio import TARGET_RATE
        from speakerdb.audio.vad import silero_regions_many

        opened = list(map_(lambda t: _open_whole(*t, policy), todo))
        live = [p for p in opened if not isinstance(p, FailureIn)]
        for p, regions in zip(live, silero_regions_many([p.whole() for p in live], TARGET_RATE)):
            p.regions = regions

    def one(pair):
        try:
            return _decode_one(*pair[0], policy, embed, lock, limit, opened=pair[1])
        except TooLong:
            return None, 0.0

    return list(map_(one, zip(todo, opened)))


def _decode_one(item: SourceItem, sha: str, data, policy: AudioPolicy, embed, lock,
                limit: int | None = None, opened=None):
    """(Decoded or FailureIn, seconds spent embedding); without ``embed`` and with a
    ``limit``, an input with more than ``limit`` segments raises ``TooLong``. ``opened``:
    the input's ``_open_whole``, when it was decoded before."""
    name = display_name(item.path)
    emb = _Embedding(embed, lock, limit)
    try:
        in_memory = isinstance(data, AudioSource)
        p = opened if opened is not None else _open(item, sha, data, policy)
        if isinstance(p, FailureIn):
            return p, 0.0
        for s in p:
            emb.add(s, policy)
        if emb.raw:
            emb.flush(policy)
        if not in_memory:
            try:
                changed = _stamp(item.path) != data
            except OSError:
                changed = True
            if changed:
                raise AudioError(name, "changed while it was being read")
    except AudioError as e:
        return FailureIn(name, sha, e.reason, str(e)), emb.seconds
    prepared = Prepared(p.name, p.duration_s, p.sample_rate, p.channels, emb.segments,
                        signal_s=emb.signal_s if emb.raw else None)
    raw = np.concatenate(emb.raw) if emb.raw else None
    return Decoded(item, sha, prepared, raw), emb.seconds


class Reader:
    """Iterates ``ReadBatch``es over ``items``.

    ``known(shas) -> set`` says which content hashes need no work (already stored or known bad).
    Files are hashed and decoded on ``workers`` threads (the decoders release the GIL).
    ``embed(list of samples) -> (n, raw_dim)``, when given, embeds the segments of inputs with
    more than ``LONG_SEGMENTS`` of them while they are read (one call at a time).
    ``labels(shas) -> {sha: stored label or None}``, when given, looks up the stored
    recordings among the skipped inputs that come with a speaker: where the stored label
    differs, the batch lists the given one (``ReadBatch.labels``).
    """

    def __init__(
        self,
        items: list[SourceItem],
        known: Callable[[list[str]], set[str]],
        policy: AudioPolicy = AudioPolicy(),
        files_per_batch: int = 32,
        workers: int = 2,
        embed: Callable[[list[np.ndarray]], np.ndarray] | None = None,
        labels: Callable[[list[str]], dict[str, str | None]] | None = None,
    ):
        self.items, self.known, self.policy = items, known, policy
        self.files_per_batch, self.workers = files_per_batch, max(1, workers)
        self.embed, self.lock = embed, threading.Lock()
        self.labels = labels

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ReadBatch]:
        seen: set[str] = set()
        with ThreadPoolExecutor(self.workers) as pool:
            for start in range(0, len(self.items), self.files_per_batch):
                chunk = self.items[start : start + self.files_per_batch]
                t0 = time.perf_counter()
                hashed = list(pool.map(_hash_one, chunk))
                batch, todo = triage(chunk, hashed, self.known, seen, self.labels)
                del hashed
                for out, embed_s in decode_many(todo, self.policy, self.embed, self.lock,
                                                map_=pool.map):
                    batch.embed_s += embed_s
                    add_decoded(batch, out)
                batch.decode_s = time.perf_counter() - t0 - batch.embed_s
                batch.wait_s = batch.decode_s
                yield batch


def add_decoded(batch: ReadBatch, out: Decoded | FailureIn) -> None:
    if isinstance(out, FailureIn):
        batch.failures.append(out)
    else:
        batch.decoded.append(out)


def triage(chunk: list[SourceItem], hashed: list[tuple[str, object]],
           known: Callable[[list[str]], set[str]], seen: set[str],
           labels: Callable[[list[str]], dict[str, str | None]] | None):
    """(the ``ReadBatch`` of ``chunk`` with its hash failures, skips and labels; the
    ``(item, sha, data)`` left to decode), given the ``hashed`` results of ``_hash_one``.
    ``seen``: the content hashes met so far in this run (updated), so that each is decoded
    once; ``known``, ``labels``: as ``Reader`` takes them."""
    batch = ReadBatch(n_inputs=len(chunk))
    have = known([sha for sha, _ in hashed if sha])
    todo, given = [], []
    for item, (sha, data) in zip(chunk, hashed):
        if isinstance(data, FailureIn):
            batch.failures.append(data)
        elif sha in have or sha in seen:
            batch.skipped += 1
            if sha not in seen and item.speaker is not None:
                given.append((item, sha))
            seen.add(sha)
        else:
            seen.add(sha)
            todo.append((item, sha, data))
    batch.labels = _given(given, labels)
    return batch, todo


def _given(given: list[tuple[SourceItem, str]], labels) -> list[LabelIn]:
    if not given or labels is None:
        return []
    stored = labels([sha for _, sha in given])
    return [LabelIn(sha, stored[sha], item.speaker, display_name(item.path))
            for item, sha in given if sha in stored and stored[sha] != item.speaker]

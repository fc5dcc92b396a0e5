"""Reading in worker processes: the reader's hashing and decoding (resampling, segmenting,
the signal checks) run in a process pool beside the model, which embeds in this process.

``PoolReader`` yields the ``ReadBatch``es ``Reader`` yields for the same inputs, batch for
batch, in the order they finish. A chunk of ``files_per_batch`` inputs is hashed in a worker;
this process skips what is known or already met in the run (``reader.triage``, chunks in
their order, so each duplicate is decoded in the batch it would be without workers); the rest
is decoded in a worker. Up to ``inflight`` chunks are open at a time, so that decoded batches
wait for the model rather than the model for them.

An input with more than ``LONG_SEGMENTS`` segments is not held by a worker: the worker stops
and this process decodes it again with the in-process path (embedding as it reads, so memory
stays bounded). A worker that dies (``BrokenProcessPool``) costs no input: the chunks it
left are redone in this process and a new pool takes the rest (after ``MAX_RESTARTS`` new
pools, the run goes on in this process alone).

The workers are started with ``spawn`` (never ``fork``: this process has torch's threads) and
import only the audio layer: no torch, no model.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from speakerdb.audio import AudioPolicy
from speakerdb.ingest import reader as _reader
from speakerdb.ingest.reader import (ReadBatch, _decode_one, _hash_one, add_decoded, decode_many,
                                     triage)
from speakerdb.ingest.sources import SourceItem

__all__ = ["PoolReader", "MAX_RESTARTS", "default_workers", "resolve_workers", "start_pool",
           "heavy_modules"]

MAX_RESTARTS = 3  # new pools after workers died; past them, the rest is read in this process
HEAVY = ("torch", "torchaudio", "faiss")


def default_workers() -> int:
    """The decoding processes an ingest starts by default: one per core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int | None, n_inputs: int, files_per_batch: int) -> int:
    """``workers`` as given, or (None) ``default_workers()`` when the inputs fill more than one
    batch, else 0: one batch cannot overlap with anything, so starting processes would only
    cost their start."""
    if workers is not None:
        return workers
    return default_workers() if n_inputs > files_per_batch else 0


def _worker_setup(parent: int) -> None:
    """Worker set-up: Ctrl-C is for the parent, which shuts the pool down; a parent that
    is gone (killed, ``kill -9``) takes the worker with it (within a second). A worker that
    runs Silero VAD runs it on one thread: the model process has the cores."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def start_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` processes started with ``spawn`` (a fresh interpreter: no torch, no
    inherited threads)."""
    import multiprocessing

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_setup, initargs=(os.getpid(),))


def heavy_modules() -> list[str]:
    """The heavy modules loaded in the calling process (run in a worker, it must say [])."""
    return [m for m in HEAVY if m in sys.modules]


def hash_chunk(chunk: list[SourceItem]) -> tuple[list[tuple[str, object]], float]:
    """(``_hash_one`` of each input, seconds): runs in a worker."""
    t0 = time.perf_counter()
    out = [_hash_one(item) for item in chunk]
    return out, time.perf_counter() - t0


def decode_chunk(todo: list[tuple], policy: AudioPolicy, limit: int) -> tuple[list, float]:
    """(``Decoded`` or ``FailureIn`` of each ``(item, sha, data)``, or None for an input with
    more than ``limit`` segments; seconds): runs in a worker."""
    t0 = time.perf_counter()
    out = [res for res, _ in decode_many(todo, policy, None, None, limit)]
    return out, time.perf_counter() - t0


class _Chunk:
    def __init__(self, items: list[SourceItem]):
        self.items = items
        self.hashed: list | None = None
        self.batch: ReadBatch | None = None
        self.todo: list[tuple] = []
        self.decode_s = 0.0  # hashing it


class PoolReader:
    """Iterates ``ReadBatch``es over ``items`` like ``reader.Reader``, with the hashing and
    decoding in ``workers`` processes (``workers >= 1``). ``embed``: for the inputs with more
    than ``LONG_SEGMENTS`` segments, decoded in this process. ``inflight``: chunks open at a
    time (default ``2 * workers``). ``wait_s`` of a batch: this process waiting on the
    workers before it; ``decode_s``: the workers' seconds for it (and this process's, for
    long inputs and redone chunks)."""

    def __init__(
        self,
        items: list[SourceItem],
        known: Callable[[list[str]], set[str]],
        policy: AudioPolicy = AudioPolicy(),
        files_per_batch: int = 32,
        workers: int = 2,
        embed: Callable[[list[np.ndarray]], np.ndarray] | None = None,
        labels: Callable[[list[str]], dict[str, str | None]] | None = None,
        inflight: int | None = None,
    ):
        self.items, self.known, self.policy = items, known, policy
        self.files_per_batch, self.workers = files_per_batch, max(1, workers)
        self.embed, self.labels, self.lock = embed, labels, threading.Lock()
        self.inflight = max(1, inflight if inflight is not None else 2 * self.workers)
        self.broken = 0  # pools whose workers died
        self.restarts = 0  # pools started again after a worker died
        self._pool: ProcessPoolExecutor | None = None
        self._generation = 0

    def __len__(self) -> int:
        return len(self.items)

    # the pool -------------------------------------------------------------------------------
    def _submit(self, fn, *args) -> tuple[Future, int]:
        """``fn(*args)`` in a worker, or here once the pool was started ``MAX_RESTARTS`` times
        again (a future already done)."""
        while self._pool is not None:
            try:
                return self._pool.submit(fn, *args), self._generation
            except BrokenProcessPool:  # found broken before a future said so
                self._broken(self._generation)
        f: Future = Future()
        f.set_result(fn(*args))
        return f, -1

    def _broken(self, generation: int) -> None:
        """A worker of pool ``generation`` died: start another (once per pool)."""
        if generation != self._generation or self._pool is None:
            return
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None
        self._generation += 1
        self.broken += 1
        if self.restarts < MAX_RESTARTS:
            self.restarts += 1
            self._pool = start_pool(self.workers)

    # the work of one chunk, here ---------------------------------------------------------
    def _decode_here(self, todo: list[tuple], batch: ReadBatch) -> list:
        """Decode ``todo`` in this process (as ``Reader`` does); the outputs in its order."""
        out = []
        for t in todo:
            t0 = time.perf_counter()
            res, embed_s = _decode_one(*t, self.policy, self.embed, self.lock)
            batch.embed_s += embed_s
            batch.decode_s += time.perf_counter() - t0 - embed_s
            out.append(res)
        return out

    def _finish(self, c: _Chunk, outs: list) -> ReadBatch:
        """The chunk's batch, complete; the chunk lets go of it (and of its audio)."""
        batch = c.batch
        for t, out in zip(c.todo, outs):
            if out is None:  # too long for a worker to hold: decoded here, embedding as read
                [out] = self._decode_here([t], batch)
            add_decoded(batch, out)
        c.todo, c.batch = [], None
        return batch

    def _collect(self, f: Future, stage: str, c: _Chunk, gen: int, ready: deque) -> None:
        """Take in a finished hash or decode of chunk ``c``; where the worker died, redo the
        work here."""
        try:
            result, seconds = f.result()
        except BrokenProcessPool:
            self._broken(gen)
            t0 = time.perf_counter()
            if stage == "hash":
                result = [_hash_one(item) for item in c.items]
                seconds = time.perf_counter() - t0
            else:
                result, seconds = self._decode_here(c.todo, c.batch), 0.0
        if stage == "hash":
            c.hashed, c.decode_s = result, seconds
        else:
            c.batch.decode_s += seconds
            ready.append(self._finish(c, result))

    # the loop -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[ReadBatch]:
        n = self.files_per_batch
        chunks = [_Chunk(self.items[i : i + n]) for i in range(0, len(self.items), n)]
        seen: set[str] = set()
        limit = _reader.LONG_SEGMENTS  # read here, so that the workers apply this value
        futures: dict[Future, tuple[str, int, int]] = {}  # -> (stage, chunk, generation)
        ready: deque[ReadBatch] = deque()
        opened = triaged = done = 0
        waited = 0.0
        self._pool, self._generation = start_pool(self.workers), 0
        self.broken = self.restarts = 0

        def top_up() -> None:  # open chunks (their hashing) up to ``inflight``
            nonlocal opened
            while opened < len(chunks) and opened - done < self.inflight:
                f, gen = self._submit(hash_chunk, chunks[opened].items)
                futures[f] = ("hash", opened, gen)
                opened += 1

        try:
            while done < len(chunks):
                top_up()
                if ready:  # take in what has finished meanwhile, without waiting
                    finished = [f for f in futures if f.done()]
                else:
                    t0 = time.perf_counter()
                    finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                    waited += time.perf_counter() - t0
                for f in sorted(finished, key=lambda f: futures[f][1]):
                    stage, i, gen = futures.pop(f)
                    self._collect(f, stage, chunks[i], gen, ready)
                # triage in chunk order: each duplicate is decoded where it would be in order
                while triaged < len(chunks) and chunks[triaged].hashed is not None:
                    c = chunks[triaged]
                    c.batch, c.todo = triage(c.items, c.hashed, self.known, seen, self.labels)
                    c.batch.decode_s += c.decode_s
                    c.hashed = []
                    if c.todo:
                        f, gen = self._submit(decode_chunk, c.todo, self.policy, limit)
                        futures[f] = ("decode", triaged, gen)
                    else:
                        ready.append(self._finish(c, []))
                    triaged += 1
                if ready:
                    batch = ready.popleft()
                    batch.wait_s, waited = waited, 0.0
                    done += 1
                    top_up()  # the next chunk is read while this one is embedded
                    yield batch
        finally:
            for f in futures:
                f.cancel()
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

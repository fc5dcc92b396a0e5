"""Reading identify's inputs: each input decoded, gated and segmented into a ``Pending`` (its
``Prepared`` audio, or the AudioError that stopped it), in input order, in this process or in
worker processes beside the model.

With workers (``ingest.pool.start_pool``: ``spawn``, no torch in them), ``batch`` inputs go to a
worker per task and up to two tasks per worker are open at a time, so the model's process finds
the next inputs decoded when it has embedded and searched the last ones. A task that cannot run
in a worker (a worker died, an input that cannot be sent to another process) is decoded here
instead; after a worker died, the rest is too.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from speakerdb.audio import AudioPolicy, describe
from speakerdb.errors import AudioError
from speakerdb.ingest.sources import SourceItem
from speakerdb.search.query import decode_gated

__all__ = ["Pending", "decode_input", "decode_chunk", "decoded"]


@dataclass
class Pending:
    """One input read: ``prepared`` (``audio.Prepared``) or the ``error`` that stopped it."""

    name: str
    truth: str | None
    prepared: object | None = None
    error: AudioError | None = None


def _described(x):
    """(audio, truth, name, error known from discovery) of an input."""
    if isinstance(x, SourceItem):
        name = describe(x.path)
        return x.path, x.speaker, name, None if x.error is None else AudioError(name, x.error)
    return x, None, describe(x), None


def decode_input(x, policy: AudioPolicy, gate: float, regions=None) -> Pending:
    """Read, gate and segment one input (a ``SourceItem`` carries its truth); an AudioError,
    or an error known from discovery, becomes the input's error. ``regions``: as
    ``audio.prepare``'s (``x`` then a ``Waveform`` decoded before)."""
    audio, truth, name, error = _described(x)
    if error is not None:
        return Pending(name, truth, error=error)
    try:
        return Pending(name, truth, prepared=decode_gated(audio, policy, gate, name,
                                                          regions=regions))
    except AudioError as e:
        return Pending(name, truth, error=e)


def decode_chunk(inputs: list, policy: AudioPolicy, gate: float) -> tuple[list[Pending], float]:
    """(``decode_input`` of each input, seconds): one worker task. With Silero VAD the inputs
    are decoded first and scored together (``audio.vad.silero_regions_many``)."""
    t0 = time.perf_counter()
    if policy.vad != "silero":
        return [decode_input(x, policy, gate) for x in inputs], time.perf_counter() - t0
    return _decode_scored(inputs, policy, gate), time.perf_counter() - t0


def _decode_scored(inputs: list, policy: AudioPolicy, gate: float) -> list[Pending]:
    """``decode_input`` of each input, Silero VAD scoring the decoded inputs together."""
    from speakerdb.audio import TARGET_RATE, load
    from speakerdb.audio.vad import silero_regions_many

    out: list[Pending | None] = [None] * len(inputs)
    waves = []
    for i, x in enumerate(inputs):
        audio, truth, name, error = _described(x)
        if error is None:
            try:
                waves.append((i, name, truth, load(audio, name=name,
                                                   max_duration_s=policy.max_duration_s)))
                continue
            except AudioError as e:
                error = e
        out[i] = Pending(name, truth, error=error)
    found = silero_regions_many([w.samples for *_, w in waves], TARGET_RATE)
    for (i, name, truth, wave), regions in zip(waves, found):
        try:
            out[i] = Pending(name, truth, prepared=decode_gated(wave, policy, gate, name,
                                                                regions=regions))
        except AudioError as e:
            out[i] = Pending(name, truth, error=e)
    return out


def decoded(inputs: Iterable, policy: AudioPolicy, gate: float, batch: int, workers: int,
            timings) -> Iterator[Pending]:
    """Each of ``inputs`` read (``decode_input``), in input order. ``timings``: adds the
    seconds spent decoding (the workers' summed, with workers) and, with workers, this
    process's ``wait_s`` for them."""
    if workers <= 0:
        for x in inputs:
            t0 = time.perf_counter()
            out = decode_input(x, policy, gate)
            timings.decode_s += time.perf_counter() - t0
            yield out
        return
    yield from _pooled(iter(inputs), policy, gate, batch, workers, timings)


def _pooled(it: Iterator, policy: AudioPolicy, gate: float, batch: int, workers: int,
            timings) -> Iterator[Pending]:
    from concurrent.futures.process import BrokenProcessPool

    from speakerdb.ingest.pool import start_pool

    pool = start_pool(workers)
    open_: deque = deque()  # (inputs, their future; None: to be read here), in input order
    broken = False

    def submit() -> None:
        nonlocal broken
        chunk = list(islice(it, batch))
        if chunk:
            try:
                open_.append((chunk, pool.submit(decode_chunk, chunk, policy, gate)))
            except BrokenProcessPool:
                broken = True
                open_.append((chunk, None))

    try:
        for _ in range(2 * workers):
            submit()
        while open_:
            chunk, future = open_.popleft()
            t0 = time.perf_counter()
            try:
                if future is None:
                    raise BrokenProcessPool("not sent")
                out, seconds = future.result()
            except Exception as e:  # a dead worker, or an input that cannot be sent to one
                broken = broken or isinstance(e, BrokenProcessPool)
                out, seconds = decode_chunk(chunk, policy, gate)
            else:
                timings.wait_s += time.perf_counter() - t0
            timings.decode_s += seconds
            if not broken:
                submit()
            yield from out
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    yield from decoded(it, policy, gate, batch, 0, timings)  # what is left after a worker died

"""Duration gates: how many seconds of signal an input needs before it is embedded, checked on
the decoded samples, on prepared segments, and on ingest batches (an input below the gate becomes
a failure whose message names the measured and required seconds)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from speakerdb.audio import FRAME_S, TARGET_RATE, AudioPolicy, Prepared, load, signal_seconds
from speakerdb.config import check_duration
from speakerdb.errors import AudioError, TooShortError
from speakerdb.store.records import FailureIn

__all__ = ["check_gate", "check_signal_gate", "gate_batches", "gate_seconds", "gated_policy"]


def gated_policy(policy: AudioPolicy, gate: float) -> AudioPolicy:
    """The policy to prepare audio with when ``gate`` seconds of signal are required: pieces
    are kept by the lower of the policy's and the gate's minimum; the gate is checked after."""
    return replace(policy, min_signal_s=min(policy.min_signal_s, gate))


def _too_short(name: str, got: float, gate: float) -> TooShortError:
    return TooShortError(name, f"too short: {_secs(got)} s of signal, need at least "
                               f"{_secs(gate)} s")


def _secs(x: float) -> str:
    """Seconds with one or two decimals: 1.0, 0.8, 0.25."""
    text = f"{x:.2f}"
    return text[:-1] if text.endswith("0") else text


def check_gate(prepared: Prepared, gate: float, policy: AudioPolicy) -> None:
    """``TooShortError`` when the segments of ``prepared`` hold less than ``gate`` seconds of
    signal."""
    got = prepared.signal_s if prepared.signal_s is not None else sum(
        signal_seconds(s.samples, TARGET_RATE, policy.silence_dbfs) for s in prepared.segments)
    if got < gate:
        raise _too_short(prepared.name, got, gate)


def check_signal_gate(samples, gate: float, policy: AudioPolicy, name: str) -> None:
    """``TooShortError`` when mono ``TARGET_RATE`` samples hold less than ``gate`` seconds of
    signal; silent audio (frames, none above the floor) is left to ``audio.check_signal``."""
    got = signal_seconds(samples, TARGET_RATE, policy.silence_dbfs)
    frames = len(samples) // max(1, round(FRAME_S * TARGET_RATE))
    if got < gate and (got > 0 or frames == 0):
        raise _too_short(name, got, gate)


def gate_batches(batches: Iterable, gate: float, policy: AudioPolicy):
    """Reader batches with inputs below the enrollment gate moved to the failures; inputs
    rejected under the policy's lower minimum are re-described against the gate."""
    for batch in batches:
        keep = []
        for d in batch.decoded:
            try:
                check_gate(d.prepared, gate, policy)
                keep.append(d)
            except TooShortError as e:
                batch.failures.append(FailureIn(d.prepared.name, d.sha256, e.reason, str(e)))
        batch.decoded = keep
        if gate > policy.min_signal_s:
            batch.failures = [_regated(f, gate, policy) for f in batch.failures]
        yield batch


def _regated(f: FailureIn, gate: float, policy: AudioPolicy) -> FailureIn:
    from speakerdb.audio.names import input_path

    if f.reason != TooShortError.reason:
        return f
    try:
        samples = load(input_path(f.path), name=f.path, max_duration_s=policy.max_duration_s)
        check_signal_gate(samples.samples, gate, policy, f.path)
    except TooShortError as e:
        return replace(f, message=str(e))
    except AudioError:
        pass
    return f


def gate_seconds(given: float | None, default: float) -> float:
    return default if given is None else check_duration(given)

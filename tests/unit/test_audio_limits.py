"""Bounded cost per input: streamed preparation equals whole-signal preparation, a duration
limit stops long inputs with the reason, and peak memory does not grow with an input's length."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from speakerdb.audio import (TARGET_RATE, AudioPolicy, Waveform, _bounds, check_signal, load,
                             prepare, segment)
from speakerdb.errors import AudioError, SilentAudioError, TooLongError, TooShortError
from speakerdb.stream import Preparing, Segmenter
from tests.audio_corpus import speechlike, write_m4a

R = TARGET_RATE


def _whole(x: np.ndarray, policy: AudioPolicy):
    """What preparing ``x`` at once gives: the segments, or the error class and message."""
    try:
        check_signal(x, R, policy, "x")
        return [(s.start_s, s.end_s, s.samples.tobytes()) for s in segment(Waveform(x, R),
                                                                           policy, name="x")]
    except AudioError as e:
        return type(e), str(e)


def _streamed(x: np.ndarray, policy: AudioPolicy, sizes: list[int]):
    cut, out, at, k = Segmenter(policy, "x"), [], 0, 0
    try:
        while at < len(x):
            n = sizes[k % len(sizes)]
            out += cut.feed(x[at : at + n])
            at, k = at + n, k + 1
        out += cut.finish()
    except AudioError as e:
        return type(e), str(e)
    return [(s.start_s, s.end_s, s.samples.tobytes()) for s in out]


@pytest.mark.parametrize("seconds", [0.3, 9.99, 30.0, 30.01, 34.9, 35.0, 44.99, 45.0, 61.3, 95.0])
def test_streamed_segments_equal_whole_signal_segments(seconds):
    rng = np.random.default_rng(int(seconds * 100))
    x = speechlike(seconds, R, seed=3)
    x[int(0.4 * len(x)) : int(0.55 * len(x))] = 0  # a silent stretch: a dropped piece
    policy = AudioPolicy()
    want = _whole(x, policy)
    for sizes in ([len(x)], [1024], [65536], list(rng.integers(1, 200000, 7))):
        assert _streamed(x, policy, sizes) == want


def test_streamed_errors_equal_whole_signal_errors():
    policy = AudioPolicy()
    silent = np.zeros(40 * R, np.float32)
    sparse = np.zeros(50 * R, np.float32)
    for k in range(5):  # 0.3 s of signal in each 10 s piece: enough overall, in no piece
        sparse[(10 * k + 2) * R : (10 * k + 2) * R + int(0.3 * R)] = speechlike(0.3, R, seed=k)
    short = speechlike(0.3, R, seed=1)
    for x, cls in ((silent, SilentAudioError), (sparse, TooShortError), (short, TooShortError)):
        want = _whole(x, policy)
        assert want[0] is cls, want
        assert _streamed(x, policy, [4096]) == want
    assert "no 10 s segment has" in _whole(sparse, policy)[1]


def test_bounds_follow_the_documented_rule():
    piece = 10 * R
    for n in (piece, 30 * R, 30 * R + 1, 35 * R - 1, 35 * R, 100 * R + 7):
        b = _bounds(n, R, AudioPolicy())
        assert b[0][0] == 0 and b[-1][1] == n
        assert all(x[1] == y[0] for x, y in zip(b, b[1:]))


def test_prepare_from_blocks_equals_prepare_from_bytes(tmp_path):
    p = tmp_path / "a.wav"
    sf.write(p, speechlike(75.0, 44100, seed=2), 44100, subtype="PCM_16")
    a, b = prepare(p), prepare(io.BytesIO(p.read_bytes()))
    assert [s.samples.tobytes() for s in a.segments] == [s.samples.tobytes() for s in b.segments]
    assert (a.duration_s, a.sample_rate, len(a.segments)) == (75.0, 44100, 8)


# ---------------------------------------------------------------- limits


def test_declared_length_over_the_limit_fails_before_decoding(tmp_path):
    p = tmp_path / "long.wav"
    sf.write(p, speechlike(20.0, R, seed=4), R, subtype="PCM_16")
    policy = AudioPolicy(max_duration_s=15)
    with pytest.raises(TooLongError, match=r"long.wav: too long: 20.0 s of audio, the limit is "
                                           r"15 s \(--max-duration\)"):
        Preparing(p, policy)
    with pytest.raises(TooLongError):
        load(p, max_duration_s=15)
    assert prepare(p, AudioPolicy(max_duration_s=20)).duration_s == 20.0
    assert prepare(p, AudioPolicy(max_duration_s=None)).duration_s == 20.0


def test_undeclared_length_is_stopped_at_the_limit(tmp_path):
    p = tmp_path / "long.m4a"
    write_m4a(p, speechlike(8.0, R, seed=5), R)
    with pytest.raises(TooLongError, match=r"more than 5 s of audio, the limit \(--max-duration\); "
                                           r"the rest was not read"):
        prepare(p, AudioPolicy(max_duration_s=5))
    assert len(prepare(p, AudioPolicy(max_duration_s=9)).segments) == 1


def test_waveforms_obey_the_floor_and_the_limit():
    x = speechlike(3.0, 8000, seed=6)
    with pytest.raises(AudioError, match="sample rate 3000 Hz is below the 4000 Hz floor"):
        prepare(Waveform(x, 3000))
    with pytest.raises(TooLongError):
        prepare(Waveform(x, 8000), AudioPolicy(max_duration_s=2.5))


def test_the_default_limit_serves_long_meetings():
    assert AudioPolicy().max_duration_s == 4 * 3600


# ---------------------------------------------------------------- memory

_PEAK = textwrap.dedent("""
    import resource, sys
    from speakerdb.audio import AudioPolicy
    from speakerdb.stream import Preparing
    n = 0
    for s in Preparing(sys.argv[1], AudioPolicy()):
        n += 1
    print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def _write_long_wav(path, seconds: float, rate: int) -> None:
    block = speechlike(60.0, rate, seed=7)
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
        for _ in range(int(seconds // 60)):
            f.write(block)


def _peak_kib(path) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True,
                         text=True, check=True, timeout=120)
    segments, peak = out.stdout.split()
    return int(segments), int(peak)


def test_peak_memory_is_flat_from_one_minute_to_two_hours(tmp_path):
    """A 2-hour 8 kHz file (115 MB; 460 MB as 16 kHz float) is prepared in the memory a
    1-minute one takes."""
    short, long = tmp_path / "short.wav", tmp_path / "long.wav"
    _write_long_wav(short, 60, 8000)
    _write_long_wav(long, 2 * 3600, 8000)
    n1, peak1 = _peak_kib(short)
    n2, peak2 = _peak_kib(long)
    assert (n1, n2) == (6, 720)
    assert peak2 < peak1 + 30 * 1024, (peak1, peak2)  # KiB: within 30 MB of each other

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

from speakerdb.audio import (TARGET_RATE, AudioPolicy, Waveform, check_signal, load, prepare,
                             segment, segment_bounds)
from speakerdb.errors import AudioError, SilentAudioError, TooLongError, TooShortError
from speakerdb.audio.stream import Preparing, Segmenter
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
        b = segment_bounds(n, R, AudioPolicy())
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
                                           r"15 s \(max_duration\)"):
        Preparing(p, policy)
    with pytest.raises(TooLongError):
        load(p, max_duration_s=15)
    assert prepare(p, AudioPolicy(max_duration_s=20)).duration_s == 20.0
    assert prepare(p, AudioPolicy(max_duration_s=None)).duration_s == 20.0


def test_undeclared_length_is_stopped_at_the_limit(tmp_path):
    p = tmp_path / "long.m4a"
    write_m4a(p, speechlike(8.0, R, seed=5), R)
    with pytest.raises(TooLongError, match=r"more than 5 s of audio, the limit \(max_duration\); "
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

_PREPARE = textwrap.dedent("""
    import resource, sys
    from speakerdb.audio import AudioPolicy
    from speakerdb.audio.stream import Preparing
    n = 0
    for s in Preparing(sys.argv[1], AudioPolicy()):
        n += 1
    print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")

_INGEST = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from speakerdb.api import SpeakerDB

    class Cheap:  # an embedder that costs nothing: the memory measured is the ingest's own
        name, sha256, dims, raw_dim = "cheap", "c" * 64, (64, 128, 192, 256), 256
        sample_rate, default_threshold = 16000, 0.5

        def __call__(self, waves):
            return np.stack([np.resize(w[:256], 256) + 1.0 for w in waves]).astype(np.float32)

    with SpeakerDB.create(sys.argv[2], model="cheap", embedder=Cheap()) as db:
        stats = db.ingest([sys.argv[1]])
    assert stats.added == 1 and not stats.failed, stats
    print(stats.segments, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


def _write_long_wav(path, seconds: float, rate: int) -> None:
    block = speechlike(60.0, rate, seed=7)
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
        for _ in range(int(seconds // 60)):
            f.write(block)


@pytest.fixture(scope="module")
def minute_and_two_hours(tmp_path_factory):
    """A 1-minute and a 2-hour 8 kHz WAV (115 MB; 460 MB as 16 kHz float), each alone in a
    folder, written a minute at a time."""
    root = tmp_path_factory.mktemp("long")
    out = []
    for name, seconds in (("minute", 60), ("hours", 2 * 3600)):
        (root / name).mkdir()
        _write_long_wav(root / name / f"{name}.wav", seconds, 8000)
        out.append(root / name)
    return out


def _peak(script: str, *args) -> tuple[int, int]:
    """(segments, peak RSS in KiB) of a child process running ``script``."""
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    segments, peak = out.stdout.split()
    return int(segments), int(peak)


def test_peak_memory_of_preparing_is_flat_from_one_minute_to_two_hours(minute_and_two_hours):
    short, long = (d / f"{d.name}.wav" for d in minute_and_two_hours)
    n1, peak1 = _peak(_PREPARE, short)
    n2, peak2 = _peak(_PREPARE, long)
    assert (n1, n2) == (6, 720)
    assert peak2 < peak1 + 30 * 1024, (peak1, peak2)  # KiB: within 30 MB of each other


def test_peak_memory_of_ingest_is_flat_from_one_minute_to_two_hours(minute_and_two_hours,
                                                                     tmp_path):
    short, long = minute_and_two_hours
    n1, peak1 = _peak(_INGEST, short, tmp_path / "h1")
    n2, peak2 = _peak(_INGEST, long, tmp_path / "h2")
    assert (n1, n2) == (6, 720)
    assert peak2 < peak1 + 40 * 1024, (peak1, peak2)  # KiB: within 40 MB of each other


def test_long_inputs_are_embedded_while_read_with_the_same_vectors(tmp_path, spectral_embedder):
    from speakerdb.ingest.reader import LONG_SEGMENTS, Reader
    from speakerdb.ingest.runner import embed_segments
    from speakerdb.ingest.sources import discover

    p = tmp_path / "talk.wav"
    sf.write(p, speechlike(10.0 * (LONG_SEGMENTS + 9), R, seed=8), R, subtype="PCM_16")
    embed = lambda segs: embed_segments(spectral_embedder, segs, 16)  # noqa: E731
    [batch] = Reader(discover([tmp_path]), lambda shas: set(), embed=embed)
    [d] = batch.decoded
    want = embed([s.samples for s in prepare(p).segments])
    assert d.raw is not None and d.raw.shape == want.shape == (LONG_SEGMENTS + 9, 256)
    np.testing.assert_allclose(d.raw, want, rtol=1e-5, atol=1e-6)
    assert all(len(s.samples) == 0 for s in d.prepared.segments)  # the samples are not kept
    assert d.prepared.signal_s == pytest.approx((LONG_SEGMENTS + 9) * 10.0)
    assert batch.embed_s > 0


def test_a_file_changed_while_read_fails_with_the_reason(tmp_path, monkeypatch):
    import speakerdb.ingest.reader as reader
    from speakerdb.ingest.sources import discover

    sf.write(tmp_path / "a.wav", speechlike(2.0, R, seed=9), R, subtype="PCM_16")
    stamps = iter([(1, 1), (2, 2)])  # the size and time stamp at hashing, then after decoding
    monkeypatch.setattr(reader, "_stamp", lambda path: next(stamps))
    [batch] = reader.Reader(discover([tmp_path]), lambda shas: set())
    [f] = batch.failures
    assert not batch.decoded
    assert f.message == f"{tmp_path / 'a.wav'}: changed while it was being read"

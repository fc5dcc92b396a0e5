"""speakerdb.audio: input forms, mixdown, resampling, signal measure, segmentation, AAC, errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speakerdb.audio import (
    TARGET_RATE,
    AudioPolicy,
    Waveform,
    check_signal,
    decode,
    describe,
    load,
    prepare,
    segment,
    signal_seconds,
)
from speakerdb.errors import AudioError, SilentAudioError, TooShortError
from tests.audio_corpus import speechlike, write_m4a

R = TARGET_RATE


def tone(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(
        np.float32
    )


def peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spec.argmax()])


def bounds(segs) -> list[tuple[float, float]]:
    return [(s.start_s, s.end_s) for s in segs]


@pytest.fixture
def wav(tmp_path) -> tuple[Path, np.ndarray]:
    x = speechlike(2.0, R, seed=1)
    p = tmp_path / "a.wav"
    sf.write(p, x, R, subtype="PCM_16")
    return p, sf.read(p, dtype="float32")[0]


# ---------------------------------------------------------------- input forms


def test_every_input_form_decodes_the_same(wav):
    p, ref = wav
    with open(p, "rb") as f:
        from_file = decode(f)
    forms = [decode(str(p)), decode(p), from_file, decode(io.BytesIO(p.read_bytes())),
             decode(Waveform(ref, R))]
    for w in forms:
        assert w.sample_rate == R and w.samples.dtype == np.float32 and w.samples.shape == (2 * R,)
        np.testing.assert_array_equal(w.samples, ref)


def test_int16_waveform_is_scaled(wav):
    _, ref = wav
    ints = np.round(ref * 32768).astype(np.int16)
    w = decode(Waveform(ints, R))
    assert w.samples.dtype == np.float32
    np.testing.assert_allclose(w.samples, ints / 32768.0, rtol=0, atol=1e-7)
    assert decode(Waveform(np.array([-32768, 0, 16384], np.int16), R)).samples.tolist() == [
        -1.0, 0.0, 0.5]
    p = prepare(Waveform(ints, R))
    assert (p.name, p.sample_rate, p.channels, p.duration_s) == ("<waveform>", R, 1, 2.0)


def test_describe(wav):
    p, ref = wav
    assert describe(str(p)) == str(p)
    assert describe(p) == str(p)
    assert describe("rel/x.wav") == "rel/x.wav"
    with open(p, "rb") as f:
        assert describe(f) == str(p)
    assert describe(io.BytesIO(b"")) == "<stream>"
    assert describe(Waveform(ref, R)) == "<waveform>"
    assert prepare(io.BytesIO(p.read_bytes())).name == "<stream>"
    assert prepare(io.BytesIO(p.read_bytes()), name="given.wav").name == "given.wav"


@pytest.mark.parametrize("fmt,ext", [("FLAC", "flac"), ("OGG", "ogg"), ("MP3", "mp3")])
def test_other_containers(tmp_path, fmt, ext):
    p = tmp_path / f"x.{ext}"
    sf.write(p, tone(440, 2.0, R), R, format=fmt)
    w = load(p)
    assert abs(len(w.samples) / R - 2.0) < 0.1
    assert peak_hz(w.samples, R) == pytest.approx(440, abs=2)


# ---------------------------------------------------------------- mixdown and resampling


def test_mixdown_is_the_mean_of_channels(tmp_path):
    a, b = speechlike(1.0, R, seed=2), speechlike(1.0, R, seed=3)
    w = load(Waveform(np.stack([a, b, np.zeros_like(a)], axis=1), R))
    assert w.samples.shape == (R,)
    np.testing.assert_allclose(w.samples, (a + b) / 3, atol=1e-7)
    p = tmp_path / "st.wav"
    sf.write(p, np.stack([a, b], axis=1), R, subtype="FLOAT")
    np.testing.assert_allclose(load(p).samples, (a + b) / 2, atol=1e-7)
    assert decode(p).samples.shape == (R, 2)
    pr = prepare(p)
    assert (pr.channels, pr.sample_rate) == (2, R)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_keeps_pitch(tmp_path, rate):
    p = tmp_path / f"t{rate}.wav"
    sf.write(p, tone(440, 2.0, rate), rate, subtype="PCM_16")
    w = load(p)
    assert w.sample_rate == R and w.samples.dtype == np.float32
    assert len(w.samples) == 2 * R
    assert peak_hz(w.samples, R) == pytest.approx(440, abs=1)
    assert np.sqrt(np.mean(w.samples[R // 2 : -R // 2] ** 2)) == pytest.approx(0.5 / np.sqrt(2),
                                                                                rel=0.02)
    pr = prepare(p)
    assert (pr.sample_rate, pr.duration_s) == (rate, 2.0)
    assert len(pr.segments[0].samples) == 2 * R


def test_load_to_another_rate():
    w = load(Waveform(tone(1000, 1.0, R), R), sample_rate=8000)
    assert (w.sample_rate, len(w.samples)) == (8000, 8000)
    assert peak_hz(w.samples, 8000) == pytest.approx(1000, abs=1)


def test_nan_and_inf_rejected():
    for bad in (np.nan, np.inf):
        x = speechlike(1.0, R, seed=4)
        x[10] = bad
        with pytest.raises(AudioError, match=r"^<waveform>: contains NaN or infinite samples$"):
            load(Waveform(x, R))


# ---------------------------------------------------------------- signal measure


def test_signal_seconds_known_construction():
    x = np.concatenate([tone(440, 1.0, R), np.zeros(2 * R, np.float32)])
    assert signal_seconds(x, R, -60.0) == 1.0
    assert signal_seconds(x, 8000, -60.0) == 2.0  # same samples read at half the rate
    quiet = tone(440, 1.0, R, amp=10 ** (-70 / 20) * np.sqrt(2))  # RMS -70 dBFS
    assert signal_seconds(quiet, R, -60.0) == 0.0
    assert signal_seconds(quiet, R, -80.0) == 1.0
    assert signal_seconds(np.zeros(100, np.float32), R, -60.0) == 0.0  # no complete frame


def test_check_signal_messages():
    pol = AudioPolicy()
    with pytest.raises(SilentAudioError, match=r"^x: silent \(no signal above -60 dBFS\)$"):
        check_signal(np.zeros(R, np.float32), R, pol, "x")
    x = np.concatenate([tone(440, 0.3, R), np.zeros(R, np.float32)])
    with pytest.raises(TooShortError, match=r"^x: too short: 0\.30 s of signal, need 0\.5 s$"):
        check_signal(x, R, pol, "x")
    check_signal(x, R, AudioPolicy(min_signal_s=0.25), "x")
    with pytest.raises(TooShortError):  # shorter than one frame is too short, not silent
        check_signal(tone(440, 0.01, R), R, pol, "x")


# ---------------------------------------------------------------- segmentation


@pytest.mark.parametrize(
    "seconds,expected",
    [
        (30.0, [(0, 30)]),
        (20.0, [(0, 20)]),
        (45.0, [(0, 10), (10, 20), (20, 30), (30, 40), (40, 45)]),  # 5 s = half: kept
        (44.0, [(0, 10), (10, 20), (20, 30), (30, 44)]),  # 4 s < half: merged
        (30.5, [(0, 10), (10, 20), (20, 30.5)]),
        (40.0, [(0, 10), (10, 20), (20, 30), (30, 40)]),
    ],
)
def test_segment_bounds(seconds, expected):
    x = speechlike(seconds, R, seed=5)
    segs = segment(Waveform(x, R))
    assert bounds(segs) == [(float(a), float(b)) for a, b in expected]
    for s in segs:
        np.testing.assert_array_equal(s.samples, x[round(s.start_s * R) : round(s.end_s * R)])


def test_segment_policy_and_other_rate():
    x = speechlike(12.0, 8000, seed=6)
    segs = segment(Waveform(x, 8000), AudioPolicy(max_segment_s=5, segment_s=4))
    assert bounds(segs) == [(0.0, 4.0), (4.0, 8.0), (8.0, 12.0)]
    assert all(len(s.samples) == 4 * 8000 for s in segs)


def test_ten_minutes(tmp_path):
    p = tmp_path / "long.wav"
    sf.write(p, speechlike(600.0, R, seed=7), R, subtype="PCM_16")
    pr = prepare(p)
    assert pr.duration_s == 600.0 and len(pr.segments) == 60
    assert bounds(pr.segments) == [(10.0 * i, 10.0 * i + 10.0) for i in range(60)]
    assert all(len(s.samples) == 10 * R for s in pr.segments)
    # 603 s: the 3 s remainder joins the last piece
    x = speechlike(603.0, R, seed=7)
    segs = segment(Waveform(x, R))
    assert len(segs) == 60 and bounds(segs)[-1] == (590.0, 603.0)


def test_silent_segments_dropped():
    x = speechlike(45.0, R, seed=8)
    x[10 * R : 20 * R] = 0  # silent piece
    x[30 * R : 40 * R] = 0
    x[30 * R : 30 * R + int(0.3 * R)] = speechlike(0.3, R, seed=9)  # too little signal
    pr = prepare(Waveform(x, R))
    assert bounds(pr.segments) == [(0.0, 10.0), (20.0, 30.0), (40.0, 45.0)]
    assert pr.duration_s == 45.0


def test_no_segment_survives():
    with pytest.raises(SilentAudioError):
        segment(Waveform(np.zeros(45 * R, np.float32), R))
    x = np.zeros(40 * R, np.float32)
    for k in range(4):  # 0.3 s in each 10 s piece: 1.2 s in all, but no piece has 0.5 s
        x[k * 10 * R : k * 10 * R + int(0.3 * R)] = speechlike(0.3, R, seed=k)
    check_signal(x, R, AudioPolicy(), "x")
    with pytest.raises(TooShortError, match=r"^x: too short: no 10 s segment"):
        prepare(Waveform(x, R), name="x")


# ---------------------------------------------------------------- AAC (m4a) via PyAV


def _envelope(x: np.ndarray) -> np.ndarray:
    frames = x[: len(x) // 512 * 512].reshape(-1, 512) * np.hanning(512)
    return np.log10(np.abs(np.fft.rfft(frames, axis=1)).mean(axis=0)[:200] + 1e-6)  # < 6.25 kHz


def test_m4a_round_trip(tmp_path):
    x = speechlike(3.0, R, seed=10)
    p = write_m4a(tmp_path / "s.m4a", x, R)
    w = decode(p)
    assert w.sample_rate == R and w.samples.ndim == 1 and w.samples.dtype == np.float32
    assert abs(len(w.samples) / R - 3.0) < 0.1
    y = w.samples[: len(x)]
    rms = lambda v: float(np.sqrt(np.mean(v.astype(np.float64) ** 2)))  # noqa: E731
    assert rms(y) == pytest.approx(rms(x), rel=0.1)
    assert np.corrcoef(_envelope(x), _envelope(y))[0, 1] > 0.95
    pr = prepare(io.BytesIO(p.read_bytes()), name=str(p))  # as ingest reads it
    assert (pr.name, pr.sample_rate, pr.channels, len(pr.segments)) == (str(p), R, 1, 1)
    t = write_m4a(tmp_path / "t.m4a", tone(440, 2.0, 8000), 8000)
    assert peak_hz(load(t).samples, R) == pytest.approx(440, abs=1)


# ---------------------------------------------------------------- errors


def test_file_errors_name_the_path(tmp_path):
    cases = {
        tmp_path / "nope.wav": "no such file",
        tmp_path / "empty.wav": "empty file (0 bytes)",
        tmp_path / "text.wav": "not audio (no known audio format)",
        tmp_path: "not a readable audio file (is a directory)",
    }
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("hello, not audio\n" * 10)
    for path, message in cases.items():
        for fn in (decode, load, prepare):
            with pytest.raises(AudioError) as info:
                fn(path)
            assert type(info.value) is AudioError
            assert str(info.value) == f"{path}: {message}"
            assert info.value.where == str(path) and info.value.reason == "unreadable"
    with pytest.raises(AudioError, match=r"^<stream>: empty file \(0 bytes\)$"):
        decode(io.BytesIO(b""))
    with pytest.raises(AudioError, match=r"^<stream>: not audio \(no known audio format\)$"):
        decode(io.BytesIO(b"\x00\x01garbage" * 100))


def test_error_subclasses_name_the_path(tmp_path):
    p = tmp_path / "quiet.wav"
    sf.write(p, np.zeros(R, np.float32), R)
    with pytest.raises(SilentAudioError, match=rf"^{p}: silent"):
        prepare(p)
    sf.write(p, tone(300, 0.2, R), R)
    with pytest.raises(TooShortError, match=rf"^{p}: too short: 0\.20 s"):
        prepare(p)
    assert issubclass(SilentAudioError, AudioError) and issubclass(TooShortError, AudioError)


@pytest.mark.parametrize(
    "w,message",
    [
        (Waveform(np.zeros(0, np.float32), R), "no audio samples"),
        (Waveform(np.zeros((0, 2), np.float32), R), "no audio samples"),
        (Waveform(np.zeros((2, 2, 2), np.float32), R), "samples must have shape"),
        (Waveform(np.zeros((2, 16000), np.float32), R), "samples must have shape"),
        (Waveform(np.zeros(10, np.complex64), R), "unsupported sample type"),
        (Waveform(np.zeros(10, np.float32), 0), "sample rate must be a positive integer"),
        (Waveform(np.zeros(10, np.float32), 16000.5), "sample rate must be a positive integer"),
        (Waveform(np.zeros(10, np.float32), float("nan")), "sample rate must be a positive"),
        (Waveform(np.zeros(10, np.float32), "16k"), "sample rate must be a positive integer"),
    ],
)
def test_bad_waveforms(w, message):
    with pytest.raises(AudioError, match=rf"^<waveform>: {message}"):
        prepare(w)


def test_zero_sample_file_and_text_stream(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros(0, np.float32), R)
    with pytest.raises(AudioError, match=rf"^{p}: no audio samples$"):
        decode(p)
    with open(tmp_path / "zero.wav", "r", encoding="latin-1") as f:
        with pytest.raises(AudioError, match="binary mode"):
            decode(f)
    with pytest.raises(AudioError, match="cannot read audio from int"):
        decode(12345)  # type: ignore[arg-type]

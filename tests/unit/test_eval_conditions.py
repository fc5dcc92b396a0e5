import numpy as np
import pytest

from speakerdb.errors import UsageError
from speakerdb.eval.conditions import (
    CLEAN,
    Condition,
    _parts,
    apply_condition,
    babble_partners,
    parse_condition,
)
from speakerdb.eval.degrade import SR, rms
from speakerdb.eval.trials import LabelledFile


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Amplitude-modulated tones with pauses: a stand-in for a talker."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 100 + 80 * rng.random()
    x = sum(np.sin(2 * np.pi * f0 * h * t + rng.random() * 6) / h for h in range(1, 6))
    env = np.maximum(0.0, np.sin(2 * np.pi * (2 + rng.random()) * t))
    return (0.1 * x * env + 0.001 * rng.standard_normal(len(t))).astype(np.float32)


TARGET = speechlike(6.0, 0)
OTHERS = [speechlike(3.0 + i, 10 + i) for i in range(4)]


def snr_db(target: np.ndarray, out: np.ndarray) -> float:
    residual = out.astype(np.float64) - target.astype(np.float64)
    return 20 * np.log10(rms(target) / rms(residual))


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, name, fields",
    [
        ("clean", "clean", (None, 0, None, None)),
        (" CLEAN ", "clean", (None, 0, None, None)),
        ("crop=1", "crop=1", (1.0, 0, None, None)),
        ("crop=1.0", "crop=1", (1.0, 0, None, None)),
        ("crop=0.5", "crop=0.5", (0.5, 0, None, None)),
        ("crop=1,babble=3,snr=5", "crop=1,babble=3,snr=5", (1.0, 3, None, 5.0)),
        ("snr=5.0, babble=3 ,crop=1.00", "crop=1,babble=3,snr=5", (1.0, 3, None, 5.0)),
        ("noise=Pink,snr=-2.5", "noise=pink,snr=-2.5", (None, 0, "pink", -2.5)),
        ("noise=white,snr=0", "noise=white,snr=0", (None, 0, "white", 0.0)),
        ("noise=brown,snr=-0", "noise=brown,snr=0", (None, 0, "brown", 0.0)),
        ("babble=1,snr=10", "babble=1,snr=10", (None, 1, None, 10.0)),
    ],
)
def test_parse_canonical(text, name, fields):
    c = parse_condition(text)
    assert c.name == name
    assert (c.crop_s, c.babble, c.noise, c.snr_db) == fields
    assert parse_condition(name) == c  # the canonical name parses back to itself


def test_spellings_compare_equal():
    a = parse_condition("crop=2,snr=0,noise=white")
    assert a == parse_condition("noise=white,snr=0.0,crop=2.")
    assert parse_condition("clean") == CLEAN
    assert parse_condition("crop=1") != parse_condition("crop=1.5")


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("crop", "not key=value"),
        ("crop=", "not key=value"),
        ("=1", "not key=value"),
        ("crop=1,", "not key=value"),
        ("speed=1.1", "unknown key"),
        ("clean,crop=1", "not key=value"),
        ("crop=1,crop=2", "given twice"),
        ("crop=abc", "not a number"),
        ("crop=nan", "not a finite number"),
        ("crop=inf", "not a finite number"),
        ("crop=0", "crop must be > 0"),
        ("crop=-1", "crop must be > 0"),
        ("crop=0.00001", "under one sample"),
        ("babble=0,snr=5", "babble must be >= 1"),
        ("babble=-1,snr=5", "not a whole number"),
        ("babble=1.5,snr=5", "not a whole number"),
        ("babble=x,snr=5", "not a whole number"),
        ("noise=red,snr=5", "not one of white, pink, brown"),
        ("babble=2", "need snr"),
        ("noise=white", "need snr"),
        ("crop=1,noise=pink", "need snr"),
        ("snr=5", "snr needs babble or noise"),
        ("crop=1,snr=5", "snr needs babble or noise"),
        ("babble=2,noise=white,snr=5", "exclude each other"),
        ("noise=white,snr=loud", "not a number"),
    ],
)
def test_parse_errors(text, problem):
    with pytest.raises(UsageError) as e:
        parse_condition(text)
    msg = str(e.value)
    assert problem in msg
    if text.strip():
        assert repr(text) in msg  # names the condition as given
    assert "\n" not in msg


# --- applying ---------------------------------------------------------------------------------


def test_clean_is_identity():
    out = apply_condition(parse_condition("clean"), TARGET, "a.wav")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, TARGET)


@pytest.mark.parametrize("seconds", [0.5, 1.0, 2.01, 2.37, 10.0])
def test_crop_length_exact(seconds):
    out = apply_condition(parse_condition(f"crop={seconds}"), TARGET, "a.wav")
    assert out.dtype == np.float32
    assert len(out) == round(seconds * SR)
    if seconds * SR <= len(TARGET):  # a window of the input
        n = len(out)
        starts = np.flatnonzero(TARGET[: len(TARGET) - n + 1] == out[0])
        assert any(np.array_equal(TARGET[o:o + n], out) for o in starts)


@pytest.mark.parametrize(
    "text", ["crop=1", "crop=1,noise=pink,snr=5", "crop=1,babble=2,snr=0", "noise=white,snr=3"]
)
def test_deterministic(text):
    c = parse_condition(text)
    a = apply_condition(c, TARGET, "spk/a.wav", OTHERS)
    b = apply_condition(c, TARGET.copy(), "spk/a.wav", list(OTHERS))
    np.testing.assert_array_equal(a, b)
    other = apply_condition(c, TARGET, "spk/b.wav", OTHERS)
    assert not np.array_equal(a, other)


def test_different_key_different_crop():
    c = parse_condition("crop=1")
    crops = {apply_condition(c, TARGET, f"f{i}.wav").tobytes() for i in range(5)}
    assert len(crops) == 5


def test_condition_name_seeds_choices():
    a = apply_condition(parse_condition("crop=1,noise=white,snr=5"), TARGET, "k")
    b = apply_condition(parse_condition("crop=1,noise=white,snr=10"), TARGET, "k")
    assert not np.array_equal(a, b)


@pytest.mark.parametrize(
    "text",
    [
        "crop=1,babble=1,snr=5",
        "crop=2,babble=3,snr=0",
        "babble=4,snr=-5",
        "crop=1.5,noise=white,snr=10",
        "noise=pink,snr=0",
        "crop=0.7,noise=brown,snr=-3",
        "crop=20,babble=2,snr=15",  # longer than the input: tiled
    ],
)
def test_measured_snr(text):
    c = parse_condition(text)
    out = apply_condition(c, TARGET, "spk/a.wav", OTHERS)
    target, interference = _parts(c, TARGET, "spk/a.wav", OTHERS)
    assert interference is not None and len(interference) == len(target) == len(out)
    if c.crop_s is not None:
        assert len(out) == round(c.crop_s * SR)
    assert out.dtype == np.float32
    assert abs(snr_db(target, out) - c.snr_db) < 0.1
    # the residual is the interference, only scaled
    residual = out.astype(np.float64) - target
    g = float(np.dot(residual, interference) / np.dot(interference, interference))
    np.testing.assert_allclose(residual, g * interference, atol=1e-6)


def test_babble_is_other_talkers():
    c = parse_condition("babble=1,snr=0")
    only = [np.zeros(SR, np.float32) + 0.0]
    only[0][::50] = 1.0  # a click train: easy to recognise in the residual
    out = apply_condition(c, TARGET, "k", only)
    residual = out - TARGET
    assert np.count_nonzero(np.abs(residual) > 1e-4) < len(TARGET) // 40


def test_babble_needs_enough_others():
    c = parse_condition("babble=3,snr=5")
    with pytest.raises(UsageError, match="needs 3 other talkers, got 2"):
        apply_condition(c, TARGET, "spk/a.wav", OTHERS[:2])
    with pytest.raises(UsageError, match="got 0"):
        apply_condition(c, TARGET, "spk/a.wav")


def test_noise_needs_no_others():
    out = apply_condition(parse_condition("crop=1,noise=brown,snr=5"), TARGET, "k")
    assert len(out) == SR


def test_babble_partners():
    files = [
        LabelledFile(f"{s}/{u}.wav", s, f"{s}/{u}")
        for s in ("A", "B", "C", "D")
        for u in range(3)
    ]
    c = parse_condition("babble=2,snr=5")
    picks = babble_partners(c, "A/0.wav", "A", files)
    assert len(picks) == 2
    assert len({f.speaker for f in picks}) == 2
    assert all(f.speaker != "A" for f in picks)
    assert babble_partners(c, "A/0.wav", "A", list(reversed(files))) == picks
    keys = {tuple(babble_partners(c, f"A/{i}.wav", "A", files)) for i in range(10)}
    assert len(keys) > 1
    assert babble_partners(parse_condition("crop=1"), "A/0.wav", "A", files) == []
    with pytest.raises(UsageError, match="needs 4 other speakers, found 3"):
        babble_partners(parse_condition("babble=4,snr=0"), "A/0.wav", "A", files)


def test_condition_is_hashable_value():
    assert {parse_condition("crop=1"), parse_condition("crop=1.0")} == {
        Condition("crop=1", crop_s=1.0)
    }

"""Every file of the bad-input corpus gives its documented outcome through ``prepare``, read
from its path and from its bytes (as ingest reads it), and never a foreign exception."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from speakerdb.audio import TARGET_RATE, prepare
from speakerdb.errors import AudioError
from speakerdb.audio.names import display_name
from tests.audio_corpus import EXPECTED, MESSAGES, write_bad_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_bad_corpus(tmp_path_factory.mktemp("bad"))


def _check(outcome, run, name):
    kind, what = outcome
    if kind == "ok":
        prepared = run()
        assert prepared.name == name
        assert len(prepared.segments) == what
        for s in prepared.segments:
            assert s.samples.dtype == np.float32 and s.samples.ndim == 1
            assert len(s.samples) == pytest.approx((s.end_s - s.start_s) * TARGET_RATE, abs=2)
        assert prepared.segments[-1].end_s == pytest.approx(prepared.duration_s, abs=1e-3)
    else:
        with pytest.raises(what) as info:
            run()
        assert type(info.value) is what  # exactly this class, not a subclass
        text = str(info.value)
        assert text.startswith(f"{name}: ") and "\n" not in text
        assert info.value.where == name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_from_path(corpus, name):
    path = corpus[name]
    _check(EXPECTED[name], lambda: prepare(path), display_name(path))


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n != "missing.wav"))
def test_from_bytes(corpus, name):
    path = corpus[name]
    data = path.read_bytes()
    _check(EXPECTED[name], lambda: prepare(io.BytesIO(data), name=str(path)), str(path))


@pytest.mark.parametrize("name", sorted(MESSAGES))
@pytest.mark.parametrize("as_bytes", [False, True])
def test_messages_say_what_is_wrong(corpus, name, as_bytes):
    path = corpus[name]
    x = io.BytesIO(path.read_bytes()) if as_bytes else path
    with pytest.raises(AudioError) as info:
        prepare(x, name=str(path))
    must, must_not = MESSAGES[name]
    assert must in str(info.value)
    assert must_not is None or must_not not in str(info.value).lower()


def test_undecodable_input_prints_nothing_of_its_own(corpus):
    """A decoder that fails must not write to the process's stderr itself (libmpg123's
    "Note: Illegal Audio-MPEG-Header" lines would break the one-line error)."""
    import subprocess
    import sys

    code = ("import sys\nfrom speakerdb.audio import prepare\nfrom speakerdb.errors import "
            "AudioError\ntry:\n    prepare(sys.argv[1])\nexcept AudioError as e:\n"
            "    print(e)\n")
    p = subprocess.run([sys.executable, "-c", code, str(corpus["random.mp3"])],
                       capture_output=True, text=True, timeout=120, check=True)
    assert p.stdout.strip() == f"{corpus['random.mp3']}: not audio (no known audio format)"
    assert p.stderr == ""


def test_corpus_matches_expected(corpus, tmp_path):
    assert set(corpus) == set(EXPECTED)
    assert not corpus["missing.wav"].exists()
    assert all(p.exists() for n, p in corpus.items() if n != "missing.wav")
    short = write_bad_corpus(tmp_path, include_long=False)
    assert set(short) == set(EXPECTED) - {"long.wav"}
    assert not (tmp_path / "long.wav").exists()


def test_corpus_is_deterministic(corpus, tmp_path):
    again = write_bad_corpus(tmp_path, include_long=False)
    for name in ("stereo.wav", "truncated_data.wav", "rate48k.wav", "speech.m4a"):
        assert again[name].read_bytes() == corpus[name].read_bytes()
    # float wavs carry a time stamp (PEAK chunk): compare the samples
    a, b = (sf.read(c["nan.wav"], dtype="float32")[0] for c in (again, corpus))
    np.testing.assert_array_equal(a, b)


def test_a_name_that_is_not_utf8_is_named_as_text(corpus):
    p = prepare(corpus["c_\udcff.wav"])
    assert p.name.endswith("/c_\\xff.wav") and p.name.encode("utf-8")


def test_known_details(corpus):
    stereo = prepare(corpus["stereo.wav"])
    assert (stereo.channels, stereo.sample_rate, stereo.duration_s) == (2, 16000, 3.0)
    for name, rate in (("rate8k.wav", 8000), ("rate48k.wav", 48000)):
        p = prepare(corpus[name])
        assert (p.sample_rate, p.duration_s) == (rate, 3.0)
        assert len(p.segments[0].samples) == 3 * TARGET_RATE
    with pytest.raises(AudioError, match=r"truncated: the data chunk declares 96000 bytes, 48001 are present"):
        prepare(corpus["truncated_data.wav"])
    for name, rate in (("rate1hz.wav", 1), ("rate20hz.wav", 20)):
        with pytest.raises(AudioError, match=rf": sample rate {rate} Hz is below the 4000 Hz floor"):
            prepare(corpus[name])
    assert prepare(corpus["rate4k.wav"]).sample_rate == 4000
    long = prepare(corpus["long.wav"])
    assert long.duration_s == 600.0
    assert [s.start_s for s in long.segments] == [10.0 * i for i in range(60)]

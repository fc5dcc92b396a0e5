"""One input layer: the same bad input is the same AudioError in decode, prepare, enroll and
the ingest reader (``speakerdb.audio.inputs``)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from speakerdb.audio import Waveform, decode, describe, load, prepare
from speakerdb.audio.inputs import AudioSource, audio_input
from speakerdb.audio.wav import wav_bytes
from speakerdb.errors import AudioError
from tests.homes import synthetic_home
from tests.synth import RATE, voice


@pytest.fixture(scope="module")
def home(tmp_path_factory, spectral_embedder):
    return synthetic_home(tmp_path_factory.mktemp("inputs"), 2, 2, spectral_embedder)


@pytest.fixture
def bad_inputs(tmp_path):
    """name -> (input, the message after "name: ")."""
    (tmp_path / "text.txt").write_text("not audio\n")
    text_file = open(tmp_path / "text.txt", encoding="utf-8")
    yield {
        "int": (12345, "cannot read audio from int; expected a path, bytes, a binary file "
                       "object or a Waveform"),
        "list": ([1.0, 2.0], "cannot read audio from list; expected a path, bytes, a binary "
                             "file object or a Waveform"),
        "text mode": (text_file, "file object must be opened in binary mode"),
        "directory": (tmp_path, "not a readable audio file (is a directory)"),
        "missing": (tmp_path / "missing.wav", "no such file"),
    }
    text_file.close()


def _error(fn, x, name):
    with pytest.raises(AudioError) as e:
        fn(x, name=name)
    return type(e.value), e.value.reason, str(e.value)


def test_audio_input_names_each_bad_input(bad_inputs):
    for name, (x, message) in bad_inputs.items():
        with pytest.raises(AudioError) as e:
            audio_input(x, name)
        assert type(e.value) is AudioError and e.value.reason == "unreadable"
        assert str(e.value) == f"{name}: {message}"


def test_decode_load_and_prepare_give_the_same_error(bad_inputs):
    for name, (x, message) in bad_inputs.items():
        if hasattr(x, "seek"):
            x.seek(0)
        want = (AudioError, "unreadable", f"{name}: {message}")
        assert _error(decode, x, name) == want
        for fn in (load, prepare):
            if hasattr(x, "seek"):
                x.seek(0)
            assert _error(fn, x, name) == want


def test_enroll_fails_each_bad_input_as_decode_does(home, bad_inputs):
    from speakerdb.api import SpeakerDB

    names = list(bad_inputs)
    with SpeakerDB.open(home) as db:
        r = db.enroll("eve", [x for x, _ in bad_inputs.values()], names=names)
    assert r.added == 0
    got = {f["input"]: (f["reason"], f["error"]) for f in r.failed}
    assert got == {n: ("unreadable", f"{n}: {m}") for n, (_, m) in bad_inputs.items()}


def test_one_unsupported_input_is_a_failure_not_a_type_error(home):
    from speakerdb.api import SpeakerDB

    with SpeakerDB.open(home) as db:
        r = db.enroll("eve", 12345, names=["n"])
    assert [f["error"] for f in r.failed] == [
        "n: cannot read audio from int; expected a path, bytes, a binary file object or a "
        "Waveform"]


def test_ingest_reader_fails_a_missing_file_as_decode_does(tmp_path):
    from speakerdb.ingest.reader import Reader
    from speakerdb.ingest.sources import SourceItem

    path = tmp_path / "missing.wav"
    [batch] = Reader([SourceItem(path, None, "file")], lambda shas: set())
    [failure] = batch.failures
    with pytest.raises(AudioError) as e:
        decode(path)
    assert (failure.reason, failure.message) == (e.value.reason, str(e.value))


def test_every_kind_of_good_input_decodes_alike():
    samples = voice(1, 0, 1.0)
    data = wav_bytes(samples, RATE)
    kinds = {
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
        "stream": io.BytesIO(data),
        "source": AudioSource("source", data=data),
        "waveform": Waveform(samples, RATE),
    }
    for name, x in kinds.items():
        w = decode(x, name)
        assert w.sample_rate == RATE and np.array_equal(w.samples, samples), name


def test_an_audio_source_keeps_its_name_and_takes_a_new_one():
    src = AudioSource("up.wav", data=b"x")
    assert describe(src) == "up.wav" and str(src) == "up.wav"
    assert audio_input(src, "up.wav") is src
    assert audio_input(src, "other").name == "other"


def test_wav_bytes_pcm16_rounds_and_clips():
    import soundfile as sf

    a, rate = sf.read(io.BytesIO(wav_bytes(np.array([0.5, 2.0, -2.0]), 8000, pcm16=True)),
                      dtype="int16")
    assert rate == 8000 and a.tolist() == [16384, 32767, -32767]

"""Bounded inputs through the command line: a duration limit per input (``--max-duration``),
a sample-rate floor, and file names that are not valid UTF-8."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
import soundfile as sf

from speakerdb.audio.names import display_name, input_path
from tests.audio_corpus import pcm16_wav, speechlike
from tests.synth import RATE, voice

pytestmark = pytest.mark.skipif(os.sep != "/", reason="POSIX file names are bytes")


def _all_text(doc) -> None:
    """Every string in ``doc`` encodes as strict UTF-8 (no lone surrogates)."""
    json.dumps(doc, ensure_ascii=False).encode("utf-8")


def test_a_name_that_is_not_utf8_does_not_abort_the_ingest(cli, home_copy, tmp_path):
    src = os.fsencode(tmp_path / "new")
    os.makedirs(src + b"/sp\xffk")
    os.makedirs(src + b"/spk50")
    names = [src + b"/sp\xffk/c_\xff.wav", src + b"/spk50/a.wav", src + b"/spk50/b\\x.wav"]
    for k, name in enumerate(names):
        sf.write(name, voice(50 + k, 0), RATE, subtype="PCM_16")
    doc = cli("ingest", os.fsdecode(src), "--home", home_copy, "--json", "-q").json()
    _all_text(doc)
    assert (doc["inputs"], doc["added"], doc["failed"]) == (3, 3, 0)
    with sqlite3.connect(home_copy / "speakerdb.sqlite") as con:
        stored = {r[0] for r in con.execute("select path from recordings")}
        labels = {r[0] for r in con.execute("select label from speakers")}
    bad = display_name(os.fsdecode(names[0]))
    assert bad.endswith("/sp\\xffk/c_\\xff.wav") and bad in stored
    assert display_name(os.fsdecode(names[2])).endswith("/spk50/b\\\\x.wav")
    for name in names:  # stored losslessly: the text turns back into the very path
        assert os.fsencode(input_path(display_name(os.fsdecode(name)))) == name
    assert "sp\\xffk" in labels
    # again: everything is in, nothing fails
    again = cli("ingest", os.fsdecode(src), "--home", home_copy, "--json", "-q").json()
    assert (again["skipped"], again["failed"]) == (3, 0)
    found = cli("identify", os.fsdecode(names[0]), "--home", home_copy, "--json").json()
    _all_text(found)
    assert found["results"][0]["input"] == bad
    assert found["results"][0]["speaker"] == "sp\\xffk"
    # deleted by its path as the file system names it, or by the text it is stored under
    gone = cli("recordings", "delete", os.fsdecode(names[0]), "--home", home_copy, "--json")
    assert gone.json()["deleted"] == bad
    cli("recordings", "delete", display_name(os.fsdecode(names[2])), "--home", home_copy)


def test_a_bad_name_in_an_error_stays_utf8(cli, built, tmp_path):
    p = os.fsencode(tmp_path) + b"/gone_\xfe.wav"
    run = cli("identify", os.fsdecode(p), "--home", built.home, "--json", expect=2)
    doc = run.json()
    _all_text(doc)
    assert doc["results"][0]["input"].endswith("gone_\\xfe.wav")
    assert "no such file" in doc["results"][0]["error"]


@pytest.fixture
def forty_seconds(tmp_path):
    p = tmp_path / "talk" / "spk60" / "long.wav"
    p.parent.mkdir(parents=True)
    sf.write(p, speechlike(40.0, RATE, seed=60), RATE, subtype="PCM_16")
    return p


def test_ingest_max_duration_fails_longer_inputs_with_the_reason(cli, home_copy, forty_seconds):
    doc = cli("ingest", forty_seconds.parent.parent, "--home", home_copy, "--json", "-q",
              "--max-duration", "30").json()
    assert (doc["added"], doc["failed"]) == (0, 1)
    [f] = doc["failures"]
    assert f["reason"] == "too_long"
    assert f["error"] == (f"{forty_seconds}: too long: 40.0 s of audio, the limit is 30 s "
                          "(max_duration)")
    doc = cli("ingest", forty_seconds.parent.parent, "--home", home_copy, "--json", "-q",
              "--max-duration", "60", "--retry-failed").json()
    assert (doc["added"], doc["failed"], doc["segments"]) == (1, 0, 4)


def test_query_commands_take_max_duration(cli, built, forty_seconds):
    run = cli("identify", forty_seconds, "--home", built.home, "--max-duration", "30", expect=2)
    assert run.error_line().endswith("long.wav: too long: 40.0 s of audio, the limit is 30 s "
                                     "(--max-duration)")
    cli("identify", forty_seconds, "--home", built.home, "--json")
    run = cli("embed", forty_seconds, "--max-duration", "10", "--json", expect=2)
    assert "too long" in run.json()["results"][0]["error"]
    run = cli("verify", forty_seconds, forty_seconds, "--home", built.home,
              "--max-duration", "10", expect=2)
    assert "too long" in run.error_line()
    run = cli("verify", forty_seconds, forty_seconds, "--max-duration", "10", expect=2)
    assert "too long" in run.error_line()


def test_enroll_takes_max_duration(cli, home_copy, forty_seconds):
    run = cli("enroll", "spk60", forty_seconds, "--home", home_copy, "--json",
              "--max-duration", "30", expect=2)
    [f] = run.json()["failed"]
    assert f["reason"] == "too_long"


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_max_duration_must_be_a_positive_number(cli, built, forty_seconds, value):
    run = cli("identify", forty_seconds, "--home", built.home, "--max-duration", value, expect=2)
    assert "--max-duration must be a positive number of seconds" in run.error_line()


def test_rates_below_the_floor_fail_with_the_reason(cli, home_copy, tmp_path):
    d = tmp_path / "rates"
    d.mkdir()
    (d / "one.wav").write_bytes(pcm16_wav(speechlike(6.0, RATE, seed=1), 1))
    sf.write(d / "ok.wav", voice(61, 0), RATE, subtype="PCM_16")
    doc = cli("ingest", d, "--home", home_copy, "--json", "-q").json()
    assert (doc["added"], doc["failed"]) == (1, 1)
    assert doc["failures"][0]["error"].endswith(
        "one.wav: sample rate 1 Hz is below the 4000 Hz floor (a broken header, not speech)")

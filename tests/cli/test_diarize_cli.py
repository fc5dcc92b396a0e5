"""``speakerdb identify --diarize``: the timeline in text, the turns in --json, --rttm."""

from __future__ import annotations

import numpy as np
import pytest

from tests.synth import RATE, voice


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    """spk00 3 s, spk01 3 s, spk00 2.5 s, 0.6 s pauses after each."""
    import soundfile as sf

    gap = np.zeros(int(0.6 * RATE), np.float32)
    x = np.concatenate([voice(0, 30, 3.0), gap, voice(1, 30, 3.0), gap, voice(0, 31, 2.5), gap])
    p = tmp_path_factory.mktemp("talk") / "talk.wav"
    sf.write(p, x, RATE, subtype="PCM_16")
    return p


def test_diarize_json(cli, built, talk):
    doc = cli("identify", talk, "--home", built.home, "--diarize", "--json").json()
    [r] = doc["results"]
    assert doc["failed"] == 0 and r["input"] == str(talk)
    assert [t["speaker"] for t in r["turns"]] == ["spk00", "spk01", "spk00"]
    assert [t["start"] for t in r["turns"]] == pytest.approx([0.0, 3.6, 7.2], abs=0.1)
    assert [t["end"] for t in r["turns"]] == pytest.approx([3.0, 6.6, 9.7], abs=0.1)
    assert {s["speaker"]: s["decision"] for s in r["speakers"]} == {"spk00": "match",
                                                                    "spk01": "match"}
    assert r["vad"] == "energy" and r["speech_s"] == pytest.approx(8.5, abs=0.2)


def test_diarize_text_and_rttm(cli, built, talk, tmp_path):
    out = tmp_path / "talk.rttm"
    run = cli("identify", talk, "--home", built.home, "--diarize", "--num-speakers", "2",
              "--rttm", out)
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"{talk}: 2 speaker(s), 8.5 s of speech in 10.3 s (vad energy)")
    assert lines[-3].split()[-1] == "spk00" and lines[-3].split()[0] == "00:00.00"
    assert lines[-2].split()[-1] == "spk01" and lines[-1].split()[-1] == "spk00"
    rttm = out.read_text().splitlines()
    assert len(rttm) == 3 and rttm[1].split()[:2] == ["SPEAKER", "talk"]
    assert rttm[1].split()[7] == "spk01" and float(rttm[1].split()[3]) == pytest.approx(3.6, abs=0.1)


def test_diarize_options_need_diarize(cli, built, talk):
    run = cli("identify", talk, "--home", built.home, "--num-speakers", "2", expect=2)
    assert "--num-speakers: only with --diarize" in run.error_line()
    run = cli("identify", talk, "--home", built.home, "--diarize", "--num-speakers", "2",
              "--max-speakers", "3", expect=2)
    assert "--num-speakers or --max-speakers, not both" in run.error_line()


def test_eval_conversations(cli, tmp_path):
    pytest.importorskip("pyannote.metrics")
    from speakerdb.diarize.turns import read_rttm
    from tests.synth import write_corpus

    write_corpus(tmp_path / "c", speakers=8, utterances=3, seconds=4.0)
    args = ["eval", "--conversations", tmp_path / "c", "--split", "all", "--sizes", "2",
            "--per-size", "3"]
    doc = cli(*args, "--json", "--out", tmp_path / "out").json()
    assert doc["conversations"] == 3 and doc["speakers"] == 8 and doc["enrolled"] == 4
    assert doc["model"] == "spectral" and set(doc["der"]) == {"2", "all"}
    for d in doc["der"]["all"].values():
        assert d["der"] == pytest.approx(d["missed"] + d["false_alarm"] + d["confusion"],
                                         abs=2e-4)
        assert 0 <= d["der"] < 0.5
    assert set(doc["naming"]) == {"all", "none", "some"}
    assert doc["naming"]["all"]["held_out_speech_s"] == 0
    assert doc["speed"]["real_time_factor"] < 1
    ref = read_rttm(tmp_path / "out" / "conv-2spk-000.ref.rttm")["conv-2spk-000"]
    assert len({t.speaker for t in ref}) == 2 and len(ref) >= 6
    assert (tmp_path / "out" / "conv-2spk-002.hyp.rttm").is_file()
    text = cli(*args).stdout
    assert "3 conversations of the all split's 8 speakers (4 enrolled)" in text
    assert "DER %" in text and "real time" in text


def test_ingest_diarize_summary_and_stats(cli, tmp_path):
    import soundfile as sf

    from tests.synth import write_corpus

    root = tmp_path / "c"
    write_corpus(root, speakers=2, utterances=2, seconds=3.0)
    gap = np.zeros(int(0.5 * RATE), np.float32)
    sf.write(root / "spk00" / "two.wav",
             np.concatenate([voice(0, 9, 4.0), gap, voice(8, 9, 2.0)]), RATE, subtype="PCM_16")
    home = tmp_path / "h"
    cli("init", "--home", home)
    run = cli("ingest", root, "--home", home, "--diarize", "--keep", "dominant", "-q")
    assert "1 recording(s) hold more than one voice, only the largest voice stored:" in run.stdout
    assert "two.wav: 2 voices (67/33 % of its speech)" in run.stdout
    assert cli("stats", "--home", home, "--json").json()["multi_voice_recordings"] == 1
    assert "1 recording(s) flagged by ingest --diarize" in cli("stats", "--home", home).stdout
    run = cli("ingest", root, "--home", home, "--keep", "dominant", expect=2)
    assert "--keep applies to a diarized ingest: give --diarize too" in run.error_line()

"""Diarization with the default model and its default speech detector (Silero) on the
conversations of speech-dev's test speakers that README reports: its targets (DER with the
overlap excluded, naming of enrolled speakers)."""

import pytest

from tests.campplus_ref import weights_or_skip

pytestmark = pytest.mark.slow


def test_conversations_of_held_out_speakers(speech_dev):
    pytest.importorskip("pyannote.metrics")
    weights_or_skip()
    from speakerdb.eval.diarization import evaluate_conversations

    doc = evaluate_conversations(speech_dev, model="campplus", split="test", per_size=12,
                                 device="cpu")
    assert doc["vad"] == "silero"
    der = {k: v["overlap_excluded"]["der"] for k, v in doc["der"].items()}
    assert der["2"] <= 0.10 and der["3"] <= 0.15 and der["4"] <= 0.15, der
    for plan in ("all", "some"):
        assert doc["naming"][plan]["enrolled_named_right"] >= 0.95, doc["naming"]
    assert doc["naming"]["none"]["held_out_given_a_name"] <= 0.05, doc["naming"]

"""``POST /diarize``: who spoke when in an upload."""

from __future__ import annotations

import io

import numpy as np

from tests.server.conftest import TOKEN
from tests.synth import RATE, voice


def _talk() -> bytes:
    import soundfile as sf

    gap = np.zeros(int(0.6 * RATE), np.float32)
    x = np.concatenate([voice(2, 40, 3.0), gap, voice(3, 40, 3.0), gap, voice(2, 41, 2.5)])
    buf = io.BytesIO()
    sf.write(buf, x, RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_diarize_upload(server):
    with server.client(TOKEN) as c:
        r = c.post("/diarize", files={"audio": ("talk.wav", _talk(), "audio/wav")})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["input"] == "talk.wav"
        assert [t["speaker"] for t in doc["turns"]] == ["spk02", "spk03", "spk02"]
        assert abs(doc["turns"][1]["start"] - 3.6) < 0.1
        r = c.post("/diarize", files={"audio": ("talk.wav", _talk(), "audio/wav")},
                   data={"num_speakers": "1"})
        assert r.status_code == 200 and len(r.json()["speakers"]) == 1
        r = c.post("/diarize", files={"audio": ("talk.wav", _talk(), "audio/wav")},
                   params={"num_speakers": 2, "max_speakers": 3})
        assert r.status_code == 400 and "not both" in r.text

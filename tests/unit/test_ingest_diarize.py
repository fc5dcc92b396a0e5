"""``ingest --diarize``: recordings holding more than one voice are reported (summary,
``stats``); with keep="dominant" only the largest voice's speech is stored."""

from __future__ import annotations

import numpy as np
import pytest

from speakerdb.config import IngestConfig
from speakerdb.errors import UsageError
from tests.synth import RATE, voice, write_corpus


@pytest.fixture
def corpus(tmp_path):
    import soundfile as sf

    root = tmp_path / "c"
    write_corpus(root, speakers=3, utterances=2, seconds=3.0)
    gap = np.zeros(int(0.5 * RATE), np.float32)
    two = np.concatenate([voice(1, 7, 4.5), gap, voice(9, 7, 2.0), gap])
    sf.write(root / "spk01" / "with-guest.wav", two, RATE, subtype="PCM_16")
    return root


def _stored(db, name):
    """(raw vector, end_s) of the one segment stored for the file ``name``."""
    ids, raw = db.store.all_vectors()
    refs = db.store.segment_refs(ids)
    [i] = [k for k, i in enumerate(ids) if refs[int(i)].path.endswith(name)]
    return raw[i], refs[int(ids[i])].end_s


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_a_second_voice_is_reported(db, corpus):
    stats = db.ingest([corpus], config=IngestConfig(diarize=True))
    assert stats.added == 7 and stats.failed == 0
    [m] = stats.multi_voice
    assert m["input"].endswith("with-guest.wav") and m["voices"] == 2 and m["speaker"] == "spk01"
    assert m["shares"] == pytest.approx([4.5 / 6.5, 2.0 / 6.5], abs=0.04)
    assert m["kept"] == "all" and _stored(db, "with-guest.wav")[1] == pytest.approx(7.5)
    assert db.stats()["multi_voice_recordings"] == 1
    assert db.store.get_setting("multi_voice_recordings")[0]["sha256"] == m["sha256"]


def test_keep_dominant_stores_the_largest_voice_only(db, corpus, spectral_embedder):
    stats = db.ingest([corpus], config=IngestConfig(diarize=True, keep="dominant"))
    [m] = stats.multi_voice
    assert m["kept"] == "dominant" and m["kept_s"] == pytest.approx(4.5, abs=0.15)
    # what is stored is spk01's 4.5 s alone, embedded as such
    raw, end = _stored(db, "with-guest.wav")
    assert end == pytest.approx(4.5, abs=0.15)
    alone = spectral_embedder([voice(1, 7, 4.5)])[0]
    both = spectral_embedder([np.concatenate([voice(1, 7, 4.5), voice(9, 7, 2.0)])])[0]
    assert _cos(raw, alone) > 0.995 and _cos(raw, alone) > _cos(raw, both)
    assert stats.segments == 7


def test_keep_needs_diarize(db, corpus):
    with pytest.raises(UsageError, match="keep applies to a diarized ingest"):
        db.ingest([corpus], config=IngestConfig(keep="dominant"))
    with pytest.raises(UsageError, match="keep 'most'"):
        db.ingest([corpus], config=IngestConfig(diarize=True, keep="most"))

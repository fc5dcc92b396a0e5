"""Speech detection: the detector chosen per database, recorded with it, and Silero VAD
cutting non-speech out of real speech before segmentation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speakerdb.audio import AudioPolicy, Waveform, prepare, segment, with_vad
from speakerdb.audio.vad import check_vad, speech_regions
from speakerdb.errors import SilentAudioError, UsageError
from tests.synth import RATE, voice


def _speech(speech_dev):
    import soundfile as sf

    x, rate = sf.read(speech_dev / "libri-1334" / "1334-135589-0000_s2.wav", dtype="float32")
    assert rate == RATE
    return x


def _embedded(x):
    """3 s of digital silence, the speech, 3 s of noise at -40 dBFS (seeded)."""
    noise = 0.01 * np.random.default_rng(0).standard_normal(3 * RATE).astype(np.float32)
    return np.concatenate([np.zeros(3 * RATE, np.float32), x, noise])


def test_silero_drops_silence_and_noise_around_speech(speech_dev):
    x = _speech(speech_dev)
    w = Waveform(_embedded(x), RATE)
    regions = speech_regions(w.samples, RATE, "silero")
    assert regions and regions[0][0] >= 2.8 and regions[-1][1] <= 3.0 + len(x) / RATE + 0.5
    kept = sum(len(s.samples) for s in prepare(w, with_vad(AudioPolicy(), "silero")).segments)
    # the speech, less its longer pauses; none of the 6 s around it
    assert 0.6 * len(x) < kept <= len(x) + 0.3 * RATE
    # the energy gate counts the noise as signal; the speech detector does not
    energy = sum(len(s.samples) for s in prepare(w, with_vad(AudioPolicy(), "energy")).segments)
    assert energy / RATE > len(x) / RATE + 5.5
    # the same cut whole (segment) or streamed (prepare)
    assert sum(len(s.samples) for s in segment(w, with_vad(AudioPolicy(), "silero"))) == kept


def test_silero_finds_no_speech_in_noise():
    noise = 0.1 * np.random.default_rng(1).standard_normal(4 * RATE).astype(np.float32)
    with pytest.raises(SilentAudioError, match="no speech"):
        prepare(Waveform(noise, RATE), with_vad(AudioPolicy(), "silero"), name="noise.wav")


def test_energy_regions_find_the_voiced_parts():
    x = np.concatenate([np.zeros(RATE, np.float32), voice(0, 0, 2.0),
                        np.zeros(2 * RATE, np.float32), voice(1, 0, 1.0)])
    r = speech_regions(x, RATE, "energy")
    assert len(r) == 2
    assert r[0][0] == pytest.approx(1.0, abs=0.03) and r[0][1] == pytest.approx(3.0, abs=0.03)
    assert r[1][0] == pytest.approx(5.0, abs=0.03) and r[1][1] == pytest.approx(6.0, abs=0.03)
    # 'none' counts quiet noise that the -60 dBFS floor drops
    quiet = 1e-5 * np.ones(2 * RATE, np.float32)
    assert speech_regions(quiet, RATE, "energy") == []
    assert speech_regions(quiet, RATE, "none") == [(0.0, 2.0)]


def test_check_vad():
    with pytest.raises(UsageError, match="vad 'webrtc': choose one of silero, energy, none"):
        check_vad("webrtc")


def test_silero_without_its_package_is_one_clear_error(monkeypatch):
    import speakerdb.audio.vad as vad

    monkeypatch.setattr(vad, "silero_available", lambda: False)
    with pytest.raises(UsageError, match="needs the silero-vad package: pip install silero-vad"):
        check_vad("silero")


def test_the_choice_is_recorded_with_the_database(tmp_home, spectral_embedder):
    from speakerdb.api import SpeakerDB

    with SpeakerDB.create(tmp_home, model="spectral", embedder=spectral_embedder,
                          vad="none") as db:
        assert db.policy.vad == "none" and db.policy.silence_dbfs < -100
    assert json.loads((tmp_home / "home.json").read_text())["vad"] == "none"
    with SpeakerDB.open(tmp_home, embedder=spectral_embedder) as db:
        assert db.policy.vad == "none" and db.stats()["vad"] == "none"
    with pytest.raises(UsageError, match="none speech detector; vad 'energy' differs"):
        SpeakerDB.create(tmp_home, model="spectral", embedder=spectral_embedder, vad="energy")
    # the same choice again opens it
    SpeakerDB.create(tmp_home, model="spectral", embedder=spectral_embedder, vad="none").close()


def _network():
    """A TorchEmbedder (the networks' type) around a stand-in module that keeps the first 192
    samples: what matters here is the embedder's type, not what it computes."""
    import torch

    from speakerdb.model.torch_embedder import TorchEmbedder

    class Frames(torch.nn.Module):
        def forward(self, x):
            return x[:, :192]

    return TorchEmbedder(Frames(), name="frames", sha256="f" * 64, raw_dim=192, dims=(192,),
                         default_threshold=0.5, device="cpu")


def test_a_new_database_for_a_network_cuts_with_silero(tmp_path, spectral_embedder):
    from speakerdb.api import SpeakerDB
    from speakerdb.audio.vad import default_vad

    net = _network()
    assert default_vad(net) == "silero" and default_vad(spectral_embedder) == "energy"
    with SpeakerDB.create(tmp_path / "net", model="frames", embedder=net) as db:
        assert db.policy.vad == "silero" and db.stats()["vad"] == "silero"
    assert json.loads((tmp_path / "net" / "home.json").read_text())["vad"] == "silero"
    with SpeakerDB.create(tmp_path / "net2", model="frames", embedder=net, vad="energy") as db:
        assert db.policy.vad == "energy"
    with SpeakerDB.create(tmp_path / "spec", model="spectral", embedder=spectral_embedder) as db:
        assert db.policy.vad == "energy"


def test_a_home_that_records_no_choice_is_energy(tmp_home, spectral_embedder):
    from speakerdb.api import SpeakerDB

    with SpeakerDB.create(tmp_home, model="spectral", embedder=spectral_embedder) as db:
        db.store.set_setting("vad", None)
    data = json.loads((tmp_home / "home.json").read_text())
    data.pop("vad")
    (tmp_home / "home.json").write_text(json.dumps(data))
    with SpeakerDB.open(tmp_home, embedder=spectral_embedder) as db:
        assert db.policy == AudioPolicy()


def test_a_silero_database_cuts_enrollment_and_queries_alike(speech_dev, tmp_path,
                                                              spectral_embedder):
    import soundfile as sf

    from speakerdb.api import SpeakerDB

    x = _speech(speech_dev)
    padded = tmp_path / "padded.wav"
    sf.write(padded, _embedded(x), RATE, subtype="PCM_16")
    with SpeakerDB.create(tmp_path / "h", model="spectral", embedder=spectral_embedder,
                          vad="silero") as db:
        r = db.enroll("reader", [padded])
        assert r.added == 1
        ids, _ = db.store.all_vectors()
        [ref] = db.store.segment_refs(ids).values()
        # one segment of the speech alone: not the 10.3 s of the padded file
        assert ref.end_s - ref.start_s < len(x) / RATE + 0.3
        # the speech without its padding is the same voice, cut the same way
        assert db.identify(Waveform(x, RATE)).score > 0.95
        quiet = Waveform(np.zeros(3 * RATE, np.float32), RATE)
        with pytest.raises(SilentAudioError):
            db.identify(quiet)


def test_batched_silero_marks_what_the_package_marks(speech_dev):
    """Scored side by side (rows of different lengths, padded), every signal gets the regions
    the silero-vad package's own timestamps give it alone, with the same parameters."""
    import glob

    import soundfile as sf
    import torch
    from silero_vad import get_speech_timestamps

    from speakerdb.audio.silero import PAD_S, _model
    from speakerdb.audio.vad import silero_regions_many

    rng = np.random.default_rng(3)
    signals = []
    for path in sorted(glob.glob(str(speech_dev / "*" / "*.wav")))[:40:4]:
        x, _ = sf.read(path, dtype="float32")
        cut = x[: int(len(x) * rng.uniform(0.3, 1.0))]
        around = (0.02 * rng.standard_normal(int(RATE * rng.uniform(0.5, 3)))).astype(np.float32)
        signals.append(np.concatenate([around, cut, around[::-1]]))
    signals.append(np.zeros(300, np.float32))  # under one chunk: no speech
    got = silero_regions_many(signals, RATE)
    assert got[-1] == []
    with torch.inference_mode():
        for x, regions in zip(signals[:-1], got[:-1]):
            ref = get_speech_timestamps(torch.from_numpy(x), _model(),
                                        speech_pad_ms=int(PAD_S * 1000))
            mask = np.zeros((2, len(x)), bool)
            for row, spans in enumerate(([(s["start"], s["end"]) for s in ref],
                                         [(round(a * RATE), round(b * RATE)) for a, b in regions])):
                for a, b in spans:
                    mask[row, a:b] = True
            assert ref and (mask[0] == mask[1]).all()


def test_ingest_decoding_scores_a_batch_and_cuts_as_prepare_does(speech_dev, tmp_path):
    """``decode_many`` (ingest's decoder) scores the inputs of a batch together; each input
    is cut exactly as ``prepare`` cuts it alone, and a bad input is its own failure."""
    import glob
    import threading

    from speakerdb.ingest.reader import _hash_one, decode_many
    from speakerdb.ingest.sources import SourceItem
    from speakerdb.store.records import FailureIn

    paths = sorted(glob.glob(str(speech_dev / "*" / "*.wav")))[:60:6]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEnot audio")
    items = [SourceItem(Path(p), None, "folder") for p in [*paths, bad]]
    todo = [(item, *_hash_one(item)) for item in items]
    policy = with_vad(AudioPolicy(), "silero")
    out = decode_many(todo, policy, None, threading.Lock())
    assert isinstance(out[-1][0], FailureIn)
    for (decoded, _), path in zip(out[:-1], paths):
        alone = prepare(path, policy)
        assert [s.start_s for s in decoded.prepared.segments] == [s.start_s for s in alone.segments]
        for a, b in zip(decoded.prepared.segments, alone.segments):
            assert np.array_equal(a.samples, b.samples)


def test_bulk_identify_decoding_scores_a_chunk_and_cuts_as_one_input(speech_dev, tmp_path):
    """identify's worker task (``decode_chunk``) scores its inputs together; each is cut as
    ``decode_input`` cuts it alone, and a bad input keeps its own error."""
    import glob

    from speakerdb.search.decoding import decode_chunk, decode_input

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEnot audio")
    inputs = [Path(p) for p in sorted(glob.glob(str(speech_dev / "*" / "*.wav")))[:50:7]]
    inputs.insert(2, bad)
    policy = with_vad(AudioPolicy(), "silero")
    chunk, _ = decode_chunk(inputs, policy, 1.0)
    assert chunk[2].error is not None and chunk[2].prepared is None
    for got, x in zip(chunk, inputs):
        alone = decode_input(x, policy, 1.0)
        assert got.name == alone.name and (got.error is None) == (alone.error is None)
        if got.prepared is not None:
            a, b = got.prepared.segments, alone.prepared.segments
            assert [s.start_s for s in a] == [s.start_s for s in b]
            assert all(np.array_equal(s.samples, t.samples) for s, t in zip(a, b))

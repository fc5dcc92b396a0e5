"""Vector spaces: the learned rotation for models without nested prefixes."""

import json
import numpy as np
import pytest

from speakerdb.api import SpeakerDB
from speakerdb.audio import Waveform
from speakerdb.index.space import VectorSpace, decode_rotation, encode_rotation, fit_rotation, space_for
from tests.synth import Flat192, voice, write_corpus


def test_fit_rotation_orders_variance_and_is_orthogonal():
    rng = np.random.default_rng(0)
    scales = np.linspace(5, 0.1, 32)
    basis = np.linalg.qr(rng.standard_normal((32, 32)))[0]
    raw = (rng.standard_normal((2000, 32)) * scales) @ basis.T + 3 * basis[:, 0]
    r = fit_rotation(raw)
    np.testing.assert_allclose(r.T @ r, np.eye(32), atol=1e-5)
    var = ((raw / np.linalg.norm(raw, axis=1, keepdims=True)) @ r).var(axis=0)
    assert np.all(np.diff(var) <= 1e-9)
    np.testing.assert_array_equal(r, fit_rotation(raw.copy()))  # deterministic, signs fixed


def test_encode_decode_and_tampering():
    r = fit_rotation(np.random.default_rng(1).standard_normal((300, 16)))
    stored = encode_rotation(r, 300)
    back, sha = decode_rotation(stored)
    np.testing.assert_array_equal(back, r)
    bad = dict(stored, sha256="0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        decode_rotation(bad)


def test_space_for_each_kind():
    assert space_for((64, 128, 192, 256), 256, None) == VectorSpace((64, 128, 192, 256))
    assert space_for((192,), 192, None).dims == (192,)
    r = fit_rotation(np.random.default_rng(2).standard_normal((500, 192)))
    sp = space_for((192,), 192, encode_rotation(r, 500))
    assert sp.dims == (64, 128, 192) and sp.name.startswith("rotation:")
    x = np.random.default_rng(3).standard_normal((4, 192)).astype(np.float32)
    full = sp.nested(x)[192]
    plain = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(full @ full.T, plain @ plain.T, atol=1e-5)  # cosines kept


def test_database_of_a_flat_model_learns_its_rotation(tmp_path):
    write_corpus(tmp_path / "c", speakers=6, utterances=4)
    with SpeakerDB.create(tmp_path / "h", model="flat192", embedder=Flat192()) as db:
        db.ingest([tmp_path / "c"])
        assert db.space.dims == (192,) and db.check().ok  # too few vectors: exhaustive only
        q = Waveform(voice(3, 9), 16000)
        before = db.identify(q)
        assert before.mode == "exhaustive" and before.candidates[0].speaker == "spk03"
        assert db.fit_rotation(force=True)
        assert db.space.dims == (64, 128, 192) and db.check().ok
        info = json.loads((db.home / "vectors.json").read_text())
        assert info["dims"] == [64, 128, 192] and info["space"] == db.space.name
        [rows] = db.home.glob("vectors-*.f32")  # the 192-D set's files are gone
        assert rows.stat().st_size == 24 * 192 * 4 and not list(db.home.glob("index-*"))
        after = db.identify(q)
        assert after.mode == "cascade"
        assert after.candidates[0].speaker == "spk03"
        assert after.score == pytest.approx(before.score, abs=1e-5)  # orthogonal: same cosine
    with SpeakerDB.open(tmp_path / "h", embedder=Flat192()) as db:
        assert db.space.name.startswith("rotation:") and db.check().ok
        assert not db.fit_rotation(force=True)  # learned once, kept


def test_check_notices_indexes_of_another_space(tmp_path):
    write_corpus(tmp_path / "c", speakers=3, utterances=3)
    with SpeakerDB.create(tmp_path / "h", model="flat192", embedder=Flat192()) as db:
        db.ingest([tmp_path / "c"])
        db.fit_rotation(force=True)
        db.store.set_setting("rotation", encode_rotation(
            fit_rotation(np.random.default_rng(9).standard_normal((50, 192))), 50))
    with SpeakerDB.open(tmp_path / "h", embedder=Flat192(), catch_up=False) as db:
        report = db.check()
        assert not report.ok and any("vector space" in p for p in report.problems)
        assert db.check(repair=True).ok

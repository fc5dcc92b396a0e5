import hashlib
import json
from datetime import datetime

import numpy as np
import pytest

from speakerdb.errors import IndexOutOfDateError
from speakerdb.index import IndexSet, ids_digest
from speakerdb.model.prefixes import DIMS, prefix

SHA = "a1" * 32
REV = "rev1"


def _raw(rng, n):
    return (rng.standard_normal((n, 256)) * 3).astype(np.float32)


@pytest.fixture
def store():
    rng = np.random.default_rng(7)
    ids = np.sort(rng.choice(1000, size=60, replace=False)).astype(np.int64)
    return ids, _raw(rng, 60)


@pytest.fixture
def saved(tmp_path, store):
    ids, raw = store
    s = IndexSet.build(tmp_path, ids, raw, SHA, REV)
    s.save(SHA, REV, int(ids[-1]))
    return IndexSet.load(tmp_path)


def _problems(s, store, **kw):
    ids, raw = store
    args = dict(store_ids=ids, store_max_id=int(ids[-1]) if ids.size else 0,
                model_sha256=SHA, schema_revision=REV, raw_sample=(ids[::7], raw[::7]))
    args.update(kw)
    return s.problems(**args)


def test_build_normalises_prefixes_and_writes_nothing(tmp_path, store):
    ids, raw = store
    s = IndexSet.build(tmp_path / "db", ids, raw, SHA, REV)
    assert not (tmp_path / "db").exists()
    assert sorted(s.by_dim) == list(DIMS) and s.ntotal == 60
    np.testing.assert_array_equal(s.ids(), ids)
    for d in DIMS:
        np.testing.assert_allclose(s.by_dim[d].reconstruct(ids), prefix(raw, d), atol=1e-7)
    assert IndexSet.state(tmp_path / "db") is None


def test_save_load_round_trip_and_json_fields(tmp_path, store):
    ids, raw = store
    s = IndexSet.build(tmp_path, ids, raw, SHA, REV)
    s.save(SHA, REV, 2000, store_generation=7)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([f"index-{d}.{e}" for d in DIMS for e in ("faiss", "json")])
    for d in DIMS:
        data = json.loads((tmp_path / f"index-{d}.json").read_text())
        assert set(data) == {"index_key", "index_param", "dim", "ntotal", "model_sha256",
                             "schema_revision", "store_max_id", "ids_digest", "size_bytes",
                             "created_at", "space", "store_generation", "sha256"}
        assert data["space"] == "identity" and data["store_generation"] == 7
        assert data["index_key"] == "Flat"
        assert data["index_param"] == ""
        assert data["dim"] == d
        assert data["ntotal"] == 60
        assert data["model_sha256"] == SHA
        assert data["schema_revision"] == REV
        assert data["store_max_id"] == 2000
        assert data["ids_digest"] == ids_digest(ids)
        assert data["size_bytes"] == (tmp_path / f"index-{d}.faiss").stat().st_size > 0
        digest = hashlib.sha256((tmp_path / f"index-{d}.faiss").read_bytes()).hexdigest()
        assert data["sha256"] == digest
        assert datetime.fromisoformat(data["created_at"]).tzinfo is not None
    back = IndexSet.load(tmp_path)
    assert back.ntotal == 60 and back.model_sha256 == SHA and back.schema_revision == REV
    for d in DIMS:
        np.testing.assert_array_equal(back.by_dim[d].reconstruct(ids),
                                      s.by_dim[d].reconstruct(ids))
    state = IndexSet.state(tmp_path)
    assert state == back.infos and state[64].ntotal == 60


def test_empty_set_round_trip(tmp_path):
    s = IndexSet.build(tmp_path, np.array([], np.int64), np.empty((0, 256), np.float32), SHA, REV)
    s.save(SHA, REV, 0)
    back = IndexSet.load(tmp_path)
    assert back.ntotal == 0 and back.ids().size == 0
    assert back.problems(np.array([], np.int64), 0, SHA, REV) == []
    assert IndexSet.state(tmp_path)[256].store_max_id == 0


def test_add_remove_then_save(tmp_path, store):
    ids, raw = store
    s = IndexSet.build(tmp_path, ids[:40], raw[:40], SHA, REV)
    s.add(ids[40:], raw[40:])
    with pytest.raises(ValueError, match="already"):
        s.add(ids[:1], raw[:1])
    with pytest.raises(ValueError):
        s.add(np.array([5000, 5000]), raw[:2])
    assert all(i.ntotal == 60 for i in s.by_dim.values())
    assert s.remove(ids[:5]) == 5
    s.save(SHA, REV, int(ids[-1]))
    back = IndexSet.load(tmp_path)
    for d in DIMS:
        np.testing.assert_array_equal(back.by_dim[d].ids(), ids[5:])
    assert back.problems(ids[5:], int(ids[-1]), SHA, REV, (ids[5:], raw[5:])) == []


def test_no_problems_when_in_agreement(saved, store):
    assert _problems(saved, store) == []


def test_problem_count_and_missing_ids(saved, store):
    ids, raw = store
    more = np.append(ids, 5000)
    got = _problems(saved, store, store_ids=more, store_max_id=5000)
    for d in DIMS:
        assert f"index-{d}: 60 vectors, store has 61" in got
        assert f"index-{d}: ids differ from the store (1 missing, 0 extra)" in got
    assert len(got) == 8


def test_problem_extra_ids(saved, store):
    ids, _ = store
    got = _problems(saved, store, store_ids=ids[1:])
    assert "index-64: 60 vectors, store has 59" in got
    assert "index-192: ids differ from the store (0 missing, 1 extra)" in got


def test_problem_same_count_different_ids(saved, store):
    ids, _ = store
    other = np.sort(np.append(ids[1:], 5000))
    got = _problems(saved, store, store_ids=other, store_max_id=5000)
    assert got == [f"index-{d}: ids differ from the store (1 missing, 1 extra)" for d in DIMS]


def test_problem_model_sha(saved, store):
    got = _problems(saved, store, model_sha256="de" * 32)
    assert got == [f"index-{d}: model sha256 a1a1a1a1a1a1… but the database model is "
                   f"dededededede…" for d in DIMS]


def test_problem_schema_revision(saved, store):
    got = _problems(saved, store, schema_revision="rev2")
    assert got == [f"index-{d}: schema revision rev1, store rev2" for d in DIMS]


def test_problem_store_max_id(saved, store):
    got = _problems(saved, store, store_max_id=99_999)
    assert len(got) == 4 and all("largest id" in line for line in got)


def test_problem_corrupted_vector(saved, store):
    ids, raw = store
    bad = raw.copy()
    bad[14, 100] += 5.0  # only the 128/192/256 prefixes change
    got = _problems(saved, store, raw_sample=(ids[[0, 14]], bad[[0, 14]]))
    assert got == [f"index-{d}: vector of segment {ids[14]} differs from the store"
                   for d in (128, 192, 256)]


def test_problem_missing_file(saved, store):
    (saved.directory / "index-128.json").unlink()
    (saved.directory / "index-256.faiss").unlink()
    got = _problems(saved, store)
    assert got == ["index-128: index-128.json is missing", "index-256: index-256.faiss is missing"]
    with pytest.raises(IndexOutOfDateError, match="index-128.json"):
        IndexSet.load(saved.directory)
    with pytest.raises(IndexOutOfDateError, match="index-128.json"):
        IndexSet.state(saved.directory)


def test_problem_json_disagrees_with_index(saved, store):
    ids, raw = store
    saved.by_dim[64].remove(ids[:1])  # in memory only: JSON still says 60
    got = _problems(saved, store, raw_sample=None)
    assert got == ["index-64: index-64.json says 60 vectors, index has 59",
                   "index-64: 59 vectors, store has 60",
                   "index-64: ids differ from the store (1 missing, 0 extra)"]


def test_unsaved_set_checks_against_its_build_arguments(tmp_path, store):
    ids, raw = store
    s = IndexSet.build(tmp_path, ids, raw, SHA, REV)
    assert _problems(s, store) == []
    assert len(_problems(s, store, schema_revision="x")) == 4


def test_load_rejects_count_mismatch(tmp_path, store):
    ids, raw = store
    s = IndexSet.build(tmp_path, ids, raw, SHA, REV)
    s.save(SHA, REV, int(ids[-1]))
    s.by_dim[192].remove(ids[:3])
    s.by_dim[192].save(tmp_path / "index-192.faiss")  # faiss written, JSON not
    with pytest.raises(IndexOutOfDateError, match="57 vectors but index-192.json says 60"):
        IndexSet.load(tmp_path)


def test_load_rejects_corrupt_faiss(tmp_path, store):
    ids, raw = store
    IndexSet.build(tmp_path, ids, raw, SHA, REV).save(SHA, REV, int(ids[-1]))
    (tmp_path / "index-64.faiss").write_bytes(b"\0" * 64)
    with pytest.raises(IndexOutOfDateError, match="index-64.faiss"):
        IndexSet.load(tmp_path)
    (tmp_path / "index-64.json").write_text("{")
    with pytest.raises(IndexOutOfDateError, match="index-64.json"):
        IndexSet.state(tmp_path)


def test_build_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError):
        IndexSet.build(tmp_path, np.arange(3), np.zeros((3, 128), np.float32), SHA, REV)
    with pytest.raises(ValueError):
        IndexSet.build(tmp_path, np.arange(3), np.zeros((2, 256), np.float32), SHA, REV)

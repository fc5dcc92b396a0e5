import hashlib
import json
from datetime import datetime

import numpy as np
import pytest

import speakerdb.index.choose as choose
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
    assert names == ["vectors-1.f32", "vectors-1.ids", "vectors-1.norms", "vectors.json"]
    assert (tmp_path / "vectors-1.f32").stat().st_size == 60 * 256 * 4  # full width, float32
    assert (tmp_path / "vectors-1.ids").stat().st_size == 60 * 8
    assert (tmp_path / "vectors-1.norms").stat().st_size == 60 * (len(DIMS) - 1) * 4
    data = json.loads((tmp_path / "vectors.json").read_text())
    assert set(data) == {"dims", "ntotal", "model_sha256", "schema_revision", "store_max_id",
                         "ids_digest", "created_at", "matrix", "index_key", "index_param",
                         "screen_file", "screen_size_bytes", "screen_sha256", "space",
                         "store_generation", "format"}
    assert data["dims"] == list(DIMS) and data["format"] == 1
    assert data["ntotal"] == 60
    assert data["model_sha256"] == SHA and data["schema_revision"] == REV
    assert data["store_max_id"] == 2000 and data["store_generation"] == 7
    assert data["ids_digest"] == ids_digest(ids)
    assert data["space"] == "identity"
    rows_sha = hashlib.sha256((tmp_path / "vectors-1.f32").read_bytes()).hexdigest()
    assert data["matrix"] == {"rows": 60, "deleted": 0, "epoch": 1, "parts": [[0, 60, rows_sha]]}
    # 60 vectors: the screen is exact, from the rows; no screen file
    assert (data["index_key"], data["index_param"]) == ("Flat", "")
    assert (data["screen_file"], data["screen_size_bytes"], data["screen_sha256"]) == ("", 0, "")
    assert datetime.fromisoformat(data["created_at"]).tzinfo is not None
    back = IndexSet.load(tmp_path)
    assert back.ntotal == 60 and back.model_sha256 == SHA and back.schema_revision == REV
    assert back.screen is None and all(i.choice.key == "Flat" for i in back.by_dim.values())
    np.testing.assert_array_equal(back.ids(), ids)
    for d in DIMS:
        np.testing.assert_array_equal(back.by_dim[d].reconstruct(ids),
                                      s.by_dim[d].reconstruct(ids))
    state = IndexSet.state(tmp_path)
    assert state == back.info and state.ntotal == 60 and state.dims == DIMS
    assert back.files() == [tmp_path / "vectors.json", tmp_path / "vectors-1.f32",
                            tmp_path / "vectors-1.ids", tmp_path / "vectors-1.norms"]


def test_empty_set_round_trip(tmp_path):
    s = IndexSet.build(tmp_path, np.array([], np.int64), np.empty((0, 256), np.float32), SHA, REV)
    s.save(SHA, REV, 0)
    back = IndexSet.load(tmp_path)
    assert back.ntotal == 0 and back.ids().size == 0 and back.max_id() == 0
    assert back.problems(np.array([], np.int64), 0, SHA, REV) == []
    state = IndexSet.state(tmp_path)
    assert (state.ntotal, state.store_max_id, state.ids_digest) == (0, 0, ids_digest([]))
    assert state.matrix.to_dict() == {"rows": 0, "deleted": 0, "epoch": 1, "parts": []}
    assert (tmp_path / "vectors-1.f32").stat().st_size == 0
    assert back.by_dim[64].search(np.ones((1, 64), np.float32) / 8, 5)[1].shape == (1, 0)


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
    assert got == ["vectors: 60 vectors, store has 61",
                   "vectors: ids differ from the store (1 missing, 0 extra)"]


def test_problem_extra_ids(saved, store):
    ids, _ = store
    got = _problems(saved, store, store_ids=ids[1:])
    assert got == ["vectors: 60 vectors, store has 59",
                   "vectors: ids differ from the store (0 missing, 1 extra)"]


def test_problem_same_count_different_ids(saved, store):
    ids, _ = store
    other = np.sort(np.append(ids[1:], 5000))
    got = _problems(saved, store, store_ids=other, store_max_id=5000)
    assert got == ["vectors: ids differ from the store (1 missing, 1 extra)"]


def test_problem_model_sha(saved, store):
    got = _problems(saved, store, model_sha256="de" * 32)
    assert got == ["vectors: model sha256 a1a1a1a1a1a1… but the database model is "
                   "dededededede…"]


def test_problem_schema_revision(saved, store):
    got = _problems(saved, store, schema_revision="rev2")
    assert got == ["vectors: schema revision rev1, store rev2"]


def test_problem_space(saved, store):
    got = _problems(saved, store, space="rotation:" + "cd" * 32)
    assert got == [f"vectors: built in vector space identity, the database uses "
                   f"rotation:{'cd' * 32}"]


def test_problem_store_max_id(saved, store):
    ids, _ = store
    got = _problems(saved, store, store_max_id=99_999)
    assert got == [f"vectors: saved when the store's largest id was {ids[-1]}, store has 99999"]


def test_problem_dims(saved, store):
    assert _problems(saved, store, dims=(64, 256)) == [
        "vectors: hold 64/128/192/256-D, the database uses 64/256-D"]


@pytest.mark.parametrize("column", [10, 100, 200])  # in every prefix / from 128 / only 256
def test_problem_corrupted_vector(saved, store, column):
    """One row holds every prefix: a change anywhere in it is one line for that segment."""
    ids, raw = store
    bad = raw.copy()
    bad[14, column] += 5.0
    got = _problems(saved, store, raw_sample=(ids[[0, 14]], bad[[0, 14]]))
    assert got == [f"vectors: vector of segment {ids[14]} differs from the store"]


def test_problem_missing_file(saved, store):
    (saved.directory / "vectors.json").unlink()
    got = _problems(saved, store)
    assert got == ["vectors: vectors.json is missing"]
    with pytest.raises(IndexOutOfDateError, match="vectors.json: description of the vectors is "
                                                  "missing"):
        IndexSet.load(saved.directory)
    assert IndexSet.state(saved.directory) is None  # nothing saved in this layout
    saved.save(SHA, REV, int(store[0][-1]))  # no description: the rows go to a new epoch
    assert sorted(p.name for p in saved.directory.iterdir()) == [
        "vectors-2.f32", "vectors-2.ids", "vectors-2.norms", "vectors.json"]
    (saved.directory / "vectors-2.ids").unlink()
    with pytest.raises(IndexOutOfDateError, match="vectors-2.ids: vector file is missing"):
        IndexSet.load(saved.directory)
    assert IndexSet.state(saved.directory).ntotal == 60  # the description alone still reads


def test_problem_json_disagrees_with_index(saved, store):
    ids, raw = store
    saved.remove(ids[:1])  # in memory only: vectors.json still says 60
    got = _problems(saved, store, raw_sample=None)
    assert got == ["vectors: vectors.json says 60 vectors, the set holds 59",
                   "vectors: 59 vectors, store has 60",
                   "vectors: ids differ from the store (1 missing, 0 extra)"]


def test_problem_ids_digest_disagrees_with_rows(tmp_path, store):
    ids, raw = store
    IndexSet.build(tmp_path, ids, raw, SHA, REV).save(SHA, REV, int(ids[-1]))
    path = tmp_path / "vectors.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "ids_digest": "00" * 32}))
    assert _problems(IndexSet.load(tmp_path), store) == [
        "vectors: vectors.json ids digest does not match the rows"]


def test_unsaved_set_checks_against_its_build_arguments(tmp_path, store):
    ids, raw = store
    s = IndexSet.build(tmp_path, ids, raw, SHA, REV)
    assert _problems(s, store) == []
    assert _problems(s, store, schema_revision="x") == ["vectors: schema revision rev1, store x"]
    assert _problems(s, store, model_sha256="de" * 32) == [
        "vectors: model sha256 a1a1a1a1a1a1… but the database model is dededededede…"]
    assert not tmp_path.joinpath("vectors.json").exists()  # no file line for an unsaved set


def test_load_rejects_count_mismatch(tmp_path, store):
    ids, raw = store
    IndexSet.build(tmp_path, ids, raw, SHA, REV).save(SHA, REV, int(ids[-1]))
    path = tmp_path / "vectors.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "ntotal": 57}))
    with pytest.raises(IndexOutOfDateError, match="says 57 vectors, its rows hold 60"):
        IndexSet.load(tmp_path)
    more = {**data, "ntotal": 61, "matrix": {**data["matrix"], "rows": 61}}
    path.write_text(json.dumps(more))  # a description of more rows than the files hold
    with pytest.raises(IndexOutOfDateError,
                       match=f"vectors-1.f32: {60 * 256 * 4} bytes, its description needs "
                             f"{61 * 256 * 4}"):
        IndexSet.load(tmp_path)
    path.write_text(json.dumps({**data, "dims": [64, 256]}))
    with pytest.raises(IndexOutOfDateError, match="holds 64/256-D vectors, the database uses "
                                                  "64/128/192/256-D"):
        IndexSet.load(tmp_path)


def test_rows_appended_but_not_committed_are_ignored_then_cut(tmp_path, store):
    """A save killed between appending rows and writing vectors.json: readers see the last
    committed save, and the next save writes over the uncommitted rows."""
    ids, raw = store
    s = IndexSet.build(tmp_path, ids[:40], raw[:40], SHA, REV)
    s.save(SHA, REV, int(ids[39]))
    committed = (tmp_path / "vectors.json").read_text()
    s.add(ids[40:], raw[40:])
    s.matrix.save(tmp_path, IndexSet.state(tmp_path).matrix)  # rows written, no commit
    assert (tmp_path / "vectors-1.f32").stat().st_size == 60 * 256 * 4
    assert (tmp_path / "vectors.json").read_text() == committed
    back = IndexSet.load(tmp_path)
    assert back.ntotal == 40
    np.testing.assert_array_equal(back.ids(), ids[:40])
    sub = (ids[:40], raw[:40])
    assert _problems(back, sub, raw_sample=sub, checksums=True) == []
    back.add(ids[50:], raw[50:])  # another 10 rows where the uncommitted 20 were
    back.save(SHA, REV, int(ids[-1]))
    assert (tmp_path / "vectors-1.f32").stat().st_size == 50 * 256 * 4
    again = IndexSet.load(tmp_path)
    want = np.concatenate([ids[:40], ids[50:]])
    np.testing.assert_array_equal(again.ids(), want)
    rows = np.concatenate([raw[:40], raw[50:]])
    assert again.problems(want, int(ids[-1]), SHA, REV, vectors=[(want, rows)],
                          checksums=True) == []


def test_load_rejects_corrupt_files(tmp_path, store):
    ids, raw = store
    IndexSet.build(tmp_path, ids, raw, SHA, REV).save(SHA, REV, int(ids[-1]))
    (tmp_path / "vectors-1.norms").write_bytes(b"\0" * 64)
    with pytest.raises(IndexOutOfDateError, match="vectors-1.norms: 64 bytes, its description "
                                                  f"needs {60 * (len(DIMS) - 1) * 4}"):
        IndexSet.load(tmp_path)
    (tmp_path / "vectors.json").write_text("{")
    with pytest.raises(IndexOutOfDateError, match="vectors.json: unreadable description"):
        IndexSet.state(tmp_path)
    with pytest.raises(IndexOutOfDateError, match="vectors.json: unreadable description"):
        IndexSet.load(tmp_path)


def test_load_rejects_corrupt_or_missing_screen(tmp_path, monkeypatch):
    monkeypatch.setattr(choose, "FLAT_MAX_VECTORS", 500)
    monkeypatch.setattr(choose, "MIN_LISTS", 16)
    rng = np.random.default_rng(8)
    ids = np.arange(1, 601, dtype=np.int64)
    raw = _raw(rng, 600)
    s = IndexSet.build(tmp_path, ids, raw, SHA, REV)
    s.save(SHA, REV, 600)
    screen = tmp_path / "screen-64-1.faiss"
    size = screen.stat().st_size
    assert IndexSet.state(tmp_path).screen_size_bytes == size > 0
    screen.write_bytes(b"\0" * size)  # the size agrees, the contents are no FAISS index
    with pytest.raises(IndexOutOfDateError, match="screen-64-1.faiss: unreadable index file"):
        IndexSet.load(tmp_path)
    got = s.problems(ids, 600, SHA, REV, checksums=True)
    assert got == ["screen: screen-64-1.faiss does not match the checksum in vectors.json "
                   f"(sha256 {s.info.screen_sha256[:12]}…)"]
    screen.write_bytes(b"\0" * 64)
    with pytest.raises(IndexOutOfDateError,
                       match=f"screen-64-1.faiss: 64 bytes but vectors.json says {size}"):
        IndexSet.load(tmp_path)
    screen.unlink()
    with pytest.raises(IndexOutOfDateError,
                       match=f"screen-64-1.faiss: 0 bytes but vectors.json says {size}"):
        IndexSet.load(tmp_path)
    assert s.problems(ids, 600, SHA, REV) == ["screen: screen-64-1.faiss is missing"]


def test_build_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError):
        IndexSet.build(tmp_path, np.arange(3), np.zeros((3, 128), np.float32), SHA, REV)
    with pytest.raises(ValueError):
        IndexSet.build(tmp_path, np.arange(3), np.zeros((2, 256), np.float32), SHA, REV)

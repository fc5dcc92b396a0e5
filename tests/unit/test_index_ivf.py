"""The inverted-file screen: a VectorIndex of kind IVF, and index sets that switch to it."""

import hashlib
import json

import numpy as np
import pytest

import speakerdb.index.choose as choose
import speakerdb.index.ivf_topk as ivf_topk
from speakerdb.errors import IndexOutOfDateError
from speakerdb.index import IndexSet
from speakerdb.index.choose import IndexChoice
from speakerdb.index.vector_index import IVF_PARALLEL_MODE, VectorIndex
from speakerdb.model.prefixes import prefix

SHA, REV = "b2" * 32, "rev1"
IVF = IndexChoice("IVF32,SQfp16", "nprobe=4")


def _clustered(seed=0, n=2000, dim=64, centres=40):
    """Unit vectors around ``centres`` directions (like segments of speakers)."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim))
    x = c[rng.integers(0, centres, n)] + 0.4 * rng.standard_normal((n, dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    ids = np.sort(rng.choice(10 * n, size=n, replace=False)).astype(np.int64)
    return ids, x, rng


def _ivf(seed=0, n=2000):
    ids, x, rng = _clustered(seed, n)
    index = VectorIndex.trained(64, IVF, x)
    index.add(ids, x)
    return index, ids, x, rng


def assert_fp16_of(got, x):
    """``got`` is ``x`` rounded to 16-bit floats (within one unit in the last place: FAISS and
    numpy may round a value differently)."""
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, x, rtol=2.0**-10, atol=6e-8)
    assert (got != x).any()  # really rounded, not kept as 32-bit floats


def test_ivf_keeps_vectors_as_16_bit_floats_and_finds_each_stored_vector_first():
    index, ids, x, _ = _ivf()
    assert index.choice == IVF and index.ntotal == ids.size
    np.testing.assert_array_equal(index.ids(), ids)
    assert_fp16_of(index.reconstruct(ids[::97]), x[::97])
    assert np.abs(index.reconstruct(ids) - x).max() <= index.tolerance
    got_ids, got_x = index.contents()
    order = np.argsort(got_ids)
    assert_fp16_of(got_x[order], x[np.argsort(ids)])
    scores, got = index.search(x[:50], 3)
    np.testing.assert_array_equal(got[:, 0], ids[:50])  # its own list is always probed
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=index.tolerance)
    pick = np.array([[0, 5, -1], [7, -1, 9]])
    got = index.score_many(x[:2], np.where(pick < 0, -1, ids[pick]))
    np.testing.assert_allclose(got[0, :2], x[[0, 5]] @ x[0], atol=index.tolerance)
    np.testing.assert_allclose(got[1, [0, 2]], x[[7, 9]] @ x[1], atol=index.tolerance)
    assert np.isneginf(got[0, 2]) and np.isneginf(got[1, 1])


def test_ivf_with_every_list_probed_equals_exact_search():
    index, ids, x, rng = _ivf()
    exact = index.rebuilt(IndexChoice("Flat"))
    assert exact.choice.key == "Flat"
    full = index.rebuilt(IndexChoice("IVF32,SQfp16", "nprobe=32"))
    q = x[rng.integers(0, ids.size, 20)] + 0.05
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    s_full, i_full = full.search(q, 25)
    s_exact, i_exact = exact.search(q, 25)
    np.testing.assert_array_equal(i_full, i_exact)
    np.testing.assert_allclose(s_full, s_exact, atol=1e-6)


def test_ivf_approximation_loses_some_neighbours_on_spread_queries():
    """Probing 4 of 32 lists is not exact search (so the exactness test above can fail)."""
    index, ids, x, rng = _ivf()
    q = rng.standard_normal((50, 64)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    _, approx = index.search(q, 50)
    _, exact = index.rebuilt(IndexChoice("Flat")).search(q, 50)
    assert (approx != exact).any()


@pytest.mark.parametrize("margin", [ivf_topk.MARGIN, 0.05])
def test_large_searches_by_range_equal_the_heap_search(monkeypatch, margin):
    """k >= RANGE_MIN_K: a range search at a radius from a sample, then a partial sort, gives
    FAISS's heap search result; a sample that puts the radius too high (margin 0.05: fewer
    than k vectors clear it) hands those queries to the heap search."""
    monkeypatch.setattr(ivf_topk, "MARGIN", margin)
    monkeypatch.setattr(ivf_topk, "EXTRA", 20 if margin > 1 else 0)
    index, ids, x, rng = _ivf(n=20_000)
    q = x[rng.integers(0, ids.size, 12)] + 0.3 * rng.standard_normal((12, 64)).astype(np.float32)
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    k = ivf_topk.RANGE_MIN_K + 44
    heap_rows = []
    heap = index._heap
    monkeypatch.setattr(index, "_heap", lambda qq, kk: heap_rows.append(len(qq)) or heap(qq, kk))
    scores, got = index.search(q, k)
    assert (sum(heap_rows) == 0) == (margin > 1)  # the fallback ran only for a bad radius
    want_s, want_i = heap(q, k)
    np.testing.assert_allclose(scores, want_s, atol=1e-6)
    for row, want in zip(got, want_i):
        assert set(row.tolist()) == set(want.tolist())
    ordered = (np.diff(scores, axis=1) < 0) | ((np.diff(scores, axis=1) == 0)
                                               & (np.diff(got, axis=1) > 0))
    assert ordered.all()  # best first, equal scores by id


def test_the_radius_sample_is_kept_across_small_changes_and_redrawn_after_large_ones():
    ids, x, rng = _clustered(3, 24_000)
    index = VectorIndex.trained(64, IVF, x)
    index.add(ids[:20_000], x[:20_000])
    k = ivf_topk.RANGE_MIN_K
    index.search(x[:2], k)
    sample = index._radius
    index.add(ids[20_000:21_000], x[20_000:21_000])  # +5 %: the same sample answers
    index.remove(ids[:500])
    scores, got = index.search(x[:2], k)
    assert index._radius is sample
    want_s, want_i = index._heap(np.ascontiguousarray(x[:2]), k)  # still the heap's result
    np.testing.assert_allclose(scores, want_s, atol=1e-6)
    assert all(set(a.tolist()) == set(b.tolist()) for a, b in zip(got, want_i))
    index.add(ids[21_000:], x[21_000:])  # 23,500: +17.5 % since the sample, redrawn
    index.search(x[:2], k)
    assert index._radius is not sample and index._radius.n == index.ntotal


def test_ivf_never_pads_results_when_probed_lists_hold_too_few():
    index, ids, _, rng = _ivf(n=400)
    q = rng.standard_normal((3, 64)).astype(np.float32)
    scores, got = index.search(q / np.linalg.norm(q, axis=1, keepdims=True), 390)
    assert got.shape == (3, 390) and (got >= 0).all()
    assert all(np.unique(row).size == 390 for row in got)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_ivf_remove_save_load_and_wrong_kind(tmp_path):
    index, ids, x, _ = _ivf()
    assert index.remove(np.concatenate([ids[:10], [-5, 10**9]])) == 10
    assert index.remove(ids[:10]) == 0
    assert not index.contains(ids[:10]).any() and index.contains(ids[10:20]).all()
    with pytest.raises(ValueError, match="not in"):
        index.reconstruct(ids[:1])
    index.add(ids[:3], x[:3])
    path = tmp_path / "i.faiss"
    index.save(path)
    back = VectorIndex.load(path, 64, IVF)
    import faiss

    for one in (index, back):  # each query's probed lists are split over the cores
        ivf = faiss.extract_index_ivf(one._index)
        assert (ivf.nprobe, ivf.parallel_mode) == (IVF.nprobe, IVF_PARALLEL_MODE)
    np.testing.assert_array_equal(back.ids(), index.ids())
    np.testing.assert_array_equal(back.reconstruct(ids[:3]), index.reconstruct(ids[:3]))
    np.testing.assert_array_equal(back.search(x[100:105], 5)[1], index.search(x[100:105], 5)[1])
    with pytest.raises(IndexOutOfDateError, match="IndexIDMap2"):
        VectorIndex.load(path, 64)
    with pytest.raises(IndexOutOfDateError, match="lists"):
        VectorIndex.load(path, 64, IndexChoice("IVF64,SQfp16", "nprobe=4"))
    VectorIndex.empty(64).save(tmp_path / "f.faiss")
    with pytest.raises(IndexOutOfDateError, match="IVF32"):
        VectorIndex.load(tmp_path / "f.faiss", 64, IVF)


def test_training_needs_enough_vectors():
    with pytest.raises(ValueError, match="at least 32"):
        VectorIndex.trained(64, IVF, np.zeros((10, 64), np.float32))


@pytest.fixture
def small_thresholds(monkeypatch):
    """Screens switch to IVF from 500 vectors, with at least 16 lists (instead of 200k/1024)."""
    monkeypatch.setattr(choose, "FLAT_MAX_VECTORS", 500)
    monkeypatch.setattr(choose, "MIN_LISTS", 16)


def _raw(rng, n, speakers=30):
    c = rng.standard_normal((speakers, 256)) * 3
    return (c[rng.integers(0, speakers, n)] + rng.standard_normal((n, 256))).astype(np.float32)


def test_index_set_switches_the_screen_to_ivf_as_it_grows(tmp_path, small_thresholds):
    rng = np.random.default_rng(3)
    raw = _raw(rng, 3000)
    ids = np.arange(1, 3001, dtype=np.int64)
    s = IndexSet.build(tmp_path, ids[:300], raw[:300], SHA, REV)
    assert s.screen is None and all(i.choice.key == "Flat" for i in s.by_dim.values())
    s.save(SHA, REV, 300)
    assert not list(tmp_path.glob("screen-*"))
    s.add(ids[300:800], raw[300:800])  # past 500: the screen becomes IVF at the next save
    assert s.screen is None
    s.save(SHA, REV, 800)
    info = json.loads((tmp_path / "vectors.json").read_text())
    lists = choose.ivf_lists(800)
    assert (info["index_key"], info["index_param"]) == (f"IVF{lists},SQfp16",
                                                        f"nprobe={lists // choose.PROBE_DIVISOR}")
    screen = tmp_path / "screen-64-1.faiss"
    assert info["screen_file"] == screen.name
    assert info["screen_size_bytes"] == screen.stat().st_size > 0
    assert info["screen_sha256"] == hashlib.sha256(screen.read_bytes()).hexdigest()
    assert info["matrix"]["rows"] == 800 and info["matrix"]["epoch"] == 1  # rows appended
    back = IndexSet.load(tmp_path)
    assert back.by_dim[64].choice.key == f"IVF{lists},SQfp16"
    for d in (128, 192, 256):  # scored exactly from the rows
        assert back.by_dim[d].choice.key == "Flat" and back.by_dim[d].screen is None
    assert_fp16_of(back.screen.reconstruct(ids[:800]), prefix(raw[:800], 64))
    np.testing.assert_allclose(back.by_dim[64].reconstruct(ids[:800]), prefix(raw[:800], 64),
                               atol=1e-6)  # the rows stay at full precision
    assert back.problems(ids[:800], 800, SHA, REV, (ids[:800:50], raw[:800:50]),
                         checksums=True) == []
    back.add(ids[800:], raw[800:])  # 3000 vectors want more lists: retrained at save
    assert back.retarget() is True
    assert back.by_dim[64].choice.key == f"IVF{choose.ivf_lists(3000)},SQfp16" != info["index_key"]
    assert back.retarget() is False
    np.testing.assert_array_equal(back.screen.ids(), ids)
    back.save(SHA, REV, 3000)  # a changed screen: a new file, the old one removed
    assert sorted(p.name for p in tmp_path.glob("screen-*")) == ["screen-64-2.faiss"]
    assert IndexSet.state(tmp_path).screen_file == "screen-64-2.faiss"
    back.save(SHA, REV, 3000)  # unchanged: kept under its name
    assert sorted(p.name for p in tmp_path.glob("screen-*")) == ["screen-64-2.faiss"]


def test_rebuild_of_a_large_set_builds_the_screen_as_ivf(tmp_path, small_thresholds):
    rng = np.random.default_rng(4)
    raw = _raw(rng, 1000)
    ids = np.arange(1, 1001, dtype=np.int64)
    s = IndexSet.build(tmp_path, ids, raw, SHA, REV)
    assert s.by_dim[64].choice == choose.choose_index(1000, 64, 64)
    assert s.by_dim[64].choice.nlist > 0
    assert all(s.by_dim[d].choice.key == "Flat" for d in (128, 192, 256))
    assert s.screen.ntotal == 1000
    np.testing.assert_array_equal(s.screen.ids(), ids)
    assert s.retarget() is False
    assert not tmp_path.joinpath("vectors.json").exists()  # built, not saved


def test_json_naming_another_kind_than_the_file_is_out_of_date(tmp_path, small_thresholds):
    rng = np.random.default_rng(5)
    ids = np.arange(1, 1001, dtype=np.int64)
    IndexSet.build(tmp_path, ids, _raw(rng, 1000), SHA, REV).save(SHA, REV, 1000)
    path = tmp_path / "vectors.json"
    data = json.loads(path.read_text())
    lists = choose.ivf_lists(1000)
    assert data["index_key"] == f"IVF{lists},SQfp16"
    cases = [("Flat", "", "screen-64-1.faiss: expected an IndexIDMap2"),
             ("HNSW32", "", "vectors.json: unknown index 'HNSW32'"),
             (f"IVF{lists // 2},SQfp16", "nprobe=4",
              f"screen-64-1.faiss: has {lists} lists, expected {lists // 2}"),
             (f"IVF{lists},SQfp16", "nprobe=0", "vectors.json: unknown index")]
    for key, param, message in cases:
        path.write_text(json.dumps({**data, "index_key": key, "index_param": param}))
        with pytest.raises(IndexOutOfDateError, match=message):
            IndexSet.load(tmp_path)
    path.write_text(json.dumps(data))
    assert IndexSet.load(tmp_path).screen.ntotal == 1000


def test_a_saved_screen_searches_with_this_versions_probe_count(tmp_path, small_thresholds,
                                                                  monkeypatch):
    """The probe count recorded by an older version is a search setting, not a reason to
    rebuild: the loaded screen uses the current one, and the next save records it."""
    rng = np.random.default_rng(6)
    ids = np.arange(1, 1001, dtype=np.int64)
    built = IndexSet.build(tmp_path, ids, _raw(rng, 1000), SHA, REV)
    built.save(SHA, REV, 1000)
    old = built.by_dim[64].choice
    assert IndexSet.state(tmp_path).index_param == old.param
    monkeypatch.setattr(choose, "PROBE_DIVISOR", 2)
    back = IndexSet.load(tmp_path)
    want = choose.choose_index(1000, 64, 64)
    assert want.key == old.key and want.nprobe != old.nprobe
    assert back.by_dim[64].choice == want
    import faiss

    assert faiss.extract_index_ivf(back.screen._index).nprobe == want.nprobe
    back.save(SHA, REV, 1000)
    info = IndexSet.state(tmp_path)
    assert info.index_param == want.param
    assert info.screen_file == "screen-64-1.faiss"  # the same screen, not rebuilt


def test_a_loaded_ivf_screen_is_mapped_and_copied_into_memory_on_its_first_change(tmp_path):
    import faiss

    index, ids, x, rng = _ivf(5)
    path = tmp_path / "screen.faiss"
    index.save(path)
    q = x[rng.integers(0, len(x), 20)] + 0.05 * rng.standard_normal((20, 64)).astype(np.float32)
    want = index.search(q, 30)
    loaded = VectorIndex.load(path, 64, IVF)
    assert loaded._mapped and faiss.downcast_InvertedLists(
        loaded._index.invlists).__class__.__name__ != "ArrayInvertedLists"
    path.unlink()  # another process's save removed it: the mapping stays readable
    got = loaded.search(q, 30)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])
    assert_fp16_of(loaded.reconstruct(ids[:50]), x[:50])
    # changes land in memory and behave as on the index that was never saved
    new_ids, new_x, _ = _clustered(6, 100)
    new_ids = new_ids + 10**6
    for ix in (index, loaded):
        ix.add(new_ids, new_x)
        assert ix.remove(ids[::7]) == len(ids[::7])
    assert not loaded._mapped
    np.testing.assert_array_equal(loaded.ids(), index.ids())
    np.testing.assert_array_equal(loaded.search(q, 30)[1], index.search(q, 30)[1])
    loaded.save(tmp_path / "again.faiss")
    again = VectorIndex.load(tmp_path / "again.faiss", 64, IVF)
    np.testing.assert_array_equal(again.ids(), index.ids())
    np.testing.assert_array_equal(again.reconstruct(index.ids()), index.reconstruct(index.ids()))
    np.testing.assert_array_equal(again.search(q, 30)[1], index.search(q, 30)[1])


def test_saving_a_mapped_ivf_writes_its_vectors_not_a_reference(tmp_path):
    index, ids, x, _ = _ivf(7)
    index.save(tmp_path / "a.faiss")
    loaded = VectorIndex.load(tmp_path / "a.faiss", 64, IVF)
    loaded.save(tmp_path / "b.faiss")
    (tmp_path / "a.faiss").unlink()
    again = VectorIndex.load(tmp_path / "b.faiss", 64, IVF)
    np.testing.assert_array_equal(again.ids(), np.sort(ids))
    assert_fp16_of(again.reconstruct(ids), x)


def test_a_mapped_screen_is_measured_by_its_file_without_copying_it_into_memory(tmp_path):
    index, _, _, _ = _ivf(8)
    index.save(tmp_path / "a.faiss")
    want = index.serialized_bytes()
    assert want == (tmp_path / "a.faiss").stat().st_size
    loaded = VectorIndex.load(tmp_path / "a.faiss", 64, IVF)
    assert loaded.serialized_bytes() == want
    assert loaded._mapped  # measuring it did not copy its lists

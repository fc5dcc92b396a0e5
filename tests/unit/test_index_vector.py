import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from speakerdb.errors import IndexOutOfDateError
from speakerdb.index.faiss_support import ties_by_id as _ties_by_id
from speakerdb.index.vector_index import VectorIndex


def _unit(rng, n, dim):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _filled(seed=0, n=300, dim=64):
    rng = np.random.default_rng(seed)
    ids = rng.choice(10_000, size=n, replace=False).astype(np.int64)
    x = _unit(rng, n, dim)
    index = VectorIndex.empty(dim)
    index.add(ids, x)
    return index, ids, x, rng


def _brute(ids, x, q, k):
    s = q @ x.T
    order = np.lexsort((np.broadcast_to(ids, s.shape), -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, 1), ids[order]


@pytest.mark.parametrize("k", [1, 7, 300, 1000])
def test_search_equals_brute_force(k):
    index, ids, x, rng = _filled()
    q = _unit(rng, 5, 64)
    scores, got = index.search(q, k)
    want_s, want_ids = _brute(ids, x, q, k)
    assert scores.dtype == np.float32 and got.dtype == np.int64
    assert got.shape == (5, min(k, 300))
    assert (got >= 0).all()
    np.testing.assert_allclose(scores, want_s, atol=1e-5)
    np.testing.assert_array_equal(got, want_ids)


def test_search_ties_ordered_by_id():
    rng = np.random.default_rng(1)
    base = _unit(rng, 4, 64)
    x = np.repeat(base, 3, axis=0)  # every vector stored three times
    ids = np.array([50, 7, 30, 1, 2, 3, 99, 98, 97, 10, 20, 5], dtype=np.int64)
    index = VectorIndex.empty(64)
    index.add(ids, x)
    scores, got = index.search(base[:1], 3)
    np.testing.assert_allclose(scores[0], 1.0, atol=1e-5)
    assert got[0].tolist() == [7, 30, 50]
    scores, got = index.search(base[2:3], 12)
    assert got[0, :3].tolist() == [97, 98, 99]
    # ties at the cut: the returned ids are among the tied ones and scores match brute force
    s2, g2 = index.search(base[3:4], 2)
    assert set(g2[0].tolist()) <= {5, 10, 20}
    np.testing.assert_allclose(s2[0], 1.0, atol=1e-5)


def test_search_empty_and_zero_k():
    index = VectorIndex.empty(64)
    s, i = index.search(np.zeros((2, 64), np.float32), 10)
    assert s.shape == (2, 0) and i.shape == (2, 0) and i.dtype == np.int64
    full, *_ = _filled(n=5)
    s, i = full.search(np.zeros((1, 64), np.float32), 0)
    assert s.shape == (1, 0)
    with pytest.raises(ValueError):
        full.search(np.zeros((1, 65), np.float32), 1)


def test_score_equals_dot_products():
    index, ids, x, rng = _filled(n=3000, dim=128)
    q = _unit(rng, 1, 128)[0]
    pick = rng.choice(3000, size=2500, replace=False)
    got = index.score(q, ids[pick])
    assert got.shape == (2500,) and got.dtype == np.float32
    np.testing.assert_allclose(got, x[pick] @ q, atol=1e-6)
    assert index.score(q, np.array([], np.int64)).shape == (0,)
    with pytest.raises(ValueError, match="not in the 128-D index"):
        index.score(q, np.array([ids[0], 10_000_001]))


def test_score_many_scores_each_query_with_its_own_ids_and_pads_with_minus_inf():
    index, ids, x, rng = _filled(seed=3)
    q = _unit(rng, 3, 64)
    pick = rng.integers(0, ids.size, (3, 40))
    want = np.einsum("qd,qmd->qm", q, x[pick])
    got_ids = ids[pick].copy()
    got_ids[1, ::3] = -1  # padding from an approximate screen
    got = index.score_many(q, got_ids)
    assert got.dtype == np.float32 and got.shape == (3, 40)
    pad = got_ids < 0
    np.testing.assert_allclose(got[~pad], want[~pad], atol=1e-6)
    assert np.isneginf(got[pad]).all()
    index.remove(ids[pick[2, :5]])  # storage rows move: the row table follows
    np.testing.assert_allclose(index.score_many(q[:1], ids[pick[2:3, 5:]]),
                               q[:1] @ x[pick[2, 5:]].T, atol=1e-6)
    with pytest.raises(ValueError, match="not in the 64-D index"):
        index.score_many(q[:1], ids[pick[2:3, :5]])
    with pytest.raises(ValueError, match="ids must have shape"):
        index.score_many(q, ids[:5][None, :])
    empty = VectorIndex.empty(64)
    assert np.isneginf(empty.score_many(q[:1], np.full((1, 4), -1))).all()
    assert empty.score_many(q[:0], np.zeros((0, 0), np.int64)).shape == (0, 0)


@given(st.lists(st.integers(0, 3), min_size=2, max_size=30), st.integers(0, 2**31))
def test_ties_by_id_orders_each_run_of_equal_scores_like_lexsort(levels, seed):
    rng = np.random.default_rng(seed)
    scores = -np.sort(-np.array([levels, levels[::-1]], np.float32), axis=1)
    ids = np.stack([rng.permutation(100)[: len(levels)] for _ in range(2)]).astype(np.int64)
    want = np.take_along_axis(ids, np.lexsort((ids, -scores), axis=1), 1)
    _ties_by_id(scores, ids)
    np.testing.assert_array_equal(ids, want)


def test_single_query_rescoring_split_over_more_parts_than_cores(monkeypatch):
    import faiss

    index, ids, x, rng = _filled(n=3001, dim=32)
    q = _unit(rng, 1, 32)
    monkeypatch.setattr(faiss, "omp_get_max_threads", lambda: 4)  # 3001 rows: 4 uneven parts
    got = index.score_many(q, ids[None, ::-1])
    np.testing.assert_allclose(got[0], x[::-1] @ q[0], atol=1e-6)


def test_add_remove_ids():
    index, ids, x, rng = _filled(n=50)
    assert index.ntotal == 50 and index.dim == 64
    np.testing.assert_array_equal(index.ids(), np.sort(ids))
    with pytest.raises(ValueError, match="already"):
        index.add(ids[:1], x[:1])
    with pytest.raises(ValueError, match="more than once"):
        index.add(np.array([20_000, 20_000]), _unit(rng, 2, 64))
    with pytest.raises(ValueError):
        index.add(np.array([20_001]), _unit(rng, 1, 32))
    assert index.ntotal == 50
    gone = ids[:10]
    assert index.remove(np.concatenate([gone, [123_456]])) == 10
    assert index.remove(np.array([], np.int64)) == 0
    keep = np.sort(ids[10:])
    np.testing.assert_array_equal(index.ids(), keep)
    assert index.contains(np.array([ids[0], ids[10]])).tolist() == [False, True]
    # remaining vectors still line up with their ids
    np.testing.assert_allclose(index.reconstruct(ids[10:]), x[10:], atol=0)
    q = x[20]
    s, i = index.search(q[None], 1)
    assert i[0, 0] == ids[20]
    # removed id can be added again
    index.add(gone[:1], x[:1])
    assert index.contains(gone[:1]).all() and index.ntotal == 41


@pytest.mark.parametrize("n", [0, 40])
def test_save_load_round_trip(tmp_path, n):
    rng = np.random.default_rng(3)
    index = VectorIndex.empty(192)
    ids = np.arange(n, dtype=np.int64) * 2 + 1
    x = _unit(rng, n, 192)
    index.add(ids, x)
    path = tmp_path / "index-192.faiss"
    index.save(path)
    back = VectorIndex.load(path, 192)
    assert back.ntotal == n and back.dim == 192
    np.testing.assert_array_equal(back.ids(), ids)
    np.testing.assert_array_equal(back.reconstruct(ids), x)
    assert [p.name for p in tmp_path.iterdir()] == ["index-192.faiss"]


def test_load_errors(tmp_path):
    with pytest.raises(IndexOutOfDateError, match="missing"):
        VectorIndex.load(tmp_path / "nope.faiss", 64)
    bad = tmp_path / "bad.faiss"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(IndexOutOfDateError, match="bad.faiss") as e:
        VectorIndex.load(bad, 64)
    assert "\n" not in str(e.value)
    good = tmp_path / "good.faiss"
    VectorIndex.empty(64).save(good)
    with pytest.raises(IndexOutOfDateError, match="dimension 64, expected 128"):
        VectorIndex.load(good, 128)
    import faiss

    flat = tmp_path / "flat.faiss"
    faiss.write_index(faiss.IndexFlatIP(64), str(flat))
    with pytest.raises(IndexOutOfDateError, match="IndexIDMap2"):
        VectorIndex.load(flat, 64)


def test_failed_save_leaves_old_file(tmp_path, monkeypatch):
    import faiss

    index, ids, x, _ = _filled(n=20)
    path = tmp_path / "index-64.faiss"
    index.save(path)
    before = path.read_bytes()
    index.remove(ids[:5])

    def half_write(idx, fname):
        with open(fname, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(faiss, "write_index", half_write)
    with pytest.raises(RuntimeError):
        index.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert VectorIndex.load(path, 64).ntotal == 20
    assert [p.name for p in tmp_path.iterdir()] == ["index-64.faiss"]


def test_reconstruct_follows_adds_and_removes_in_any_order():
    index, ids, x, rng = _filled(seed=5)
    pick = rng.permutation(ids.size)[:50]
    np.testing.assert_array_equal(index.reconstruct(ids[pick]), x[pick])
    index.remove(ids[pick[:10]])
    with pytest.raises(ValueError, match="not in"):
        index.reconstruct(ids[pick[:1]])
    np.testing.assert_array_equal(index.reconstruct(ids[pick[10:]]), x[pick[10:]])
    new_ids = np.array([20_001, 20_000], np.int64)
    new_x = _unit(rng, 2, 64)
    index.add(new_ids, new_x)
    np.testing.assert_array_equal(index.reconstruct(new_ids[::-1]), new_x[::-1])
    np.testing.assert_array_equal(index.reconstruct(ids[pick[-5:]]), x[pick[-5:]])

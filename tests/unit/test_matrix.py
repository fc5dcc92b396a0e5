"""The full-precision vector matrix: exact prefix scores, search, removal, append-only saves."""

import numpy as np
import pytest

from speakerdb.errors import IndexOutOfDateError
from speakerdb.index import matrix as matrix_mod
from speakerdb.index.matrix import MatrixState, VectorMatrix, matrix_files
from speakerdb.model.prefixes import DIMS, prefix


def _raw(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 256)) * rng.uniform(0.5, 3, (n, 1))).astype(np.float32)


def _brute(raw, ids, q, d, k):
    s = q @ prefix(raw, d).T
    order = np.lexsort((np.broadcast_to(ids, s.shape), -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, 1), ids[order]


def test_scores_every_prefix_exactly_from_one_row():
    raw, ids = _raw(300), np.arange(1, 301) * 3
    m = VectorMatrix(DIMS)
    m.add(ids[:200], raw[:200])
    m.add(ids[200:], raw[200:])
    q = {d: prefix(_raw(4, 1), d) for d in DIMS}
    pick = np.array([[3, 30, -1, 900], [600, 3, 9, -1], [12, 15, 18, 21], [-1, -1, -1, 6]])
    for d in DIMS:
        got = m.score_many(d, q[d], pick)
        want = np.einsum("qd,qmd->qm", q[d], prefix(raw[np.maximum(pick // 3 - 1, 0)], d))
        np.testing.assert_allclose(got[pick >= 0], want[pick >= 0], atol=2e-6)
        assert np.all(got[pick < 0] == -np.inf)
        np.testing.assert_allclose(m.reconstruct(d, ids[[5, 250]]), prefix(raw[[5, 250]], d),
                                   atol=1e-6)
    with pytest.raises(ValueError, match="not held"):
        m.score_many(64, q[64][:1], np.array([[4]]))
    with pytest.raises(ValueError, match="not one of"):
        m.score_many(100, np.zeros((1, 100), np.float32), np.array([[3]]))


def test_rejects_duplicate_ids():
    m = VectorMatrix(DIMS)
    m.add([1, 2], _raw(2))
    with pytest.raises(ValueError, match="already held"):
        m.add([3, 2], _raw(2))
    with pytest.raises(ValueError, match="more than once"):
        m.add([5, 5], _raw(2))
    assert m.ntotal == 2


def test_search_matches_brute_force_across_blocks_parts_and_removals(tmp_path, monkeypatch):
    from speakerdb.index import matrix_search

    monkeypatch.setattr(matrix_mod, "SEARCH_BLOCK", 37)
    monkeypatch.setattr(matrix_search, "SEARCH_BLOCK", 37)
    raw, ids = _raw(500, 2), np.arange(10, 510)
    m = VectorMatrix(DIMS)
    m.add(ids[:300], raw[:300])
    m.save(tmp_path, None)  # the first 300 rows now mapped from disk
    m.add(ids[300:], raw[300:])
    gone = ids[::7]
    assert m.remove(np.r_[gone, 99999]) == gone.size
    live = ~np.isin(ids, gone)
    q = _raw(6, 3)
    for d in DIMS:
        s, i = m.search(d, prefix(q, d), 25)
        ws, wi = _brute(raw[live], ids[live], prefix(q, d), d, 25)
        np.testing.assert_array_equal(i, wi)
        np.testing.assert_allclose(s, ws, atol=2e-6)
    assert m.ntotal == live.sum() and np.array_equal(m.ids(), ids[live])
    assert m.search(256, prefix(q, 256), 10_000)[1].shape == (6, live.sum())


def test_equal_scores_rank_the_smaller_id_first():
    m = VectorMatrix((2, 4))
    v = np.array([[1, 0, 0, 0]], np.float32)
    m.add([50, 7, 30, 9], np.repeat(v, 4, axis=0) * np.array([[1], [1], [2], [1]], np.float32))
    s, i = m.search(4, v, 3)
    assert i.tolist() == [[7, 9, 30]] and np.allclose(s, 1)


def test_saves_append_and_reload_mapped(tmp_path):
    raw, ids = _raw(120, 4), np.arange(1, 121)
    m = VectorMatrix(DIMS)
    m.add(ids[:100], raw[:100])
    first = m.save(tmp_path, None)
    files = matrix_files(tmp_path, first.epoch)
    assert files["vectors"].stat().st_size == 100 * 256 * 4
    inode = files["vectors"].stat().st_ino
    m.add(ids[100:], raw[100:])
    m.remove([5])
    second = m.save(tmp_path, first)
    assert second.epoch == first.epoch and files["vectors"].stat().st_ino == inode  # appended
    assert (second.rows, second.deleted, len(second.parts)) == (120, 1, 2)
    back = VectorMatrix.load(tmp_path, DIMS, MatrixState.from_dict(second.to_dict()))
    assert isinstance(back._saved.x, np.memmap)
    assert np.array_equal(back.ids(), np.delete(ids, 4))
    q = prefix(_raw(2, 5), 128)
    np.testing.assert_array_equal(back.search(128, q, 9)[1], m.search(128, q, 9)[1])
    assert back.checksum_problems(tmp_path) == []


def test_rows_of_an_uncommitted_save_are_never_read_and_cut_next_time(tmp_path):
    raw, ids = _raw(30, 6), np.arange(1, 31)
    m = VectorMatrix(DIMS)
    m.add(ids[:10], raw[:10])
    committed = m.save(tmp_path, None)
    m.add(ids[10:20], raw[10:20])
    m.save(tmp_path, committed)  # killed before its JSON: still `committed` on disk
    back = VectorMatrix.load(tmp_path, DIMS, committed)
    assert back.ntotal == 10
    back.add(ids[20:], raw[20:])
    state = back.save(tmp_path, committed)
    again = VectorMatrix.load(tmp_path, DIMS, state)
    assert np.array_equal(again.ids(), np.r_[ids[:10], ids[20:]])
    assert matrix_files(tmp_path, state.epoch)["vectors"].stat().st_size == 20 * 256 * 4
    assert again.checksum_problems(tmp_path) == []


def test_another_writers_save_means_a_new_epoch_and_old_files_untouched(tmp_path):
    raw, ids = _raw(40, 7), np.arange(1, 41)
    a = VectorMatrix(DIMS)
    a.add(ids[:20], raw[:20])
    s1 = a.save(tmp_path, None)
    b = VectorMatrix.load(tmp_path, DIMS, s1)
    b.add(ids[20:30], raw[20:30])
    s2 = b.save(tmp_path, s1)  # another process appended and committed
    assert s2.epoch == s1.epoch
    old = matrix_files(tmp_path, s2.epoch)["vectors"].read_bytes()
    assert len(old) == 30 * 256 * 4
    a.add(ids[20:], raw[20:])
    s3 = a.save(tmp_path, s2)  # a did not load s2: it must not write into s2's rows
    assert s3.epoch == s2.epoch + 1
    assert matrix_files(tmp_path, s2.epoch)["vectors"].read_bytes() == old
    assert np.array_equal(VectorMatrix.load(tmp_path, DIMS, s3).ids(), ids)
    assert [p.name for p in a.stale_files(tmp_path)] == [
        f"vectors-{s1.epoch}.{x}" for x in ("f32", "ids", "norms")]


def test_many_removals_compact_the_files(tmp_path):
    raw, ids = _raw(50, 8), np.arange(1, 51)
    m = VectorMatrix(DIMS)
    m.add(ids, raw)
    s1 = m.save(tmp_path, None)
    m.remove(ids[:5])
    s2 = m.save(tmp_path, s1)
    assert (s2.epoch, s2.rows, s2.deleted) == (s1.epoch, 50, 5)
    m.remove(ids[5:12])
    s3 = m.save(tmp_path, s2)
    assert (s3.epoch, s3.rows, s3.deleted) == (s1.epoch + 1, 38, 0)
    back = VectorMatrix.load(tmp_path, DIMS, s3)
    assert np.array_equal(back.ids(), ids[12:])
    np.testing.assert_allclose(back.reconstruct(192, ids[12:]), prefix(raw[12:], 192), atol=1e-6)


def test_damage_is_found(tmp_path):
    m = VectorMatrix(DIMS)
    m.add(np.arange(1, 11), _raw(10, 9))
    state = m.save(tmp_path, None)
    path = matrix_files(tmp_path, state.epoch)["vectors"]
    data = bytearray(path.read_bytes())
    data[1000] ^= 0x40
    path.write_bytes(bytes(data))
    assert len(VectorMatrix.load(tmp_path, DIMS, state).checksum_problems(tmp_path)) == 1
    path.write_bytes(bytes(data[:500]))
    with pytest.raises(IndexOutOfDateError, match="needs"):
        VectorMatrix.load(tmp_path, DIMS, state)
    with pytest.raises(ValueError):
        MatrixState.from_dict({"rows": 3, "deleted": 4, "epoch": 1})


def test_a_reader_of_an_older_description_sees_its_own_removals(tmp_path):
    """Removals name a new file per count: a description keeps naming the list it committed,
    whatever was removed since (a new row that sorts first included)."""
    m = VectorMatrix(DIMS)
    ids = np.arange(1, 101)
    m.add(ids, _raw(100, 10))
    s1 = m.save(tmp_path, None)
    m.remove([51, 61])
    s2 = m.save(tmp_path, s1)
    m.remove([6])
    s3 = m.save(tmp_path, s2)
    old = VectorMatrix.load(tmp_path, DIMS, s2)  # read before the last save
    assert np.array_equal(old.ids(), np.setdiff1d(ids, [51, 61]))
    assert np.array_equal(VectorMatrix.load(tmp_path, DIMS, s3).ids(),
                          np.setdiff1d(ids, [6, 51, 61]))
    assert [p.name for p in m.stale_files(tmp_path)] == [f"vectors-{s1.epoch}-2.deleted"]


def test_a_loaded_matrix_still_refuses_ids_it_holds(tmp_path):
    m = VectorMatrix(DIMS)
    m.reserve(10)
    m.add(np.arange(1, 6), _raw(5, 11))
    m.add(np.arange(6, 11), _raw(5, 12))  # ascending batches: no lookup needed
    back = VectorMatrix.load(tmp_path, DIMS, m.save(tmp_path, None))
    with pytest.raises(ValueError, match="id 10 is already held"):
        back.add([12, 10], _raw(2, 13))
    back.remove([3])
    back.add([3, 11], _raw(2, 14))  # a removed id may come back
    assert np.array_equal(back.ids(), np.arange(1, 12))


def test_a_matrix_compacted_to_nothing_takes_new_rows(tmp_path):
    m = VectorMatrix(DIMS)
    m.add([1, 2, 3], _raw(3, 15))
    s1 = m.save(tmp_path, None)
    back = VectorMatrix.load(tmp_path, DIMS, s1)
    back.remove([1, 2, 3])
    s2 = back.save(tmp_path, s1)  # every row removed: rewritten empty under a new epoch
    assert (s2.rows, s2.epoch) == (0, s1.epoch + 1)
    back.add([2], _raw(1, 16))
    assert np.array_equal(back.ids(), [2])


def test_max_id_follows_adds_removals_and_saves(tmp_path):
    m = VectorMatrix(DIMS)
    assert m.max_id() == 0
    m.add(np.array([7, 3, 11]), _raw(3))
    assert m.max_id() == 11
    m.remove([11])
    assert m.max_id() == 7  # the largest live id, not the largest row's
    m.ids()  # with the sorted ids cached, the answer comes from them
    m.remove([7])
    assert m.max_id() == 3
    state = m.save(tmp_path, None)
    loaded = VectorMatrix.load(tmp_path, DIMS, state)
    assert loaded.max_id() == 3
    loaded.add(np.array([20]), _raw(1, 2))
    assert loaded.max_id() == 20
    loaded.remove([3, 20])
    assert loaded.max_id() == 0

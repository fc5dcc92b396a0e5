"""Saved vectors against their description (``vectors.json``) and the store: checksums, file
sizes, every vector at the precision of the copy that holds it."""

import json

import numpy as np
import pytest

from speakerdb.errors import IndexOutOfDateError
from speakerdb.index import IndexSet, read_info
from speakerdb.index.checks import NAMED, ROWS_TOLERANCE, SCREEN_TOLERANCE
from speakerdb.index.matrix import matrix_files
from speakerdb.model.prefixes import prefix

SHA = "a1" * 32
REV = "rev1"
WIDTH = 256  # floats per row of vectors-<epoch>.f32
SAVED_AGAIN = "vectors: saved again during the check (another process is writing); run check again"


@pytest.fixture
def store():
    rng = np.random.default_rng(11)
    ids = np.arange(1, 201, dtype=np.int64)
    return ids, (rng.standard_normal((200, 256)) * 3).astype(np.float32)


@pytest.fixture
def home(tmp_path, store):
    ids, raw = store
    IndexSet.build(tmp_path, ids, raw, SHA, REV).save(SHA, REV, int(ids[-1]))
    return tmp_path


def _check(directory, store, quick: bool, chunk: int = 64, sample=slice(None, None, 50)):
    """A quick check compares the vectors of ``store[0][sample]`` (by default rows 0, 50, 100
    and 150); a full one every vector, ``chunk`` at a time, and the checksums."""
    ids, raw = store
    saved = IndexSet.load(directory)
    if quick:
        return saved.problems(ids, int(ids[-1]), SHA, REV, raw_sample=(ids[sample], raw[sample]))
    chunks = ((ids[a:a + chunk], raw[a:a + chunk]) for a in range(0, ids.size, chunk))
    return saved.problems(ids, int(ids[-1]), SHA, REV, vectors=chunks, checksums=True)


def _files(directory) -> dict:
    return matrix_files(directory, read_info(directory / "vectors.json").matrix.epoch)


def _overwrite_row(directory, segment: int, new: np.ndarray) -> None:
    """Write ``new`` (256 floats) over the saved row of ``segment``, in place (same file)."""
    files = _files(directory)
    row_ids = np.fromfile(files["ids"], dtype="<i8")
    [row] = np.flatnonzero(row_ids == segment)
    with open(files["vectors"], "r+b") as f:
        f.seek(int(row) * WIDTH * 4)
        f.write(np.asarray(new, dtype="<f4").tobytes())


def test_a_fresh_save_passes_both_checks(home, store):
    assert _check(home, store, quick=False) == []
    assert _check(home, store, quick=True) == []


@pytest.mark.parametrize("segment, part", [(124, "0-149"), (171, "150-199")])
def test_an_overwritten_row_outside_the_sample_is_found_by_the_full_check(tmp_path, store,
                                                                          segment, part):
    """Saved in two parts (150 rows, then 50 appended): the checksum line names the part that
    holds the overwritten row; the quick check finds the row only when it samples it."""
    ids, raw = store
    s = IndexSet.build(tmp_path, ids[:150], raw[:150], SHA, REV)
    s.save(SHA, REV, 150)
    s.add(ids[150:], raw[150:])
    s.save(SHA, REV, 200)
    assert [p[:2] for p in read_info(tmp_path / "vectors.json").matrix.parts] == [
        (0, 150), (150, 200)]
    assert _check(tmp_path, store, quick=False) == []

    _overwrite_row(tmp_path, segment, raw[7])
    loaded = IndexSet.load(tmp_path)  # sizes, counts and ids still agree
    assert loaded.ntotal == 200
    held = loaded.matrix.reconstruct(256, [segment])  # raw[7]'s row, scaled by the old norm
    np.testing.assert_allclose(prefix(held, 256), prefix(raw[7:8], 256), atol=1e-6)
    assert _check(tmp_path, store, quick=True) == []  # rows 0, 50, 100, 150 only
    differs = f"vectors: vector of segment {segment} differs from the store"
    assert _check(tmp_path, store, quick=True, sample=[0, segment - 1]) == [differs]
    assert _check(tmp_path, store, quick=False) == [
        differs, f"vectors: vectors-1.f32: rows {part} do not match their recorded checksum"]


def test_a_checksum_mismatch_alone_is_a_problem(home, store):
    p = home / "vectors.json"
    info = json.loads(p.read_text())
    assert info["matrix"]["parts"][0][:2] == [0, 200]
    info["matrix"]["parts"][0][2] = "0" * 64
    p.write_text(json.dumps(info))
    assert _check(home, store, quick=True) == []
    assert _check(home, store, quick=False) == [
        "vectors: vectors-1.f32: rows 0-199 do not match their recorded checksum"]


def test_a_home_in_the_layout_before_vectors_json_is_rebuilt_and_its_files_removed(home, store):
    """Per-dimension ``index-<dim>.faiss``/``.json`` files and no ``vectors.json``: there is
    no saved state, loading fails, and the first save writes the new layout over them."""
    from speakerdb.index.index_set import holds_vector_files

    ids, raw = store
    for p in home.glob("vectors*"):
        p.unlink()
    (home / "index-64.json").write_text(json.dumps({"dim": 64, "ntotal": 200, "sha256": SHA}))
    (home / "index-64.faiss").write_bytes(b"IxF2" + b"\0" * 60)
    assert holds_vector_files(home) and IndexSet.state(home) is None
    with pytest.raises(IndexOutOfDateError,
                       match=r"vectors\.json: description of the vectors is missing"):
        IndexSet.load(home)

    IndexSet.build(home, ids, raw, SHA, REV).save(SHA, REV, int(ids[-1]))
    assert sorted(p.name for p in home.iterdir()) == [
        "vectors-1.f32", "vectors-1.ids", "vectors-1.norms", "vectors.json"]
    assert _check(home, store, quick=False) == []


def test_many_differing_vectors_are_named_then_counted(home, store):
    """30 vectors differ (in their 256-D prefix only), over two chunks of the full check: the
    first NAMED are named, the rest counted, each vector once for all its prefixes."""
    ids, raw = store
    bad = raw.copy()
    bad[:30, 200] += 4.0
    got = _check(home, (ids, bad), quick=False, chunk=16)
    named = [f"vectors: vector of segment {i} differs from the store" for i in ids[:NAMED]]
    assert got == named + [f"vectors: {30 - NAMED} more vectors differ from the store"]


@pytest.mark.parametrize("key, need", [("vectors", 200 * 256 * 4), ("ids", 200 * 8),
                                       ("norms", 200 * 3 * 4)])
def test_load_rejects_a_file_shorter_than_its_description(home, store, key, need):
    p = _files(home)[key]
    assert p.stat().st_size == need
    with open(p, "ab") as f:  # rows past the committed count (a killed save) are not read
        f.write(b"\0" * 64)
    assert IndexSet.load(home).ntotal == 200 and _check(home, store, quick=False) == []
    p.write_bytes(p.read_bytes()[:need - 8])
    with pytest.raises(IndexOutOfDateError,
                       match=rf"{p.name}: {need - 8} bytes, its description needs {need}$"):
        IndexSet.load(home)
    p.unlink()
    with pytest.raises(IndexOutOfDateError, match=rf"{p.name}: vector file is missing$"):
        IndexSet.load(home)


def _ivf_screen(monkeypatch):
    """Makes every set of these tests hold a 16-bit IVF screen at 64-D."""
    from speakerdb.index import index_set
    from speakerdb.index.choose import IndexChoice

    monkeypatch.setattr(index_set, "choose_index",
                        lambda n, d, screen=None: IndexChoice("IVF16,SQfp16", "nprobe=4")
                        if d == 64 else IndexChoice("Flat"))


def test_the_ivf_screen_is_compared_at_its_own_precision(tmp_path, monkeypatch):
    """The 64-D screen stores 16-bit floats: every vector within SCREEN_TOLERANCE passes
    (though not within the rows' tolerance); a vector changed in the screen alone fails as a
    ``screen:`` line, and so does a screen file that no longer matches its checksum."""
    _ivf_screen(monkeypatch)
    rng = np.random.default_rng(3)
    ids = np.arange(1, 4001, dtype=np.int64)
    raw = rng.standard_normal((4000, 256)).astype(np.float32)
    s = IndexSet.build(tmp_path, ids, raw, SHA, REV)
    assert s.screen.choice.nlist == 16 and s.screen.tolerance == SCREEN_TOLERANCE
    s.save(SHA, REV, 4000)
    assert s.info.screen_file == "screen-64-1.faiss"
    gap = np.abs(s.screen.reconstruct(ids) - prefix(raw, 64)).max()
    assert ROWS_TOLERANCE < gap <= SCREEN_TOLERANCE
    assert _check(tmp_path, (ids, raw), quick=False, chunk=1000) == []

    # a consistent screen file, size and checksum in vectors.json, holding a wrong vector
    s.screen.remove(ids[2500:2501])
    s.screen.add(ids[2500:2501], prefix(raw[2501:2502], 64))
    s.screen.save(tmp_path / "screen-64-1.faiss")
    p = tmp_path / "vectors.json"
    info = json.loads(p.read_text())
    good_sha = info["screen_sha256"]
    from speakerdb.files.hashing import sha256_file

    info["screen_size_bytes"] = (tmp_path / "screen-64-1.faiss").stat().st_size
    info["screen_sha256"] = sha256_file(tmp_path / "screen-64-1.faiss")
    assert info["screen_sha256"] != good_sha
    p.write_text(json.dumps(info))
    assert _check(tmp_path, (ids, raw), quick=False, chunk=1000) == [
        "screen: vector of segment 2501 differs from the store"]

    info["screen_sha256"] = "0" * 64
    p.write_text(json.dumps(info))
    assert _check(tmp_path, (ids, raw), quick=False, chunk=1000) == [
        "screen: vector of segment 2501 differs from the store",
        "screen: screen-64-1.faiss does not match the checksum in vectors.json "
        "(sha256 000000000000…)"]


def test_a_save_by_another_process_during_the_check_is_named(home, store):
    """Rows that no longer match their checksum while vectors.json has moved on to another
    save are named as that save, not as damage; rows rewritten under a new epoch by another
    process leave the rows this check mapped intact."""
    ids, raw = store
    loaded = IndexSet.load(home)
    later = IndexSet.build(home, ids[:-1], raw[:-1], SHA, REV)
    later.save(SHA, REV, int(ids[-1]))  # vectors-2.*; vectors-1.* removed
    assert sorted(p.name for p in home.glob("vectors-*")) == [
        "vectors-2.f32", "vectors-2.ids", "vectors-2.norms"]
    assert loaded.problems(ids, int(ids[-1]), SHA, REV, checksums=True) == []

    loaded = IndexSet.load(home)  # epoch 2, 199 rows
    _overwrite_row(home, 5, raw[7])  # bytes under the mapping change ...
    assert loaded.problems(ids[:-1], int(ids[-1]), SHA, REV, checksums=True) == [
        "vectors: vectors-2.f32: rows 0-198 do not match their recorded checksum"]
    other = IndexSet.load(home)
    other.remove(ids[:1])
    other.save(SHA, REV, int(ids[-1]))  # ... and another process commits a save meanwhile
    assert read_info(home / "vectors.json").matrix.epoch == 2
    assert loaded.problems(ids[:-1], int(ids[-1]), SHA, REV, checksums=True) == [SAVED_AGAIN]


def test_a_screen_replaced_by_another_save_during_the_check_is_named(tmp_path, monkeypatch):
    _ivf_screen(monkeypatch)
    rng = np.random.default_rng(3)
    ids = np.arange(1, 4001, dtype=np.int64)
    raw = rng.standard_normal((4000, 256)).astype(np.float32)
    s = IndexSet.build(tmp_path, ids[:-1], raw[:-1], SHA, REV)
    s.save(SHA, REV, 3999)
    loaded = IndexSet.load(tmp_path)
    s.add(ids[-1:], raw[-1:])
    s.save(SHA, REV, 4000)  # screen-64-2.faiss; screen-64-1.faiss removed
    assert not (tmp_path / "screen-64-1.faiss").exists()
    assert loaded.problems(ids[:-1], 3999, SHA, REV, checksums=True) == [SAVED_AGAIN]

"""Index files against their JSONs and the store: checksums, sizes, every vector."""

import json

import numpy as np
import pytest

from speakerdb.errors import IndexOutOfDateError
from speakerdb.index import IndexSet, read_info
from speakerdb.index.checks import NAMED
from speakerdb.model.prefixes import DIMS, prefix

SHA = "a1" * 32
REV = "rev1"


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


def _check(directory, store, quick: bool, chunk: int = 64):
    ids, raw = store
    saved = IndexSet.load(directory)
    if quick:
        return saved.problems(ids, int(ids[-1]), SHA, REV, raw_sample=(ids[::50], raw[::50]))
    chunks = ((ids[a:a + chunk], raw[a:a + chunk]) for a in range(0, ids.size, chunk))
    return saved.problems(ids, int(ids[-1]), SHA, REV, vectors=chunks, checksums=True)


def _overwrite_row(path, vector: np.ndarray, new: np.ndarray) -> None:
    """Replace the bytes of one stored vector inside a saved flat index file."""
    data = bytearray(path.read_bytes())
    at = data.find(vector.astype("<f4").tobytes())
    assert at > 0 and data.find(vector.astype("<f4").tobytes(), at + 1) < 0
    data[at:at + new.nbytes] = new.astype("<f4").tobytes()
    path.write_bytes(bytes(data))


def test_a_fresh_save_passes_both_checks(home, store):
    assert _check(home, store, quick=False) == []
    assert _check(home, store, quick=True) == []


def test_an_overwritten_row_outside_the_sample_is_found_by_the_full_check(home, store):
    ids, raw = store
    row = 123  # the quick check samples rows 0, 50, 100, 150
    other = prefix(raw[7], 256)
    _overwrite_row(home / "index-256.faiss", prefix(raw[row], 256), other)
    assert IndexSet.load(home).by_dim[256].ntotal == 200  # size, count and ids still agree
    assert _check(home, store, quick=True) == []
    got = _check(home, store, quick=False)
    assert got == [
        "index-256: index-256.faiss does not match the checksum in index-256.json "
        f"(sha256 {read_info(home / 'index-256.json').sha256[:12]}…)",
        f"index-256: vector of segment {ids[row]} differs from the store"]


def test_a_checksum_mismatch_alone_is_a_problem(home, store):
    p = home / "index-128.json"
    info = json.loads(p.read_text())
    info["sha256"] = "0" * 64
    p.write_text(json.dumps(info))
    assert _check(home, store, quick=True) == []
    got = _check(home, store, quick=False)
    assert got == ["index-128: index-128.faiss does not match the checksum in index-128.json "
                   "(sha256 000000000000…)"]


def test_a_json_without_checksum_is_read_as_unknown(home, store):
    for d in DIMS:
        p = home / f"index-{d}.json"
        info = json.loads(p.read_text())
        del info["sha256"]
        p.write_text(json.dumps(info))
    saved = IndexSet.load(home)
    assert all(info.sha256 == "" for info in saved.infos.values())
    assert _check(home, store, quick=False) == []  # every vector still compared


def test_many_differing_vectors_are_named_then_counted(home, store):
    ids, raw = store
    bad = raw.copy()
    bad[:30, 200] += 4.0  # changes the 256-D prefix only
    got = _check(home, (ids, bad), quick=False)
    named = [f"index-256: vector of segment {i} differs from the store" for i in ids[:NAMED]]
    assert got == named + [f"index-256: {30 - NAMED} more vectors differ from the store"]


def test_load_rejects_a_file_whose_size_differs_from_its_json(home):
    p = home / "index-64.faiss"
    p.write_bytes(p.read_bytes() + b"\0" * 16)  # FAISS itself reads past the tail
    with pytest.raises(IndexOutOfDateError, match=r"index-64.faiss: \d+ bytes but "
                                                  r"index-64.json says \d+"):
        IndexSet.load(home)


def test_the_ivf_screen_is_compared_at_its_own_precision(tmp_path, monkeypatch):
    """The 64-D IVF screen stores 16-bit floats: every vector within 1e-3 passes; a row
    changed in the index fails."""
    from speakerdb.index import index_set
    from speakerdb.index.choose import IndexChoice

    rng = np.random.default_rng(3)
    ids = np.arange(1, 4001, dtype=np.int64)
    raw = rng.standard_normal((4000, 256)).astype(np.float32)
    monkeypatch.setattr(index_set, "choose_index",
                        lambda n, d, screen=64: IndexChoice("IVF16,SQfp16", "nprobe=4")
                        if d == 64 else IndexChoice("Flat"))
    s = IndexSet.build(tmp_path, ids, raw, SHA, REV)
    assert s.by_dim[64].choice.nlist == 16 and s.by_dim[64].tolerance == 1e-3
    s.save(SHA, REV, 4000)
    assert _check(tmp_path, (ids, raw), quick=False, chunk=1000) == []
    s.by_dim[64].remove(ids[2500:2501])
    s.by_dim[64].add(ids[2500:2501], prefix(raw[2501:2502], 64))
    s.save(SHA, REV, 4000)  # a consistent file, JSON and checksum holding a wrong vector
    assert _check(tmp_path, (ids, raw), quick=False, chunk=1000) == [
        "index-64: vector of segment 2501 differs from the store"]


def test_a_save_by_another_process_during_the_check_is_named(home, store):
    ids, raw = store
    loaded = IndexSet.load(home)
    later = IndexSet.build(home, ids[:-1], raw[:-1], SHA, REV)
    later.save(SHA, REV, int(ids[-1]))  # the files change under the loaded set
    got = loaded.problems(ids, int(ids[-1]), SHA, REV, checksums=True)
    assert got == [f"index-{d}: saved again during the check (another process is writing); "
                   "run check again" for d in DIMS]

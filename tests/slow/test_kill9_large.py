"""A ``kill -9`` between a store commit and the index save, on a store large enough for an IVF
screen (more than ``FLAT_MAX_VECTORS`` segments).

The store is filled straight through SQL with generated vectors, the indexes are built once,
then a child ingest commits three batches with index saves deferred (``index_flush_s`` 30 s)
and is killed while paused: the store is ahead of the saved indexes. The next open must see
it from the saved description, append just the missing segments to the same trained screen
(not retrain or rebuild a quarter of a million vectors), and the resumed ingest ends with
every file in once and ``check`` green.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speakerdb.api import SpeakerDB
from speakerdb.index import IndexSet
from speakerdb.index.choose import FLAT_MAX_VECTORS
from tests.slow.test_kill9 import (BATCH, GOOD, _rows, corpus, kill_child,  # noqa: F401
                                   speakerdb_cli, stored_inputs)

pytestmark = pytest.mark.slow

LARGE = FLAT_MAX_VECTORS + 10_000
PAUSE = 3  # batches committed before the kill


def _fill(home: Path, n: int) -> None:
    """``n`` generated 256-D segments of 2,000 speakers, written straight into the store."""
    from bench.speaker_vectors import write_store

    rng = np.random.default_rng(3)
    speaker = np.sort(rng.integers(0, 2000, n)).astype(np.int32)
    means = rng.standard_normal((2000, 256)).astype(np.float32)
    raw = means[speaker] + 0.7 * rng.standard_normal((n, 256)).astype(np.float32)
    with SpeakerDB.open(home, catch_up=False) as db:
        write_store(db.store.engine, raw, speaker)


def _centroids(home: Path, info) -> np.ndarray:
    """The trained coarse centroids of the saved IVF screen."""
    import faiss

    index = faiss.read_index(str(home / info.screen_file))
    quantizer = faiss.extract_index_ivf(index).quantizer
    return quantizer.reconstruct_n(0, quantizer.ntotal)


def test_kill9_between_store_commit_and_index_save_on_a_large_store(corpus, tmp_path):  # noqa: F811
    home = tmp_path / "home"
    SpeakerDB.create(home, model="spectral").close()
    _fill(home, LARGE)
    with SpeakerDB.open(home) as db:  # the first open builds the indexes
        assert db.indexes.count() == LARGE
    built = IndexSet.state(home)
    assert built.ntotal == LARGE and built.index_key.startswith("IVF")

    centroids = _centroids(home, built)
    synthetic = stored_inputs(home)
    kill_child(home, corpus, ("pause", PAUSE, 30.0), tmp_path / "child.log")
    assert stored_inputs(home) == synthetic + BATCH * PAUSE  # committed...
    assert IndexSet.state(home).ntotal == LARGE  # ...but never saved to the indexes

    with SpeakerDB.open(home, catch_up=False) as db:
        assert db.indexes.plan() == "append"  # seen from the saved description and the ids
    check = speakerdb_cli("check", "--quick", "--home", str(home), "--json")  # catches up first
    assert check.returncode == 0, check.stdout + check.stderr
    assert "behind the store" in json.loads(check.stdout)["notes"][0]
    with SpeakerDB.open(home) as db:
        assert db.indexes.plan() == "current"
        caught_up = db.indexes.count()
    new = _rows(home, "SELECT count(*) FROM segments")[0][0] - LARGE
    assert new >= BATCH * PAUSE - 2  # short/unreadable files hold no segment
    assert caught_up == LARGE + new
    after = IndexSet.state(home)
    assert after.ntotal == LARGE + new
    assert (after.index_key, after.index_param) == (built.index_key, built.index_param)
    np.testing.assert_array_equal(_centroids(home, after), centroids,
                                  err_msg="the screen was retrained, not appended to")

    done = speakerdb_cli("ingest", str(corpus), "--home", str(home), "--batch", str(BATCH),
                         "--quiet", "--json")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["added"] + stats["failed"] == GOOD + 2 - BATCH * PAUSE
    shas = _rows(home, "SELECT sha256, count(*) FROM recordings WHERE source != 'synthetic'"
                       " GROUP BY sha256")
    assert len(shas) == GOOD and all(n == 1 for _, n in shas)
    assert _rows(home, "SELECT count(*) FROM segments")[0][0] == LARGE + GOOD

    check = speakerdb_cli("check", "--home", str(home), "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)
    assert report["ok"] and report["counts"]["segments"] == LARGE + GOOD
    np.testing.assert_array_equal(_centroids(home, IndexSet.state(home)), centroids)

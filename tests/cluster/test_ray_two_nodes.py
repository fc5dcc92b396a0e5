"""Two Ray nodes on this machine (``tests/ray_two_nodes.py``, in a child process, beside the
session's Ray): the embedding ran on both nodes, and the database is the one a local ingest
of the same files builds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speakerdb.api import SpeakerDB
from speakerdb.config import IngestConfig
from tests.slow.test_kill9 import snapshot
from tests.synth import write_corpus

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_items_are_embedded_on_both_nodes(tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'speakerdb[ray]')")
    corpus = tmp_path / "corpus"
    write_corpus(corpus, speakers=4, utterances=4, seconds=0.8)
    local = tmp_path / "local"
    with SpeakerDB.create(local, model="spectral") as db:
        db.ingest([str(corpus)], config=IngestConfig(files_per_batch=2, workers=0))

    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    run = subprocess.run([sys.executable, "-m", "tests.ray_two_nodes", str(home), str(corpus)],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=80)
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(run.stdout.strip().splitlines()[-1])
    stats, nodes = doc["stats"], doc["nodes"]
    assert len(nodes) == 2 and len(doc["second"]) == 1 and doc["check"]
    per_node = stats["engine"]["nodes"]
    assert sorted(per_node) == nodes  # one actor on each node, each embedded some of the items
    assert all(k > 0 for k in per_node.values())
    assert sum(per_node.values()) == stats["added"] == 16
    assert snapshot(home) == snapshot(local)

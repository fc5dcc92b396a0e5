"""Without Ray installed, the ray ingest engine is an ``EngineMissing`` that says how to
install it, raised before the ingest is recorded or anything is read."""

from __future__ import annotations

import sys

import pytest

from speakerdb.api import SpeakerDB
from speakerdb.config import IngestConfig
from speakerdb.errors import EngineMissing
from tests.synth import write_corpus


def test_ingest_on_ray_without_ray(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    root = tmp_path / "corpus"
    write_corpus(root, speakers=1, utterances=2)
    with SpeakerDB.create(tmp_path / "home", model="spectral") as db:
        with pytest.raises(EngineMissing, match=r"pip install 'speakerdb\[ray\]'"):
            db.ingest([root], config=IngestConfig(engine="ray"))
        assert db.store.counts()["recordings"] == 0
        assert db.store.counts()["ingest_runs"] == 0

"""Shared fixtures: a temporary home, the spectral embedder, a tiny synthetic corpus, the real
speech set from ../shared when present, and a fresh database per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.pg import pg_server, pg_url, store_url  # noqa: F401  (fixtures)
from tests.synth import write_corpus

settings.register_profile("fast", max_examples=15, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

SPEECH_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speech-dev"


@pytest.fixture
def tmp_home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture(scope="session")
def spectral_embedder():
    from speakerdb.model.spectral import SpectralEmbedder

    return SpectralEmbedder()


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    """4 synthetic speakers x 3 utterances of 1.5 s in the folders layout."""
    root = tmp_path / "corpus"
    write_corpus(root)
    return root


@pytest.fixture
def db(tmp_home, spectral_embedder):
    from speakerdb.api import SpeakerDB

    d = SpeakerDB.create(tmp_home, model="spectral", embedder=spectral_embedder)
    yield d
    d.close()


@pytest.fixture
def speech_dev() -> Path:
    if not (SPEECH_DEV / "manifest.csv").exists():
        pytest.skip(f"real speech not found at {SPEECH_DEV} (the shared data set is absent)")
    return SPEECH_DEV


# Commands that name no model use the spectral embedder in tests; real-model tests name theirs.
os.environ["SPEAKERDB_MODEL"] = "spectral"
os.environ.pop("SPEAKERDB_DB_URL", None)  # tests name their store

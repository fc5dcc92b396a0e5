"""The Qdrant tier's tests (``test_qdrant_tier.py``) against a real Qdrant server at
``SPEAKERDB_TEST_QDRANT_URL`` (e.g. ``http://localhost:6333``); skipped without it. Each test
uses collections of its own (named from its temporary home) and deletes them afterwards."""

from __future__ import annotations

import os

import pytest

URL = os.environ.get("SPEAKERDB_TEST_QDRANT_URL")
pytestmark = pytest.mark.skipif(
    not URL, reason="SPEAKERDB_TEST_QDRANT_URL is not set: no Qdrant server to test against")

pytest.importorskip("qdrant_client", reason="the qdrant extra is not installed")

from tests.unit.test_qdrant_tier import (  # noqa: E402,F401  (fixtures and tests run here)
    corpus, pair, queries, test_check_finds_and_repair_uploads_what_differs,
    test_crash_between_store_and_upload_is_caught_up, test_manage_keeps_the_collection_in_step,
    test_other_model_layout_is_rebuilt, test_same_answers_as_faiss,
    test_same_hits_at_every_dimension)


@pytest.fixture
def qdrant_location() -> str:
    return URL


@pytest.fixture(autouse=True)
def _own_collections():
    """Delete the collections a test made on the server."""
    from qdrant_client import QdrantClient

    client = QdrantClient(url=URL, timeout=10)
    before = {c.name for c in client.get_collections().collections}
    yield
    for c in client.get_collections().collections:
        if c.name not in before and c.name.startswith("speakerdb-"):
            client.delete_collection(c.name)
    client.close()

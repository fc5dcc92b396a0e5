"""Same answers from the Qdrant tier as from the FAISS tier on real speech with the default
model: up to three files of each speaker of speech-dev (never its last) enrolled once in one store, a
FAISS home and a Qdrant home (local mode) derived from that store, and every held-back file
identified on both, exhaustively and through the cascade.

Needs the CAM++ weights and ../shared/data/speech-dev (skips with the reason otherwise), and
the qdrant extra.
"""

from __future__ import annotations

import csv

import pytest

from tests.campplus_ref import weights_or_skip

pytestmark = pytest.mark.slow

TOL = 1e-5


def test_qdrant_tier_answers_as_the_faiss_tier(speech_dev, tmp_path):
    pytest.importorskip("qdrant_client", reason="the qdrant extra is not installed")
    weights_or_skip()
    from speakerdb.api import SpeakerDB
    from speakerdb.config import CascadeConfig
    from speakerdb.model.registry import load_embedder
    from speakerdb.store.engine import home_store_url

    by_spk: dict[str, list] = {}
    with open(speech_dev / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            by_spk.setdefault(row["speaker"], []).append(speech_dev / row["path"])
    enrolled = sorted(s for s in by_spk if len(by_spk[s]) >= 2)
    manifest = tmp_path / "enroll.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "speaker"])
        for s in enrolled:
            for p in by_spk[s][:-1][:3]:  # (bounded: the suite's time)
                w.writerow([p, s])
    emb = load_embedder("campplus", "cpu")
    faiss_home, qdrant_home = tmp_path / "faiss", tmp_path / "qdrant"
    with SpeakerDB.create(faiss_home, model="campplus", embedder=emb) as db:
        assert db.ingest([manifest]).failed == 0
    store = home_store_url(faiss_home)
    faiss = SpeakerDB.open(faiss_home, embedder=emb)
    qdrant = SpeakerDB.create(qdrant_home, model="campplus", db_url=store, embedder=emb,
                              vectors="qdrant", qdrant=str(tmp_path / "collection"))
    try:
        n = faiss.store.segment_count()
        assert qdrant.indexes.count() == n and qdrant.check().ok
        configs = [CascadeConfig(top_k=10), CascadeConfig((n, n, 100), top_k=10)]
        for path in (by_spk[s][-1] for s in enrolled):
            e = faiss.embed(path)
            for cascade in configs:
                for exhaustive in (False, True):
                    a = faiss.identify_embedding(e, cascade=cascade, exhaustive=exhaustive)
                    b = qdrant.identify_embedding(e, cascade=cascade, exhaustive=exhaustive)
                    assert [c.speaker for c in a.candidates] == \
                        [c.speaker for c in b.candidates], path
                    for x, y in zip(a.candidates, b.candidates):
                        assert abs(x.score - y.score) <= TOL, (path, x, y)
                    assert a.decision == b.decision and a.speaker == b.speaker
    finally:
        faiss.close()
        qdrant.close()

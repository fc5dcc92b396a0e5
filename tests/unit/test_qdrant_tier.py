"""The Qdrant vector tier through qdrant-client's local mode (in memory and in a folder):
the same answers as the FAISS tier, catching up after a crash, speaker management, check and
repair, a locked folder and a lost server. ``test_qdrant_server.py`` runs the same tests on a
real server."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qdrant_client", reason="the qdrant extra is not installed")

from speakerdb.api import SpeakerDB  # noqa: E402
from speakerdb.config import CascadeConfig  # noqa: E402
from speakerdb.errors import Busy, VectorEngineUnavailable  # noqa: E402
from tests.synth import RATE, voice, write_corpus  # noqa: E402

SPEAKERS, UTTERANCES = 8, 3
HELD = (3, 4)  # utterances of every speaker held back as queries
TOL = 1e-5


@pytest.fixture(params=["memory", "folder"])
def qdrant_location(request, tmp_path) -> str:
    return ":memory:" if request.param == "memory" else str(tmp_path / "qdrant")


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    write_corpus(root, speakers=SPEAKERS, utterances=UTTERANCES)
    return root


@pytest.fixture
def queries(tmp_path):
    import soundfile as sf

    out = []
    for k in range(SPEAKERS):
        for j in HELD:
            p = tmp_path / "held" / f"spk{k:02d}_utt{j}.wav"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(p, voice(k, j), RATE, subtype="PCM_16")
            out.append(p)
    return out


@pytest.fixture
def pair(tmp_path, corpus, spectral_embedder, qdrant_location):
    """(FAISS database, Qdrant database) of the same corpus."""
    faiss = SpeakerDB.create(tmp_path / "faiss", model="spectral", embedder=spectral_embedder)
    faiss.ingest([corpus])
    qdrant = SpeakerDB.create(tmp_path / "qd", model="spectral", embedder=spectral_embedder,
                              vectors="qdrant", qdrant=qdrant_location)
    qdrant.ingest([corpus])
    yield faiss, qdrant
    faiss.close()
    qdrant.close()


def _same(a, b) -> None:
    assert [c.speaker for c in a.candidates] == [c.speaker for c in b.candidates]
    assert a.speaker == b.speaker and a.decision == b.decision
    for x, y in zip(a.candidates, b.candidates):
        assert abs(x.score - y.score) <= TOL, (x, y)
    assert a.segments_scored == b.segments_scored


@pytest.mark.parametrize("shortlist", [None, (20, 20, 6), (12, 9, 4)])
def test_same_answers_as_faiss(pair, queries, shortlist):
    faiss, qdrant = pair
    n = faiss.store.segment_count()
    cascade = CascadeConfig(shortlist or (n, n, n), top_k=SPEAKERS)
    for q in queries:
        for exhaustive in (False, True):
            for norm in ("none", "asnorm"):
                a = faiss.identify(q, cascade=cascade, exhaustive=exhaustive, score_norm=norm)
                b = qdrant.identify(q, cascade=cascade, exhaustive=exhaustive, score_norm=norm)
                _same(a, b)


def test_same_hits_at_every_dimension(pair, queries):
    """The cascade's hits (ids and the score at every dimension) are the FAISS tier's."""
    faiss, qdrant = pair
    cfg = CascadeConfig((15, 12, 5))
    for q in queries[:6]:
        query = faiss.space.query(faiss.embed(q).segments_raw)
        a = faiss.indexes.search_cascade(query, cfg)
        b = qdrant.indexes.search_cascade(query, cfg)
        assert [h.segment_id for h in a] == [h.segment_id for h in b]
        for x, y in zip(a, b):
            assert set(x.scores) == set(y.scores) == {64, 128, 192, 256}
            for d in x.scores:
                assert abs(x.scores[d] - y.scores[d]) <= TOL
        e_a = faiss.indexes.search_exhaustive(query[256], 7)
        e_b = qdrant.indexes.search_exhaustive(query[256], 7)
        assert [h.segment_id for h in e_a] == [h.segment_id for h in e_b]
        assert np.allclose([h.score for h in e_a], [h.score for h in e_b], atol=TOL)


def test_manage_keeps_the_collection_in_step(pair, queries):
    _, db = pair
    db.rename_speaker("spk00", "alice")
    db.merge_speakers("spk01", "spk02")
    target = db.store.speaker_segment_ids("spk02")
    points = db.indexes.client.retrieve(db.indexes.collection, [int(i) for i in target],
                                        with_payload=True)
    owners = db.store.segment_owners(target)
    assert len(points) == target.size == 2 * UTTERANCES
    assert {p.payload["speaker"] for p in points} == {owners[int(target[0])][1]}
    removed = db.delete_speaker("spk03")
    assert removed == UTTERANCES
    assert db.indexes.count() == db.store.segment_count() == (SPEAKERS - 1) * UTTERANCES
    assert db.check().ok
    r = db.identify(queries[2 * 3], exhaustive=True)  # spk03's voice: gone
    assert r.candidates and all(c.speaker != "spk03" for c in r.candidates)
    r = db.identify(queries[0])
    assert r.candidates[0].speaker == "alice"


def test_crash_between_store_and_upload_is_caught_up(tmp_path, pair, spectral_embedder,
                                                     qdrant_location, monkeypatch):
    """Segments committed to the store whose upload failed are uploaded at the next open."""
    from speakerdb.index.qdrant_tier import QdrantTier

    _, db = pair
    more = tmp_path / "more"
    write_corpus(more, speakers=2, utterances=2, first_speaker=SPEAKERS)

    def fail(self, ids, raw):
        raise RuntimeError("killed")

    monkeypatch.setattr(QdrantTier, "_upsert", fail)
    with pytest.raises(RuntimeError):
        db.ingest([more])
    monkeypatch.undo()
    n = db.store.segment_count()
    assert n == (SPEAKERS + 2) * UTTERANCES - 2  # 2 x 2 new ones were committed
    db.indexes.close()
    db.close()
    db2 = SpeakerDB.open(tmp_path / "qd", catch_up=False, embedder=spectral_embedder)
    try:
        action = db2.indexes.open(catch_up=True)
        assert action == ("rebuild" if qdrant_location == ":memory:" else "append")
        assert db2.indexes.count() == n and db2.check().ok
        assert db2.indexes.open(catch_up=True) == "current"
        r = db2.identify(more / f"spk{SPEAKERS:02d}" / "utt1.wav")
        assert r.candidates[0].speaker == f"spk{SPEAKERS:02d}" and abs(r.cosine - 1.0) < 1e-4
    finally:
        db2.close()


def test_check_finds_and_repair_uploads_what_differs(pair):
    from qdrant_client import models as m

    _, db = pair
    t = db.indexes
    ids = db.store.segment_ids()
    victim, gone, relabelled = int(ids[3]), int(ids[5]), int(ids[7])
    t.client.update_vectors(t.collection, [m.PointVectors(id=victim, vector={
        "d128": list(np.eye(128, dtype=float)[0])})], wait=True)
    t.client.delete(t.collection, m.PointIdsList(points=[gone]), wait=True)
    t.client.set_payload(t.collection, {"speaker": 999}, points=[relabelled], wait=True)
    report = db.check()
    assert not report.ok
    text = "\n".join(report.problems)
    assert f"vector of segment {victim} differs" in text
    assert "(1 missing, 0 extra)" in text
    assert f"payload of segment {relabelled} differs" in text
    quick = db.check(quick=True)
    assert not quick.ok and any("points in" in p for p in quick.problems)
    fixed = db.check(repair=True)
    assert fixed.repaired and fixed.ok and db.check().ok


def test_other_model_layout_is_rebuilt(pair, spectral_embedder):
    """A collection built for another model (its metadata says) is rebuilt at open."""
    _, db = pair
    t = db.indexes
    t.client.update_collection(t.collection, metadata={"speakerdb": {
        **t._built_for(), "model_sha256": "0" * 64, "store_generation": t.generation}})
    assert t.plan() == "rebuild"
    assert any("model sha256" in p for p in db.check().problems)
    assert t.open(catch_up=True) == "rebuild"
    assert db.check().ok


def test_follow_other_writers(tmp_path, corpus, spectral_embedder):
    """Two processes' worth of databases on one home, each with its own in-memory collection:
    one ingests, the other catches up at its next identify."""
    home = tmp_path / "mem"
    a = SpeakerDB.create(home, model="spectral", embedder=spectral_embedder, vectors="qdrant",
                         qdrant=":memory:")
    a.ingest([corpus])
    b = SpeakerDB.open(home, embedder=spectral_embedder)
    try:
        more = tmp_path / "more"
        write_corpus(more, speakers=1, utterances=2, first_speaker=SPEAKERS)
        a.ingest([more])
        r = b.identify(more / f"spk{SPEAKERS:02d}" / "utt0.wav")
        assert r.candidates[0].speaker == f"spk{SPEAKERS:02d}" and abs(r.cosine - 1) < 1e-4
        assert b.indexes.count() == a.store.segment_count()
    finally:
        a.close()
        b.close()


def test_locked_folder_is_busy(tmp_path, corpus, spectral_embedder):
    from qdrant_client import QdrantClient

    home, folder = tmp_path / "h", tmp_path / "qf"
    SpeakerDB.create(home, model="spectral", embedder=spectral_embedder, vectors="qdrant",
                     qdrant=str(folder)).close()
    other = QdrantClient(path=str(folder))
    try:
        with pytest.raises(Busy, match="open in another process"):
            SpeakerDB.open(home, embedder=spectral_embedder)
    finally:
        other.close()
    SpeakerDB.open(home, embedder=spectral_embedder).close()


def test_lost_server_is_one_clear_error(tmp_path, spectral_embedder, monkeypatch):
    monkeypatch.setenv("SPEAKERDB_QDRANT_TIMEOUT", "2")
    with pytest.raises(VectorEngineUnavailable) as e:
        SpeakerDB.create(tmp_path / "h", model="spectral", embedder=spectral_embedder,
                         vectors="qdrant", qdrant="http://127.0.0.1:9")
    assert "127.0.0.1:9" in str(e.value) and "\n" not in str(e.value)


def test_relabel_at_ingest_rewrites_payloads(pair, corpus, tmp_path):
    from speakerdb.config import IngestConfig

    _, db = pair
    manifest = tmp_path / "relabel.csv"
    manifest.write_text(f"path,speaker\n{corpus / 'spk04' / 'utt0.wav'},spk05\n")
    stats = db.ingest([manifest], config=IngestConfig(relabel=True))
    assert stats.relabelled == 1
    ids = db.store.speaker_segment_ids("spk05")
    assert ids.size == UTTERANCES + 1
    points = db.indexes.client.retrieve(db.indexes.collection, [int(i) for i in ids])
    assert len({p.payload["speaker"] for p in points}) == 1
    assert db.check().ok


def test_rotated_space_scores_as_faiss(tmp_path, corpus, queries, qdrant_location):
    """A model without nested prefixes: before the rotation one dimension (exhaustive), after
    it the rotated space's prefixes; both tiers score the same transformed vectors."""
    from tests.synth import Flat192

    emb = Flat192()
    faiss = SpeakerDB.create(tmp_path / "f", model="flat192", embedder=emb)
    qdrant = SpeakerDB.create(tmp_path / "q", model="flat192", embedder=emb, vectors="qdrant",
                              qdrant=qdrant_location)
    try:
        for db in (faiss, qdrant):
            db.ingest([corpus])
        for q in queries[:4]:
            _same(faiss.identify(q), qdrant.identify(q))
        assert faiss.fit_rotation(force=True) and qdrant.fit_rotation(force=True)
        assert faiss.space.name == qdrant.space.name != "identity"
        assert qdrant.space.dims == (64, 128, 192) and qdrant.check().ok
        cascade = CascadeConfig((10, 6), top_k=SPEAKERS)
        for q in queries:
            for exhaustive in (False, True):
                _same(faiss.identify(q, cascade=cascade, exhaustive=exhaustive),
                      qdrant.identify(q, cascade=cascade, exhaustive=exhaustive))
    finally:
        faiss.close()
        qdrant.close()


def test_slow_server_times_out_as_one_error(tmp_path, spectral_embedder, monkeypatch):
    """A server that accepts connections but never answers: bounded by the timeout."""
    import socket
    import threading
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # read nothing, answer nothing
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setenv("SPEAKERDB_QDRANT_TIMEOUT", "1")
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    t0 = time.monotonic()
    try:
        with pytest.raises(VectorEngineUnavailable, match="Qdrant at http://127.0.0.1"):
            SpeakerDB.create(tmp_path / "h", model="spectral", embedder=spectral_embedder,
                             vectors="qdrant", qdrant=url)
    finally:
        stop.set()
        thread.join()
        for c in held:
            c.close()
        listener.close()
    assert time.monotonic() - t0 < 15


def test_qdrant_tier_has_every_method_of_the_interface_with_its_signature(pair):
    import inspect

    from speakerdb.index.qdrant_tier import QdrantTier
    from speakerdb.index.tier import VectorTier

    _, db = pair
    members = {n: v for n, v in vars(VectorTier).items()
               if not n.startswith("_") and (callable(v) or isinstance(v, property))}
    for name, member in members.items():
        mine = inspect.getattr_static(QdrantTier, name)
        if isinstance(member, property):
            assert isinstance(mine, property), name
            continue
        want, got = inspect.signature(member), inspect.signature(mine)
        assert [(p.name, p.kind, p.default) for p in got.parameters.values()] == \
            [(p.name, p.kind, p.default) for p in want.parameters.values()], name
    assert isinstance(db.indexes, QdrantTier) and isinstance(db.indexes, VectorTier)

"""The seams between parts: the vector-tier interface and its registry, the ingest engines,
and the store reached only through its URL."""

from __future__ import annotations

import inspect
import io
import json
import tokenize
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from speakerdb.api import SpeakerDB
from speakerdb.errors import UnknownEngineError, UsageError
from speakerdb.index.faiss_tier import FaissTier
from speakerdb.index.tier import TIERS, VectorTier, open_tier
from speakerdb.ingest.engine import ENGINES, IngestJob, LocalEngine, ingest_engine

ROOT = Path(__file__).resolve().parents[2]


def _protocol_members():
    return {n: v for n, v in vars(VectorTier).items()
            if not n.startswith("_") and (callable(v) or isinstance(v, property))}


def test_faiss_tier_has_every_method_of_the_interface_with_its_signature(db):
    members = _protocol_members()
    assert {"add", "remove", "search_cascade", "search_exhaustive", "count", "problems",
            "rebuild", "flush", "ensure_open"} <= set(members)
    for name, member in members.items():
        mine = inspect.getattr_static(FaissTier, name)
        if isinstance(member, property):
            assert isinstance(mine, property), name
            continue
        want, got = inspect.signature(member), inspect.signature(mine)
        assert [(p.name, p.kind, p.default) for p in got.parameters.values()] == \
            [(p.name, p.kind, p.default) for p in want.parameters.values()], name
    for attribute in VectorTier.__annotations__:
        assert hasattr(db.indexes, attribute), attribute
    assert isinstance(db.indexes, FaissTier) and isinstance(db.indexes, VectorTier)


def test_a_new_home_records_its_tier_and_one_without_it_opens_faiss(tmp_home,
                                                                    spectral_embedder):
    SpeakerDB.create(tmp_home, model="spectral", embedder=spectral_embedder).close()
    hf = tmp_home / "home.json"
    info = json.loads(hf.read_text())
    assert info["vectors"] == "faiss"
    del info["vectors"]  # a home made before the tier was recorded
    hf.write_text(json.dumps(info))
    with SpeakerDB.open(tmp_home, embedder=spectral_embedder) as db:
        assert type(db.indexes) is FaissTier


class RecordingTier(FaissTier):
    """A FAISS tier that records the calls ingest, identify and delete make."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, object]] = []

    def add(self, ids, raw, generation=None):
        self.calls.append(("add", np.asarray(ids).copy()))
        super().add(ids, raw, generation)

    def remove(self, ids):
        self.calls.append(("remove", np.asarray(ids).copy()))
        super().remove(ids)

    def search_cascade(self, query, config):
        hits = super().search_cascade(query, config)
        self.calls.append(("search_cascade", len(hits)))
        return hits

    def search_exhaustive(self, query, k):
        hits = super().search_exhaustive(query, k)
        self.calls.append(("search_exhaustive", k))
        return hits


def test_the_tier_home_json_names_is_the_one_ingest_identify_and_delete_use(
        tmp_home, tiny_corpus, spectral_embedder, monkeypatch):
    monkeypatch.setitem(TIERS, "recording", RecordingTier)
    SpeakerDB.create(tmp_home, model="spectral", embedder=spectral_embedder).close()
    hf = tmp_home / "home.json"
    hf.write_text(json.dumps({**json.loads(hf.read_text()), "vectors": "recording"}))
    with SpeakerDB.open(tmp_home, embedder=spectral_embedder) as db:
        tier = db.indexes
        assert type(tier) is RecordingTier
        db.ingest([tiny_corpus])
        added = np.concatenate([ids for what, ids in tier.calls if what == "add"])
        assert np.array_equal(np.sort(added), db.store.segment_ids())
        assert tier.count() == db.store.counts()["segments"] > 0
        probe = next((tiny_corpus / "spk01").iterdir())
        result = db.identify(probe)
        assert result.speaker == "spk01" and result.mode == "cascade"
        assert tier.calls[-1] == ("search_cascade", result.segments_scored)
        db.identify(probe, exhaustive=True)
        assert tier.calls[-1][0] == "search_exhaustive"
        removed = db.delete_speaker("spk02")
        assert tier.calls[-1][0] == "remove" and len(tier.calls[-1][1]) == removed > 0


def test_an_unknown_tier_in_home_json_is_a_usage_error(tmp_home, spectral_embedder):
    from speakerdb.cli.main import app

    SpeakerDB.create(tmp_home, model="spectral", embedder=spectral_embedder).close()
    hf = tmp_home / "home.json"
    hf.write_text(json.dumps({**json.loads(hf.read_text()), "vectors": "milvus"}))
    with pytest.raises(UnknownEngineError, match="unknown vector tier 'milvus'"):
        SpeakerDB.open(tmp_home, embedder=spectral_embedder)
    assert issubclass(UnknownEngineError, UsageError)
    result = CliRunner().invoke(app, ["stats", "--home", str(tmp_home), "--json"])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2
    assert len(lines) == 1 and lines[0].startswith("speakerdb: error: ")
    assert "unknown vector tier 'milvus'" in lines[0] and "faiss" in lines[0]
    with pytest.raises(UnknownEngineError):
        open_tier("milvus", tmp_home, None, "", "", None)


def test_an_unknown_ingest_engine_is_a_usage_error():
    assert isinstance(ingest_engine("local"), LocalEngine) and set(ENGINES) == {"local", "ray"}
    with pytest.raises(UnknownEngineError, match="unknown ingest engine 'spark' "
                                                 r"\(known: local, ray\)"):
        ingest_engine("spark")


def _content(db):
    ids, raw = db.store.all_vectors()
    refs = db.store.segment_refs(ids.tolist())
    rows = sorted((refs[i].speaker or "", tuple(np.round(v, 6))) for i, v in
                  zip(ids.tolist(), raw))
    counts = db.store.counts()
    counts.pop("ingest_runs")  # SpeakerDB.ingest records its run; the pipeline alone does not
    return counts, rows


def test_the_local_engine_builds_the_database_the_pipeline_did(tmp_path, tiny_corpus,
                                                               spectral_embedder):
    from speakerdb.audio.gates import gate_batches, gated_policy
    from speakerdb.config import IngestConfig
    from speakerdb.ingest.reader import Reader
    from speakerdb.ingest.runner import Runner, embed_segments
    from speakerdb.ingest.sources import discover
    from speakerdb.ingest.writer import StoreWriter

    with SpeakerDB.create(tmp_path / "a", model="spectral", embedder=spectral_embedder) as a:
        stats = a.ingest([tiny_corpus])
        engine_built = _content(a)
    with SpeakerDB.create(tmp_path / "b", model="spectral", embedder=spectral_embedder) as b:
        b.indexes.ensure_open()
        items = discover([str(tiny_corpus)], "auto", IngestConfig().extensions)
        gate = b.gates.min_enroll_s
        reader = Reader(items, b.store.known_recordings, gated_policy(b.policy, gate), 32,
                        embed=lambda segs: embed_segments(spectral_embedder, segs, 16),
                        labels=b.store.recording_labels)
        by_hand = Runner(gate_batches(reader, gate, b.policy), spectral_embedder,
                         StoreWriter(b.store, b.indexes, None), 16).run()
        b.indexes.flush(force=True)
        pipeline_built = _content(b)
        assert b.check().ok
    assert (stats.added, stats.segments, stats.failed) == \
        (by_hand.added, by_hand.segments, by_hand.failed)
    assert stats.added == 12 and stats.segments >= 12
    assert engine_built == pipeline_built
    job = IngestJob(items, spectral_embedder, b.policy, gate, lambda shas: set())
    assert job.files_per_batch == 32 and job.embed_batch == 16 and not job.relabel


ALLOWED = {"speakerdb/store/engine.py", "speakerdb/store/models.py"}


def _sqlite_mentions(path: Path) -> list[str]:
    """Code (names and string literals, not comments or prose) that assumes SQLite."""
    out = []
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    for tok in tokens:
        if tok.type == tokenize.NAME and "sqlite" in tok.string.lower():
            out.append(f"{path.relative_to(ROOT)}:{tok.start[0]}: {tok.string}")
        elif tok.type == tokenize.STRING and ("sqlite" in tok.string or "PRAGMA" in tok.string):
            out.append(f"{path.relative_to(ROOT)}:{tok.start[0]}: {tok.string[:40]}")
    return out


def test_only_the_engine_module_knows_the_store_is_sqlite():
    found = [m for p in sorted((ROOT / "speakerdb").rglob("*.py"))
             if str(p.relative_to(ROOT)) not in ALLOWED
             and "migrations" not in p.relative_to(ROOT).parts
             for m in _sqlite_mentions(p)]
    assert not found, "\n".join(found)
    assert _sqlite_mentions(ROOT / "speakerdb/store/engine.py")  # the check can see them


def test_the_store_is_reached_through_its_url(db):
    from speakerdb.store.engine import home_store_url, redact

    assert db.store.url == home_store_url(db.home)
    assert redact(db.store.url) == db.store.url  # no password to hide

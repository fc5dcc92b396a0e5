"""The command line on a database whose vector tier is Qdrant (qdrant-client's local mode in
a folder): init records it, every command works on it, and a missing extra or a lost server
is one error line."""

from __future__ import annotations

import json
import sys

import pytest


def test_commands_on_the_qdrant_tier(cli, corpus, tmp_path, new_utterances):
    pytest.importorskip("qdrant_client", reason="the qdrant extra is not installed")
    root, files = corpus
    home, folder = tmp_path / "home", tmp_path / "qdrant"
    doc = cli("init", "--home", home, "--vectors", "qdrant", "--qdrant", folder,
              "--collection", "voices", "--json").json()
    assert doc["vectors"] == "qdrant" and doc["created"]
    saved = json.loads((home / "home.json").read_text())
    assert saved["vectors"] == "qdrant"
    assert saved["qdrant"] == {"location": str(folder.resolve()), "collection": "voices"}
    assert cli("ingest", root, "--home", home, "--json", "-q").json()["added"] == 12
    for exhaustive in ([], ["--exhaustive"]):
        [r] = cli("identify", new_utterances["spk02"], "--home", home, "--json",
                  *exhaustive).json()["results"]
        assert r["candidates"][0]["speaker"] == "spk02"
    stats = cli("stats", "--home", home, "--json").json()
    assert stats["vectors"]["collection"] == "voices" and stats["vectors"]["ntotal"] == 12
    assert "Qdrant collection voices" in cli("stats", "--home", home).stdout
    assert cli("check", "--home", home, "--json").json()["ok"]
    cli("speakers", "rename", "spk00", "zed", "--home", home)
    cli("speakers", "delete", "spk01", "--home", home)
    assert cli("check", "--home", home, "--json").json()["ok"]
    assert cli("stats", "--home", home, "--json").json()["vectors"]["ntotal"] == 9
    # damage the collection: check fails (exit 1), --repair uploads it again
    from qdrant_client import QdrantClient, models as m

    client = QdrantClient(path=str(folder))
    some = [int(p.id) for p in client.scroll("voices", limit=2)[0]]
    client.delete("voices", m.PointIdsList(points=some), wait=True)
    client.close()
    bad = cli("check", "--home", home, "--json", expect=1).json()
    assert any("7 points" in p for p in bad["problems"])
    assert cli("check", "--home", home, "--repair", "--json").json()["repaired"]
    assert cli("check", "--home", home, "--json").json()["ok"]


def test_missing_extra_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "qdrant_client", None)  # import fails as if absent
    home = tmp_path / "home"
    run = cli("init", "--home", home, "--vectors", "qdrant", "--qdrant", ":memory:", expect=2)
    assert "pip install 'speakerdb[qdrant]'" in run.error_line()
    assert not (home / "home.json").exists()


def test_unknown_tier_and_lost_server(cli, tmp_path, monkeypatch):
    run = cli("init", "--home", tmp_path / "a", "--vectors", "milvus", expect=2)
    assert "unknown vector tier 'milvus'" in run.error_line()
    pytest.importorskip("qdrant_client", reason="the qdrant extra is not installed")
    monkeypatch.setenv("SPEAKERDB_QDRANT_TIMEOUT", "2")
    run = cli("init", "--home", tmp_path / "b", "--vectors", "qdrant", "--qdrant",
              "http://127.0.0.1:9", expect=None)
    assert run.exit_code == 2
    assert "Qdrant at http://127.0.0.1:9" in run.error_line()

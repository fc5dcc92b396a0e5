"""`speakerdb models`: list and fetch, offline (a local file stands in for the download)."""

import hashlib
import json

from speakerdb.model.campplus import weights


def test_list_json_names_builtin_and_cache(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SPEAKERDB_CACHE", str(tmp_path / "cache"))
    doc = cli("models", "list", "--json").json()
    assert "spectral" in doc["builtin"] and doc["cache"] == str(tmp_path / "cache")
    assert doc["cached"] == []


def test_fetch_from_a_wrong_local_file_is_refused(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SPEAKERDB_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "campplus.pt"
    fake.write_bytes(b"not the weights")
    run = cli("models", "fetch", "campplus", "--from", fake, expect=2)
    assert "sha256" in run.error_line() or "size" in run.error_line()
    assert not (tmp_path / "cache" / "campplus_cn_en_common.pt").exists()


def test_fetch_from_the_right_local_file(cli, tmp_path, monkeypatch):
    payload = b"pretend weights"
    spec = weights.WeightsSpec(name=weights.CAMPPLUS.name, sha256=hashlib.sha256(payload).hexdigest(),
                               size=len(payload), sources=[], env_var=None)
    monkeypatch.setattr(weights, "CAMPPLUS", spec)
    monkeypatch.setenv("SPEAKERDB_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "w.pt"
    src.write_bytes(payload)
    doc = cli("models", "fetch", "--from", src, "--json").json()
    assert doc["sha256"] == spec.sha256 and doc["bytes"] == len(payload)
    assert (tmp_path / "cache" / spec.name).read_bytes() == payload
    assert json.loads(json.dumps(doc))["name"] == "campplus"


def test_fetch_unknown_name(cli):
    assert "nothing to fetch" in cli("models", "fetch", "b9-foo", expect=2).error_line()

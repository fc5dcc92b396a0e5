"""A read-only home: identify, stats and check work without writing anything (indexes
behind the store catch up in memory); commands that change the database say the home is
read-only, in one line."""

from __future__ import annotations

import shutil

import pytest

from tests.readonly import read_only
from tests.synth import write_corpus


def snapshot(home):
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(home.iterdir())}


def answers(cli, home, probes):
    res = cli("identify", *probes, "--home", home, "--json").json()["results"]
    return [(r["decision"], r["speaker"], round(r["score"], 6)) for r in res]


def test_reads_work_on_a_read_only_home(cli, built, home_copy, new_utterances):
    probes = list(new_utterances.values())
    want = answers(cli, home_copy, probes)
    stats = cli("stats", "--home", home_copy, "--json").json()
    before = snapshot(home_copy)
    with read_only(home_copy):
        assert answers(cli, home_copy, probes) == want
        assert cli("stats", "--home", home_copy, "--json").json() == stats
        doc = cli("check", "--home", home_copy, "--json").json()
        assert doc["ok"] and doc["counts"] == stats["counts"]
        assert cli("speakers", "list", "--home", home_copy, "--json").json()["speakers"]
        a, b = built.files["spk00"][:2]
        assert cli("verify", a, b, "--home", home_copy, "--json").json()["decision"]
    assert snapshot(home_copy) == before


def test_a_read_only_home_behind_its_store_catches_up_in_memory(cli, home_copy, tmp_path,
                                                                 new_utterances):
    saved = tmp_path / "saved-indexes"
    saved.mkdir()
    for p in [*home_copy.glob("vectors*"), *home_copy.glob("screen-*")]:
        shutil.copy2(p, saved / p.name)
    extra = write_corpus(tmp_path / "extra", speakers=2, first_speaker=8)
    cli("ingest", tmp_path / "extra", "--home", home_copy, "-q")
    probe = extra["spk09"][0]
    want = answers(cli, home_copy, [probe, *new_utterances.values()])
    assert want[0][:2] == ("match", "spk09")
    for p in saved.iterdir():  # the indexes as they were before that ingest: behind the store
        shutil.copy2(p, home_copy / p.name)
    before = snapshot(home_copy)
    with read_only(home_copy):
        assert answers(cli, home_copy, [probe, *new_utterances.values()]) == want
        doc = cli("check", "--home", home_copy, "--json", expect=1).json()
        assert not doc["ok"] and doc["counts"]["recordings"] == 18
    assert snapshot(home_copy) == before
    assert answers(cli, home_copy, [probe]) == want[:1]  # writable again: caught up for good
    assert cli("check", "--home", home_copy, "--json").json()["ok"]


@pytest.mark.parametrize("args", [
    ["ingest", "CORPUS", "-q"],
    ["enroll", "zoe", "PROBE"],
    ["speakers", "delete", "spk00"],
    ["speakers", "rename", "spk00", "ann"],
    ["recordings", "delete", "PROBE"],
    ["check", "--repair"],
])
def test_changes_to_a_read_only_home_say_it_is_read_only(cli, built, home_copy, args):
    probe = built.files["spk00"][0]
    args = [{"CORPUS": built.corpus, "PROBE": probe}.get(a, a) for a in args]
    if args[0] == "check":
        (home_copy / "vectors.json").unlink()  # something to repair
    before = snapshot(home_copy)
    with read_only(home_copy):
        run = cli(*args, "--home", home_copy, expect=None)
        assert run.exit_code in (1, 2), run
        line = run.error_line()
        assert "read-only" in line and str(home_copy) in line
        assert "internal error" not in line
    assert snapshot(home_copy) == before

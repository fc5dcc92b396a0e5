"""``speakerdb trials`` and ``speakerdb eval`` (verification) on a small real set, with the
spectral test model: numbers in a sane range, valid PNG plots, errors as one line."""

from __future__ import annotations

import csv
import struct

import numpy as np
import pytest

from speakerdb.eval.metrics import eer

pytestmark = pytest.mark.slow

SPEAKERS = 12


@pytest.fixture(scope="module")
def small_set(speech_dev_module, tmp_path_factory):
    """A manifest of the first SPEAKERS speakers with at least 3 files (paths absolute)."""
    by_spk: dict[str, list[dict]] = {}
    with open(speech_dev_module / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            by_spk.setdefault(row["speaker"], []).append(row)
    chosen = [s for s in sorted(by_spk) if len(by_spk[s]) >= 3][:SPEAKERS]
    out = tmp_path_factory.mktemp("evalset") / "manifest.csv"
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "speaker", "source"])
        for s in chosen:
            for r in by_spk[s][:4]:
                w.writerow([speech_dev_module / r["path"], s, r["source"]])
    return out


@pytest.fixture(scope="module")
def speech_dev_module():
    from tests.conftest import SPEECH_DEV

    if not (SPEECH_DEV / "manifest.csv").exists():
        pytest.skip(f"real speech not found at {SPEECH_DEV} (the shared data set is absent)")
    return SPEECH_DEV


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_trials_deterministic_and_strict(cli, small_set, tmp_path):
    a = cli("trials", small_set, "-o", tmp_path / "a.txt", "--json").json()
    cli("trials", small_set, "-o", tmp_path / "b.txt")
    assert (tmp_path / "a.txt").read_text() == (tmp_path / "b.txt").read_text()
    assert a["targets"] == a["nontargets"] > 0
    strict = cli("trials", small_set, "-o", tmp_path / "s.txt", "--exclude-same-recording",
                 "--json").json()
    assert strict["targets"] < a["targets"]
    other = cli("trials", small_set, "-o", tmp_path / "c.txt", "--seed", "7", "--json").json()
    assert other["targets"] == a["targets"]
    assert (tmp_path / "c.txt").read_text() != (tmp_path / "a.txt").read_text()


def test_eval_verification_numbers_and_plots(cli, small_set, tmp_path):
    trials = tmp_path / "trials.txt"
    cli("trials", small_set, "-o", trials)
    root = small_set.parent
    doc = cli("eval", "--trials", trials, "--root", root, "--labels", small_set,
              "--model", "spectral", "--condition", "clean", "--condition",
              "crop=1,babble=2,snr=5", "--cohort-files", small_set, "--plot", tmp_path / "plots",
              "--json").json()
    assert doc["mode"] == "verification" and doc["targets"] > 0
    (m,) = doc["models"]
    assert m["model"]["name"] == "spectral"
    clean = m["conditions"]["clean"]
    hard = m["conditions"]["crop=1,babble=2,snr=5"]
    assert clean["skipped"] == 0 and clean["scored"] == doc["trials"]
    for d in ("64", "128", "192", "256"):
        c, h = clean["dims"][d]["none"], hard["dims"][d]["none"]
        assert 0.0 <= c["eer"] < 25.0, c  # the spectral model separates these voices roughly
        assert h["eer"] > c["eer"], (d, c, h)  # 1 s in babble is harder than clean whole files
        for key in ("min_dcf_0.01", "min_dcf_0.05"):
            assert 0.0 <= c[key] <= 1.0
        assert "asnorm" in clean["dims"][d]
    pngs = sorted((tmp_path / "plots").glob("*.png"))
    assert len(pngs) == 8 and {str(p) for p in pngs} == set(doc["plots"])
    for p in pngs:
        w, h = _png_size(p)
        assert w > 300 and h > 300


def test_eval_matches_direct_scores(cli, small_set, tmp_path):
    """The clean 256-D EER equals one computed from `speakerdb embed` vectors directly."""
    trials = tmp_path / "trials.txt"
    cli("trials", small_set, "-o", trials, "--targets-per-file", "2",
        "--nontargets-per-file", "2")
    doc = cli("eval", "--trials", trials, "--root", small_set.parent, "--model", "spectral",
              "--json").json()
    lines = [ln.split() for ln in trials.read_text().splitlines()]
    files = sorted({p for _, a, b in lines for p in (a, b)})
    emb = cli("embed", *[small_set.parent / f for f in files], "--model", "spectral",
              "--json").json()
    vec = {f: np.asarray(r["embeddings"]["256"]) for f, r in zip(files, emb["results"],
                                                                 strict=True)}
    s = np.array([vec[a] @ vec[b] for _, a, b in lines])
    t = np.array([lab == "1" for lab, _, _ in lines])
    want = 100 * eer(s[t], s[~t])
    got = doc["models"][0]["conditions"]["clean"]["dims"]["256"]["none"]["eer"]
    assert got == pytest.approx(want, abs=1e-3)


@pytest.mark.parametrize("args, needle", [
    ([], "either --trials"),
    (["--trials", "T", "--probes", "P"], "either --trials"),
    (["--trials", "T", "--condition", "crop=0"], "crop"),
    (["--trials", "T", "--condition", "babble=2"], "snr"),
])
def test_eval_usage_errors(cli, tmp_path, args, needle):
    (tmp_path / "T").write_text("1 a.wav b.wav\n0 a.wav c.wav\n")
    args = [str(tmp_path / a) if a in ("T", "P") else a for a in args]
    run = cli("eval", *args, "--model", "spectral", expect=2)
    assert needle in run.error_line()


def test_eval_missing_audio_is_one_line(cli, tmp_path):
    (tmp_path / "T").write_text("1 a.wav b.wav\n0 a.wav c.wav\n")
    run = cli("eval", "--trials", tmp_path / "T", "--model", "spectral", expect=2)
    line = run.error_line()
    assert "3 file(s) not found" in line and "a.wav" in line


def test_eval_identification(cli, small_set, tmp_path):
    """Gallery: every file but the last of 8 speakers; probes: those last files (known) and
    every file of the other 4 speakers (unknown)."""
    rows = list(csv.DictReader(open(small_set, newline="")))
    speakers = sorted({r["speaker"] for r in rows})
    known = set(speakers[:8])
    gallery, probes = tmp_path / "gallery.csv", tmp_path / "probes.csv"
    with open(gallery, "w", newline="") as g, open(probes, "w", newline="") as p:
        gw, pw = csv.writer(g), csv.writer(p)
        gw.writerow(["path", "speaker"])
        pw.writerow(["path", "speaker"])
        for s in speakers:
            files = [r["path"] for r in rows if r["speaker"] == s]
            for f in files[:-1] if s in known else []:
                gw.writerow([f, s])
            for f in files[-1:] if s in known else files:
                pw.writerow([f, s])
    home = tmp_path / "home"
    cli("init", "--home", home, "--model", "spectral")
    cli("ingest", gallery, "--layout", "manifest", "--home", home)
    doc = cli("eval", "--probes", probes, "--home", home, "--condition", "clean",
              "--aggregation", "max", "--aggregation", "mean", "--json").json()
    assert doc["mode"] == "identification" and doc["gallery"]["speakers"] == 8
    clean = doc["conditions"]["clean"]
    assert clean["known"] == 8 and clean["unknown"] == len(probes.read_text().splitlines()) - 9
    for d in ("64", "256"):
        for rule in ("max", "mean"):
            r = clean["dims"][d][rule]
            assert 0.5 <= r["top1"] <= r["top5"] <= 1.0, r
            assert set(r["dir"]) == {"0.01", "0.1"}
    assert clean["cascade"]["recall_at_1"] == 1.0
    op = clean["dims"]["256"]["max"]["operating_point"]
    assert op["threshold_source"].startswith("model default, a guess")
    assert (op["known"], op["unknown"]) == (8, clean["unknown"])
    text = cli("eval", "--probes", probes, "--home", home, "--gallery-sizes", "4,8").stdout
    assert "top-1" in text and "cascade" in text
    assert "identify's operating point (256-D max)" in text
    assert "gallery of 4 speakers (max, 5 draws)" in text
    line = cli("eval", "--probes", probes, "--home", home, "--gallery-sizes", "x",
               expect=2).error_line()
    assert "--gallery-sizes" in line
    run = cli("eval", "--probes", probes, "--home", home, "--plot", tmp_path / "p", expect=2)
    assert "--trials" in run.error_line()

"""Identification evaluation against a database: exhaustive per-speaker scores checked against a
direct numpy computation, open-set DIR, leave-one-out, the cascade comparison, conditions."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import speakerdb.eval.identification as ident
from speakerdb.api import SpeakerDB
from speakerdb.eval.conditions import CLEAN, parse_condition
from speakerdb.eval.embed import EmbeddingCache, Job
from speakerdb.eval.identification import NO_SCORE, evaluate_identification
from speakerdb.eval.metrics import dir_at_fpir
from speakerdb.eval.trials import LabelledFile
from speakerdb.search.cascade import Hit
from speakerdb.search.decision import aggregate
from tests.synth import RATE, Flat192, voice, write_corpus

FPIRS = (0.1, 0.5)
RULES = ("max", "mean", "top2", "topk", "centroid")
DIMS = (64, 128, 192, 256)


def _write(path, samples):
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, RATE, subtype="PCM_16")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, spectral_embedder):
    """Gallery: spk00-spk03 (3 files each) and spk04/utt0 only. Probes: every corpus file,
    a copy of spk00/utt0 under another path, and a file too short to embed."""
    base = tmp_path_factory.mktemp("ident")
    root = base / "corpus"
    write_corpus(root, speakers=6, utterances=3)
    shutil.copy(root / "spk00" / "utt0.wav", root / "copy.wav")
    _write(root / "tiny.wav", voice(1, 7, seconds=0.3))
    gallery = [f"spk{k:02d}/utt{j}.wav" for k in range(4) for j in range(3)] + ["spk04/utt0.wav"]
    (root / "gallery.csv").write_text(
        "path,speaker\n" + "".join(f"{p},{p.split('/')[0]}\n" for p in gallery))
    db = SpeakerDB.create(base / "home", model="spectral", embedder=spectral_embedder)
    db.ingest([root / "gallery.csv"])
    probes = [LabelledFile(f"spk{k:02d}/utt{j}.wav", f"spk{k:02d}", f"spk{k:02d}/utt{j}.wav")
              for k in range(6) for j in range(3)]
    probes += [LabelledFile("copy.wav", "spk00", "copy.wav"),
               LabelledFile("tiny.wav", "spk01", "tiny.wav")]
    yield db, root, probes
    db.close()


class Direct:
    """Per-speaker scores by numpy cosine over the store's vectors, leaving out stored
    recordings that are the probe file (same resolved path or same bytes)."""


    def __init__(self, db, root):
        self.db, self.root = db, root
        self.ids, self.raw = db.store.all_vectors()
        self.refs = db.store.segment_refs(self.ids)

    def own(self, probe) -> set[int]:
        mine = self.root / probe.path
        return {sid for sid, r in self.refs.items()
                if os.path.realpath(r.path) == os.path.realpath(mine)
                or open(r.path, "rb").read() == mine.read_bytes()}

    def ranking(self, probe, q, rule="max"):
        """(speakers best first, their scores) for the probe vector ``q`` (dim,)."""
        d = q.shape[0]
        g = self.raw[:, :d] / np.linalg.norm(self.raw[:, :d], axis=1, keepdims=True)
        s, skip = g @ q, self.own(probe)
        per: dict[str, list[int]] = {}
        for i, sid in enumerate(self.ids.tolist()):
            if sid not in skip:
                per.setdefault(self.refs[sid].speaker, []).append(i)

        def score(rows):
            if rule == "centroid":
                c = g[rows].astype(np.float64).mean(axis=0)
                return float(c @ q / np.linalg.norm(c))
            best = sorted((float(s[i]) for i in rows), reverse=True)
            return float(np.mean(best[:{"max": 1, "top2": 2, "topk": 3}.get(rule, len(best))]))

        ranked = sorted((-score(rows), spk) for spk, rows in per.items())
        return [spk for _, spk in ranked], [-x for x, _ in ranked]


def _probe_vectors(db, root, probes, cond):
    """{path: {dim: vector}}: clean probes by ``db.embed``, degraded ones by an EmbeddingCache."""
    if cond.is_clean:
        return {p.path: db.embed(root / p.path).nested for p in probes if p.path != "tiny.wav"}
    cache = EmbeddingCache(db.embedder, root, probes)
    cache.ensure([Job(p.path, cond) for p in probes])
    return {path: v for (path, _), v in cache.vectors.items()}


def _reference(direct, probes, vectors, dim, rule):
    """Direct top-1, top-3 accuracy and DIR over the probes that embed (known: speaker left)."""
    known, unknown = [], []
    for p in probes:
        if p.path not in vectors:
            continue
        spk, sc = direct.ranking(p, vectors[p.path][dim], rule)
        (known if p.speaker in spk else unknown).append((spk[0] == p.speaker, sc[0], spk, p))
    top1 = np.mean([c for c, *_ in known])
    top3 = np.mean([p.speaker in spk[:3] for _, _, spk, p in known])
    dirs = {str(f): dir_at_fpir([s for _, s, *_ in known], [c for c, *_ in known],
                                [s for _, s, *_ in unknown], f) for f in FPIRS}
    return top1, top3, dirs, len(known), len(unknown)


@pytest.mark.parametrize("name", ["clean", "babble=3,snr=-5"])
def test_metrics_equal_a_direct_computation(setup, name):
    db, root, probes = setup
    cond = parse_condition(name)
    out = evaluate_identification(db, probes, root, [cond], rules=RULES, top_k=3, fpirs=FPIRS)
    assert out["gallery"] == {"speakers": 5, "segments": 13, "space": "identity",
                              "dims": list(DIMS), "scoring": "exact"}
    json.dumps(out, allow_nan=False)
    c = out["conditions"][name]
    assert (c["probes"], c["known"], c["unknown"], c["failed"]) == (20, 15, 4, 1)
    assert c["failures"] == {"too short": 1}
    assert c["left_out"] == 14 and c["notes"] == []
    direct, vectors = Direct(db, root), _probe_vectors(db, root, probes, cond)
    seen = set()
    for d in DIMS:
        for rule in RULES:
            top1, top3, dirs, nk, nu = _reference(direct, probes, vectors, d, rule)
            assert (nk, nu) == (15, 4)
            m = c["dims"][str(d)][rule]
            assert m["top1"] == pytest.approx(top1) and m["top3"] == pytest.approx(top3)
            for f, (rate, thr) in dirs.items():
                assert m["dir"][f] == pytest.approx(rate)
                assert m["thresholds"][f] == pytest.approx(thr, abs=1e-5)
            seen.add((m["top1"], m["dir"]["0.5"]))
    if name != "clean":
        assert min(seen) < (0.5, 0.5)  # hard enough that the metrics are not all 1


def test_every_probe_ranking_equals_brute_force(setup):
    db, root, probes = setup
    g, direct = ident._load_gallery(db), Direct(db, root)
    vectors = _probe_vectors(db, root, probes, CLEAN)
    scored = [p for p in probes if p.path in vectors]
    own = [ident._own_segments(g, root / p.path) for p in scored]
    assert [set(o.tolist()) for o in own] == [direct.own(p) for p in scored]
    for d in DIMS:
        q = np.stack([vectors[p.path][d] for p in scored])
        for rule in RULES:
            codes, top = ident._score_dim(db, g, q, own, [rule], 5, 3)[rule]
            for i, p in enumerate(scored):
                spk, sc = direct.ranking(p, q[i], rule)
                assert [g.labels[k] for k in codes[i] if k >= 0] == spk[:5]
                assert top[i] == pytest.approx(sc[0], abs=1e-5)


def test_vectorised_rules_equal_aggregate():
    rng = np.random.default_rng(0)
    g = ident._Gallery(np.arange(1, 8), None, np.array([0, 0, 0, 1, 1, 2, 2]),
                       np.array([0, 3, 5]), ["a", "b", "c"],
                       dict(zip(range(1, 8), "aaabbcc")), {}, {}, {}, 7)
    s = rng.choice([0.1, 0.5, 0.5, 0.9], size=(40, 7)).astype(np.float32)
    valid = rng.random((40, 7)) > 0.3
    for rule in ("max", "mean", "top2", "topk"):
        got = ident._rule_scores(s, valid, g, rule, 2 if rule == "top2" else 3, None)
        for i in range(len(s)):
            hits = [Hit(int(x), float(v), {}) for x, v, ok in zip(g.ids, s[i], valid[i]) if ok]
            want = {c.speaker: c.score for c in aggregate(hits, g.label_of, rule, k=3)}
            for k, label in enumerate(g.labels):
                assert got[i, k] == pytest.approx(want.get(label, -np.inf))


def test_centroid_leaves_the_probe_recording_out():
    gal = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
    g = ident._Gallery(np.arange(3), None, np.array([0, 0, 1]), np.array([0, 2]), ["a", "b"],
                       {}, {}, {}, {}, 3)
    sums = np.add.reduceat(gal.astype(np.float64), g.starts, axis=0)
    q = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    own = [np.zeros(0, np.int64), np.array([1]), np.array([2])]
    got = ident._centroid(q, gal, sums, g, own)
    np.testing.assert_allclose(got[0], [np.sqrt(0.5), 0.6], atol=1e-6)
    np.testing.assert_allclose(got[1], [1.0, 0.6], atol=1e-6)  # (1, 0) alone is left of "a"
    assert got[2, 0] == pytest.approx(np.sqrt(0.5)) and got[2, 1] == -np.inf


def test_leave_one_out_never_scores_the_probe_against_itself(setup):
    db, root, probes = setup
    lone = [p for p in probes if p.path in ("spk04/utt0.wav", "copy.wav", "spk02/utt1.wav")]
    out = evaluate_identification(db, lone, root, fpirs=(0.5,))
    c = out["conditions"]["clean"]
    assert (c["known"], c["unknown"], c["left_out"]) == (2, 1, 3)  # spk04 has nothing else
    for d in DIMS:
        thr = c["dims"][str(d)]["max"]["thresholds"]["0.5"]
        assert thr < 0.999  # its own recording (cosine 1) is left out
    g = ident._load_gallery(db)
    assert all(ident._own_segments(g, root / p.path).size == 1 for p in lone)
    assert ident._own_segments(g, root / "spk05/utt0.wav").size == 0


def test_the_gallery_is_the_one_identify_scores_against(setup):
    db, root, _ = setup
    g, whole = ident._load_gallery(db), db.scorer.gallery()
    row = {int(i): k for k, i in enumerate(whole.ids.tolist())}
    rows = [row[int(i)] for i in g.ids]
    np.testing.assert_array_equal(g.vectors, whole.vectors[rows])
    assert [g.labels[c] for c in g.code] == [whole.labels[r] for r in rows]
    assert g.total == len(whole.ids) == db.store.segment_count()
    # copy.wav is stored under another path: found by its content
    np.testing.assert_array_equal(ident._own_segments(g, root / "copy.wav"),
                                  ident._own_segments(g, root / "spk00/utt0.wav"))


def test_cascade_agrees_with_exhaustive_and_is_timed(setup):
    db, root, probes = setup
    cas = evaluate_identification(db, probes, root)["conditions"]["clean"]["cascade"]
    assert cas["dim"] == 256 and cas["rule"] == "max" and cas["probes"] == 19
    assert cas["recall_at_1"] == 1.0 and cas["speaker_agreement"] == 1.0
    assert cas["cascade_ms"] > 0 and cas["exhaustive_ms"] > 0


def test_index_scoring_above_the_limit_matches_exact(setup, monkeypatch):
    db, root, probes = setup
    kw = {"rules": RULES, "fpirs": FPIRS}
    exact = evaluate_identification(db, probes, root, **kw)
    monkeypatch.setattr(ident, "EXACT_LIMIT", 0)
    index = evaluate_identification(db, probes, root, **kw)
    assert index["gallery"]["scoring"] == "index"
    for d in DIMS:
        for rule in kw["rules"]:
            a = exact["conditions"]["clean"]["dims"][str(d)][rule]
            b = index["conditions"]["clean"]["dims"][str(d)][rule]
            assert a["top1"] == b["top1"] and a["dir"] == b["dir"]
            for f in a["thresholds"]:
                assert a["thresholds"][f] == pytest.approx(b["thresholds"][f], abs=1e-5)


def _without_timing(doc):
    for c in doc["conditions"].values():
        c["cascade"].pop("cascade_ms"), c["cascade"].pop("exhaustive_ms")
    return doc


def test_degraded_condition_changes_scores_deterministically(setup):
    db, root, probes = setup
    conds = (CLEAN, parse_condition("crop=1"), parse_condition("babble=2,snr=5"))
    one = _without_timing(evaluate_identification(db, probes, root, conds, fpirs=FPIRS))
    two = _without_timing(evaluate_identification(db, probes, root, conds, fpirs=FPIRS))
    assert one == two
    assert set(one["conditions"]) == {"clean", "crop=1", "babble=2,snr=5"}
    clean = one["conditions"]["clean"]["dims"]["256"]["max"]["thresholds"]
    for name in ("crop=1", "babble=2,snr=5"):
        assert one["conditions"][name]["dims"]["256"]["max"]["thresholds"] != clean
    assert one["conditions"]["crop=1"]["failed"] == 0  # a crop tiles the short file


def test_given_cache_is_used_and_unknown_rules_are_noted(setup):
    db, root, probes = setup
    cache = EmbeddingCache(db.embedder, root, probes)
    out = evaluate_identification(db, probes, root, rules=("max", "median", "max"), cache=cache)
    assert len(cache.vectors) == 19 and len(cache.errors) == 1
    assert out["rules"] == ["max"] and len(out["notes"]) == 1 and "'median'" in out["notes"][0]
    plain = evaluate_identification(db, probes, root)
    assert _without_timing(out)["conditions"] == _without_timing(plain)["conditions"]


def test_no_unknown_probes_gives_none_with_a_note(setup):
    db, root, probes = setup
    out = evaluate_identification(db, probes[:6], root)["conditions"]["clean"]
    assert out["unknown"] == 0 and out["notes"] == ["no unknown probes"]
    assert out["dims"]["64"]["max"]["dir"] == {"0.01": None, "0.1": None}
    assert out["dims"]["64"]["max"]["top1"] is not None


def test_rotated_space_queries_go_through_the_rotation(tmp_path):
    write_corpus(tmp_path / "g", speakers=4, utterances=3)
    for k in range(6):
        _write(tmp_path / "p" / f"spk{k:02d}" / "x.wav", voice(k, 8))
    probes = [LabelledFile(f"spk{k:02d}/x.wav", f"spk{k:02d}", "x") for k in range(6)]
    with SpeakerDB.create(tmp_path / "h", model="flat192", embedder=Flat192()) as db:
        db.ingest([tmp_path / "g"])
        assert db.fit_rotation(force=True) and db.space.dims == (64, 128, 192)
        root = tmp_path / "p"
        given = EmbeddingCache(db.embedder, root, probes)
        out = evaluate_identification(db, probes, root, cache=given, fpirs=(0.5,))
        c = out["conditions"]["clean"]
        assert set(c["dims"]) == {"64", "128", "192"} and (c["known"], c["unknown"]) == (4, 2)
        assert c["cascade"]["recall_at_1"] == 1.0
        cache = ident._cache_for(db, probes, root, given)
        assert cache is not given
        cache.ensure([Job(p.path) for p in probes])
        _, raw = db.store.all_vectors()
        for d in (64, 128, 192):
            gal = db.space.nested(raw)[d]
            tops = []
            for p in probes:
                want = db.space.query(db.embed(root / p.path).segments_raw)[d]
                got = cache.vectors[(p.path, "clean")][d]
                np.testing.assert_allclose(got, want, atol=1e-6)
                tops.append(float((gal @ want).max()))
            unknown = tops[4:]
            assert c["dims"][str(d)]["max"]["thresholds"]["0.5"] == pytest.approx(
                float(np.nextafter(np.float64(min(unknown)), np.inf)), abs=1e-5)
        assert NO_SCORE < -1


def test_operating_point_and_gallery_sizes_equal_a_direct_computation(setup):
    """FPIR and DIR at the threshold identify would choose (no oracle), for the whole gallery
    and for sub-galleries (a gallery of every speaker equals the operating point)."""
    from speakerdb.search.thresholds import identify_threshold

    db, root, probes = setup
    out = evaluate_identification(db, probes, root, [CLEAN], rules=("max", "mean"),
                                  gallery_sizes=(2, 5, 9), draws=3)
    c = out["conditions"]["clean"]
    direct, vectors = Direct(db, root), _probe_vectors(db, root, probes, CLEAN)
    for rule in ("max", "mean"):
        op = c["dims"]["256"][rule]["operating_point"]
        thr = identify_threshold(db, None, "none", rule, 3, 256)
        assert op["threshold"] == pytest.approx(thr.value) and \
            op["threshold_source"] == thr.source
        assert op["threshold_source"].startswith("model default, a guess")  # 5 speakers
        known, unknown = [], []
        for p in probes:
            if p.path not in vectors:
                continue
            spk, sc = direct.ranking(p, vectors[p.path][256], rule)
            if p.speaker in spk:
                known.append(spk[0] == p.speaker and sc[0] >= thr.value)
            else:
                unknown.append(sc[0] >= thr.value)
        assert op["fpir"] == pytest.approx(np.mean(unknown))
        assert op["dir"] == pytest.approx(np.mean(known))
        assert (op["known"], op["unknown"]) == (15, 4)
        whole = c["gallery_sizes"]["5"][rule]
        assert (whole["fpir"], whole["dir"]) == pytest.approx((op["fpir"], op["dir"]))
        assert (whole["known"], whole["unknown"], whole["draws"]) == (45, 12, 3)
        two = c["gallery_sizes"]["2"][rule]
        assert two["known"] + two["unknown"] == 57 and two["unknown"] > whole["unknown"]
    assert "64" in c["dims"] and "operating_point" not in c["dims"]["64"]["max"]
    assert c["gallery_sizes"]["9"] == {"note": "the gallery has 5 speakers"}
    json.dumps(out, allow_nan=False)

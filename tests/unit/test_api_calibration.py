"""SpeakerDB.calibrate, the threshold identify/verify use and report, AS-norm at query time,
the centroid/topk rules against the store, and the enrollment/query duration gates."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speakerdb.api import SpeakerDB
from speakerdb.audio import Waveform
from speakerdb.config import ASNORM_DEFAULT_THRESHOLD, CascadeConfig, DurationGates, IngestConfig
from speakerdb.errors import SilentAudioError, TooShortError, UsageError
from speakerdb.eval.calibrate import calibrate
from speakerdb.model.prefixes import prefix
from speakerdb.search.asnorm import STD_FLOOR, Cohort
from speakerdb.search.leave_one_out import loo_scores
from tests.homes import synthetic_home
from tests.synth import RATE, voice, write_corpus


def wave(speaker, utterance, seconds=1.5):
    return Waveform(voice(speaker, utterance, seconds), RATE)


@pytest.fixture(scope="module")
def big_home(tmp_path_factory, spectral_embedder):
    """8 synthetic speakers x 4 utterances: enough nontargets (224) for a 1 % FAR."""
    return synthetic_home(tmp_path_factory.mktemp("cal"), 8, 4, spectral_embedder)


@pytest.fixture
def cal_db(big_home, tmp_path, spectral_embedder):
    import shutil

    home = tmp_path / "home"
    shutil.copytree(big_home, home)
    with SpeakerDB.open(home, embedder=spectral_embedder) as db:
        yield db


def direct_scores(db, rule="max"):
    ids, raw = db.store.all_vectors()
    refs = db.store.segment_refs(ids)
    labels = [refs[int(i)].speaker for i in ids]
    recs = [refs[int(i)].path for i in ids]
    return loo_scores(prefix(raw, 256), labels, recs, rule)


# calibration ---------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", ["max", "centroid"])
def test_calibrate_far_matches_a_direct_computation(cal_db, rule):
    target, nontarget = direct_scores(cal_db, rule)
    assert (target.size, nontarget.size) == (32, 224)
    want = calibrate(target, nontarget, target_far=0.01, dim=256)
    got = cal_db.calibrate(0.01, rule=rule)
    assert got.threshold == pytest.approx(want.threshold, abs=1e-6)
    assert (got.method, got.targets, got.nontargets, got.dim) == ("far=0.01", 32, 224, 256)
    assert (got.far, got.frr) == pytest.approx((want.far, want.frr), abs=1e-9)
    assert got.far <= 0.01
    stored = cal_db.store.get_setting("threshold")
    assert stored["value"] == got.threshold and stored["method"] == "far=0.01"
    assert stored["aggregation"] == rule and stored["score_norm"] == "none"


def test_calibrate_eer_matches_and_recalibrating_replaces(cal_db):
    first = cal_db.calibrate(0.01)
    want = calibrate(*direct_scores(cal_db), method="eer", dim=256)
    got = cal_db.calibrate(eer=True)
    assert got.threshold == pytest.approx(want.threshold, abs=1e-6)
    assert got.method == "eer" and got.threshold != first.threshold
    assert cal_db.store.get_setting("threshold")["method"] == "eer"
    assert cal_db.threshold() == got.threshold
    v = cal_db.verify(wave(2, 50), wave(2, 51))
    assert v.threshold == got.threshold
    assert v.threshold_source == "calibrated eer (32 targets, 224 nontargets)"
    r = cal_db.identify(wave(2, 50))  # a verification threshold is not for identify
    assert r.threshold_source.startswith("model default, a guess")


def test_verify_uses_and_reports_the_far_calibration_and_identify_does_not(cal_db):
    r0 = cal_db.identify(wave(1, 50))
    assert r0.threshold == 0.8 and r0.threshold_source.startswith("model default, a guess: ")
    assert "fewer than 10 labelled speakers" in r0.threshold_source
    cal = cal_db.calibrate(0.01)
    v = cal_db.verify(wave(1, 50), wave(1, 51))
    assert (v.threshold, v.threshold_source) == \
        (cal.threshold, "calibrated far=0.01 (32 targets, 224 nontargets)")
    assert cal_db.identify(wave(1, 50)).threshold == 0.8
    assert cal_db.identify(wave(1, 50), threshold=0.5).threshold_source == "given"
    # the same database opened again reads it back
    cal_db.close()
    with SpeakerDB.open(cal_db.home) as again:
        assert again.verify(wave(1, 50), wave(1, 51)).threshold == cal.threshold


def test_a_calibration_is_only_used_in_its_own_score_space(cal_db):
    cal = cal_db.calibrate(0.05, score_norm="asnorm")
    assert cal.score_norm == "asnorm"
    plain = cal_db.verify(wave(3, 50), wave(3, 51))
    assert plain.threshold == 0.8
    assert plain.threshold_source == "model default (the calibration is for score-norm asnorm)"
    normed = cal_db.verify(wave(3, 50), wave(3, 51), score_norm="asnorm")
    assert normed.threshold == cal.threshold
    assert normed.threshold_source.startswith("calibrated far=0.05 (")


def test_asnorm_calibration_matches_its_leave_one_out_definition(cal_db):
    ids, raw = cal_db.store.all_vectors()
    refs = cal_db.store.segment_refs(ids)
    t, n = loo_scores(prefix(raw, 256), [refs[int(i)].speaker for i in ids],
                      [refs[int(i)].path for i in ids], "topk", 2, score_norm="asnorm")
    want = calibrate(t, n, target_far=0.02, score_norm="asnorm")
    got = cal_db.calibrate(0.02, score_norm="asnorm", rule="topk", agg_k=2)
    assert got.threshold == pytest.approx(want.threshold, abs=1e-5)
    assert cal_db.store.get_setting("threshold")["aggregation"] == "topk:2"


def test_older_stored_forms_are_still_read(cal_db):
    cal_db.store.set_setting("threshold", {"value": 0.55})
    assert cal_db.threshold() == 0.55
    r = cal_db.verify(wave(0, 50), wave(0, 51))
    assert (r.threshold, r.threshold_source) == (0.55, "calibrated")
    cal_db.store.set_setting("threshold", 0.6)
    assert cal_db.threshold() == 0.6


def test_calibration_needs_two_speakers_and_a_genuine_pair(tmp_path, spectral_embedder):
    write_corpus(tmp_path / "one", speakers=1, utterances=3)
    with SpeakerDB.create(tmp_path / "h1", embedder=spectral_embedder) as db:
        with pytest.raises(UsageError, match="at least 2 speakers; the database has 0"):
            db.calibrate(0.01)
        db.ingest([tmp_path / "one"])
        with pytest.raises(UsageError, match="at least 2 speakers; the database has 1"):
            db.calibrate(0.01)
        with pytest.raises(UsageError, match="identification calibration needs labelled "
                                             "recordings of at least 10 speakers; the "
                                             "database has 1"):
            db.calibrate()
        assert db.store.get_setting("threshold") is None
    write_corpus(tmp_path / "two", speakers=2, utterances=1)
    with SpeakerDB.create(tmp_path / "h2", embedder=spectral_embedder) as db:
        db.ingest([tmp_path / "two"])
        with pytest.raises(UsageError, match="genuine pair"):
            db.calibrate(eer=True)


def test_calibrate_argument_errors(cal_db):
    with pytest.raises(UsageError, match="not both"):
        cal_db.calibrate(0.01, eer=True)
    with pytest.raises(UsageError, match="strictly between 0 and 1"):
        cal_db.calibrate(2.0)
    with pytest.raises(UsageError, match="foo"):
        cal_db.calibrate(score_norm="foo")
    with pytest.raises(UsageError, match="bad"):
        cal_db.calibrate(rule="bad")
    with pytest.raises(UsageError, match="nontarget"):
        cal_db.calibrate(0.001)  # 224 nontargets cannot estimate 0.1 %


# AS-norm at query time -----------------------------------------------------------------------
def literal_stats(v, members, top_n):
    top = sorted((float(v @ m) for m in members), reverse=True)[:top_n]
    mean = sum(top) / len(top)
    return mean, max(np.sqrt(sum((x - mean) ** 2 for x in top) / len(top)), STD_FLOOR)


def test_asnorm_identify_equals_the_formula_and_reranks(db, tiny_corpus):
    db.ingest([tiny_corpus])
    ids, raw = db.store.all_vectors()
    refs = db.store.segment_refs(ids)
    vec = {int(i): prefix(r, 256).astype(np.float64) for i, r in zip(ids, raw)}
    spk = {int(i): refs[int(i)].speaker for i in ids}
    names = sorted(set(spk.values()))
    means = {s: sum(vec[i] for i in vec if spk[i] == s) for s in names}
    means = {s: m / np.linalg.norm(m) for s, m in means.items()}
    q_wave = wave(1, 60)
    q = db.embed(q_wave).nested[256].astype(np.float64)
    for rule in ("max", "centroid", "topk"):
        r = db.identify(q_wave, cascade=CascadeConfig(aggregation=rule, agg_k=2), score_norm="asnorm")
        assert r.score_norm == "asnorm"
        assert r.cohort == {"source": "database", "size": 4, "top_n": 4}
        assert len(r.candidates) == 4
        for c in r.candidates:
            mine = sorted((i for i in vec if spk[i] == c.speaker), key=lambda i: -(q @ vec[i]))
            if rule == "max":
                raw_s, rep = q @ vec[mine[0]], vec[mine[0]]
            elif rule == "centroid":
                raw_s, rep = q @ means[c.speaker], means[c.speaker]
            else:
                raw_s = np.mean([q @ vec[i] for i in mine[:2]])
                rep = vec[mine[0]] + vec[mine[1]]
                rep = rep / np.linalg.norm(rep)
            others = [means[s] for s in names if s != c.speaker]  # top-N 4 clamps to the 3 left
            me, se = literal_stats(rep, others, 4)
            mt, st = literal_stats(q, others, 4)
            want = 0.5 * ((raw_s - me) / se + (raw_s - mt) / st)
            assert c.cosine == pytest.approx(raw_s, abs=1e-5)
            assert c.score == pytest.approx(want, rel=1e-4, abs=1e-4)
        scores = [c.score for c in r.candidates]
        assert scores == sorted(scores, reverse=True)
        assert r.candidates[0].speaker == "spk01"
        assert r.threshold == ASNORM_DEFAULT_THRESHOLD
        assert r.threshold_source.startswith("asnorm default, a guess")
        assert r.decision == ("match" if r.score >= r.threshold else "unknown")
        assert r.margin == pytest.approx(scores[0] - scores[1])
        assert r.cosine == r.candidates[0].cosine
        by_cosine = sorted(r.candidates, key=lambda c: -c.cosine)
        assert [c.speaker for c in by_cosine] != [c.speaker for c in r.candidates]  # re-ranked
    plain = db.identify(q_wave)
    assert [c.speaker for c in plain.candidates] == [c.speaker for c in by_cosine]


def test_asnorm_with_a_cohort_file_and_margin(db, tiny_corpus, tmp_path):
    db.ingest([tiny_corpus])
    members = np.stack([db.embed(wave(k, 0)).nested[256] for k in range(4, 12)])
    path = tmp_path / "cohort.npz"
    Cohort.from_vectors(members).save(path)  # no speaker names: nothing is left out
    q_wave = wave(2, 60)
    q = db.embed(q_wave).nested[256].astype(np.float64)
    r = db.identify(q_wave, score_norm="asnorm", cohort=path, cohort_top=5)
    assert r.cohort == {"source": str(path), "size": 8, "top_n": 5}
    rows = Cohort.load(path).vectors.astype(np.float64)
    mt, st = literal_stats(q, rows, 5)
    ids, raw = db.store.all_vectors()
    refs = db.store.segment_refs(ids)
    for c in r.candidates:
        best = max((prefix(v, 256).astype(np.float64) for i, v in zip(ids, raw)
                    if refs[int(i)].speaker == c.speaker), key=lambda v: q @ v)
        me, se = literal_stats(best, rows, 5)
        want = 0.5 * ((q @ best - me) / se + (q @ best - mt) / st)
        assert c.score == pytest.approx(want, rel=1e-4, abs=1e-4)
    lead = r.candidates[0].score - r.candidates[1].score
    assert r.margin == pytest.approx(lead) and r.as_dict()["margin"] == pytest.approx(lead)
    low = db.identify(q_wave, threshold=-1e9, min_margin=lead - 1e-3, score_norm="asnorm",
                      cohort=path, cohort_top=5)
    assert low.decision == "match" and low.speaker == "spk02"
    strict = db.identify(q_wave, threshold=-1e9, min_margin=lead + 1e-3, score_norm="asnorm",
                         cohort=path, cohort_top=5)
    assert strict.decision == "unknown" and strict.margin == pytest.approx(lead)
    assert strict.threshold_source == "given"


def test_asnorm_errors(db, tiny_corpus, tmp_path):
    with pytest.raises(UsageError, match="fewer than 2 labelled speakers"):
        db.identify(wave(0, 0), score_norm="asnorm")
    db.ingest([tiny_corpus])
    small = tmp_path / "c128.npz"
    Cohort.from_vectors(np.random.default_rng(1).normal(size=(5, 128))).save(small)
    with pytest.raises(UsageError, match="128-D.*256-D"):
        db.identify(wave(0, 0), score_norm="asnorm", cohort=small)
    with pytest.raises(UsageError, match="cohort_top"):
        db.identify(wave(0, 0), score_norm="asnorm", cohort_top=5)
    with pytest.raises(UsageError, match="does not exist"):
        db.identify(wave(0, 0), score_norm="asnorm", cohort=tmp_path / "none.npz")
    with pytest.raises(UsageError, match="score_norm"):
        db.identify(wave(0, 0), score_norm="znorm")


def test_asnorm_verify_against_the_database_cohort(db, tiny_corpus):
    db.ingest([tiny_corpus])
    a, b = wave(0, 70), wave(0, 71)
    v = db.verify(a, b, score_norm="asnorm")
    plain = db.verify(a, b)
    assert v.cosines == pytest.approx(plain.scores)
    cohort = db.scorer.norm().cohort
    ea, eb = db.embed(a).nested, db.embed(b).nested
    near = int(np.argmax(cohort.vectors @ (ea[256] + eb[256])))
    assert cohort.speakers[near] == "spk00"  # the pair's own speaker is left out
    for d in (64, 128, 192, 256):
        members = np.delete(cohort.prefix(d).vectors.astype(np.float64), near, axis=0)
        s = float(ea[d] @ eb[d])
        me, se = literal_stats(ea[d].astype(np.float64), members, 4)
        mt, st = literal_stats(eb[d].astype(np.float64), members, 4)
        assert v.scores[d] == pytest.approx(0.5 * ((s - me) / se + (s - mt) / st), rel=1e-4)
    assert v.score == v.scores[256] and v.threshold_source == "asnorm default"
    other = db.verify(a, wave(3, 70), score_norm="asnorm")
    assert v.score > other.score and v.score > 1.0
    assert v.as_dict()["cohort"] == {"source": "database", "size": 4, "top_n": 4}


# centroid cache ------------------------------------------------------------------------------
def centroid_of(db, speaker):
    ids, raw = db.store.all_vectors()
    refs = db.store.segment_refs(ids)
    m = sum(prefix(r, 256).astype(np.float64) for i, r in zip(ids, raw)
            if refs[int(i)].speaker == speaker)
    return m / np.linalg.norm(m)


def test_centroid_cache_follows_ingest_and_delete(db, tmp_path):
    write_corpus(tmp_path / "a", speakers=3, utterances=2)
    db.ingest([tmp_path / "a"])
    cfg = CascadeConfig(aggregation="centroid")
    q_wave = wave(1, 80)
    q = db.embed(q_wave).nested[256].astype(np.float64)
    before = {c.speaker: c.score for c in db.identify(q_wave, cascade=cfg).candidates}
    assert before["spk01"] == pytest.approx(q @ centroid_of(db, "spk01"), abs=1e-5)
    write_corpus(tmp_path / "b", speakers=1, utterances=4, first_speaker=1)
    for p in (tmp_path / "b" / "spk01").iterdir():  # new content for spk01
        sf.write(p, voice(1, 20 + int(p.stem[-1])), RATE, subtype="PCM_16")
    db.ingest([tmp_path / "b"])
    after = {c.speaker: c.score for c in db.identify(q_wave, cascade=cfg).candidates}
    assert after["spk01"] == pytest.approx(q @ centroid_of(db, "spk01"), abs=1e-5)
    assert after["spk01"] != pytest.approx(before["spk01"], abs=1e-6)
    assert db.identify(q_wave, cascade=cfg, score_norm="asnorm").cohort["size"] == 3
    db.delete_speaker("spk01")
    gone = {c.speaker for c in db.identify(q_wave, cascade=cfg).candidates}
    assert "spk01" not in gone and gone == {"spk00", "spk02"}
    assert db.identify(q_wave, cascade=cfg, score_norm="asnorm").cohort["size"] == 2
    db.delete_recording(str(tmp_path / "a" / "spk02" / "utt0.wav"))
    last = {c.speaker: c.score for c in db.identify(q_wave, cascade=cfg).candidates}
    assert last["spk02"] == pytest.approx(q @ centroid_of(db, "spk02"), abs=1e-5)


# duration gates ------------------------------------------------------------------------------
def short_clip(tmp_path, seconds=0.8):
    p = tmp_path / "short" / "spk09" / "clip.wav"
    p.parent.mkdir(parents=True)
    sf.write(p, voice(9, 0, seconds), RATE, subtype="PCM_16")
    return p


def test_enrollment_gate(db, tmp_path):
    clip = short_clip(tmp_path)
    stats = db.ingest([clip.parent.parent], config=IngestConfig(min_duration_s=1.0))
    assert (stats.added, stats.failed) == (0, 1)
    [f] = db.store.failures()
    assert f["reason"] == "too_short"
    assert f["error"] == f"{clip}: too short: 0.8 s of signal, need at least 1.0 s"
    stats = db.ingest([clip.parent.parent], config=IngestConfig(min_duration_s=0.5,
                                                                 retry_failed=True))
    assert (stats.added, stats.failed) == (1, 0)


def test_enrollment_gate_from_the_database_gates(db, tmp_path):
    clip = short_clip(tmp_path)
    db.gates = DurationGates(min_enroll_s=1.0)
    assert db.ingest([clip.parent.parent]).failed == 1
    assert db.identify(clip).input == str(clip)  # the query gate is still 0.5 s


def test_query_gate(db, tiny_corpus, tmp_path):
    db.ingest([tiny_corpus])
    clip = short_clip(tmp_path)
    assert db.identify(clip, min_duration_s=0.5).candidates
    with pytest.raises(TooShortError, match=r"too short: 0\.8 s of signal, need at least 1\.0 s"):
        db.identify(clip, min_duration_s=1.0)
    db.gates = DurationGates(min_query_s=1.0)
    with pytest.raises(TooShortError, match="need at least 1.0 s"):
        db.verify(clip, tiny_corpus / "spk00" / "utt0.wav")
    assert db.verify(clip, tiny_corpus / "spk00" / "utt0.wav", min_duration_s=0.5).scores
    with pytest.raises(UsageError, match="min_duration"):
        db.identify(clip, min_duration_s=-1)


def test_gate_reason_names_the_gate_below_the_default_floor(db, tiny_corpus, tmp_path):
    db.ingest([tiny_corpus])
    clip = short_clip(tmp_path, seconds=0.3)  # also below the 0.5 s floor of the audio policy
    want = f"{clip}: too short: 0.3 s of signal, need at least 1.0 s"
    with pytest.raises(TooShortError) as e:
        db.identify(clip, min_duration_s=1.0)
    assert str(e.value) == want
    stats = db.ingest([clip.parent.parent], config=IngestConfig(min_duration_s=1.0))
    assert [f["error"] for f in stats.failures] == [want]
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000, np.float32), RATE)
    with pytest.raises(SilentAudioError):
        db.identify(silent, min_duration_s=1.0)

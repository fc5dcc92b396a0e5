import numpy as np
import pytest

from speakerdb.errors import UsageError
from speakerdb.search.cascade import Hit
from speakerdb.search.decision import TopStats, aggregate, decide, loo_rule_scores


def hits(*pairs):
    return [Hit(i, s, {256: s}) for i, s in pairs]


LABELS = {1: "ann", 2: "ann", 3: "bob", 4: None, 5: "bob", 6: "cy"}


def test_max_aggregation_ranks_speakers_and_skips_unlabelled():
    c = aggregate(hits((1, 0.9), (2, 0.5), (3, 0.8), (4, 0.99), (5, 0.7)), LABELS, "max")
    assert [(x.speaker, x.score, x.segments) for x in c] == [("ann", 0.9, 2), ("bob", 0.8, 2)]
    assert c[0].best_segment == 1


def test_mean_and_top2():
    h = hits((1, 0.9), (2, 0.5), (3, 0.8), (5, 0.7), (6, 0.75))
    mean = {c.speaker: c.score for c in aggregate(h, LABELS, "mean")}
    assert mean == pytest.approx({"ann": 0.7, "bob": 0.75, "cy": 0.75})
    top2 = aggregate(h, LABELS, "top2")
    assert [c.speaker for c in top2] == ["bob", "cy", "ann"]  # ties by name


def test_unknown_rule():
    with pytest.raises(UsageError):
        aggregate([], {}, "median")


def test_decide_threshold_and_margin():
    c = aggregate(hits((1, 0.9), (3, 0.85)), LABELS)
    assert decide(c, 0.8).decision == "match"
    d = decide(c, 0.8, min_margin=0.1)
    assert d.decision == "unknown" and d.speaker is None
    assert d.margin == pytest.approx(0.05) and d.score == pytest.approx(0.9)
    assert decide(c, 0.95).decision == "unknown"
    assert decide([], 0.5).decision == "unknown"
    single = decide(aggregate(hits((6, 0.6)), LABELS), 0.5, min_margin=0.3)
    assert single.decision == "match" and single.margin is None


# topk and centroid ---------------------------------------------------------------------------
def test_topk_mean_of_the_best_k():
    h = hits((1, 0.9), (2, 0.5), (3, 0.8), (5, 0.7), (6, 0.75))
    labels = {**LABELS, 7: "ann"}
    h += hits((7, 0.6))
    got = {c.speaker: (c.score, c.used) for c in aggregate(h, labels, "topk", k=2)}
    assert got["ann"][0] == pytest.approx((0.9 + 0.6) / 2) and got["ann"][1] == (1, 7)
    got3 = {c.speaker: c.score for c in aggregate(h, labels, "topk", k=3)}
    assert got3 == pytest.approx({"ann": (0.9 + 0.6 + 0.5) / 3, "bob": 0.75, "cy": 0.75})
    # k larger than a speaker's hits: the mean of what there is
    assert {c.speaker: c.score for c in aggregate(h, labels, "topk", k=10)} == pytest.approx(
        {"ann": (0.9 + 0.6 + 0.5) / 3, "bob": 0.75, "cy": 0.75})
    # topk with k=2 is top2; k=1 is max
    top2 = aggregate(h, labels, "top2")
    assert [(c.speaker, c.score) for c in aggregate(h, labels, "topk", k=2)] == \
        [(c.speaker, c.score) for c in top2]
    assert [(c.speaker, c.score) for c in aggregate(h, labels, "topk", k=1)] == \
        [(c.speaker, c.score) for c in aggregate(h, labels, "max")]


def test_centroid_scores_the_query_against_each_speakers_centroid():
    q = np.array([1.0, 0.0, 0.0])
    cents = {"ann": np.array([0.6, 0.8, 0.0]), "bob": np.array([0.8, 0.0, 0.6]),
             "cy": np.array([0.0, 1.0, 0.0])}
    h = hits((1, 0.99), (3, 0.5), (4, 0.99))  # segment 4 is unlabelled: no candidate
    c = aggregate(h, LABELS, "centroid", centroids=cents, query=q)
    assert [(x.speaker, x.score, x.segments, x.used) for x in c] == [
        ("bob", pytest.approx(0.8), 1, ()), ("ann", pytest.approx(0.6), 1, ())]
    with pytest.raises(UsageError, match="centroid"):
        aggregate(h, LABELS, "centroid")


@pytest.mark.parametrize("rule,k", [("topk", 0), ("topk", -1), ("bad", 3)])
def test_bad_rule_or_k(rule, k):
    with pytest.raises(UsageError):
        aggregate(hits((1, 0.5)), LABELS, rule, k=k)


def test_cascade_config_checks_the_rule():
    from speakerdb.config import CascadeConfig

    with pytest.raises(UsageError, match="median"):
        CascadeConfig(aggregation="median")
    with pytest.raises(UsageError, match="agg-k"):
        CascadeConfig(aggregation="topk", agg_k=0)


# leave-one-out under every rule --------------------------------------------------------------
@pytest.fixture
def labelled():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(5, 12))
    spk = np.repeat(np.arange(5), [4, 3, 5, 2, 4])
    x = centres[spk] + 0.8 * rng.normal(size=(len(spk), 12))
    recs = [f"r{i // 2}" for i in range(len(spk))]  # pairs of items share a recording
    return x, [f"s{s}" for s in spk], recs


def unit(a):
    a = np.asarray(a, np.float64)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def brute_loo(x, labels, recs, rule, k=3, norm=False, top_n=None):
    """Item by item, speaker by speaker, with cohort_stats and asnorm from search.asnorm."""
    from speakerdb.search.asnorm import asnorm, cohort_from_speakers, cohort_stats

    x = unit(x)
    names = sorted(set(labels))
    cohort = cohort_from_speakers(x, labels)
    target, nontarget = [], []
    for i in range(len(x)):
        for s in names:
            gal = [j for j in range(len(x)) if labels[j] == s
                   and not (labels[i] == s and recs[j] == recs[i] and labels[j] == labels[i])]
            if not gal:
                continue
            sims = np.array([x[i] @ x[j] for j in gal])
            order = np.argsort(-sims, kind="stable")
            if rule == "max":
                val, rep = sims[order[0]], x[gal[order[0]]]
            elif rule in ("mean", "centroid"):
                rep = unit(x[gal].sum(axis=0))
                val = sims.mean() if rule == "mean" else x[i] @ rep
            else:
                take = order[: (2 if rule == "top2" else k)]
                val, rep = sims[take].mean(), unit(x[[gal[t] for t in take]].sum(axis=0))
            if norm:
                ex = np.array([[m == s for m in cohort.speakers]])
                es = cohort_stats(rep[None], cohort, top_n, ex)
                ts = cohort_stats(x[i][None], cohort, top_n, ex)
                val = float(asnorm(np.array([val]), es, ts)[0])
            (target if labels[i] == s else nontarget).append(val)
    return np.array(target), np.array(nontarget)


@pytest.mark.parametrize("rule", ["max", "mean", "centroid"])
def test_loo_rule_scores_equal_loo_scores(labelled, rule):
    from speakerdb.eval.calibrate import loo_scores

    x, labels, recs = labelled
    got = loo_rule_scores(x, labels, recs, rule)
    want = loo_scores(x, labels, recs, rule)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", ["max", "mean", "top2", "topk", "centroid"])
@pytest.mark.parametrize("norm,top_n", [(False, None), (True, None), (True, 2)])
def test_loo_rule_scores_equal_brute_force(labelled, rule, norm, top_n):
    x, labels, recs = labelled
    got = loo_rule_scores(x, labels, recs, rule, k=3,
                          score_norm="asnorm" if norm else "none", asnorm_top=top_n)
    want = brute_loo(x, labels, recs, rule, k=3, norm=norm, top_n=top_n)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)  # float32 cohort rounding


@pytest.mark.parametrize("top_n", [1, 3, 6, 7])
def test_top_stats_without_one_column_match_cohort_stats(top_n):
    from speakerdb.search.asnorm import Cohort, cohort_stats

    rng = np.random.default_rng(5)
    cohort = Cohort.from_vectors(rng.normal(size=(7, 6)))
    x = unit(rng.normal(size=(9, 6)))
    x[3] = cohort.vectors[2]  # a tie with a cohort member
    excl = np.array([-1, 0, 1, 2, 3, 4, 5, 6, 2])
    mask = np.zeros((9, 7), bool)
    mask[np.arange(9)[excl >= 0], excl[excl >= 0]] = True
    got = TopStats(x @ cohort.vectors.T.astype(np.float64), top_n).without(excl)
    want = cohort_stats(x, cohort, top_n, mask)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)

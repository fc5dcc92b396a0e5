import numpy as np
import pytest

from speakerdb.errors import UsageError
from speakerdb.search.cascade import Hit
from speakerdb.search.decision import aggregate, decide


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
    with pytest.raises(UsageError, match="agg_k"):
        CascadeConfig(aggregation="topk", agg_k=0)

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

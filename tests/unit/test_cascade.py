"""The cascade against exhaustive search, on a numpy stand-in for the indexes."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from speakerdb.config import DEFAULT_SHORTLIST, CascadeConfig
from speakerdb.errors import UsageError
from speakerdb.model.prefixes import nested
from speakerdb.search.cascade import cascade_search, exhaustive_search


class NumpyIndex:
    def __init__(self, ids, vecs):
        self.ids, self.vecs = np.asarray(ids), vecs
        self.ntotal = len(ids)
        self.pos = {int(i): k for k, i in enumerate(self.ids)}

    def search(self, q, k):
        s = q @ self.vecs.T
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(s, order, 1), self.ids[order]

    def score(self, q, ids):
        return self.reconstruct(ids) @ q

    def score_many(self, qs, ids):
        return np.array([[self.vecs[self.pos[int(i)]] @ q if i >= 0 else -np.inf for i in row]
                         for q, row in zip(qs, ids)], np.float32)

    def reconstruct(self, ids):
        return self.vecs[[self.pos[int(i)] for i in ids]]


def make(n=400, seed=0):
    rng = np.random.default_rng(seed)
    raw = rng.standard_normal((n, 256)).astype(np.float32)
    ids = np.arange(10, 10 + 3 * n, 3)
    parts = nested(raw)
    return ids, raw, {d: NumpyIndex(ids, v) for d, v in parts.items()}


def test_full_shortlist_equals_exhaustive_ranking():
    ids, raw, idx = make()
    q = nested(raw[7] + 0.3)
    cfg = CascadeConfig((400, 400, 400))
    hits = cascade_search(idx, q, cfg)
    exact = exhaustive_search(idx[256], q[256], 400)
    assert [h.segment_id for h in hits] == [h.segment_id for h in exact]
    np.testing.assert_allclose([h.score for h in hits], [h.score for h in exact], rtol=1e-6,
                               atol=1e-6)  # summation order differs near 0
    assert set(hits[0].scores) == {64, 128, 192, 256}


def test_shortlists_shrink_and_scores_are_exact():
    ids, raw, idx = make()
    q = nested(raw[3])
    hits = cascade_search(idx, q, CascadeConfig((50, 20, 5)))
    assert len(hits) == 5
    assert hits[0].segment_id == ids[3] and hits[0].score == pytest.approx(1.0, abs=1e-5)
    pos = {int(i): k for k, i in enumerate(ids)}
    for h in hits:
        for d, s in h.scores.items():
            assert s == pytest.approx(float(nested(raw[pos[h.segment_id]])[d] @ q[d]), abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_near_duplicate_query_finds_its_source_top1():
    ids, raw, idx = make(n=2000, seed=1)
    rng = np.random.default_rng(5)
    for k in rng.choice(2000, 40, replace=False):
        q = nested(raw[k] + 0.2 * rng.standard_normal(256).astype(np.float32))
        top = cascade_search(idx, q, CascadeConfig((100, 30, 10)))[0]
        assert top.segment_id == ids[k]


def test_empty_index_gives_no_hits():
    idx = {d: NumpyIndex(np.zeros(0, np.int64), np.zeros((0, d), np.float32))
           for d in (64, 128, 192, 256)}
    assert cascade_search(idx, nested(np.ones(256)), CascadeConfig()) == []


def test_shortlists_must_shrink():
    with pytest.raises(UsageError, match="must shrink"):
        CascadeConfig(k64=10, k128=20)


def test_batched_cascade_equals_one_query_at_a_time():
    from speakerdb.search.cascade import cascade_search_many

    ids, raw, idx = make(n=600, seed=3)
    rng = np.random.default_rng(4)
    probes = raw[rng.integers(0, 600, 9)] + 0.5 * rng.standard_normal((9, 256)).astype(np.float32)
    q = nested(probes)
    cfg = CascadeConfig((120, 40, 15))
    batch = cascade_search_many(idx, q, cfg)
    assert len(batch) == 9
    for row, hits in enumerate(batch):
        one = cascade_search(idx, {d: v[row] for d, v in q.items()}, cfg)
        assert [h.segment_id for h in hits] == [h.segment_id for h in one]
        assert len(hits) == 15 and set(hits[0].scores) == {64, 128, 192, 256}
        for h in hits:  # every stage's score is the exact cosine at that dimension
            for d, v in h.scores.items():
                assert v == pytest.approx(float(idx[d].score(q[d][row], [h.segment_id])[0]),
                                          abs=1e-5)
    assert cascade_search_many(idx, {d: v[:0] for d, v in q.items()}, cfg) == []


@given(st.lists(st.integers(0, 4), min_size=1, max_size=40), st.integers(1, 45),
       st.integers(0, 2**16))
def test_best_set_equals_the_sorted_cut_even_with_ties(levels, k, seed):
    """``_rows_best`` (partial selection) keeps the same segments as ``_rows_top`` (full sort,
    ties at the cut to the smaller id), padding (id -1) last."""
    from speakerdb.search.cascade import _rows_best, _rows_top

    rng = np.random.default_rng(seed)
    scores = np.array([levels, levels[::-1]], np.float32) / 4  # many equal scores
    ids = np.stack([rng.permutation(len(levels)) * 3 + 1 for _ in range(2)])
    ids[1, rng.integers(0, len(levels))] = -1
    best, top = _rows_best(ids, scores, k), _rows_top(ids, scores, k)
    for row in range(2):
        assert sorted(ids[row, best[row]].tolist()) == sorted(ids[row, top[row]].tolist())


def test_padding_from_an_approximate_screen_and_a_single_dimension():
    """A screen that returns fewer than k (ids -1) only shortens the shortlist; an index set of
    one dimension is exhaustive search at it."""
    ids, raw, idx = make(n=300, seed=5)
    q = nested(raw[11] + 0.2)

    class Padded:
        ntotal = idx[64].ntotal

        def search(self, queries, k):
            s, i = idx[64].search(queries, k)
            i = i.copy()
            i[:, 1::2] = -1
            return s, i

    cfg = CascadeConfig((60, 30, 30))  # no cut below the 30 real candidates
    hits = cascade_search({**idx, 64: Padded()}, q, cfg)[:5]
    kept = idx[64].search(q[64][None, :], 60)[1][0, ::2]
    want = [h.segment_id for h in exhaustive_search(NumpyIndex(kept, idx[256].reconstruct(kept)),
                                                    q[256], 5)]
    assert [h.segment_id for h in hits] == want
    alone = cascade_search({256: idx[256]}, {256: q[256]}, cfg)
    assert [h.segment_id for h in alone] == [h.segment_id for h in
                                             exhaustive_search(idx[256], q[256], 60)]


def test_stages_pair_the_shortlist_with_all_but_the_last_dimension():
    assert CascadeConfig((50, 20, 5)).stages((64, 128, 192, 256)) == [(64, 50), (128, 20),
                                                                        (192, 5)]
    assert CascadeConfig((50, 20)).stages((64, 128, 192)) == [(64, 50), (128, 20)]
    assert CascadeConfig((50, 20)).kept == 20
    assert CascadeConfig().stages((256,)) == []


def test_a_given_shortlist_must_fit_the_space():
    with pytest.raises(UsageError, match="3 sizes.*2 stages") as e:
        CascadeConfig((50, 20, 5)).stages((64, 128, 192))
    assert e.value.option == "shortlist"
    with pytest.raises(UsageError, match="2 sizes.*3 stages"):
        CascadeConfig((50, 20)).stages((64, 128, 192, 256))


def test_default_and_named_sizes_fit_spaces_with_other_stages():
    """The default and k64=/k128=/k192= name the stages of a 64/128/192/256-D space: a space
    with fewer uses the first sizes, one with more keeps the last (which cuts nothing)."""
    default = CascadeConfig()
    assert default.shortlist == DEFAULT_SHORTLIST and default.fit
    assert default.stages((64, 128, 192)) == [(64, 3000), (128, 3000)]
    assert default.stages((64, 128, 192, 256, 512)) == [(64, 3000), (128, 3000), (192, 100),
                                                        (256, 100)]
    assert CascadeConfig(k64=4000, k192=5).shortlist == (4000, DEFAULT_SHORTLIST[1], 5)
    assert CascadeConfig(k64=50, k128=20, k192=5) == CascadeConfig((50, 20, 5), fit=True)
    assert CascadeConfig(k64=50, k128=20, k192=5).stages((64, 128, 192)) == [(64, 50),
                                                                              (128, 20)]
    with pytest.raises(UsageError, match="not both"):
        CascadeConfig((50, 20, 5), k64=50)


@pytest.mark.parametrize("sizes", [(), (0,), (10, 20), (5, 5, 6), (10.0, 5)])
def test_shortlist_sizes_are_shrinking_whole_numbers(sizes):
    with pytest.raises(UsageError):
        CascadeConfig(sizes)

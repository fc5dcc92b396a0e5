from __future__ import annotations

import math

import numpy as np
import pytest

from speakerdb.errors import UsageError
from speakerdb.eval.metrics import eer
from speakerdb.search.asnorm import (
    DEFAULT_TOP_N,
    STD_FLOOR,
    Cohort,
    asnorm,
    cohort_from_speakers,
    cohort_stats,
    exclusion_mask,
    resolve_top_n,
)


def unit(a):
    a = np.asarray(a, np.float64)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def literal_stats(v, cohort_rows, top_n, exclude=()):
    """Mean and floored population std of the top-N cosine scores, one trial at a time."""
    scores = [float(np.dot(v, c)) for i, c in enumerate(cohort_rows) if i not in exclude]
    top = sorted(scores, reverse=True)[:top_n]
    mean = sum(top) / len(top)
    std = math.sqrt(sum((x - mean) ** 2 for x in top) / len(top))
    return mean, max(std, STD_FLOOR)


def normalise(cohort, top_n, q, g, scores, gallery_exclude=None):
    """AS-norm of a (Q, G) score matrix the way the search applies it: gallery statistics per
    column, query statistics per row."""
    qm, qs = cohort_stats(q, cohort, top_n)
    return asnorm(scores, cohort_stats(g, cohort, top_n, gallery_exclude),
                  (qm[:, None], qs[:, None]))


def literal_asnorm(s, e, t, cohort_rows, top_n, e_excl=(), t_excl=()):
    me, se = literal_stats(e, cohort_rows, top_n, e_excl)
    mt, st = literal_stats(t, cohort_rows, top_n, t_excl)
    return 0.5 * ((s - me) / se + (s - mt) / st)


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    cohort = Cohort.from_vectors(rng.normal(size=(40, 16)))
    query = unit(rng.normal(size=(6, 16))).astype(np.float32)
    gallery = unit(rng.normal(size=(5, 16))).astype(np.float32)
    return cohort, query, gallery


@pytest.mark.parametrize("top_n", [1, 2, 5, 17, 40])
def test_normalise_matches_literal_formula(data, top_n):
    cohort, q, g = data
    rows = cohort.vectors.astype(np.float64)
    scores = q.astype(np.float64) @ g.astype(np.float64).T
    got = normalise(cohort, top_n, q, g, scores)
    want = np.array([[literal_asnorm(scores[i, j], g[j], q[i], rows, top_n)
                      for j in range(len(g))] for i in range(len(q))])
    assert got.shape == (len(q), len(g))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("top_n", [3, 10])
def test_asnorm_on_trial_vectors_matches_literal(data, top_n):
    cohort, q, g = data
    rows = cohort.vectors.astype(np.float64)
    e, t = g[[0, 1, 2, 3, 4, 0]], q
    s = np.einsum("ij,ij->i", e.astype(np.float64), t.astype(np.float64))
    got = asnorm(s, cohort_stats(e, cohort, top_n), cohort_stats(t, cohort, top_n))
    want = [literal_asnorm(s[k], e[k], t[k], rows, top_n) for k in range(len(s))]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_normalisation_is_symmetric(data):
    cohort, q, g = data
    s = q @ g.T
    np.testing.assert_allclose(normalise(cohort, 8, q, g, s), normalise(cohort, 8, g, q, s.T).T)


def test_stats_are_blocked_consistently(data, monkeypatch):
    import speakerdb.search.asnorm as mod

    cohort, q, _ = data
    whole = cohort_stats(q, cohort, 7)
    monkeypatch.setattr(mod, "_BLOCK_ELEMENTS", 50)  # one row per block
    blocked = cohort_stats(q, cohort, 7)
    np.testing.assert_allclose(blocked[0], whole[0], rtol=1e-12)
    np.testing.assert_allclose(blocked[1], whole[1], rtol=1e-12)


def test_std_floor_guards_a_single_member(data):
    cohort, q, g = data
    _, std = cohort_stats(q, cohort, 1)
    assert np.all(std == 0)
    out = normalise(cohort, 1, q, g, q @ g.T)
    assert np.all(np.isfinite(out))


# ------------------------------------------------------------------ exclusion


def test_excluded_member_never_in_stats():
    rng = np.random.default_rng(3)
    x = unit(rng.normal(size=(4, 12)))
    others = unit(rng.normal(size=(20, 12)))
    # member i of the cohort is row i itself: its score 1.0 would top every list
    cohort = Cohort.from_vectors(np.vstack([x, others]))
    rows = cohort.vectors.astype(np.float64)
    excl = np.arange(4)
    mean, std = cohort_stats(x, cohort, 5, exclude=excl)
    for i in range(4):
        m, s = literal_stats(x[i], rows, 5, exclude={i})
        assert mean[i] == pytest.approx(m, abs=1e-12)
        assert max(std[i], STD_FLOOR) == pytest.approx(s, abs=1e-12)
        # equal to a cohort without that member at all
        without = Cohort(np.delete(cohort.vectors, i, axis=0))
        m2, s2 = cohort_stats(x[i:i + 1], without, 5)
        assert mean[i] == pytest.approx(m2[0], abs=1e-12)
        assert std[i] == pytest.approx(s2[0], abs=1e-12)
    plain, _ = cohort_stats(x, cohort, 5)
    assert np.all(plain > mean)  # the self score did count without exclusion


def test_exclusion_forms_agree():
    rng = np.random.default_rng(4)
    cohort = Cohort.from_vectors(rng.normal(size=(15, 8)))
    x = unit(rng.normal(size=(3, 8)))
    lists = [[0, 5], [], [14]]
    mask = np.zeros((3, 15), bool)
    for i, r in enumerate(lists):
        mask[i, r] = True
    padded = np.array([[0, 5], [-1, -1], [14, -1]])
    want = cohort_stats(x, cohort, 4, exclude=mask)
    for form in (lists, padded, [[0, 5], None, 14]):
        got = cohort_stats(x, cohort, 4, exclude=form)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    one = cohort_stats(x, cohort, 4, exclude=np.array([2, -1, 7]))
    m0, _ = literal_stats(x[0], cohort.vectors.astype(np.float64), 4, {2})
    m1, _ = literal_stats(x[1], cohort.vectors.astype(np.float64), 4)
    assert one[0][0] == pytest.approx(m0) and one[0][1] == pytest.approx(m1)


def test_exclusion_by_speaker_name():
    rng = np.random.default_rng(5)
    vecs = rng.normal(size=(12, 8))
    labels = [f"s{i % 4}" for i in range(12)]
    cohort = cohort_from_speakers(vecs, labels)
    assert cohort.speakers == ["s0", "s1", "s2", "s3"]
    mask = exclusion_mask(cohort, ["s2", None, "zz"])
    assert mask.tolist() == [[False, False, True, False], [False] * 4, [False] * 4]
    with pytest.raises(UsageError):
        exclusion_mask(Cohort.from_vectors(vecs), ["s0"])


def test_exclusion_below_top_n_uses_all_remaining(data):
    cohort, q, _ = data
    rows = cohort.vectors.astype(np.float64)
    mean, std = cohort_stats(q[:2], cohort, 40, exclude=[[0, 1, 2], None])
    m, s = literal_stats(q[0], rows, 40, {0, 1, 2})
    assert mean[0] == pytest.approx(m) and max(std[0], STD_FLOOR) == pytest.approx(s)
    m, s = literal_stats(q[1], rows, 40)
    assert mean[1] == pytest.approx(m) and std[1] == pytest.approx(s)


def test_gallery_exclusion_in_matrix_asnorm(data):
    cohort, q, g = data
    rows = cohort.vectors.astype(np.float64)
    scores = q @ g.T
    excl = np.array([0, 1, 2, 3, 4])
    got = normalise(cohort, 6, q, g, scores, gallery_exclude=excl)
    want = np.array([[literal_asnorm(float(scores[i, j]), g[j], q[i], rows, 6, e_excl={j})
                      for j in range(len(g))] for i in range(len(q))])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_exclusion_errors(data):
    cohort, q, _ = data
    with pytest.raises(UsageError, match="every cohort member"):
        cohort_stats(q[:1], cohort, 3, exclude=np.ones((1, 40), bool))
    with pytest.raises(UsageError, match="shape"):
        cohort_stats(q, cohort, 3, exclude=np.ones((2, 40), bool))
    with pytest.raises(UsageError, match="cohort indices"):
        cohort_stats(q, cohort, 3, exclude=np.full(6, 40))
    with pytest.raises(UsageError, match="rows"):
        cohort_stats(q, cohort, 3, exclude=[[1]])


# ------------------------------------------------------------------ hub effect


def test_asnorm_reduces_eer_with_a_hub_enrollment():
    rng = np.random.default_rng(0)
    d, n_spk, w = 64, 8, 1.2
    common = unit(rng.normal(size=d))

    def utt(dirs, shift=0.6):
        return unit(shift * common + dirs + w * rng.normal(size=dirs.shape) / np.sqrt(d))

    cohort = Cohort.from_vectors(utt(unit(rng.normal(size=(200, d)))))
    spk = unit(rng.normal(size=(n_spk, d)))
    enroll = utt(spk)
    enroll[0] = unit(3.0 * common + spk[0] + w * rng.normal(size=d) / np.sqrt(d))  # the hub
    labels = np.repeat(np.arange(n_spk), 30)
    tests = utt(spk[labels])
    raw = tests @ enroll.T
    is_t = labels[:, None] == np.arange(n_spk)[None, :]
    hub_nt = raw[labels != 0, 0].mean()
    other_nt = raw[:, 1:][~is_t[:, 1:]].mean()
    assert hub_nt > other_nt + 0.1  # the hub's nontarget scores are inflated
    normed = normalise(cohort, 50, tests, enroll, raw)
    before = eer(raw[is_t], raw[~is_t])
    after = eer(normed[is_t], normed[~is_t])
    assert after < 0.8 * before


# ------------------------------------------------------------------ cohort objects


def test_from_vectors_normalises_and_prefix_renormalises():
    rng = np.random.default_rng(9)
    raw = rng.normal(size=(10, 256)) * 3
    cohort = Cohort.from_vectors(raw, [f"s{i}" for i in range(10)])
    assert cohort.vectors.dtype == np.float32 and cohort.dim == 256 and cohort.size == 10
    np.testing.assert_allclose(np.linalg.norm(cohort.vectors, axis=1), 1, atol=1e-6)
    for d in (64, 128, 192):
        p = cohort.prefix(d)
        assert p.vectors.shape == (10, d) and p.speakers == cohort.speakers
        np.testing.assert_allclose(np.linalg.norm(p.vectors, axis=1), 1, atol=1e-6)
        np.testing.assert_allclose(p.vectors, unit(raw[:, :d]), atol=1e-6)
    np.testing.assert_array_equal(cohort.prefix(256).vectors, cohort.vectors)
    for bad in (0, 257):
        with pytest.raises(UsageError):
            cohort.prefix(bad)


def test_prefix_cohort_scores_prefix_vectors():
    rng = np.random.default_rng(10)
    cohort = Cohort.from_vectors(rng.normal(size=(30, 256)))
    x = unit(rng.normal(size=(3, 256)))
    x64 = unit(x[:, :64])
    with pytest.raises(UsageError, match="prefix"):
        cohort_stats(x64, cohort, 5)
    p = cohort.prefix(64)
    mean, _ = cohort_stats(x64, p, 5)
    rows = unit(cohort.vectors.astype(np.float64)[:, :64])
    for i in range(3):
        assert mean[i] == pytest.approx(literal_stats(x64[i], rows, 5)[0], abs=1e-6)


def test_cohort_from_speakers_mean_and_all():
    rng = np.random.default_rng(11)
    vecs = rng.normal(size=(7, 5))
    labels = ["b", "a", "b", "c", "a", "b", "c"]
    mean = cohort_from_speakers(vecs, labels)
    assert mean.speakers == ["a", "b", "c"]
    u = unit(vecs)
    for k, name in enumerate(mean.speakers):
        idx = [i for i, s in enumerate(labels) if s == name]
        np.testing.assert_allclose(mean.vectors[k], unit(u[idx].sum(axis=0)), atol=1e-6)
    every = cohort_from_speakers(vecs, labels, per_speaker="all")
    assert every.speakers == ["a", "a", "b", "b", "b", "c", "c"]
    np.testing.assert_allclose(every.vectors[0], u[1], atol=1e-6)
    with pytest.raises(UsageError, match="per_speaker"):
        cohort_from_speakers(vecs, labels, per_speaker="median")
    with pytest.raises(UsageError, match="labels"):
        cohort_from_speakers(vecs, labels[:-1])


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(12)
    named = Cohort.from_vectors(rng.normal(size=(6, 32)), ["ann", "bob", "cy", "d", "é", "f"])
    path = tmp_path / "cohort.bin"  # written to exactly this name
    named.save(path)
    back = Cohort.load(path)
    np.testing.assert_array_equal(back.vectors, named.vectors)
    assert back.speakers == named.speakers
    anon = Cohort.from_vectors(rng.normal(size=(4, 8)))
    anon.save(tmp_path / "anon.npz")
    back = Cohort.load(tmp_path / "anon.npz")
    assert back.speakers is None
    np.testing.assert_array_equal(back.vectors, anon.vectors)


def test_load_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        Cohort.load(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("not a cohort")
    with pytest.raises(UsageError, match="cohort file"):
        Cohort.load(tmp_path / "text.npz")
    np.save(tmp_path / "plain.npy", np.ones((3, 4)))
    with pytest.raises(UsageError, match="npz"):
        Cohort.load(tmp_path / "plain.npy")
    np.savez(tmp_path / "nokeys.npz", other=np.ones(3))
    with pytest.raises(UsageError, match="lacks"):
        Cohort.load(tmp_path / "nokeys.npz")
    np.savez(tmp_path / "flat.npz", vectors=np.ones(3), speakers=np.array([], dtype=str))
    with pytest.raises(UsageError, match="2-D"):
        Cohort.load(tmp_path / "flat.npz")
    np.savez(tmp_path / "count.npz", vectors=np.ones((3, 2)), speakers=np.array(["a"]))
    with pytest.raises(UsageError, match="speaker names"):
        Cohort.load(tmp_path / "count.npz")


# ------------------------------------------------------------------ top-N and argument errors


def test_top_n_rule():
    assert resolve_top_n(None, 50) == 50
    assert resolve_top_n(None, 1000) == DEFAULT_TOP_N == 300
    assert resolve_top_n(7, 50) == 7
    assert resolve_top_n(np.int64(50), 50) == 50
    for bad in (0, -1, 51):
        with pytest.raises(UsageError, match="1..50"):
            resolve_top_n(bad, 50)
    for bad in (2.5, True, "3"):
        with pytest.raises(UsageError):
            resolve_top_n(bad, 50)


def test_asnorm_argument_errors():
    s = np.zeros((3, 4))
    with pytest.raises(UsageError, match="broadcast"):
        asnorm(s, (np.zeros(3), np.ones(3)), (np.zeros((3, 1)), np.ones((3, 1))))
    with pytest.raises(UsageError, match="reshape"):
        asnorm(np.zeros(4), (np.zeros(4), np.ones(4)), (np.zeros((3, 1)), np.ones((3, 1))))
    with pytest.raises(UsageError, match="pairs"):
        asnorm(s, np.zeros(4), (np.zeros((3, 1)), np.ones((3, 1))))


def test_asnorm_known_value():
    out = asnorm(np.array([0.5]), (np.array([0.1]), np.array([0.2])),
                 (np.array([0.3]), np.array([0.0])))
    assert out[0] == pytest.approx(0.5 * ((0.5 - 0.1) / 0.2 + (0.5 - 0.3) / STD_FLOOR))


def test_cohort_construction_errors():
    with pytest.raises(UsageError):
        Cohort.from_vectors(np.zeros((2, 3)))
    with pytest.raises(UsageError):
        Cohort.from_vectors(np.ones(3))
    with pytest.raises(UsageError):
        Cohort.from_vectors(np.full((2, 3), np.nan))
    with pytest.raises(UsageError, match="speaker names"):
        Cohort.from_vectors(np.ones((2, 3)), ["a"])

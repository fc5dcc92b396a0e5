"""Verification and identification metrics against hand-computed values and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from speakerdb.eval.metrics import (
    det_curve,
    dir_at_fpir,
    eer,
    eer_threshold,
    min_dcf,
    rates_at,
    threshold_at_far,
    top_k_accuracy,
)

# ---------------------------------------------------------------------------------------------
# EER


def test_eer_perfectly_separated_is_zero():
    assert eer([2.0, 3.0, 4.0], [-1.0, 0.0, 1.0]) == 0.0
    assert eer_threshold([2.0, 3.0, 4.0], [-1.0, 0.0, 1.0]) == 2.0


def test_eer_perfectly_inverted_is_one():
    assert eer([-1.0, 0.0], [2.0, 3.0]) == 1.0


def test_eer_worked_example():
    # sorted: 0n 1t 1.5n 2t 2.5n 3t; accept score >= thr
    # thr 0: miss 0/3 fa 3/3 | thr 1: 0/3 2/3 | thr 1.5: 1/3 2/3 | thr 2: 1/3 1/3 <- equal
    target, nontarget = [1, 2, 3], [0, 1.5, 2.5]
    assert eer(target, nontarget) == pytest.approx(1 / 3)
    assert eer_threshold(target, nontarget) == 2.0
    assert rates_at(target, nontarget, 2.0) == (1 / 3, 1 / 3)


def test_eer_symmetric_overlap():
    # targets 4.5..13.5, non-targets 0..9: five of each in the overlap [4.5, 9].
    # thr 6.5: miss {4.5,5.5} 2/10, fa {7,8,9} 3/10; thr 7: miss 3/10, fa {7,8,9} 3/10 -> 0.3
    target = np.arange(10) + 4.5
    nontarget = np.arange(10.0)
    assert eer(target, nontarget) == pytest.approx(0.3)
    assert eer(-nontarget, -target) == pytest.approx(0.3)  # mirror image, roles swapped
    assert eer_threshold(target, nontarget) == 7.0


def test_eer_interpolates_across_a_tie():
    # the tie at 1 is one operating point: thr 1 -> miss 0, fa 1/2; thr 2 -> miss 1/2, fa 0.
    # The segment between them crosses P_miss = P_fa at 1/4; both points are equally
    # unbalanced, so eer_threshold takes the higher threshold.
    assert eer([1.0, 2.0], [1.0, 0.0]) == pytest.approx(0.25)
    assert eer_threshold([1.0, 2.0], [1.0, 0.0]) == 2.0


def test_eer_threshold_is_the_more_balanced_bracketing_point():
    # sorted 1n 2t 2.5n 3t 4t; thr 2.5: miss 1/3 fa 1/2 (gap 1/6), thr 3: miss 1/3 fa 0 (1/3)
    assert eer_threshold([2, 3, 4], [1, 2.5]) == 2.5


def test_eer_agrees_with_det_curve_crossing():
    rng = np.random.default_rng(7)
    target, nontarget = rng.normal(2, 1, 300), rng.normal(0, 1, 2000)
    p_miss, p_fa, _ = det_curve(target, nontarget)
    d = p_miss - p_fa
    k = int(np.argmax(d >= 0))
    a = d[k - 1] / (d[k - 1] - d[k])
    crossing = p_miss[k - 1] + a * (p_miss[k] - p_miss[k - 1])
    assert eer(target, nontarget) == pytest.approx(crossing, abs=1e-12)
    e, tol = eer(target, nontarget), 1e-12
    assert p_miss[k - 1] - tol <= e <= p_miss[k] + tol
    assert p_fa[k] - tol <= e <= p_fa[k - 1] + tol


# ---------------------------------------------------------------------------------------------
# DET curve


def test_det_curve_points_by_hand():
    p_miss, p_fa, thr = det_curve([1, 2, 3], [0, 1.5, 2.5])
    # thr 0, 1, 1.5, 2, 2.5, 3, then just above 3 (reject all)
    np.testing.assert_allclose(p_miss * 3, [0, 0, 1, 1, 2, 2, 3], atol=1e-12)
    np.testing.assert_allclose(p_fa * 3, [3, 2, 2, 1, 1, 0, 0], atol=1e-12)
    np.testing.assert_array_equal(thr[:-1], [0, 1, 1.5, 2, 2.5, 3])
    assert thr[-1] == np.nextafter(3.0, np.inf)


def test_det_curve_endpoints_monotonicity_and_rates():
    rng = np.random.default_rng(3)
    target = np.round(rng.normal(1, 1, 200), 1)  # rounding creates ties within and across sets
    nontarget = np.round(rng.normal(0, 1, 500), 1)
    p_miss, p_fa, thr = det_curve(target, nontarget)
    assert (p_miss[0], p_fa[0], p_miss[-1], p_fa[-1]) == (0.0, 1.0, 1.0, 0.0)
    assert np.all(np.diff(p_miss) >= 0) and np.all(np.diff(p_fa) <= 0)
    assert np.all(np.diff(thr) > 0)
    assert np.all((np.diff(p_miss) > 0) | (np.diff(p_fa) < 0))
    assert len(thr) == len(np.unique(np.concatenate([target, nontarget]))) + 1
    for i in range(0, len(thr), 7):
        assert rates_at(target, nontarget, thr[i]) == (p_miss[i], p_fa[i])


# ---------------------------------------------------------------------------------------------
# minDCF

# 4 targets, 40 non-targets: 39 at or below 0 and one at 2.5.
MD_TARGET = [1.0, 2.0, 3.0, 4.0]
MD_NONTARGET = [-i / 10 for i in range(39)] + [2.5]


def test_min_dcf_hand_computed():
    # Operating points that matter (accept score >= thr):
    #   thr 4: P_miss 3/4 P_fa 0      thr 3: P_miss 2/4 P_fa 0
    #   thr 2: P_miss 1/4 P_fa 1/40   thr 1: P_miss 0   P_fa 1/40   reject all: P_miss 1
    # p_target 0.05: norm = min(0.05, 0.95) = 0.05, DCF/norm = P_miss + 19 P_fa
    #   thr 3: 0.5    thr 1: 19/40 = 0.475    thr 2: 0.25 + 0.475 = 0.725  -> 0.475 at 1
    assert min_dcf(MD_TARGET, MD_NONTARGET, 0.05) == (pytest.approx(0.475), 1.0)
    # p_target 0.01: norm = min(0.01, 0.99) = 0.01, DCF/norm = P_miss + 99 P_fa
    #   thr 3: 0.5    thr 1: 99/40 = 2.475                                   -> 0.5 at 3
    assert min_dcf(MD_TARGET, MD_NONTARGET, 0.01) == (pytest.approx(0.5), 3.0)
    # c_miss 10, p_target 0.01: norm = min(0.1, 0.99) = 0.1, DCF/norm = P_miss + 9.9 P_fa
    #   thr 3: 0.5    thr 1: 9.9/40 = 0.2475                                 -> 0.2475 at 1
    assert min_dcf(MD_TARGET, MD_NONTARGET, 0.01, c_miss=10.0) == (pytest.approx(0.2475), 1.0)


def test_min_dcf_trivial_system_costs_one():
    # every score identical: only "accept all" and "reject all" exist, both cost >= 1
    cost, thr = min_dcf([0.5, 0.5], [0.5, 0.5, 0.5], 0.01)
    assert cost == pytest.approx(1.0)
    assert thr == np.nextafter(0.5, np.inf)  # reject all (p_target < 0.5)
    assert rates_at([0.5, 0.5], [0.5, 0.5, 0.5], thr) == (1.0, 0.0)


def test_min_dcf_tie_takes_the_higher_threshold():
    # p_target 0.5: DCF/norm = P_miss + P_fa. thr 1: 0 + 1/2, thr 2: 1/2 + 0 -> both 0.5
    assert min_dcf([1.0, 2.0], [0.0, 1.5], 0.5) == (0.5, 2.0)


def test_min_dcf_rejects_bad_parameters():
    for p in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="p_target"):
            min_dcf([1.0], [0.0], p)
    with pytest.raises(ValueError, match="c_miss"):
        min_dcf([1.0], [0.0], 0.01, c_miss=0.0)


# ---------------------------------------------------------------------------------------------
# threshold at FAR, rates


def test_threshold_at_far_by_hand_with_ties():
    nontarget = [1.0, 2.0, 2.0, 3.0]
    # far 0.25 allows one accept: only the 3 may pass, both 2s are rejected
    assert threshold_at_far(nontarget, 0.25) == np.nextafter(2.0, np.inf)
    # far 0.5 allows two accepts, but the tied 2s come together: still only the 3
    assert threshold_at_far(nontarget, 0.5) == np.nextafter(2.0, np.inf)
    assert threshold_at_far(nontarget, 0.75) == np.nextafter(1.0, np.inf)
    assert threshold_at_far(nontarget, 0.0) == np.nextafter(3.0, np.inf)
    assert threshold_at_far(nontarget, 1.0) == -math.inf


@pytest.mark.parametrize("far", [0.0, 0.001, 0.01, 0.07, 0.29, 0.5, 0.999])
def test_threshold_at_far_is_the_lowest_meeting_the_target(far):
    rng = np.random.default_rng(11)
    target = rng.normal(2, 1, 100)
    nontarget = np.round(rng.normal(0, 1, 1000), 2)
    thr = threshold_at_far(nontarget, far)
    assert rates_at(target, nontarget, thr)[1] <= far
    assert rates_at(target, nontarget, np.nextafter(thr, -np.inf))[1] > far


def test_threshold_at_far_decimal_rates_are_exact():
    # 29 / 100 == 0.29 in float64 even though 0.29 * 100 < 29
    nontarget = np.arange(100.0)
    assert rates_at([0.0], nontarget, threshold_at_far(nontarget, 0.29))[1] == 0.29


def test_rates_at_by_hand():
    target, nontarget = [1.0, 2.0, 3.0], [0.0, 2.0, 2.5, 5.0]
    assert rates_at(target, nontarget, 2.0) == (1 / 3, 3 / 4)   # ties are accepted
    assert rates_at(target, nontarget, np.nextafter(2.0, np.inf)) == (2 / 3, 2 / 4)
    assert rates_at(target, nontarget, -math.inf) == (0.0, 1.0)
    assert rates_at(target, nontarget, math.inf) == (1.0, 0.0)


def test_threshold_at_far_rejects_bad_far():
    for far in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError, match="far"):
            threshold_at_far([0.0, 1.0], far)


# ---------------------------------------------------------------------------------------------
# identification


def test_top_k_accuracy():
    ranked = [["ann", "bob", "cy"], ["bob", "ann", "cy"], ["cy", "bob", "ann"], ["dan"]]
    truth = ["ann", "ann", "ann", "eve"]
    assert top_k_accuracy(ranked, truth, 1) == 0.25
    assert top_k_accuracy(ranked, truth, 2) == 0.5
    assert top_k_accuracy(ranked, truth, 3) == 0.75
    assert top_k_accuracy(ranked, truth, 10) == 0.75


def test_top_k_accuracy_errors():
    with pytest.raises(ValueError, match="truth is empty"):
        top_k_accuracy([], [], 1)
    with pytest.raises(ValueError, match="2 probes"):
        top_k_accuracy([["a"], ["b"]], ["a"], 1)
    with pytest.raises(ValueError, match="k must"):
        top_k_accuracy([["a"]], ["a"], 0)


def test_dir_at_fpir_hand_worked():
    known = [0.9, 0.8, 0.7, 0.6, 0.4]
    correct = [True, False, True, True, True]
    unknown = [0.1, 0.3, 0.5, 0.65, 0.75]
    # fpir 0.2: one unknown may pass; t = just above 0.65, so only 0.75 passes (FPIR 1/5).
    # known with score >= t and correct: 0.9, 0.7 (0.8 is wrong) -> DIR 2/5
    dir_, t = dir_at_fpir(known, correct, unknown, 0.2)
    assert (dir_, t) == (0.4, np.nextafter(0.65, np.inf))
    # fpir 0.4: t just above 0.5 -> correct and >= t: 0.9, 0.7, 0.6 -> 3/5
    assert dir_at_fpir(known, correct, unknown, 0.4) == (0.6, np.nextafter(0.5, np.inf))
    # fpir 0: t above 0.75 -> only 0.9 -> 1/5
    assert dir_at_fpir(known, correct, unknown, 0.0)[0] == 0.2
    # fpir 1: accept everything -> rank-1 rate 4/5
    assert dir_at_fpir(known, correct, unknown, 1.0) == (0.8, -math.inf)


def test_dir_at_fpir_empty_sets():
    with pytest.raises(ValueError, match="unknown_top_scores is empty"):
        dir_at_fpir([0.9], [True], [], 0.1)
    dir_, t = dir_at_fpir([], [], [0.1, 0.2], 0.5)
    assert math.isnan(dir_) and t == np.nextafter(0.1, np.inf)
    with pytest.raises(ValueError, match="known_top_correct"):
        dir_at_fpir([0.9, 0.8], [True], [0.1], 0.1)


# ---------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize("fn", [eer, det_curve, eer_threshold,
                                lambda t, n: min_dcf(t, n, 0.01),
                                lambda t, n: rates_at(t, n, 0.0)])
def test_empty_sets_raise(fn):
    with pytest.raises(ValueError, match="^target is empty"):
        fn([], [1.0])
    with pytest.raises(ValueError, match="^nontarget is empty"):
        fn([1.0], [])


def test_threshold_at_far_empty_and_nan():
    with pytest.raises(ValueError, match="^nontarget is empty"):
        threshold_at_far([], 0.1)
    with pytest.raises(ValueError, match="NaN"):
        eer([1.0, float("nan")], [0.0])
    with pytest.raises(ValueError, match="infinite"):
        det_curve([1.0, float("inf")], [0.0])


def test_accepts_lists_and_arrays_alike():
    t, n = [0.2, 0.9, 0.4], [0.1, 0.5]
    assert eer(t, n) == eer(np.array(t, np.float32), np.array(n))
    assert min_dcf(t, n, 0.05) == min_dcf(np.array(t), tuple(n), 0.05)


# ---------------------------------------------------------------------------------------------
# properties

score_lists = st.lists(st.integers(-40, 40), min_size=1, max_size=40)


def _monotone(x):
    x = np.asarray(x, np.float64)
    return x ** 3 + 5 * x - 7  # strictly increasing, exact on these integers


@given(score_lists, score_lists)
def test_eer_invariant_to_monotone_transforms(target, nontarget):
    e = eer(target, nontarget)
    assert 0.0 <= e <= 1.0
    assert eer(_monotone(target), _monotone(nontarget)) == pytest.approx(e, abs=1e-12)
    p1 = det_curve(target, nontarget)
    p2 = det_curve(_monotone(target), _monotone(nontarget))
    np.testing.assert_array_equal(p1[0], p2[0])
    np.testing.assert_array_equal(p1[1], p2[1])


@given(score_lists, score_lists, st.sampled_from([0.001, 0.01, 0.05, 0.5, 0.9]))
def test_min_dcf_is_the_brute_force_minimum(target, nontarget, p_target):
    cost, thr = min_dcf(target, nontarget, p_target)
    assert 0.0 <= cost <= 1.0 + 1e-12
    candidates = sorted(set(target) | set(nontarget)) + [np.nextafter(max(target + nontarget),
                                                                      np.inf)]
    norm = min(p_target, 1 - p_target)

    def dcf(t):
        frr, far = rates_at(target, nontarget, t)
        return (p_target * frr + (1 - p_target) * far) / norm

    assert cost == pytest.approx(min(dcf(t) for t in candidates), abs=1e-12)
    assert dcf(thr) == pytest.approx(cost, abs=1e-12)


@given(score_lists, score_lists)
def test_eer_threshold_is_most_balanced_and_brackets_eer(target, nontarget):
    p_miss, p_fa, _ = det_curve(target, nontarget)
    frr, far = rates_at(target, nontarget, eer_threshold(target, nontarget))
    assert abs(frr - far) <= np.min(np.abs(p_miss - p_fa)) + 1e-12
    e = eer(target, nontarget)
    assert min(frr, far) - 1e-12 <= e <= max(frr, far) + 1e-12


@given(score_lists, st.floats(0.0, 1.0))
def test_threshold_at_far_property(nontarget, far):
    thr = threshold_at_far(nontarget, far)
    assert rates_at([0.0], nontarget, thr)[1] <= far
    if thr != -math.inf:
        assert rates_at([0.0], nontarget, np.nextafter(thr, -np.inf))[1] > far

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from speakerdb.errors import UsageError
from speakerdb.eval.calibrate import Calibration, calibrate
from speakerdb.eval.metrics import eer

# ------------------------------------------------------------------ calibrate


def gaussian_scores(seed=0, n_t=400, n_n=3000):
    rng = np.random.default_rng(seed)
    return rng.normal(0.7, 0.1, n_t), rng.normal(0.2, 0.1, n_n)


@pytest.mark.parametrize("far", [0.001, 0.01, 0.05, 0.1, 1 / 3, 0.29, 0.5])
def test_far_threshold_is_the_lowest_meeting_the_target(far):
    t, n = gaussian_scores()
    cal = calibrate(t, n, target_far=far)
    achieved = np.mean(n >= cal.threshold)
    assert cal.far == achieved <= far
    assert cal.frr == np.mean(t < cal.threshold)
    # lowering the threshold to the highest rejected nontarget would accept one too many
    lower = n[n < cal.threshold].max()
    assert np.mean(n >= lower) > far
    assert cal.threshold == np.nextafter(lower, np.inf)
    assert cal.method == f"far={far!r}" and cal.targets == 400 and cal.nontargets == 3000
    assert cal.score_norm == "none" and cal.dim == 256


def test_far_known_answer_with_ties():
    n = np.array([0.1, 0.2, 0.3, 0.3, 0.5, 0.5, 0.5, 0.6, 0.9, 0.95])
    t = np.array([0.5, 0.55, 0.9])
    # at most 2 of 10 may be accepted; the 3rd largest is 0.6
    cal = calibrate(t, n, target_far=0.2)
    assert cal.threshold == np.nextafter(0.6, 1.0)
    assert (cal.far, cal.frr) == (0.2, 2 / 3)
    # at most 4 accepted: the 5th largest, 0.5, is tied with the 6th and 7th, all rejected
    cal = calibrate(t, n, target_far=0.4)
    assert cal.threshold == np.nextafter(0.5, 1.0)
    assert (cal.far, cal.frr) == (0.3, 1 / 3)
    # 0.7 allows 7: the 8th largest is 0.3 (tied with the 9th) so 0.3 itself is rejected
    cal = calibrate(t, n, target_far=0.7)
    assert cal.threshold == np.nextafter(0.3, 1.0) and cal.far == 0.6
    # a score equal to the threshold is accepted
    assert calibrate(np.array([cal.threshold]), n, target_far=0.7).frr == 0.0


def test_far_threshold_in_float32():
    t, n = (a.astype(np.float32) for a in gaussian_scores(3))
    cal = calibrate(t, n, target_far=0.01)
    thr32 = np.float32(cal.threshold)
    assert float(thr32) == cal.threshold  # representable, so compares the same either way
    assert np.mean(n >= thr32) == cal.far <= 0.01
    assert np.mean(n >= np.nextafter(thr32, np.float32(-np.inf))) > 0.01


def test_far_needs_enough_nontargets():
    t, n = gaussian_scores(n_n=200)
    with pytest.raises(UsageError, match="at least 1000 nontarget scores, got 200"):
        calibrate(t, n, target_far=0.001)
    cal = calibrate(t, n, target_far=0.005)  # exactly 1/200: one accept allowed
    assert cal.far == 0.005
    with pytest.raises(UsageError, match="at least 3 nontarget"):
        calibrate(t, n[:2], target_far=1 / 3)


@pytest.mark.parametrize("seed", range(5))
def test_eer_threshold(seed):
    t, n = gaussian_scores(seed, n_t=300, n_n=2000)
    t = t - 0.3  # overlap enough for a visible EER
    cal = calibrate(t, n, method="eer")
    assert cal.method == "eer"
    step = max(1 / len(t), 1 / len(n))
    assert abs(cal.far - cal.frr) <= step + 1e-12
    ref = eer(t, n)
    assert abs(cal.far - ref) <= 1 / len(n) + 1e-12
    assert abs(cal.frr - ref) <= 1 / len(t) + 1e-12
    assert cal.far == np.mean(n >= cal.threshold) and cal.frr == np.mean(t < cal.threshold)
    # an operating point of the DET curve: accept scores >= one of the pooled scores
    assert np.any(np.concatenate([t, n]) == cal.threshold)


@pytest.mark.parametrize("seed", range(5))
def test_calibrate_and_eval_give_the_same_thresholds(seed):
    """`speakerdb calibrate --eer/--far` store the thresholds `speakerdb eval` reports."""
    from speakerdb.eval.metrics import eer_threshold, threshold_at_far

    t, n = gaussian_scores(seed, n_t=300, n_n=2000)
    t = t - 0.3
    assert calibrate(t, n, method="eer").threshold == eer_threshold(t, n)
    for far in (0.01, 0.05, 1 / 3):
        assert calibrate(t, n, target_far=far).threshold == threshold_at_far(n, far)


def test_eer_known_answer():
    t = np.array([0.6, 0.7, 0.8, 0.9])
    n = np.array([0.1, 0.2, 0.3, 0.65])
    cal = calibrate(t, n, method="eer")
    # accept >= 0.65: FAR 1/4, FRR 1/4 (balanced); >= 0.6 would give FAR 1/4, FRR 0
    assert cal.threshold == 0.65
    assert (cal.far, cal.frr) == (0.25, 0.25) and eer(t, n) == 0.25
    separable = calibrate(np.array([0.8, 0.9]), np.array([0.1, 0.2, 0.3]), method="eer")
    assert separable.threshold == 0.8  # the lowest balanced point: accept every target
    assert (separable.far, separable.frr) == (0.0, 0.0)


def test_eer_with_ties():
    t = np.array([0.5, 0.5, 0.7, 0.7])
    n = np.array([0.3, 0.5, 0.5, 0.5])
    cal = calibrate(t, n, method="eer")
    # accept >= 0.5: FRR 0, FAR 3/4 (gap 3/4); accept >= 0.7: FRR 1/2, FAR 0 (gap 1/2)
    assert cal.threshold == 0.7
    assert (cal.far, cal.frr) == (0.0, 0.5)
    same = calibrate(np.full(3, 0.4), np.full(5, 0.4), method="eer")
    assert same.threshold == np.nextafter(0.4, 1.0) and (same.far, same.frr) == (0.0, 1.0)


def test_eer_threshold_is_a_float32_value_for_float32_scores():
    a = np.float32(0.5)
    b = np.nextafter(a, np.float32(1))
    cal = calibrate(np.array([b], np.float32), np.array([a], np.float32), method="eer")
    assert cal.threshold == float(b) and (cal.far, cal.frr) == (0.0, 0.0)
    same = calibrate(np.full(3, a), np.full(2, a), method="eer")  # reject everything
    assert same.threshold == float(b) and (same.far, same.frr) == (0.0, 1.0)


# ------------------------------------------------------------------ Calibration records


def test_calibration_round_trip():
    t, n = gaussian_scores(4)
    for cal in (calibrate(t, n, target_far=0.01),
                calibrate(t, n, method="eer", score_norm="asnorm", dim=128)):
        d = cal.to_dict()
        assert set(d) == {"threshold", "method", "far", "frr", "targets", "nontargets",
                          "score_norm", "dim"}
        back = Calibration.from_dict(json.loads(json.dumps(d)))
        assert back == cal
        assert back.threshold == cal.threshold  # bit for bit
        assert type(back.targets) is int and type(back.threshold) is float
    minimal = {"threshold": 0.5, "method": "eer", "far": 0.1, "frr": 0.1, "targets": 3,
               "nontargets": 9}
    assert Calibration.from_dict(minimal) == Calibration(0.5, "eer", 0.1, 0.1, 3, 9)


def test_calibration_from_dict_errors():
    good = Calibration(0.5, "eer", 0.1, 0.1, 3, 9).to_dict()
    with pytest.raises(UsageError, match="lacks threshold"):
        Calibration.from_dict({k: v for k, v in good.items() if k != "threshold"})
    with pytest.raises(UsageError, match="unknown"):
        Calibration.from_dict({**good, "extra": 1})
    with pytest.raises(UsageError, match="targets"):
        Calibration.from_dict({**good, "targets": 3.5})
    with pytest.raises(UsageError, match="threshold"):
        Calibration.from_dict({**good, "threshold": "0.5"})
    with pytest.raises(UsageError, match="method"):
        Calibration.from_dict({**good, "method": None})
    with pytest.raises(UsageError, match="mapping"):
        Calibration.from_dict([("threshold", 0.5)])


def test_calibrate_errors():
    t, n = gaussian_scores()
    cases = [
        (([], n), {"target_far": 0.01}, "no target scores"),
        ((t, []), {"method": "eer"}, "no nontarget scores"),
        ((t, n), {}, "exactly one"),
        ((t, n), {"target_far": 0.01, "method": "eer"}, "exactly one"),
        ((t, n), {"target_far": 0.0}, "between 0 and 1"),
        ((t, n), {"target_far": 1.0}, "between 0 and 1"),
        ((t, n), {"target_far": -0.2}, "between 0 and 1"),
        ((t, n), {"target_far": 1.5}, "between 0 and 1"),
        ((t, n), {"target_far": math.nan}, "between 0 and 1"),
        ((t, n), {"target_far": "0.01"}, "number"),
        ((t, n), {"method": "minDCF"}, "method"),
        ((np.append(t, np.nan), n), {"method": "eer"}, "non-finite"),
        ((t, np.append(n, np.inf)), {"method": "eer"}, "non-finite"),
        ((t, n), {"method": "eer", "dim": 0}, "dim"),
        ((t, n), {"method": "eer", "score_norm": None}, "score_norm"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(UsageError, match=message) as err:
            calibrate(*args, **kwargs)
        assert "\n" not in str(err.value)

import numpy as np

from speakerdb.model.prefixes import unit


def _old_unit(x):
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def test_unit_matches_old_copies_bit_for_bit():
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((7, 5)).astype(np.float32)
    rows[2] = 0.0
    got = unit(rows)
    assert got.dtype == np.float64
    assert np.array_equal(got, _old_unit(rows))
    assert np.array_equal(got[2], np.zeros(5))
    assert np.allclose(np.linalg.norm(np.delete(got, 2, axis=0), axis=1), 1.0)


def test_unit_of_one_vector():
    assert np.array_equal(unit([3.0, 4.0]), np.array([0.6, 0.8]))
    assert np.array_equal(unit(np.zeros(3)), np.zeros(3))

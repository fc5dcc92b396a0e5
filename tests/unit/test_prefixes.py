import numpy as np
import pytest

from speakerdb.model.prefixes import DIMS, mean_embedding, nested, prefix


def test_prefix_slices_then_normalises():
    raw = np.zeros(256, np.float32)
    raw[:64] = 3.0  # the 64-D head: all equal
    raw[64:] = 100.0  # the tail must not influence the 64-D embedding
    p = prefix(raw, 64)
    np.testing.assert_allclose(p, np.full(64, 1 / 8), rtol=1e-6)
    full = prefix(raw, 256)
    assert abs(np.linalg.norm(full) - 1) < 1e-6
    assert full[0] < p[0]  # normalising the whole vector first would give a different head


def test_nested_has_every_dim_and_unit_rows():
    raw = np.random.default_rng(0).standard_normal((5, 256)).astype(np.float32)
    out = nested(raw)
    assert sorted(out) == list(DIMS)
    for d, v in out.items():
        assert v.shape == (5, d)
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(v, raw[:, :d] / np.linalg.norm(raw[:, :d], axis=1, keepdims=True), rtol=1e-5)


def test_zero_row_stays_zero_and_bad_dim_raises():
    assert not prefix(np.zeros((1, 256)), 64).any()
    with pytest.raises(ValueError):
        prefix(np.zeros(256), 100)


def test_mean_embedding_weights_segments_equally():
    a = np.zeros(256, np.float32)
    a[0] = 10.0
    b = np.zeros(256, np.float32)
    b[1] = 0.1  # tiny norm, same weight once normalised
    m = mean_embedding(np.stack([a, b]))
    np.testing.assert_allclose(m[64][:2], [1 / np.sqrt(2), 1 / np.sqrt(2)], rtol=1e-6)

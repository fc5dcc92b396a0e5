"""The id -> storage row lookup behind exact rescoring, dense and sparse, against a dict."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from speakerdb.index.rows import DENSE_SPAN, RowTable


def _check(stored: np.ndarray, asked: np.ndarray) -> None:
    table = RowTable(stored)
    where = {int(i): r for r, i in enumerate(stored.tolist())}
    rows, found = table.rows(asked)
    assert found.tolist() == [int(i) in where for i in asked]
    assert rows[found].tolist() == [where[int(i)] for i in asked[found]]


@given(st.lists(st.integers(-5, 3000), unique=True, max_size=200),
       st.lists(st.integers(-10, 3010), max_size=50))
def test_rows_match_a_dict(stored, asked):
    _check(np.array(stored, np.int64), np.array(asked, np.int64))


def test_dense_ids_use_a_direct_table():
    stored = np.random.default_rng(0).permutation(np.arange(100, 20100))
    table = RowTable(stored)
    assert table.dense
    _check(stored, np.array([99, 100, 20099, 20100, 5000, -1]))


def test_sparse_ids_fall_back_to_binary_search():
    stored = np.arange(1000, dtype=np.int64) * (DENSE_SPAN + 3) * 1000
    table = RowTable(stored)
    assert not table.dense
    _check(stored, np.concatenate([stored[::7][::-1], stored[:5] + 1, [-3, 2**40]]))


def test_empty_table_finds_nothing():
    rows, found = RowTable(np.zeros(0, np.int64)).rows(np.array([0, 1]))
    assert not found.any() and rows.shape == (2,)


@pytest.mark.parametrize("dense", [True, False])
def test_huge_ids_do_not_wrap(dense):
    base = 2**40
    stored = np.array([base, base + 1, base + (10 if dense else 10**9)], np.int64)
    assert RowTable(stored).dense == dense
    _check(stored, np.array([base + 1, base - 2**40, 1 - base]))

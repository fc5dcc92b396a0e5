import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from speakerdb.index.choose import (
    FLAT_MAX_VECTORS,
    MAX_LISTS,
    MIN_LISTS,
    PROBE_DIVISOR,
    IndexChoice,
    choose_index,
    choose_index_key,
    ivf_lists,
    parse_choice,
    screen_dim,
)
from speakerdb.model.prefixes import DIMS

SCREEN = screen_dim(DIMS)  # 64


@pytest.mark.parametrize(
    "n, dim, key, param",
    [
        (0, 64, "Flat", ""),
        (1, 64, "Flat", ""),
        (1_000, 128, "Flat", ""),
        (FLAT_MAX_VECTORS - 1, 64, "Flat", ""),
        (FLAT_MAX_VECTORS, 64, "IVF2048,SQfp16", "nprobe=341"),  # 4 * sqrt(200k) = 1789
        (1_000_000, 64, "IVF4096,SQfp16", "nprobe=682"),
        (4_000_000, 64, "IVF8192,SQfp16", "nprobe=1365"),
        (10 * FLAT_MAX_VECTORS, 128, "Flat", ""),
        (10 * FLAT_MAX_VECTORS, 192, "Flat", ""),
        (10 * FLAT_MAX_VECTORS, 256, "Flat", ""),
    ],
)
def test_choose_table(n, dim, key, param):
    assert choose_index(n, dim, SCREEN) == IndexChoice(key, param)
    assert choose_index_key(n, dim, SCREEN) == key


def test_only_the_screen_dimension_is_approximate():
    assert choose_index(10**7, 64, screen_dim=192) == IndexChoice("Flat")
    assert choose_index(10**7, 192, screen_dim=192).key.startswith("IVF")
    assert choose_index(10**7, 64, screen_dim=None) == IndexChoice("Flat")


@pytest.mark.parametrize("dims, screen", [(DIMS, 64), ((64, 128, 192), 64),
                                          ((32, 96), 32), ((192,), None), ((64,), None)])
def test_the_screen_is_the_first_of_several_dimensions(dims, screen):
    assert screen_dim(dims) == screen


@given(st.integers(0, 10**9))
def test_list_count_is_a_clamped_power_of_two_growing_with_n(n):
    lists = ivf_lists(n)
    assert MIN_LISTS <= lists <= MAX_LISTS and lists & (lists - 1) == 0
    assert ivf_lists(n + n // 2 + 1) >= lists
    choice = choose_index(max(n, FLAT_MAX_VECTORS), 64, SCREEN)
    assert choice.nprobe == choice.nlist // PROBE_DIVISOR


@pytest.mark.parametrize("n, dim", [(-1, 64), (10, 0)])
def test_choose_rejects_nonsense(n, dim):
    with pytest.raises(ValueError):
        choose_index_key(n, dim, SCREEN)


def test_parse_choice_round_trip_and_rejects_unknown_kinds():
    for c in (IndexChoice("Flat"), choose_index(10**6, 64, SCREEN)):
        assert parse_choice(c.key, c.param) == c
    for key, param in [("HNSW32,Flat", ""), ("IVF0,SQfp16", "nprobe=1"),
                       ("IVF4096,Flat", "nprobe=341"),  # an earlier version's screen: rebuilt
                       ("IVF64,SQfp16", "nprobe=65"), ("IVF64,SQfp16", ""), ("Flat", "nprobe=2")]:
        with pytest.raises(ValueError):
            parse_choice(key, param)


def test_importing_index_package_does_not_import_faiss():
    code = "import sys, speakerdb.index; assert 'faiss' not in sys.modules, 'faiss imported'"
    subprocess.run([sys.executable, "-c", code], check=True)

import subprocess
import sys

import pytest

from speakerdb.index.choose import FLAT_MAX_VECTORS, choose_index_key


@pytest.mark.parametrize(
    "n, dim, key",
    [
        (0, 64, "Flat"),
        (1, 64, "Flat"),
        (1_000, 128, "Flat"),
        (FLAT_MAX_VECTORS - 1, 64, "Flat"),
        (FLAT_MAX_VECTORS, 64, "Flat"),  # next step: an HNSW key for the 64-D screen
        (10 * FLAT_MAX_VECTORS, 64, "Flat"),
        (10 * FLAT_MAX_VECTORS, 192, "Flat"),
        (10 * FLAT_MAX_VECTORS, 256, "Flat"),
    ],
)
def test_choose_table(n, dim, key):
    assert choose_index_key(n, dim) == key


@pytest.mark.parametrize("n, dim", [(-1, 64), (10, 0)])
def test_choose_rejects_nonsense(n, dim):
    with pytest.raises(ValueError):
        choose_index_key(n, dim)


def test_importing_index_package_does_not_import_faiss():
    code = "import sys, speakerdb.index; assert 'faiss' not in sys.modules, 'faiss imported'"
    subprocess.run([sys.executable, "-c", code], check=True)

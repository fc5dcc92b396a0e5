import os

import numpy as np
import pytest

from speakerdb.files.atomic import atomic_write


def _leftovers(directory):
    return [n for n in os.listdir(directory) if n.endswith(".tmp")]


def test_bytes_str_and_callable(tmp_path):
    p = tmp_path / "a.bin"
    atomic_write(p, b"\x00\x01abc")
    assert p.read_bytes() == b"\x00\x01abc"
    atomic_write(p, "héllo\n")
    assert p.read_bytes() == "héllo\n".encode()
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)

    def save(tmp):
        with open(tmp, "wb") as f:
            np.save(f, arr)

    atomic_write(p, save)
    with open(p, "rb") as f:
        assert np.array_equal(np.load(f), arr)
    assert _leftovers(tmp_path) == []


def test_failing_callable_keeps_old_file_and_no_temp(tmp_path):
    p = tmp_path / "home.json"
    atomic_write(p, '{"old": 1}')

    def broken(tmp):
        with open(tmp, "w") as f:
            f.write("partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(p, broken)
    assert p.read_text() == '{"old": 1}'
    assert _leftovers(tmp_path) == []

"""DET and histogram plots: valid PNG files, atomic writes, lazy matplotlib import."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speakerdb.eval.metrics import det_curve
from speakerdb.eval.plots import _corners, _det_label, _probit, plot_det, plot_histograms

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DIMS = (64, 128, 192, 256)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    return struct.unpack(">II", data[16:24])


def score_sets(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {f"{d}-D": (rng.normal(0.6 + d / 1000, 0.1, 300), rng.normal(0.1, 0.12, 3000))
            for d in DIMS}


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_plot_det_writes_png(tmp_path):
    out = plot_det(score_sets(), tmp_path / "new" / "dir" / "det.png", title="DET by dimension")
    assert out == tmp_path / "new" / "dir" / "det.png"
    assert png_size(out) == (780, 720)          # 6.5 x 6 in at 120 dpi
    assert no_temp_files(out.parent)


def test_plot_histograms_writes_png(tmp_path):
    out = plot_histograms(score_sets(1), str(tmp_path / "hist.png"), threshold=0.35,
                          title="Scores by dimension")
    assert out == tmp_path / "hist.png"
    width, height = png_size(out)
    assert width > 300 and height > 300
    assert width >= height                      # 2 x 2 grid of landscape panels
    assert no_temp_files(tmp_path)


def test_plots_replace_an_existing_file(tmp_path):
    target = tmp_path / "plot.png"
    target.write_bytes(b"old contents")
    plot_histograms({"only": ([0.5, 0.6, 0.7], [0.1, 0.2])}, target)
    w, h = png_size(target)
    assert w > 300 and h > 300
    plot_det({"only": ([0.5, 0.6, 0.7], [0.1, 0.2, 0.65])}, target)
    assert png_size(target) == (780, 720)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


def test_plots_reject_empty_input(tmp_path):
    with pytest.raises(ValueError, match="no DET curves"):
        plot_det({}, tmp_path / "a.png")
    with pytest.raises(ValueError, match="no histogram panels"):
        plot_histograms({}, tmp_path / "b.png")
    with pytest.raises(ValueError, match="'x' target is empty"):
        plot_histograms({"x": ([], [0.1])}, tmp_path / "c.png")
    assert not list(tmp_path.iterdir())


def test_det_label_and_probit():
    assert _det_label("256-D", 0.0123) == "256-D  EER 1.23 %"
    np.testing.assert_allclose(_probit([0.5, 0.8413447460685429]), [0.0, 1.0], atol=1e-9)
    assert np.isfinite(_probit([0.0, 1.0])).all()


def test_corners_keep_the_drawn_curve():
    rng = np.random.default_rng(5)
    target, nontarget = np.round(rng.normal(1, 1, 400), 1), np.round(rng.normal(0, 1, 900), 1)
    p_miss, p_fa, _ = det_curve(target, nontarget)
    idx = _corners(p_miss, p_fa)
    assert idx[0] == 0 and idx[-1] == len(p_miss) - 1 and len(idx) < len(p_miss)
    # every dropped point lies on the segment between the kept points around it
    dropped = np.setdiff1d(np.arange(len(p_miss)), idx)
    for i in dropped:
        lo, hi = idx[np.searchsorted(idx, i) - 1], idx[np.searchsorted(idx, i)]
        assert p_fa[lo] == p_fa[i] == p_fa[hi] or p_miss[lo] == p_miss[i] == p_miss[hi]


def test_import_does_not_load_matplotlib():
    code = "import speakerdb.eval.plots, sys; print('matplotlib' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=root, check=True)
    assert result.stdout.strip() == "False"

"""Evaluation plots: DET curves and score histograms, written as PNG files.

matplotlib is imported inside the plotting functions, so importing this module stays cheap.
Figures are drawn on a standalone :class:`matplotlib.figure.Figure` with the Agg canvas: no
pyplot state, no GUI backend, and nothing changed in the caller's matplotlib configuration.
Files are written atomically: rendered to a temporary file in the target directory, then moved
over the target with :func:`os.replace`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from speakerdb.eval.metrics import check_scores, det_curve, eer
from speakerdb.files.atomic import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_det", "plot_histograms"]

DPI = 120
DET_SIZE = (6.5, 6.0)
DET_TICKS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 40)   # percent
DET_LIMITS = (0.0005, 0.6)                          # probability, axis range
DET_CLIP = 1e-5                                     # keeps 0 and 1 finite under the probit
PANEL_SIZE = (4.6, 3.6)

_NORMAL = NormalDist()

ScorePair = tuple[ArrayLike, ArrayLike]


def _probit(p: ArrayLike) -> np.ndarray:
    """Standard normal deviate of each probability, clipped to [DET_CLIP, 1 - DET_CLIP]."""
    q = np.clip(np.asarray(p, np.float64), DET_CLIP, 1.0 - DET_CLIP)
    return np.array([_NORMAL.inv_cdf(float(x)) for x in q.reshape(-1)]).reshape(q.shape)


def _corners(p_miss: np.ndarray, p_fa: np.ndarray) -> np.ndarray:
    """Indices of the DET staircase corners: the points where the step direction changes.

    Interior points of a run of purely horizontal or purely vertical steps lie on the straight
    line between the run's ends, in probability and in probit coordinates alike, so dropping
    them leaves the drawn curve unchanged.
    """
    kind = (np.diff(p_miss) > 0).astype(np.int8) + 2 * (np.diff(p_fa) < 0).astype(np.int8)
    keep = np.ones(len(p_miss), bool)
    keep[1:-1] = (kind[1:] != kind[:-1]) | (kind[1:] == 3)
    return np.flatnonzero(keep)


def _det_label(name: str, eer_value: float) -> str:
    return f"{name}  EER {100.0 * eer_value:.2f} %"


def _check_entries(entries: Mapping[str, ScorePair], what: str) -> None:
    if not entries:
        raise ValueError(f"no {what} to plot: pass at least one name -> (target, nontarget)")


def _format_det_axes(ax: Any, title: str | None) -> None:
    ticks = _probit([t / 100.0 for t in DET_TICKS])
    labels = [f"{t:g}" for t in DET_TICKS]
    lo, hi = _probit(DET_LIMITS)
    diag = np.array([lo, hi])
    ax.plot(diag, diag, color="0.6", lw=0.8, ls="--", zorder=1)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.tick_params(labelsize=10)
    ax.set_xlabel("False accept rate (%)", fontsize=12)
    ax.set_ylabel("False reject rate (%)", fontsize=12)
    ax.grid(True, color="0.85", lw=0.8)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=13)


def _draw_det_curve(ax: Any, name: str, target: ArrayLike, nontarget: ArrayLike) -> None:
    p_miss, p_fa, _ = det_curve(target, nontarget)
    e = eer(target, nontarget)
    idx = _corners(p_miss, p_fa)
    (line,) = ax.plot(_probit(p_fa[idx]), _probit(p_miss[idx]), lw=1.8, zorder=3,
                      label=_det_label(name, e))
    z = _probit([e])[0]
    ax.plot([z], [z], "o", ms=7, color=line.get_color(), mec="black", mew=0.8, zorder=4)


def plot_det(curves: Mapping[str, ScorePair], path: str | os.PathLike[str],
             title: str | None = None) -> Path:
    """Write one DET plot of every ``name -> (target scores, non-target scores)`` entry.

    Axes are normal-deviate (probit) scales of the false accept rate (x) and false reject rate
    (y), ticked in percent from 0.1 to 40; rates are clipped to [1e-5, 1 - 1e-5] before the
    probit so that 0 and 1 stay drawable. Each curve has its EER point marked on the diagonal
    and its legend label reads ``"<name>  EER x.xx %"``. Returns the written path.
    """
    _check_entries(curves, "DET curves")
    from matplotlib.figure import Figure

    fig = Figure(figsize=DET_SIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    _format_det_axes(ax, title)
    for name, (target, nontarget) in curves.items():
        _draw_det_curve(ax, str(name), target, nontarget)
    ax.legend(loc="upper right", fontsize=10, framealpha=0.9)
    return _save(fig, path)


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _shared_bins(target: np.ndarray, nontarget: np.ndarray) -> np.ndarray:
    both = np.concatenate([target, nontarget])
    lo, hi = float(both.min()), float(both.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    count = int(np.clip(np.sqrt(both.size), 20, 60))
    return np.linspace(lo, hi, count + 1)


def _draw_panel(ax: Any, name: str, pair: ScorePair, threshold: float | None) -> None:
    target = check_scores(pair[0], f"{name!r} target")
    nontarget = check_scores(pair[1], f"{name!r} nontarget")
    bins = _shared_bins(target, nontarget)
    for scores, label, color in ((nontarget, "non-target", "tab:red"),
                                 (target, "target", "tab:green")):
        ax.hist(scores, bins=bins, density=True, histtype="stepfilled", alpha=0.45,
                color=color, edgecolor=color, lw=1.0, label=f"{label} (n={scores.size:,})")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1.2, label=f"threshold {threshold:.3g}")
    ax.set_title(name, fontsize=11)
    ax.set_xlabel("score", fontsize=10)
    ax.set_ylabel("density", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.grid(True, axis="y", color="0.9", lw=0.6)
    ax.legend(fontsize=8.5, loc="best", framealpha=0.85)


def plot_histograms(panels: Mapping[str, ScorePair], path: str | os.PathLike[str],
                    threshold: float | None = None, title: str | None = None) -> Path:
    """Write target and non-target score histograms, one subplot per ``name -> (target,
    non-target)`` entry, on a near-square grid (2x2 for four entries).

    Each panel shares its bins between the two sets, shows densities as semi-transparent
    filled histograms labelled with their counts, and draws a dashed vertical line at
    ``threshold`` when one is given. Returns the written path.
    """
    _check_entries(panels, "histogram panels")
    from matplotlib.figure import Figure

    rows, cols = _grid(len(panels))
    size = (PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows + (0.4 if title else 0.0))
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).reshape(-1)
    for ax, (name, pair) in zip(axes, panels.items()):
        _draw_panel(ax, str(name), pair, threshold)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=13)
    return _save(fig, path)


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Render ``fig`` as PNG next to ``path`` and move it into place; parents are created."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    finally:
        fig.clear()
    return out

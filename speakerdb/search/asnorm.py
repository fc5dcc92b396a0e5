"""Adaptive symmetric score normalisation (AS-norm) of cosine scores against a cohort.

For a trial score ``s`` between an enrollment ``e`` and a test ``t`` and a cohort of unit vectors,
let ``S_e`` be the cosine scores of ``e`` against every cohort vector and ``S_t`` those of ``t``.
With ``mu``/``sigma`` the mean and population standard deviation (``ddof=0``) of the ``top_n``
largest of each (Matejka et al. 2017)::

    s_norm = 0.5 * ((s - mu_e) / sigma_e + (s - mu_t) / sigma_t)

Conventions:

* Standard deviations are floored at ``STD_FLOOR`` (1e-4) before dividing. Cosine scores of
  float32 embeddings are only meaningful to about 1e-6, so a top-N spread below the floor carries
  no scale information; the floor keeps the ratio finite (``top_n=1`` always has spread 0 and is
  therefore divided by the floor).
* ``top_n``: ``None`` means ``DEFAULT_TOP_N`` (300, the project's configuration) clamped to the
  cohort size, so a small cohort uses all of its members. An explicit ``top_n`` must lie in
  ``1..cohort size``; anything else is a ``UsageError``.
* Exclusion (e.g. an enrolled speaker's own centroid must not be in its own cohort): a row whose
  remaining cohort is smaller than ``top_n`` uses every remaining member; a row with no remaining
  member is a ``UsageError``.
* Nested embeddings: a cohort for the first ``d`` dimensions is ``cohort.prefix(d)``, the first
  ``d`` components of every vector re-normalised to unit length.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from speakerdb.errors import UsageError

__all__ = [
    "DEFAULT_TOP_N",
    "STD_FLOOR",
    "Cohort",
    "asnorm",
    "cohort_from_speakers",
    "cohort_stats",
    "exclusion_mask",
    "resolve_top_n",
]

DEFAULT_TOP_N = 300
STD_FLOOR = 1e-4
_BLOCK_ELEMENTS = 1 << 22  # cohort scores held at once by cohort_stats (32 MiB of float64)
_PER_SPEAKER = ("mean", "all")


def _unit_rows(vectors, what: str) -> np.ndarray:
    """Rows of a 2-D array scaled to unit L2 norm, as float32; zero or non-finite rows are
    rejected."""
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
        raise UsageError(f"{what} must be a non-empty 2-D array (rows, dims), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise UsageError(f"{what} contain non-finite values")
    norms = np.linalg.norm(v, axis=1)
    if np.any(norms == 0):
        raise UsageError(f"{what}: row {int(np.argmax(norms == 0))} is all zeros")
    return (v / norms[:, None]).astype(np.float32)


@dataclass
class Cohort:
    """Unit cohort vectors ``(C, d)`` float32, with an optional speaker name per row.

    The constructor takes the rows as given; ``from_vectors`` L2-normalises them first.
    """

    vectors: np.ndarray
    speakers: list[str] | None = None

    def __post_init__(self):
        v = np.asarray(self.vectors)
        if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
            raise UsageError(f"cohort vectors must be a non-empty (C, d) array, got {v.shape}")
        self.vectors = np.ascontiguousarray(v, dtype=np.float32)
        if self.speakers is not None:
            self.speakers = [str(s) for s in self.speakers]
            if len(self.speakers) != v.shape[0]:
                raise UsageError(
                    f"cohort has {v.shape[0]} vectors but {len(self.speakers)} speaker names"
                )

    @classmethod
    def from_vectors(cls, vectors, speakers: Sequence[str] | None = None) -> Cohort:
        """A cohort from arbitrary non-zero rows, L2-normalised."""
        return cls(_unit_rows(vectors, "cohort vectors"),
                   None if speakers is None else list(speakers))

    @property
    def size(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def check_dim(self, d: int, what: str = "vectors") -> None:
        """``UsageError`` unless vectors of dimension ``d`` can be scored against this cohort."""
        if int(d) != self.dim:
            raise UsageError(
                f"{what} have {d} dimensions but the cohort has {self.dim}; "
                f"use cohort.prefix({d}) for a nested prefix"
            )

    def prefix(self, d: int) -> Cohort:
        """The cohort of the first ``d`` dimensions of every vector, re-normalised."""
        d = int(d)
        if not 1 <= d <= self.dim:
            raise UsageError(f"prefix dimension must be in 1..{self.dim}, got {d}")
        if d == self.dim:
            return Cohort(self.vectors.copy(), None if self.speakers is None
                          else list(self.speakers))
        return Cohort.from_vectors(self.vectors[:, :d], self.speakers)

    def save(self, path: str | os.PathLike) -> None:
        """Write an ``.npz`` with ``vectors`` and ``speakers`` (empty when there are none) to
        exactly ``path``."""
        names = np.array(self.speakers if self.speakers is not None else [], dtype=np.str_)
        with open(path, "wb") as f:
            np.savez(f, vectors=self.vectors, speakers=names,
                     has_speakers=np.array(self.speakers is not None))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Cohort:
        """Read a cohort written by ``save``; ``UsageError`` for a missing or invalid file."""
        if not os.path.isfile(path):
            raise UsageError(f"cohort file {os.fspath(path)!r} does not exist")
        where = f"cohort file {os.fspath(path)!r}"
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise UsageError(f"{where} is not a valid cohort: {e}")
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise UsageError(f"{where} is not an .npz archive")
        with z:
            missing = {"vectors", "speakers"} - set(z.files)
            if missing:
                raise UsageError(f"{where} lacks {', '.join(sorted(missing))}")
            try:
                vectors = np.array(z["vectors"])
                names = np.array(z["speakers"])
                has = bool(z["has_speakers"]) if "has_speakers" in z.files else names.size > 0
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                raise UsageError(f"{where} is not a valid cohort: {e}")
        if not np.issubdtype(vectors.dtype, np.floating):
            raise UsageError(f"{where}: vectors are not floating point")
        speakers = [str(s) for s in names.tolist()] if has else None
        try:
            return cls.from_vectors(vectors, speakers)
        except UsageError as e:
            raise UsageError(f"{where}: {e}")


def cohort_from_speakers(vectors, labels: Sequence[str], per_speaker: str = "mean") -> Cohort:
    """A cohort from labelled embeddings.

    ``per_speaker="mean"`` (the common choice): one member per speaker, the unit mean of that
    speaker's L2-normalised vectors. ``"all"``: every vector is a member, named by its speaker.
    Members are ordered by speaker name (then input order with ``"all"``).
    """
    if per_speaker not in _PER_SPEAKER:
        raise UsageError(f"per_speaker {per_speaker!r}: choose one of {', '.join(_PER_SPEAKER)}")
    x = _unit_rows(vectors, "cohort source vectors").astype(np.float64)
    labels = [str(s) for s in labels]
    if len(labels) != x.shape[0]:
        raise UsageError(f"{x.shape[0]} vectors but {len(labels)} labels")
    names, codes = np.unique(np.array(labels, dtype=np.str_), return_inverse=True)
    if per_speaker == "all":
        order = np.argsort(codes, kind="stable")
        return Cohort(x[order].astype(np.float32), [str(names[c]) for c in codes[order]])
    sums = np.zeros((len(names), x.shape[1]))
    np.add.at(sums, codes, x)
    return Cohort.from_vectors(sums, [str(n) for n in names])


def resolve_top_n(top_n: int | None, cohort_size: int) -> int:
    """The top-N to use: ``None`` gives ``min(DEFAULT_TOP_N, cohort_size)``; an explicit value
    must be an integer in ``1..cohort_size``."""
    if top_n is None:
        return min(DEFAULT_TOP_N, int(cohort_size))
    if isinstance(top_n, bool) or not isinstance(top_n, (int, np.integer)):
        raise UsageError(f"top_n must be an integer, got {top_n!r}")
    if not 1 <= int(top_n) <= int(cohort_size):
        raise UsageError(f"top_n must be in 1..{cohort_size} (the cohort size), got {top_n}")
    return int(top_n)


def exclusion_mask(cohort: Cohort, row_speakers: Sequence[str | None]) -> np.ndarray:
    """Boolean ``(n, C)`` mask that leaves out, for every row, the cohort members named like the
    row's speaker (``None``: nothing left out). The cohort must carry speaker names."""
    if cohort.speakers is None:
        raise UsageError("the cohort has no speaker names to exclude by")
    members = np.array(cohort.speakers, dtype=object)
    rows = np.array([s if s is None else str(s) for s in row_speakers], dtype=object)
    return rows[:, None] == members[None, :]


def _exclusion_indices(exclude, n: int, c: int):
    """``exclude`` as a bool mask (n, C) or an int array (n, k) padded with -1."""
    if isinstance(exclude, np.ndarray) and exclude.dtype == bool:
        if exclude.shape != (n, c):
            raise UsageError(f"exclusion mask must have shape ({n}, {c}), got {exclude.shape}")
        return exclude
    if isinstance(exclude, np.ndarray) and np.issubdtype(exclude.dtype, np.integer):
        idx = exclude.reshape(n, -1) if exclude.ndim == 1 and exclude.shape[0] == n else exclude
    else:
        if len(exclude) != n:
            raise UsageError(f"exclusion has {len(exclude)} rows, expected {n}")
        lists = [[] if r is None else np.atleast_1d(np.asarray(r, dtype=np.int64)).tolist()
                 for r in exclude]
        width = max((len(r) for r in lists), default=0)
        idx = np.full((n, max(width, 1)), -1, dtype=np.int64)
        for i, r in enumerate(lists):
            idx[i, :len(r)] = r
    if idx.ndim != 2 or idx.shape[0] != n:
        raise UsageError(f"exclusion indices must have {n} rows, got shape {idx.shape}")
    if idx.size and (idx.min() < -1 or idx.max() >= c):
        raise UsageError(f"exclusion indices must be cohort indices 0..{c - 1} (or -1 for none)")
    return idx.astype(np.int64, copy=False)


def _block_mask(excl, lo: int, hi: int, c: int) -> np.ndarray | None:
    if excl is None:
        return None
    if excl.dtype == bool:
        return excl[lo:hi]
    idx = excl[lo:hi]
    rows, cols = np.nonzero(idx >= 0)
    mask = np.zeros((hi - lo, c), dtype=bool)
    mask[rows, idx[rows, cols]] = True
    return mask


def _top_stats(scores: np.ndarray, top_n: int, mask: np.ndarray | None):
    """Mean and population std of the ``top_n`` largest unmasked entries of every row."""
    c = scores.shape[1]
    if mask is not None:
        scores = np.where(mask, -np.inf, scores)
    top = np.partition(scores, c - top_n, axis=1)[:, c - top_n:]
    if mask is None:
        return top.mean(axis=1), top.std(axis=1)
    valid = np.isfinite(top)
    count = valid.sum(axis=1)
    if np.any(count == 0):
        raise UsageError(f"row {int(np.argmax(count == 0))} has every cohort member excluded")
    vals = np.where(valid, top, 0.0)
    mean = vals.sum(axis=1) / count
    var = np.where(valid, (top - mean[:, None]) ** 2, 0.0).sum(axis=1) / count
    return mean, np.sqrt(var)


def cohort_stats(x, cohort: Cohort, top_n: int | None = None, exclude=None):
    """``(mean, std)``, float64 arrays of shape ``(n,)``: statistics of the ``top_n`` largest
    scores (dot products, i.e. cosines for unit rows) of every row of ``x`` (n, d) against the
    cohort (population std, not yet floored).

    ``exclude`` leaves cohort members out per row, in any of these forms:
    a bool mask ``(n, C)`` (see ``exclusion_mask``); an int array ``(n,)`` with one cohort index
    per row; an int array ``(n, k)`` of indices; or a sequence of ``n`` index lists (``None`` or
    empty for none). Index ``-1`` means none. Rows are processed in blocks to bound memory.
    """
    top_n = resolve_top_n(top_n, cohort.size)
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise UsageError(f"vectors must be a 2-D array (n, d), got shape {x.shape}")
    cohort.check_dim(x.shape[1])
    n, c = x.shape[0], cohort.size
    excl = None if exclude is None else _exclusion_indices(exclude, n, c)
    cv = cohort.vectors.astype(np.float64)
    mean, std = np.empty(n), np.empty(n)
    block = max(1, _BLOCK_ELEMENTS // c)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        s = x[lo:hi].astype(np.float64) @ cv.T
        mean[lo:hi], std[lo:hi] = _top_stats(s, top_n, _block_mask(excl, lo, hi, c))
    return mean, std


def asnorm(scores, e_stats, t_stats) -> np.ndarray:
    """AS-norm of ``scores`` given the enrollment and test cohort statistics, each a pair
    ``(mean, std)`` broadcastable against ``scores``; stds are floored at ``STD_FLOOR``.

    For a matrix of ``(Q, G)`` scores of Q tests (rows) against G enrollments (columns), pass
    enrollment statistics of shape ``(G,)`` and test statistics of shape ``(Q, 1)``; for ``(n,)``
    trial scores pass ``(n,)`` statistics. Returns float64.
    """
    s = np.asarray(scores, dtype=np.float64)
    try:
        me, se = (np.asarray(a, dtype=np.float64) for a in e_stats)
        mt, st = (np.asarray(a, dtype=np.float64) for a in t_stats)
    except (TypeError, ValueError):
        raise UsageError("cohort statistics must be pairs (mean, std)")
    shapes = [s.shape, me.shape, se.shape, mt.shape, st.shape]
    try:
        out_shape = np.broadcast_shapes(*shapes)
    except ValueError:
        raise UsageError(f"scores and cohort statistics do not broadcast: shapes {shapes}")
    if out_shape != s.shape:
        raise UsageError(f"cohort statistics of shapes {shapes[1:]} would reshape the scores "
                         f"{s.shape}")
    se = np.maximum(se, STD_FLOOR)
    st = np.maximum(st, STD_FLOOR)
    return 0.5 * ((s - me) / se + (s - mt) / st)

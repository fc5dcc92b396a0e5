"""Open-set identification thresholds that follow the gallery's size.

An unknown voice is scored against each of the ``N`` speakers of a gallery and the best score
decides, so the fraction of unknown voices matched to someone (FPIR) is the chance that the
*best of N* impostor scores reaches the threshold. That grows with ``N``: a threshold set for one
comparison (a FAR) or for a small gallery lets more unknown voices through a larger one.

The per-comparison impostor scores are modelled, for a probe ``p`` and a speaker ``j``, as

    s_pj = m_p + e_pj,    m_p ~ Normal(mu, sd_probe²)    (how "close to everyone" a voice is)

with ``e_pj`` independent given the probe and its upper tail that of
``Normal(tail_loc, tail_sd²)``: a line fitted to the residual quantiles between ``TAIL_FROM`` and
``1 - 10 / n`` against the standard normal quantiles, so a tail heavier than a Gaussian's (as
real impostor scores have) is followed where the data show it. Then

    FPIR(t, N) = 1 - E_m[ Phi((t - m - tail_loc) / tail_sd) ** N ]

(Gauss-Hermite quadrature over ``m``), and the threshold for a target FPIR at gallery size ``N``
solves ``FPIR(t, N) = target``. Because a few dozen speakers pin these statistics down only
roughly, the fit is repeated on ``REPLICATES`` bootstrap resamples of the speakers and the
threshold used is the point fit's plus ``CONFIDENCE_SD`` standard deviations of the
replicates' thresholds (a one-sided bound of about 93 %): with little data the threshold errs
towards rejecting unknown voices. (The replicates' own quantiles are not used: resampling
speakers with repeats thins the tail, so they sit below the point fit.)

The model is the same for every aggregation rule and score normalisation; only the scores it
is fitted on differ (``search.leave_one_out.loo_matrix``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from speakerdb.errors import UsageError

__all__ = ["CONFIDENCE_SD", "MIN_SPEAKERS", "REPLICATES", "SPEAKS_FOR", "ImpostorModel",
           "ImpostorParams", "fit_impostors", "impostor_matrix", "space_key"]

TAIL_FROM = 0.9  # residual quantiles from here up describe the tail
REPLICATES = 40  # bootstrap resamples of the speakers
# The threshold is the point fit's plus this many replicate sds. bench/openset_speech_dev.py:
# with 1.0 a calibration made on 20 speakers and used at 42 let 2.4 % of unknown voices through
# (target 1 %); with 1.5, 1.5 %, for about 4 points of DIR on 1 s + babble probes.
CONFIDENCE_SD = 1.5
MIN_SPEAKERS = 10  # fewer labelled speakers than this cannot give impostor statistics
SPEAKS_FOR = 4.0  # a fit speaks for galleries up to this many times its own speakers
_GH_NODES = 48
_BISECT = 60


def space_key(score_norm: str, rule: str, dim: int) -> str:
    """The key a calibration or a set of statistics is stored under: ``none/max/256``."""
    return f"{score_norm}/{rule}/{int(dim)}"


@dataclass(frozen=True)
class ImpostorParams:
    """One fit of the model in the module docstring."""

    mu: float
    sd_probe: float
    tail_loc: float
    tail_sd: float


def _nodes():
    x, w = np.polynomial.hermite_e.hermegauss(_GH_NODES)
    return x, w / w.sum()


def _fpir(params: list[ImpostorParams], t: np.ndarray, n: int) -> np.ndarray:
    """FPIR of each parameter set (r,) at thresholds ``t`` (r,) for ``n`` speakers."""
    from scipy.special import log_ndtr

    x, w = _nodes()
    mu = np.array([p.mu for p in params])[:, None]
    sb = np.array([p.sd_probe for p in params])[:, None]
    loc = np.array([p.tail_loc for p in params])[:, None]
    sd = np.array([p.tail_sd for p in params])[:, None]
    z = (np.asarray(t, np.float64)[:, None] - mu - sb * x[None, :] - loc) / sd
    stay = np.exp(n * log_ndtr(z))  # P(all n impostors below t | probe effect)
    return 1.0 - stay @ w


def _thresholds(params: list[ImpostorParams], fpir: float, n: int) -> np.ndarray:
    lo = np.full(len(params), -10.0)
    hi = np.full(len(params), 10.0)
    for _ in range(_BISECT):
        mid = (lo + hi) / 2
        above = _fpir(params, mid, n) > fpir
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return hi


@dataclass(frozen=True)
class ImpostorModel:
    """Impostor statistics of one score space (normalisation, rule, dimension) and what they
    were measured on; ``threshold(fpir, n)`` is the decision threshold for ``n`` speakers."""

    point: ImpostorParams
    replicates: tuple[ImpostorParams, ...]
    speakers: int  # speakers the statistics were measured on
    probes: int  # probe vectors (each against every other speaker)
    comparisons: int
    segments_per_speaker: float
    source: str = ""  # what they were measured on, in words
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def fpir(self, threshold: float, n: int) -> float:
        """The modelled FPIR of ``threshold`` at ``n`` speakers (point estimate)."""
        return float(_fpir([self.point], np.array([threshold]), _gallery(n))[0])

    def threshold(self, fpir: float, n: int) -> float:
        """The threshold for a target ``fpir`` at ``n`` speakers: the point fit's plus
        ``CONFIDENCE_SD`` standard deviations of the bootstrap replicates' thresholds."""
        if not 0.0 < fpir < 1.0:
            raise UsageError(f"target FPIR must be strictly between 0 and 1, got {fpir!r}")
        key = (float(fpir), _gallery(n))
        if key not in self._cache:
            ts = _thresholds([self.point, *self.replicates], key[0], key[1])
            spread = float(np.std(ts[1:], ddof=1)) if len(ts) > 2 else 0.0
            self._cache[key] = float(ts[0]) + CONFIDENCE_SD * spread
        return self._cache[key]

    def speaks_for(self, n: int) -> bool:
        """Whether a gallery of ``n`` speakers is within ``SPEAKS_FOR`` times the speakers
        the statistics were measured on."""
        return n <= SPEAKS_FOR * max(self.speakers, 1)

    def to_dict(self) -> dict:
        return {"point": asdict(self.point), "replicates": [list(asdict(p).values())
                                                            for p in self.replicates],
                "speakers": int(self.speakers), "probes": int(self.probes),
                "comparisons": int(self.comparisons),
                "segments_per_speaker": round(float(self.segments_per_speaker), 4),
                "source": self.source}

    @classmethod
    def from_dict(cls, d: Mapping) -> ImpostorModel:
        try:
            point = ImpostorParams(**{k: float(v) for k, v in d["point"].items()})
            reps = tuple(ImpostorParams(*map(float, r)) for r in d.get("replicates", ()))
            return cls(point, reps, int(d["speakers"]), int(d["probes"]),
                       int(d["comparisons"]), float(d.get("segments_per_speaker", 0.0)),
                       str(d.get("source", "")))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise UsageError(f"unusable impostor statistics ({e!r})") from None


def _gallery(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UsageError(f"gallery size must be a positive integer, got {n!r}")
    return int(n)


def impostor_matrix(scores: np.ndarray, own: np.ndarray) -> np.ndarray:
    """``scores`` (probes, speakers) with each probe's own speaker (``own``: column index or
    -1) set to NaN: the probe against impostors only."""
    m = np.array(scores, dtype=np.float64, copy=True)
    rows = np.flatnonzero(np.asarray(own) >= 0)
    m[rows, np.asarray(own)[rows]] = np.nan
    return m


def _fit(imp: np.ndarray) -> ImpostorParams:
    """The model's parameters from an impostor matrix (NaN: no comparison)."""
    from scipy.special import ndtri

    ok = np.isfinite(imp)
    cnt = ok.sum(axis=1)
    keep = cnt >= 2
    imp, ok, cnt = imp[keep], ok[keep], cnt[keep]
    if imp.shape[0] < 2:
        raise UsageError("impostor statistics need at least 2 probes with 2 impostor speakers")
    pm = np.where(ok, imp, 0.0).sum(axis=1) / cnt
    resid = (imp - pm[:, None])[ok]
    var_e = float(resid.var()) * float(np.mean(cnt / (cnt - 1)))
    var_b = max(float(pm.var()) - float(np.mean(var_e / cnt)), 0.0)
    n = resid.size
    q_hi = max(TAIL_FROM + 0.01, 1.0 - 10.0 / n)
    qs = np.linspace(TAIL_FROM, min(q_hi, 0.9999), 25)
    z = ndtri(qs)
    y = np.quantile(resid, qs)
    slope, loc = np.polyfit(z, y, 1)
    if not slope > 0:  # degenerate (all scores equal): a tiny spread keeps the model defined
        slope = max(math.sqrt(var_e), 1e-6)
    return ImpostorParams(float(pm.mean()), math.sqrt(var_b), float(loc), float(slope))


def fit_impostors(scores: np.ndarray, probe_speaker: np.ndarray, *, replicates: int = REPLICATES,
                  seed: int = 0, segments_per_speaker: float = 0.0,
                  source: str = "") -> ImpostorModel:
    """Impostor statistics from leave-one-speaker-out scores: ``scores`` (probes, S) holds
    each probe's aggregated score against every speaker (``search.leave_one_out.loo_matrix``);
    ``probe_speaker`` (probes,) the column of the probe's own speaker, which is left out. The
    bootstrap resamples speakers (their probes and their columns together), seeded."""
    s = np.asarray(scores, dtype=np.float64)
    spk = np.asarray(probe_speaker, dtype=np.int64)
    if s.ndim != 2 or s.shape[0] != spk.shape[0]:
        raise UsageError(f"scores {s.shape} do not match {spk.shape[0]} probe speakers")
    n_spk = s.shape[1]
    if n_spk < 3:
        raise UsageError(f"impostor statistics need at least 3 speakers, got {n_spk}")
    imp = impostor_matrix(s, spk)
    point = _fit(imp)
    rows_of = [np.flatnonzero(spk == j) for j in range(n_spk)]
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(int(replicates)):
        pick = rng.integers(0, n_spk, n_spk)
        rows = np.concatenate([rows_of[j] for j in pick])
        if rows.size < 2:
            continue
        sub = s[np.ix_(rows, pick)]
        own = spk[rows][:, None] == pick[None, :]
        sub[own] = np.nan
        try:
            reps.append(_fit(sub))
        except UsageError:
            continue
    return ImpostorModel(point, tuple(reps), n_spk, int(s.shape[0]), int(np.isfinite(imp).sum()),
                         float(segments_per_speaker), source)

"""Identification evaluation: labelled probes searched against a database (the gallery), per
degraded-probe condition, nested dimension and speaker-aggregation rule.

Probes are embedded once per condition (``EmbeddingCache``; babble talkers come from the
cache's labelled files) and put in the database's space exactly as ``SpeakerDB.identify`` puts
a query: each segment's raw output goes through ``db.space`` and the nested prefixes are
averaged per dimension. In an identity space the cache's vectors are that already; with a
learned rotation the cache embeds through the rotation (an internal cache with the same files,
root and policy when the one given is not in the database's space).

Scores are exhaustive: up to ``EXACT_LIMIT`` gallery segments, the cosine of every probe with
every stored vector (projected by ``db.space``) by matrix products over blocks of probes. Above
the limit each probe takes the ``INDEX_K`` best segments of the FAISS index at each dimension
(``exhaustive_search``) and only those count, as in ``identify``. Segment scores are aggregated
per speaker with the rules of ``speakerdb.search.decision.aggregate``, vectorised with the same
definitions and tie order (speakers by score, then label): ``max``, ``mean``, ``top2``,
``topk`` (k = ``cascade.agg_k``) and ``centroid`` (cosine with the unit mean of the speaker's
unit segment vectors at that dimension; a speaker is a candidate when it has a scored
segment). A rule ``aggregate`` does not know, or one not listed here, is skipped with a note.

The gallery is the one identify scores against (``db.scorer.gallery()``: every stored
segment's unit vector in the database's space, with its speaker), and ``Store.recording_segments``
gives each stored recording's path, content sha256 and segments.

Leave-one-out: a probe whose own audio is stored (the same resolved path as a recording's
stored path, or the same content sha256 as a recording) never scores against that recording's
segments, so a gallery built from every probe file can still be evaluated. A probe is *known*
when its speaker keeps at least one gallery segment after that exclusion, else *unknown*.

Metrics per (condition, dim, rule): closed-set top-1 and top-k accuracy over known probes, and
open-set DIR at each FPIR (``dir_at_fpir`` on top-1 scores; None with the note ``no unknown
probes`` when there are none): these are oracle figures, each threshold chosen on the unknown
probes themselves. At the top dimension the *operating point* gives what identify answers
without that knowledge: FPIR and DIR at the threshold identify would choose
(``scoring.identify_threshold``: calibration, model statistics, learned statistics or guess,
for the gallery's size). ``gallery_sizes`` repeats that on ``draws`` seeded subsets of the
enrolled speakers of each size, with the threshold for that size; a probe whose speaker is
left out of a subset is unknown to it. A probe without any candidate has top score ``NO_SCORE``. The
cascade section compares ``cascade_search`` with ``exhaustive_search`` at the top dimension for
each embedded probe (rule ``max``): both searches run on the whole index, then the probe's own
segments are removed from both hit lists (the exhaustive search asks for that many more hits;
in the cascade they may take shortlist places). Reported: segment recall@1 (cascade top-1 ==
exhaustive top-1), speaker top-1 agreement and mean milliseconds per query of each search
(embedding not included).

Result shape (JSON-safe; thresholds that are infinite are None)::

    {"gallery": {"speakers", "segments", "space", "dims", "scoring": "exact" | "index"},
     "rules": [...], "top_k": k, "fpirs": [...], "notes": [...],
     "conditions": {"clean": {
         "probes", "known", "unknown", "failed", "failures": {reason: count},
         "left_out": probes whose own recording was excluded, "notes": [...],
         "dims": {"64": {"max": {"top1", "top5" (top_k), "dir": {"0.01": x, "0.1": y},
                                 "thresholds": {"0.01": t, "0.1": u}}},
                  "256" (the top dimension): {"max": {..., "operating_point": {"threshold",
                        "threshold_source", "fpir", "dir", "unknown", "known"}}}},
         "gallery_sizes" (with ``gallery_sizes``): {"10": {"max": {"threshold", "fpir",
                        "dir", "unknown", "known", "draws"}}},
         "cascade": {"dim", "rule", "probes", "recall_at_1", "speaker_agreement",
                     "cascade_ms", "exhaustive_ms",
                     "config": {"k<dim>" per stage: "k64", "k128", "k192"}}}}}
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speakerdb.config import CascadeConfig
from speakerdb.errors import UsageError
from speakerdb.eval.conditions import CLEAN, Condition
from speakerdb.eval.embed import EmbeddingCache, Job
from speakerdb.eval.metrics import dir_at_fpir, top_k_accuracy
from speakerdb.eval.trials import LabelledFile
from speakerdb.files.hashing import sha256_file
from speakerdb.model.prefixes import prefix
from speakerdb.search.decision import AGGREGATIONS, aggregate

__all__ = ["EXACT_LIMIT", "INDEX_K", "NO_SCORE", "evaluate_identification"]

EXACT_LIMIT = 200_000  # galleries up to this many segments are scored by matrix products
INDEX_K = 2000  # segments per probe taken from the index above EXACT_LIMIT
NO_SCORE = -2.0  # top score of a probe without candidates: below every cosine
_BLOCK_ELEMENTS = 1 << 24  # probe x segment scores held at once
_RULES = ("max", "mean", "top2", "topk", "centroid")


@dataclass
class _Gallery:
    """Labelled segments ordered by (speaker, id), the columns of every score matrix."""

    ids: np.ndarray  # (n,) segment ids
    vectors: np.ndarray  # (n, D) unit stored vectors in the database's space
    code: np.ndarray  # (n,) speaker code, index into ``labels``
    starts: np.ndarray  # first column of each speaker
    labels: list[str]  # sorted speaker labels
    label_of: dict[int, str | None]  # every segment id (unlabelled too) -> speaker
    segments_of: dict[int, np.ndarray]  # recording id -> its segment ids
    by_path: dict[str, list[int]]  # resolved stored path -> recording ids
    by_sha: dict[str, int]  # content sha256 -> recording id
    total: int  # every stored segment


def _load_gallery(db) -> _Gallery:
    """identify's gallery (``db.scorer.gallery()``), its labelled segments ordered by (speaker,
    id), and the stored recordings by resolved path and by content."""
    whole = db.scorer.gallery()
    ids = np.asarray(whole.ids, np.int64)
    label_of = dict(zip(ids.tolist(), whole.labels))
    segments_of, by_path, by_sha = {}, {}, {}
    for rec, (sha, path, segments) in db.store.recording_segments().items():
        segments_of[rec] = segments
        by_sha[sha] = rec
        by_path.setdefault(os.path.realpath(path), []).append(rec)
    keep = np.array([label is not None for label in whole.labels], bool)
    labels = sorted({label_of[i] for i in ids[keep].tolist()})
    index = {label: k for k, label in enumerate(labels)}
    code = np.array([index[label_of[i]] for i in ids[keep].tolist()], np.int64)
    order = np.lexsort((ids[keep], code))
    code = code[order]
    starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]]) if code.size else code
    return _Gallery(ids[keep][order], whole.vectors[keep][order], code, starts, labels,
                    label_of, segments_of, by_path, by_sha, int(ids.size))


def _own_segments(g: _Gallery, path: Path) -> np.ndarray:
    """Segment ids of the stored recordings that are this probe file (path or content)."""
    recs = set(g.by_path.get(os.path.realpath(path), []))
    try:
        recs.add(g.by_sha.get(sha256_file(path), -1))
    except OSError:
        pass
    parts = [g.segments_of[r] for r in recs if r in g.segments_of]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _reason(error: str, path: str) -> str:
    text = error.removeprefix(f"{path}: ")
    return re.split(r"[:(]", text, maxsplit=1)[0].strip() or text


class _SpaceEmbedder:
    """An embedder whose outputs are in a database's space (rotated, nested dims of the space),
    so the cache's averaged prefixes equal ``space.query`` of the raw segments."""

    def __init__(self, inner, space):
        self.inner, self.space = inner, space
        self.name, self.sha256 = inner.name, f"{inner.sha256}:{space.name}"
        self.dims, self.raw_dim = tuple(space.dims), inner.raw_dim
        self.sample_rate, self.default_threshold = inner.sample_rate, inner.default_threshold

    def __call__(self, waveforms):
        return self.space.transform(self.inner(waveforms))


def _cache_for(db, probes, root: Path, cache: EmbeddingCache | None) -> EmbeddingCache:
    if cache is not None:
        if cache.embedder.sha256 != db.model.sha256:
            raise UsageError(f"the embedding cache holds {cache.embedder.name} vectors, not "
                             f"the database's {db.model.name}")
        if Path(cache.root).resolve() != Path(root).resolve():
            raise UsageError(f"the embedding cache is rooted at {cache.root}, not {root}")
        if db.space.rotation is None and tuple(cache.embedder.dims) == tuple(db.space.dims):
            return cache
    files = cache.files if cache is not None else list(probes)
    policy = cache.policy if cache is not None else db.policy
    emb = db.embedder if db.space.rotation is None else _SpaceEmbedder(db.embedder, db.space)
    return EmbeddingCache(emb, root, files, policy)


def _top_mean(s, valid, g: _Gallery, k: int, count: np.ndarray) -> np.ndarray:
    """(b, speakers) mean of each speaker's ``k`` best valid scores (all when fewer)."""
    key = g.code[None, :] * 4.0 - np.where(valid, s, -2.0)  # speakers apart, best first
    order = np.argsort(key, axis=1, kind="stable")
    ranked = np.take_along_axis(np.where(valid, s, 0.0).astype(np.float64), order, axis=1)
    rank = np.arange(g.code.size)[None, :] - g.starts[g.code][None, :]
    take = np.minimum(count, k)
    total = np.add.reduceat(np.where(rank < take[:, g.code], ranked, 0.0), g.starts, axis=1)
    return total / np.maximum(take, 1)


def _centroid(q, gallery, sums, g: _Gallery, cols) -> np.ndarray:
    """(b, speakers) cosine of each probe with each speaker's unit mean vector, the probe's own
    segments left out of it (-inf for a speaker with none left)."""
    out = (q @ sums.T) / np.maximum(np.linalg.norm(sums, axis=1), 1e-12)
    for i, own in enumerate(cols):
        for c in np.unique(g.code[own]).tolist():
            v = sums[c] - gallery[own[g.code[own] == c]].sum(axis=0)
            n = float(np.linalg.norm(v))
            out[i, c] = float(q[i] @ v) / n if n > 1e-6 else -np.inf
    return out


def _rule_scores(s, valid, g: _Gallery, rule: str, k: int, cent) -> np.ndarray:
    """(b, speakers) scores of ``rule`` from (b, n) segment scores; -inf for a speaker without
    a valid segment (``aggregate``'s definitions; ``cent`` from ``_centroid``)."""
    count = np.add.reduceat(valid, g.starts, axis=1)
    if rule == "max":
        out = np.maximum.reduceat(np.where(valid, s, -np.inf), g.starts, axis=1)
    elif rule == "mean":
        total = np.add.reduceat(np.where(valid, s, 0.0).astype(np.float64), g.starts, axis=1)
        out = total / np.maximum(count, 1)
    elif rule == "centroid":
        out = cent
    else:
        out = _top_mean(s, valid, g, 2 if rule == "top2" else k, count)
    return np.where(count > 0, out, -np.inf).astype(np.float64)


def _ranked(scores: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """(b, top_k) speaker codes best first (-1 pad; ties by label) and (b,) top scores."""
    if scores.shape[1] < top_k:
        pad = np.full((scores.shape[0], top_k - scores.shape[1]), -np.inf)
        scores = np.concatenate([scores, pad], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    top = np.take_along_axis(scores, order, axis=1)
    codes = np.where(np.isfinite(top), order, -1)
    return codes, np.where(np.isfinite(top[:, 0]), top[:, 0], NO_SCORE)


def _score_dim(db, g, q, own, rules, top_k, k, full=None) -> dict[str, tuple[np.ndarray,
                                                                            np.ndarray]]:
    """{rule: (codes (m, top_k), top scores (m,))} of the probe vectors ``q`` (m, d); with a
    dict ``full``, also {rule: (m, speakers) scores} into it."""
    m, d = q.shape
    out = {r: (np.full((m, top_k), -1, np.int64), np.full(m, NO_SCORE)) for r in rules}
    if g.ids.size == 0:
        return out
    gallery = prefix(g.vectors, d)
    sums = np.add.reduceat(gallery.astype(np.float64), g.starts, axis=0)
    column = {int(x): c for c, x in enumerate(g.ids.tolist())}
    cols = [np.array([column[x] for x in o.tolist() if x in column], np.int64) for o in own]
    tier = db.indexes if g.total > EXACT_LIMIT else None
    block = max(1, _BLOCK_ELEMENTS // g.ids.size)
    for a in range(0, m, block):
        qb = q[a:a + block]
        if tier is None:
            s, valid = qb @ gallery.T, np.ones((len(qb), g.ids.size), bool)
        else:
            s = np.zeros((len(qb), g.ids.size), np.float32)
            valid = np.zeros(s.shape, bool)
            for i in range(len(qb)):
                for h in tier.search_exhaustive(qb[i], INDEX_K + cols[a + i].size):
                    if h.segment_id in column:
                        s[i, column[h.segment_id]], valid[i, column[h.segment_id]] = h.score, True
        for i in range(len(qb)):
            valid[i, cols[a + i]] = False
        cent = _centroid(qb, gallery, sums, g, cols[a:a + block]) if "centroid" in rules else None
        for r in rules:
            scores = _rule_scores(s, valid, g, r, k, cent)
            codes, top = _ranked(scores, top_k)
            out[r][0][a:a + len(qb)], out[r][1][a:a + len(qb)] = codes, top
            if full is not None:
                full.setdefault(r, np.full((m, len(g.labels)), -np.inf))[a:a + len(qb)] = scores
    return out


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _metrics(codes, top, truth, known, unknown, top_k, fpirs) -> dict:
    """top-1, top-k and DIR/threshold at each FPIR for one (dim, rule)."""
    labels = [[c for c in row if c >= 0] for row in codes.tolist()]
    kt = [truth[i] for i in known]
    out = {"top1": None, f"top{top_k}": None}
    if known:
        out["top1"] = top_k_accuracy([labels[i] for i in known], kt, 1)
        out[f"top{top_k}"] = top_k_accuracy([labels[i] for i in known], kt, top_k)
    out["dir"], out["thresholds"] = {}, {}
    correct = np.array([bool(labels[i]) and labels[i][0] == truth[i] for i in known], bool)
    for f in fpirs:
        x = t = None
        if unknown:
            rate, thr = dir_at_fpir(top[known], correct, top[unknown], f)
            x, t = _num(rate), _num(thr)
        out["dir"][str(f)], out["thresholds"][str(f)] = x, t
    return out


def _operating_point(db, rule, k, dim, codes, top, truth, known, unknown, speakers=None):
    """FPIR and DIR at the threshold identify would use (no oracle), for ``speakers``
    (default: the database's)."""
    from speakerdb.search.thresholds import identify_threshold

    thr = identify_threshold(db, None, "none", rule, k, dim, speakers=speakers)
    first = codes[:, 0]
    hit = [first[i] == truth[i] and top[i] >= thr.value for i in known]
    return {"threshold": _num(thr.value), "threshold_source": thr.source,
            "fpir": float(np.mean(top[unknown] >= thr.value)) if unknown else None,
            "dir": float(np.mean(hit)) if known else None,
            "unknown": len(unknown), "known": len(known)}


def _gallery_sizes(db, full, truth, is_known, ok, sizes, draws, k, dim) -> dict:
    """FPIR / DIR at the operating point for galleries of each size in ``sizes``: ``draws``
    seeded subsets of the enrolled speakers; a probe whose speaker is outside the subset is
    unknown to it."""
    out = {}
    n_spk = next(iter(full.values())).shape[1] if full else 0
    rng = np.random.default_rng(0)
    for n in sizes:
        if not 1 <= n <= n_spk:
            out[str(n)] = {"note": f"the gallery has {n_spk} speakers"}
            continue
        picks = [np.sort(rng.choice(n_spk, n, replace=False)) for _ in range(draws)]
        per = {}
        for rule, scores in full.items():
            fp = nu = hit = nk = 0
            for cols in picks:
                sub = scores[:, cols]
                best = np.argmax(sub, axis=1)
                top = sub[np.arange(sub.shape[0]), best]
                top = np.where(np.isfinite(top), top, NO_SCORE)
                inside = np.isin(truth, cols)
                known = [i for i in range(len(truth)) if ok[i] and is_known[i] and inside[i]]
                unknown = [i for i in range(len(truth)) if ok[i] and not (is_known[i] and
                                                                          inside[i])]
                codes = cols[best][:, None]
                r = _operating_point(db, rule, k, dim, codes, top, truth, known, unknown,
                                     speakers=n)
                fp += int(round((r["fpir"] or 0.0) * len(unknown)))
                nu += len(unknown)
                hit += int(round((r["dir"] or 0.0) * len(known)))
                nk += len(known)
            per[rule] = {"threshold": r["threshold"], "fpir": fp / nu if nu else None,
                         "dir": hit / nk if nk else None, "unknown": nu, "known": nk,
                         "draws": draws}
        out[str(n)] = per
    return out


def _cascade(db, g, vectors, ok, own, cfg: CascadeConfig) -> dict:
    tier = db.indexes
    dims = tier.dims()
    top = max(dims)
    n = agree = same = 0
    t_casc = t_exh = 0.0
    for i in np.flatnonzero(ok).tolist():
        query = {d: vectors[d][i] for d in dims}
        skip = set(own[i].tolist())
        t0 = time.perf_counter()
        c_hits = tier.search_cascade(query, cfg)
        t1 = time.perf_counter()
        e_hits = tier.search_exhaustive(query[top], cfg.kept + len(skip))
        t2 = time.perf_counter()
        t_casc, t_exh = t_casc + (t1 - t0), t_exh + (t2 - t1)
        c_hits = [h for h in c_hits if h.segment_id not in skip]
        e_hits = [h for h in e_hits if h.segment_id not in skip]
        n += 1
        c_id = c_hits[0].segment_id if c_hits else None
        agree += c_id == (e_hits[0].segment_id if e_hits else None)
        c_spk, e_spk = (aggregate(h, g.label_of, "max")[:1] for h in (c_hits, e_hits))
        same += [c.speaker for c in c_spk] == [c.speaker for c in e_spk]
    return {"dim": top, "rule": "max", "probes": n,
            "recall_at_1": agree / n if n else None, "speaker_agreement": same / n if n else None,
            "cascade_ms": 1000 * t_casc / n if n else None,
            "exhaustive_ms": 1000 * t_exh / n if n else None,
            "config": {f"k{d}": k for d, k in cfg.stages(dims)}}


def evaluate_identification(
    db, probes: Sequence[LabelledFile], root: Path, conditions: Sequence[Condition] = (CLEAN,),
    *, rules: Sequence[str] = ("max",), top_k: int = 5, fpirs: Sequence[float] = (0.01, 0.1),
    cascade: CascadeConfig | None = None, cache: EmbeddingCache | None = None,
    progress: Callable[[int], None] | None = None, gallery_sizes: Sequence[int] = (),
    draws: int = 5,
) -> dict:
    """Identification metrics of ``probes`` (paths relative to ``root``) against ``db``; see
    the module docstring for what is measured and the shape of the result."""
    if top_k < 1:
        raise UsageError(f"top_k must be at least 1, got {top_k}")
    usable = [r for r in _RULES if r in AGGREGATIONS]
    notes = [f"rule {r!r} skipped: use one of {', '.join(usable)}"
             for r in rules if r not in usable]
    rules = list(dict.fromkeys(r for r in rules if r in usable))
    if not rules:
        raise UsageError("no known aggregation rule given (" + "; ".join(notes) + ")")
    cfg = cascade or CascadeConfig()
    root = Path(root)
    db.indexes.ensure_open()
    g = _load_gallery(db)
    cache = _cache_for(db, probes, root, cache)
    own = [_own_segments(g, root / p.path) for p in probes]
    index = {label: k for k, label in enumerate(g.labels)}
    truth = [index.get(p.speaker, -1) for p in probes]
    remaining = np.bincount(g.code, minlength=len(g.labels)) if g.labels else np.zeros(0)
    is_known = []
    for p, t, o in zip(probes, truth, own):
        mine = sum(1 for x in o.tolist() if g.label_of.get(x) == p.speaker)
        is_known.append(t >= 0 and remaining[t] - mine > 0)
    dims = tuple(db.space.dims)
    result = {"gallery": {"speakers": len(g.labels), "segments": g.total, "space": db.space.name,
                          "dims": list(dims),
                          "scoring": "index" if g.total > EXACT_LIMIT else "exact"},
              "rules": rules, "top_k": top_k, "fpirs": [float(f) for f in fpirs],
              "notes": notes, "conditions": {}}
    for cond in conditions:
        jobs = [Job(p.path, cond) for p in probes]
        cache.ensure(jobs, progress)
        vectors = {d: cache.matrix(jobs, d)[0] for d in dims}
        ok = cache.matrix(jobs, dims[0])[1]
        known = [i for i in range(len(probes)) if ok[i] and is_known[i]]
        unknown = [i for i in range(len(probes)) if ok[i] and not is_known[i]]
        failures = Counter(_reason(cache.errors[j.key], j.path) for j in jobs
                           if j.key in cache.errors)
        entry = {"probes": len(probes), "known": len(known), "unknown": len(unknown),
                 "failed": int((~ok).sum()), "failures": dict(failures),
                 "left_out": sum(1 for i in range(len(probes)) if ok[i] and own[i].size),
                 "notes": [] if unknown else ["no unknown probes"], "dims": {}}
        if not known:
            entry["notes"].append("no known probes")
        full: dict = {}
        for d in dims:
            scored = _score_dim(db, g, vectors[d], own, rules, top_k, cfg.agg_k,
                                full if d == max(dims) else None)
            entry["dims"][str(d)] = {
                r: _metrics(c, t, truth, known, unknown, top_k, fpirs)
                for r, (c, t) in scored.items()}
            if d == max(dims):
                for r, (c, t) in scored.items():
                    entry["dims"][str(d)][r]["operating_point"] = _operating_point(
                        db, r, cfg.agg_k, d, c, t, truth, known, unknown)
        if gallery_sizes:
            entry["gallery_sizes"] = _gallery_sizes(db, full, np.array(truth), is_known, ok,
                                                    gallery_sizes, draws, cfg.agg_k, max(dims))
        entry["cascade"] = _cascade(db, g, vectors, ok, own, cfg)
        if len(dims) == 1:
            entry["notes"].append("one dimension: the cascade is a search at that dimension")
        result["conditions"][cond.name] = entry
    return result

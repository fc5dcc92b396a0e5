"""Verification evaluation: a trial list scored at every nested dimension, per model and per
degraded-probe condition, with and without AS-norm.

In a trial ``a b`` the enrollment side ``a`` is always the clean whole file and the condition
is applied to the test side ``b``. Scores are cosines of the nested unit embeddings at 64, 128,
192 and 256-D (a model without nested prefixes reports its full dimension only). With a cohort,
AS-norm scores are reported next to the raw ones: each side is normalised by the mean and
standard deviation of its top-N cohort scores, leaving out cohort members with the side's own
speaker label.

Result shape (JSON-safe)::

    {"trials": n, "targets": t, "nontargets": m,
     "models": [{"model": {"name", "sha256", "dims"},
                 "conditions": {"clean": {"scored": n, "skipped": k, "errors": [...first 5],
                                          "dims": {"64": {"none": {"eer", "min_dcf_0.01",
                                                                   "min_dcf_0.05", "eer_threshold"},
                                                          "asnorm": {...}}}}}}]}

``scores`` (returned beside it) holds the raw score arrays for plots:
``scores[(model_name, condition, norm)][dim] = (target, nontarget)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from speakerdb.errors import UsageError
from speakerdb.eval.conditions import CLEAN, Condition
from speakerdb.eval.embed import EmbeddingCache, Job
from speakerdb.eval.metrics import eer, eer_threshold, min_dcf
from speakerdb.eval.trials import LabelledFile, Trial
from speakerdb.model.base import Embedder

__all__ = ["P_TARGETS", "evaluate_verification", "speaker_of", "verification_metrics"]

P_TARGETS = (0.01, 0.05)


def speaker_of(path: str, labels: dict[str, str]) -> str:
    """The speaker of a trial file: from ``labels`` when given, else the first path component
    (VoxCeleb ``idNNNNN/...`` and one-folder-per-speaker layouts)."""
    return labels.get(path) or Path(path).parts[0]


def verification_metrics(target: np.ndarray, nontarget: np.ndarray) -> dict:
    """EER (%), normalised minDCF at each of ``P_TARGETS`` and the EER threshold."""
    out = {"eer": round(100.0 * eer(target, nontarget), 4)}
    for p in P_TARGETS:
        out[f"min_dcf_{p}"] = round(min_dcf(target, nontarget, p)[0], 4)
    out["eer_threshold"] = round(float(eer_threshold(target, nontarget)), 4)
    return out


def _cohort_for(cache: EmbeddingCache, cohort_files: Sequence[LabelledFile], dims, progress):
    """Speaker-mean cohort per dimension from ``cohort_files`` embedded by the cache's model."""
    from speakerdb.search.asnorm import cohort_from_speakers

    jobs = [Job(f.path) for f in cohort_files]
    cache.ensure(jobs, progress)
    out = {}
    for d in dims:
        vecs, ok = cache.matrix(jobs, d)
        labels = [f.speaker for f, good in zip(cohort_files, ok, strict=True) if good]
        if len(set(labels)) < 2:
            raise UsageError("AS-norm cohort: fewer than 2 speakers could be embedded")
        out[d] = cohort_from_speakers(vecs[ok], labels)
    return out


def _normalised(cohort, top_n, enrol, test, enrol_spk, test_spk, scores):
    from speakerdb.search.asnorm import asnorm, cohort_stats, exclusion_mask, resolve_top_n

    n = resolve_top_n(top_n, cohort.size)
    e = cohort_stats(enrol, cohort, n, exclude=exclusion_mask(cohort, enrol_spk))
    t = cohort_stats(test, cohort, n, exclude=exclusion_mask(cohort, test_spk))
    return asnorm(scores, e, t)


def evaluate_verification(
    embedders: Sequence[Embedder], trials: Sequence[Trial], root: Path,
    files: Sequence[LabelledFile] = (), conditions: Sequence[Condition] = (CLEAN,), *,
    cohort_files: Sequence[LabelledFile] = (), cohort_root: Path | None = None,
    cohort_top: int | None = None, progress: Callable[[int], None] | None = None,
    caches: dict[str, EmbeddingCache] | None = None,
) -> tuple[dict, dict]:
    """Score ``trials`` (paths relative to ``root``) with every model under every condition.

    ``files``: labelled files of the run (speakers for babble and cohort exclusion); paths not
    among them take their speaker from the first path component. ``cohort_files`` (relative
    to ``cohort_root``): a labelled set whose speaker means form the AS-norm cohort.
    ``caches``: embedding caches by model sha256, reused and filled (several trial lists over
    the same files embed each file once)."""
    if not trials:
        raise UsageError("no trials to score")
    labels = {f.path: f.speaker for f in files}
    known = list(files) + [LabelledFile(p, speaker_of(p, labels), p)
                           for p in sorted({t.a for t in trials} | {t.b for t in trials})
                           if p not in labels]
    is_target = np.array([t.target for t in trials])
    report = {"trials": len(trials), "targets": int(is_target.sum()),
              "nontargets": int((~is_target).sum()), "models": []}
    if not report["targets"] or not report["nontargets"]:
        raise UsageError("the trial list needs both target (1) and non-target (0) trials")
    all_scores: dict = {}
    for emb in embedders:
        caches = {} if caches is None else caches
        cache = caches.setdefault(emb.sha256, EmbeddingCache(emb, root, known))
        cohort = None
        if cohort_files:
            same_root = cohort_root is None or Path(cohort_root).resolve() == Path(root).resolve()
            ccache = cache if same_root else EmbeddingCache(emb, cohort_root, cohort_files)
            cohort = _cohort_for(ccache, cohort_files, emb.dims, progress)
        enrol = [Job(t.a) for t in trials]
        cache.ensure(enrol, progress)
        model = {"model": {"name": emb.name, "sha256": emb.sha256, "dims": list(emb.dims)},
                 "conditions": {}}
        for cond in conditions:
            test = [Job(t.b, cond) for t in trials]
            cache.ensure(test, progress)
            model["conditions"][cond.name] = _condition_report(
                emb, cache, trials, enrol, test, is_target, labels, cohort, cohort_top,
                all_scores, cond)
        report["models"].append(model)
    return report, all_scores


def _condition_report(emb, cache, trials, enrol, test, is_target, labels, cohort, cohort_top,
                      all_scores, cond) -> dict:
    errors = sorted({cache.errors[j.key] for j in list(enrol) + list(test)
                     if j.key in cache.errors})
    out: dict = {"scored": 0, "skipped": 0, "errors": errors[:5], "dims": {}}
    for d in emb.dims:
        a, ok_a = cache.matrix(enrol, d)
        b, ok_b = cache.matrix(test, d)
        ok = ok_a & ok_b
        out["scored"], out["skipped"] = int(ok.sum()), int((~ok).sum())
        scores = {"none": np.einsum("ij,ij->i", a[ok], b[ok]).astype(np.float64)}
        if cohort is not None:
            spk_a = [speaker_of(t.a, labels) for t, good in zip(trials, ok, strict=True) if good]
            spk_b = [speaker_of(t.b, labels) for t, good in zip(trials, ok, strict=True) if good]
            scores["asnorm"] = _normalised(cohort[d], cohort_top, a[ok], b[ok], spk_a, spk_b,
                                           scores["none"])
        tgt = is_target[ok]
        if not tgt.any() or tgt.all():
            example = f", e.g. {errors[0]}" if errors else ""
            raise UsageError(f"condition {cond.name}: no scorable target or non-target trials "
                             f"({len(errors)} inputs failed{example})")
        out["dims"][str(d)] = {}
        for norm, s in scores.items():
            out["dims"][str(d)][norm] = verification_metrics(s[tgt], s[~tgt])
            all_scores.setdefault((emb.name, cond.name, norm), {})[d] = (s[tgt], s[~tgt])
    return out

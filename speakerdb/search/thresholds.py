"""The thresholds identify and verify decide with, and calibrating them on a database.

identify (``identify_threshold``): a threshold for a target FPIR at the gallery's current
number of speakers (``search.openset``), from the database's identification calibration, the
model's shipped impostor statistics, statistics learned from the database, or, failing all
three, the model's fixed default marked as a guess. verify uses a per-comparison threshold
(``SpeakerDB.threshold_for``). ``calibrate_db`` makes either kind from the database's own
labelled vectors (leave-one-out, ``search.leave_one_out``).
"""

from __future__ import annotations

import numpy as np

from speakerdb.config import ASNORM_DEFAULT_THRESHOLD, CascadeConfig, check_score_norm
from speakerdb.errors import UsageError
from speakerdb.database.results import Threshold
from speakerdb.search.decision import rule_label

__all__ = ["IDENTIFY_KEY", "calibrate_db", "calibration_states", "identify_threshold",
           "learn_impostors"]

IDENTIFY_KEY = "identify_calibrations"  # settings key: {space_key: IdentifyCalibration dict}
LEARN_SPEAKERS = 300  # speakers sampled when impostor statistics are learned from a database
LEARN_PROBES = 3000  # probe segments, at most, among them
LEARNED_KEY = "learned_impostors"  # settings key: {space_key: {"at_speakers", "model"}}
RELEARN_FACTOR = 1.25  # learned statistics are learned again past this change in speakers


def calibrate_db(db, target_far, eer, score_norm, rule, dim, agg_k, cohort_top, fpir=None):
    """``SpeakerDB.calibrate``: a verification threshold (``target_far`` or ``eer``, stored
    under ``threshold``) or an identification calibration for a target FPIR (the default,
    stored under ``IDENTIFY_KEY`` per score space)."""
    from speakerdb.eval.calibrate import calibrate
    from speakerdb.eval.openset_calibration import DEFAULT_FPIR, calibrate_identification
    from speakerdb.search.decision import DEFAULT_AGG_K, check_rule
    from speakerdb.search.leave_one_out import loo_matrix, split_loo
    from speakerdb.search.openset import space_key

    check_score_norm(score_norm)
    if eer and target_far is not None:
        raise UsageError("give a target FAR or the EER point, not both")
    if fpir is not None and (eer or target_far is not None):
        raise UsageError("give a target FPIR (identification) or a target FAR / the EER point "
                         "(verification), not both")
    verification = eer or target_far is not None
    rule = rule or CascadeConfig().aggregation
    k = DEFAULT_AGG_K if agg_k is None else agg_k
    check_rule(rule, k)
    top = max(db.space.dims)
    dim = top if dim is None else dim
    if dim not in db.space.dims:
        raise UsageError(f"dimension {dim!r}: the database scores at {list(db.space.dims)}")
    vecs, labels, recs = db.scorer.gallery().labelled()
    n_spk = len(set(labels))
    from speakerdb.search.openset import MIN_SPEAKERS

    need = 2 if verification else MIN_SPEAKERS
    if n_spk < need:
        what = "calibration" if verification else "an identification calibration"
        raise UsageError(f"{db.home}: {what} needs labelled recordings of at least "
                         f"{need} speakers; the database has {n_spk}")
    if dim != top:
        vecs = vecs[:, :dim] / np.linalg.norm(vecs[:, :dim], axis=1, keepdims=True)
    agg, spk = loo_matrix(vecs, labels, recs, rule, k, asnorm_top=cohort_top,
                          score_norm=score_norm)
    label = rule_label(rule, k)
    if not verification:
        cal = calibrate_identification(
            agg, spk, DEFAULT_FPIR if fpir is None else fpir, score_norm=score_norm,
            aggregation=label, dim=dim, segments_per_speaker=len(labels) / n_spk,
            source=f"{n_spk} speakers of this database")
        stored = dict(db.store.get_setting(IDENTIFY_KEY) or {})
        stored[space_key(score_norm, label, dim)] = {**cal.to_dict(), "cohort_top": cohort_top}
        db.store.set_setting(IDENTIFY_KEY, stored)
        db.scorer.invalidate()
        return cal
    target, nontarget = split_loo(agg, spk)
    if target.size == 0:
        raise UsageError(f"{db.home}: calibration needs a genuine pair: no labelled speaker has "
                         f"two recordings")
    cal = calibrate(target, nontarget, target_far=None if eer else target_far,
                    method="eer" if eer else None, score_norm=score_norm, dim=dim)
    db.store.set_setting("threshold", {**cal.to_dict(), "value": cal.threshold,
                                       "aggregation": label, "cohort_top": cohort_top})
    return cal


def learn_impostors(db, score_norm: str, rule: str, k: int, dim: int, cohort_top=None):
    """Impostor statistics learned from the database's labelled speakers (at most
    ``LEARN_SPEAKERS`` of them, ``LEARN_PROBES`` probe segments, drawn with a fixed seed), or
    None when it has fewer than ``openset.MIN_SPEAKERS``."""
    from speakerdb.search.leave_one_out import loo_matrix
    from speakerdb.search.openset import MIN_SPEAKERS, fit_impostors

    vecs, labels, recs = db.scorer.gallery().labelled()
    speakers = sorted(set(labels))
    if len(speakers) < MIN_SPEAKERS:
        return None
    rng = np.random.default_rng(0)
    if len(speakers) > LEARN_SPEAKERS:
        keep = set(rng.choice(speakers, LEARN_SPEAKERS, replace=False).tolist())
        rows = [i for i, s in enumerate(labels) if s in keep]
        vecs, labels, recs = vecs[rows], [labels[i] for i in rows], [recs[i] for i in rows]
    top = vecs.shape[1]
    if dim != top:
        vecs = vecs[:, :dim] / np.linalg.norm(vecs[:, :dim], axis=1, keepdims=True)
    agg, spk = loo_matrix(vecs, labels, recs, rule, k, asnorm_top=cohort_top,
                          score_norm=score_norm)
    if agg.shape[0] > LEARN_PROBES:
        rows = np.sort(rng.choice(agg.shape[0], LEARN_PROBES, replace=False))
        agg, spk = agg[rows], spk[rows]
    n_spk = len(set(labels))
    return fit_impostors(agg, spk, segments_per_speaker=len(labels) / n_spk,
                         source=f"learned from {n_spk} speakers of this database")


def _stored_or_learned(db, key, score_norm, rule, k, dim, cohort_top):
    """Learned statistics kept in the store (``LEARNED_KEY``) while the number of labelled
    speakers stays within ``RELEARN_FACTOR`` of the one they were learned at; else learned
    again and kept (a read-only store keeps them in memory only)."""
    from speakerdb.search.openset import ImpostorModel

    n = db.scorer.speaker_count()
    stored = db.store.get_setting(LEARNED_KEY) or {}
    entry = stored.get(key)
    if entry and n / RELEARN_FACTOR <= entry.get("at_speakers", 0) <= n * RELEARN_FACTOR:
        try:
            return ImpostorModel.from_dict(entry["model"])
        except (UsageError, KeyError, TypeError):
            pass
    model = learn_impostors(db, score_norm, rule, k, dim, cohort_top)
    if model is not None:
        try:
            db.store.set_setting(LEARNED_KEY, {**stored, key: {"at_speakers": n,
                                                               "model": model.to_dict()}})
        except Exception:  # noqa: BLE001 - keeping them is an optimisation, never a failure
            pass
    return model


def identify_threshold(db, given, score_norm: str, rule: str, k: int, dim: int,
                       cohort_top=None, *, speakers: int | None = None):
    """The ``Threshold`` identify decides with, for the gallery's current number of speakers:
    ``given``; else an identification calibration of this score space (``calibrate --fpir``);
    else the model's impostor statistics (shipped with the model); else statistics learned from
    the database's labelled speakers; else the model's fixed default, marked as a guess.
    ``speakers`` replaces the gallery size (evaluation of sub-galleries). Kept per score
    space and size until the database changes (``Scorer.memo``)."""
    from speakerdb.search.openset import space_key

    if given is not None:
        return Threshold(float(given), "given")
    key = space_key(score_norm, rule_label(rule, k), dim)
    n = max(1, db.scorer.speaker_count() if speakers is None else int(speakers))
    return db.scorer.memo(("threshold", key, n), lambda: _identify_threshold(
        db, key, n, score_norm, rule, k, dim, cohort_top))


def _identify_threshold(db, key, n, score_norm, rule, k, dim, cohort_top):
    from speakerdb.eval.openset_calibration import DEFAULT_FPIR, IdentifyCalibration
    from speakerdb.search.openset import MIN_SPEAKERS, ImpostorModel

    cal = (db.store.get_setting(IDENTIFY_KEY) or {}).get(key)
    if cal is not None:
        c = IdentifyCalibration.from_dict(cal)
        note = "" if c.model.speaks_for(n) else \
            (f"; the database grew past what it speaks for (made at {c.speakers} speakers): "
             f"recalibrate")
        return Threshold(c.threshold_at(n), f"calibrated {c.method} for {n} speakers "
                         f"({c.unknown_probes} unknown, {c.known_probes} known probes){note}")
    shipped = (getattr(db.embedder, "impostor_stats", None) or {}).get(key)
    if shipped is not None:
        m = ImpostorModel.from_dict(shipped)
        return Threshold(m.threshold(DEFAULT_FPIR, n),
                         f"model default fpir={DEFAULT_FPIR!r} for {n} speakers")
    learned = db.scorer.memo(("learned", key), lambda: _stored_or_learned(
        db, key, score_norm, rule, k, dim, cohort_top))
    if learned is not None:
        return Threshold(learned.threshold(DEFAULT_FPIR, n),
                         f"learned fpir={DEFAULT_FPIR!r} for {n} speakers ({learned.source})")
    value = ASNORM_DEFAULT_THRESHOLD if score_norm == "asnorm" else \
        float(db.embedder.default_threshold)
    name = "model default" if score_norm == "none" else f"{score_norm} default"
    return Threshold(value, f"{name}, a guess: no calibration, no impostor statistics for "
                            f"this model, fewer than {MIN_SPEAKERS} labelled speakers to "
                            f"learn them from")


def calibration_states(store) -> dict:
    """Each stored identification calibration (``stats``): where it was made, how far it
    speaks, and its threshold for the gallery's current number of speakers."""
    from speakerdb.eval.openset_calibration import IdentifyCalibration
    from speakerdb.search.openset import SPEAKS_FOR

    speakers = max(int(store.counts()["speakers"]), 1)
    out = {}
    for key, d in sorted((store.get_setting(IDENTIFY_KEY) or {}).items()):
        try:
            c = IdentifyCalibration.from_dict(d)
        except UsageError as e:
            out[key] = {"error": str(e)}
            continue
        out[key] = {"method": c.method, "made_at_speakers": c.speakers,
                    "speaks_for_speakers": int(c.model.speakers * SPEAKS_FOR),
                    "speaks_for_now": c.model.speaks_for(speakers),
                    "threshold_now": round(c.threshold_at(speakers), 6),
                    "fpir": c.fpir, "dir": c.dir}
    return out

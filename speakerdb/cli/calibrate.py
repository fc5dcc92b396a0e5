"""``speakerdb calibrate``: a decision threshold chosen on the database's own labelled
recordings, for identify (a target FPIR) or verify (a target FAR, or the EER point)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from speakerdb.cli.shell import (AggK, Aggregation, CohortTop, Home, Json, NoWait, ScoreNorm,
                                 print_json, open_db, shell)

__all__ = ["register"]


@shell
def calibrate(
    home: Home = None,
    fpir: Annotated[Optional[float], typer.Option(
        "--fpir", help="Identification: target fraction of unknown voices matched to anyone "
                       "(default 0.01); the threshold then follows the gallery's size.")] = None,
    far: Annotated[Optional[float], typer.Option(
        "--far", help="Verification: target false-accept rate per comparison.")] = None,
    eer: Annotated[bool, typer.Option(
        "--eer", help="Verification: the equal-error-rate point.")] = False,
    score_norm: ScoreNorm = "none",
    aggregation: Aggregation = "max",
    agg_k: AggK = 3,
    cohort_top: CohortTop = None,
    no_wait: NoWait = False,
    json_: Json = False,
):
    """Choose a decision threshold from the database's labelled recordings and store it:
    for identify (target FPIR, the default) or for verify (--far / --eer)."""
    from speakerdb.errors import UsageError

    if far is not None and eer:
        raise UsageError("give --far or --eer, not both")
    if fpir is not None and (far is not None or eer):
        raise UsageError("give --fpir (identify) or --far/--eer (verify), not both")
    for name, value in (("--far", far), ("--fpir", fpir)):
        if value is not None and not 0.0 < value < 1.0:
            raise UsageError(f"{name} must be strictly between 0 and 1, got {value:g}")
    with open_db(home, no_wait, catch_up=False) as db:
        cal = db.calibrate(far, eer, score_norm, aggregation, agg_k=agg_k,
                           cohort_top=cohort_top, fpir=fpir)
    if far is None and not eer:
        _print_identify_calibration(db.home, cal, json_)
        return
    from speakerdb.search.decision import rule_label

    doc = {"home": str(db.home), "purpose": "verify", **cal.to_dict(),
           "aggregation": rule_label(aggregation, agg_k)}
    if json_:
        print_json(doc)
        return
    print(f"calibrated verification threshold {doc['threshold']:.6f} ({doc['method']}, "
          f"score-norm {doc['score_norm']}, aggregation {doc['aggregation']}, {doc['dim']}-D)")
    print(f"  achieved FAR {doc['far']:.4f}, FRR {doc['frr']:.4f} on {doc['targets']} targets "
          f"and {doc['nontargets']} nontargets; stored in {doc['home']}")


def _print_identify_calibration(home, cal, json_: bool) -> None:
    from speakerdb.search.openset import SPEAKS_FOR

    doc = {"home": str(home), "purpose": "identify", **cal.to_dict()}
    doc.pop("model")
    doc["speaks_for_speakers"] = int(cal.model.speakers * SPEAKS_FOR)
    doc["thresholds_by_gallery_size"] = {
        str(n): round(cal.threshold_at(n), 6) for n in (10, 100, 1000, 10000)}
    if json_:
        print_json(doc)
        return

    def fmt(x):
        return "n/a" if x is None else f"{x:.4f}"

    print(f"calibrated identification for FPIR {cal.target_fpir:g} (score-norm "
          f"{cal.score_norm}, aggregation {cal.aggregation}, {cal.dim}-D): threshold "
          f"{cal.threshold:.6f} at {cal.speakers} speakers")
    print(f"  achieved FPIR {fmt(cal.fpir)} on {cal.unknown_probes} unknown probes (each "
          f"speaker left out), DIR {fmt(cal.dir)} on {cal.known_probes} known probes")
    sizes = ", ".join(f"{n}: {t:.3f}" for n, t in doc["thresholds_by_gallery_size"].items())
    print(f"  threshold by gallery size ({sizes}); speaks for up to "
          f"{doc['speaks_for_speakers']} speakers; stored in {home}")


def register(app: typer.Typer) -> None:
    """Add ``calibrate`` to ``app``."""
    app.command("calibrate")(calibrate)

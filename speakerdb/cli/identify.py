"""``speakerdb identify``: who is speaking in each input (files, folders, manifests), with its
answers streamed as they come and a run's summary.

Light at import: typer and the standard library (``--help`` must stay instant).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from speakerdb.cli.shell import (AggK, Aggregation, CohortFile, CohortTop, Device, Home, Json,
                                 MaxDuration, MinDuration, ScoreNorm, open_db, shell)
from speakerdb.config import DEFAULT_AGG_K, DEFAULT_SHORTLIST, DEFAULT_TOP_K

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command()(identify)


@shell
def identify(
    audio: Annotated[list[Path], typer.Argument(
        help="Audio files, folders (walked as ingest walks them) or CSV manifests (path and "
             "optional speaker columns); a folder's or manifest's speaker is the truth.")],
    home: Home = None,
    top_k: Annotated[int, typer.Option(help="Speakers to list.", min=1)] = DEFAULT_TOP_K,
    threshold: Annotated[Optional[float], typer.Option(
        help="Decision threshold (default: for FPIR 1 % at the gallery's size, from "
             "`calibrate --fpir` for this --score-norm and --aggregation, else the model's "
             "impostor statistics).")] = None,
    margin: Annotated[float, typer.Option(
        help="Least lead of the best speaker over the second (in the scores' space).")] = 0.0,
    exhaustive: Annotated[bool, typer.Option(help="Plain 256-D search instead of the cascade.")] = False,
    k64: Annotated[int, typer.Option(help="Shortlist after the 64-D screen.", min=1)] = DEFAULT_SHORTLIST[0],
    k128: Annotated[int, typer.Option(help="Shortlist after 128-D rescoring.", min=1)] = DEFAULT_SHORTLIST[1],
    k192: Annotated[int, typer.Option(help="Shortlist after 192-D rescoring.", min=1)] = DEFAULT_SHORTLIST[2],
    aggregation: Aggregation = "max",
    agg_k: AggK = DEFAULT_AGG_K,
    score_norm: ScoreNorm = "none",
    cohort: CohortFile = None,
    cohort_top: CohortTop = None,
    min_duration: MinDuration = None,
    max_duration: MaxDuration = None,
    layout: Annotated[str, typer.Option(help="How folders and manifests are read: auto | voxceleb | folders | manifest.")] = "auto",
    batch: Annotated[int, typer.Option(help="Inputs decoded and embedded together.", min=1)] = 16,
    workers: Annotated[Optional[int], typer.Option(help="Processes that decode beside the model (0: the model's process does; default: one per core when the inputs fill more than one batch).", min=0)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON object per input on stdout, each as it is answered.")] = False,
    csv_: Annotated[bool, typer.Option("--csv", help="One CSV row per input on stdout (with a header), each as it is answered.")] = False,
    diarize: Annotated[bool, typer.Option("--diarize", help="Several voices per input: who spoke when (turns), each voice named from the database or unknown-1, unknown-2, ...")] = False,
    num_speakers: Annotated[Optional[int], typer.Option(help="With --diarize: the number of voices, when known.", min=1)] = None,
    max_speakers: Annotated[Optional[int], typer.Option(help="With --diarize: at most this many voices.", min=1)] = None,
    rttm: Annotated[Optional[Path], typer.Option(help="With --diarize: also write the turns to this RTTM file.")] = None,
    device: Device = "auto",
    json_: Json = False,
):
    """Who is speaking: cascade search, per-speaker scores, match or unknown; with
    --diarize, who spoke when."""
    import time

    from tqdm import tqdm

    from speakerdb.cli.answers import AnswerWriter
    from speakerdb.config import CascadeConfig, check_score_norm
    from speakerdb.errors import UsageError
    from speakerdb.search.bulk import Tally, Timings, probe_items

    check_score_norm(score_norm)
    chosen = [f for f, on in (("--json", json_), ("--jsonl", jsonl), ("--csv", csv_)) if on]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)}: choose one output format")
    fmt = "json" if json_ else "jsonl" if jsonl else "csv" if csv_ else "text"
    # the flags name the stages of a 64/128/192/256-D space; fit to a space with other ones
    cfg = CascadeConfig((k64, k128, k192), top_k=top_k, aggregation=aggregation, agg_k=agg_k,
                        fit=True)
    given = [f for f, v in (("--num-speakers", num_speakers), ("--max-speakers", max_speakers),
                            ("--rttm", rttm)) if v is not None]
    if given and not diarize:
        raise UsageError(f"{', '.join(given)}: only with --diarize")
    if diarize and (jsonl or csv_):
        raise UsageError(f"--diarize and {chosen[0]}: choose --json or the text timeline")
    items, listed = probe_items(audio, layout)
    if diarize:
        from speakerdb.cli.diarize import run_diarize

        with open_db(home, max_duration=max_duration, device=device) as db:
            failed = run_diarize(db, items, num_speakers=num_speakers,
                                 max_speakers=max_speakers, rttm=rttm, json_=json_,
                                 options=dict(cascade=cfg, threshold=threshold,
                                              min_margin=margin, exhaustive=exhaustive,
                                              min_duration_s=min_duration))
        if failed:
            raise typer.Exit(2)
        return
    tally, timings = Tally(), Timings()
    with open_db(home, max_duration=max_duration, device=device) as db:
        answers = db.identify_many(items, batch=batch, timings=timings, cascade=cfg,
                                   threshold=threshold, min_margin=margin,
                                   exhaustive=exhaustive, score_norm=score_norm,
                                   cohort=cohort, cohort_top=cohort_top,
                                   min_duration_s=min_duration, workers=workers)
        bar = tqdm(total=len(items), unit="input", desc="identify", file=sys.stderr,
                   disable=quiet or not sys.stderr.isatty(), mininterval=0.5,
                   dynamic_ncols=True)
        out = AnswerWriter(fmt, any(it.speaker is not None for it in items), listed,
                           note=lambda line: bar.write(f"speakerdb: error: {line}",
                                                       file=sys.stderr))
        t0 = time.perf_counter()
        try:
            for a in answers:
                tally.add(a)
                out.add(a)
                bar.update(1)
        except BrokenPipeError:  # the reader of stdout stopped (`| head`): so do we, quietly
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        finally:
            bar.close()
    out.finish(tally.summary(timings, time.perf_counter() - t0))
    if tally.failed:
        raise typer.Exit(2)

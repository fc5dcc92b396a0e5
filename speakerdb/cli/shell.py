"""What every command-line command shares: option types, one-line errors, JSON output.

Light: typer and the standard library only (``--help`` must stay instant).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import sys
from functools import wraps
from pathlib import Path
from typing import Annotated, Optional

import typer

from speakerdb.config import AGGREGATIONS, SCORE_NORMS

__all__ = ["AggK", "Aggregation", "CohortTop", "Home", "Json", "Device", "MaxDuration",
           "NoWait", "ScoreNorm", "shell", "err", "flag", "cli_message", "audio_policy",
           "print_json", "print_ingest", "open_db"]

Home = Annotated[
    Optional[Path],
    typer.Option("--home", help="Database directory [env SPEAKERDB_HOME; default indexes/default]."),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
Device = Annotated[str, typer.Option(help="Where the model runs: auto | cpu | cuda.")]
# The choices come from speakerdb.config's Literals. The options stay plain strings checked by
# the library, so a bad value is the usual one-line error (exit 2) rather than click's boxed
# usage message.
ScoreNorm = Annotated[str, typer.Option(
    "--score-norm", help=f"Score normalisation: {' | '.join(SCORE_NORMS)} (AS-norm against a "
                         "cohort).")]
CohortTop = Annotated[Optional[int], typer.Option(
    "--cohort-top", help="AS-norm top-N cohort scores (default 300, at most the cohort size).")]
Aggregation = Annotated[str, typer.Option(
    help=f"Speaker score: {' | '.join(AGGREGATIONS)}.")]
AggK = Annotated[int, typer.Option("--agg-k", help="Segments averaged by --aggregation topk.")]
NoWait = Annotated[bool, typer.Option(
    "--no-wait", help="Fail at once (exit 3) when another process is writing to the database, "
                      "instead of waiting for it.")]


CohortFile = Annotated[Optional[Path], typer.Option(
    "--cohort", help="AS-norm cohort file (.npz written by Cohort.save; default: the "
                     "database's speaker means).")]
MinDuration = Annotated[Optional[float], typer.Option(
    "--min-duration", help="Seconds of signal an input needs (default 0.5).")]
Vad = Annotated[Optional[str], typer.Option(
    help="Speech detection: silero, energy or none [default: the database's, else the "
         "model's: silero for the networks].")]
MaxDuration = Annotated[Optional[float], typer.Option(
    "--max-duration", help="Most seconds of audio one input may hold; a longer one fails with "
                           "the reason, the rest unread (default 14400: 4 h).")]


def open_db(home, no_wait: bool = False, max_duration: float | None = None, **kw):
    """``SpeakerDB.open(home, **kw)``; a write waits for another writer unless ``no_wait``;
    ``max_duration`` (``--max-duration``) applies to what the database reads."""
    from speakerdb.api import SpeakerDB

    if max_duration is not None:
        from speakerdb.config import check_max_duration

        check_max_duration(max_duration)
    db = SpeakerDB.open(home, **kw)
    db.lock_wait_s = 0.0 if no_wait else None
    if max_duration is not None:
        db.set_max_duration(max_duration)
    return db


def audio_policy(max_duration: float | None):
    """The audio policy with ``--max-duration`` applied (commands without a database)."""
    from dataclasses import replace

    from speakerdb.audio import AudioPolicy
    from speakerdb.config import check_max_duration

    if max_duration is None:
        return AudioPolicy()
    return replace(AudioPolicy(), max_duration_s=check_max_duration(max_duration))


FLAGS = {"local": "--from", "min_margin": "--margin"}
"""Library parameters whose command-line flag is not ``--`` + the name with dashes."""
NO_FLAG = frozenset({"shortlist", "fit"})
"""Library parameters that no command-line option sets as such."""


def flag(option: str) -> str | None:
    """The command-line flag of library parameter ``option`` (None when there is none)."""
    if option in NO_FLAG:
        return None
    return FLAGS.get(option, "--" + option.replace("_", "-"))


def cli_message(e: BaseException) -> str:
    """``str(e)`` with the library parameters a ``UsageError`` names (``agg_k``) written as
    the command-line flags that set them (``--agg-k``)."""
    text = str(e)
    for option in getattr(e, "options", ()):
        name = flag(option)
        if name is not None:
            text = re.sub(rf"(?<![\w-]){re.escape(option)}(?![\w-])", name, text)
    return text


def err(message: str) -> None:
    """Print ``message`` as the one ``speakerdb: error:`` line on stderr."""
    print(f"speakerdb: error: {message}", file=sys.stderr)


def shell(fn):
    """Turn library errors into one stderr line and an exit code; never a traceback."""

    @wraps(fn)
    def run(*args, **kwargs):
        from speakerdb.errors import SpeakerDBError

        try:
            return fn(*args, **kwargs)
        except SpeakerDBError as e:
            err(cli_message(e))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as e:  # a bug, not bad input: still one line unless debugging
            if os.environ.get("SPEAKERDB_DEBUG"):
                raise
            err(f"internal error: {e.__class__.__name__}: {e} (SPEAKERDB_DEBUG=1 shows more)")
            raise typer.Exit(2) from None

    return run


def _finite(x):
    """``x`` with every NaN or infinite float replaced by None (JSON has neither)."""
    if isinstance(x, numbers.Real) and not isinstance(x, numbers.Integral):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def print_json(doc) -> None:
    """Print ``doc`` as strict JSON: a non-finite number becomes null, never ``NaN``."""
    sys.stdout.write(json.dumps(_finite(doc), indent=2, allow_nan=False) + "\n")


def print_ingest(doc: dict) -> None:
    """The text summary of ``speakerdb ingest``."""
    s = doc["seconds"]
    print(
        f"{doc['inputs']} inputs: {doc['added']} added ({doc['segments']} segments), "
        f"{doc['skipped']} already in, {doc['failed']} failed "
        f"[decode {s['decode']:.1f} s, embed {s['embed']:.1f} s, write {s['write']:.1f} s, "
        f"wait {s['wait']:.1f} s; {doc['workers']} workers]"
    )
    for f in doc["failures"]:
        print(f"  failed: {f['error']}")
    if doc["labelled"]:
        print(f"{doc['labelled']} stored unlabelled recordings labelled (no re-embedding)")
    conflicts = doc["label_conflicts"]
    if conflicts:
        print(f"{len(conflicts)} stored recordings have another label: {doc['relabelled']} "
              "relabelled" + ("" if doc["relabelled"] == len(conflicts)
                              else ", the others kept (--relabel replaces them)"))
    for c in conflicts:
        print(f"  {'relabelled' if c['applied'] else 'label kept'}: {c['input']}: stored "
              f"{c['stored']}, given {c['given']}")
    multi = doc.get("multi_voice") or []
    if multi:
        kept = "only the largest voice stored" if multi[0]["kept"] == "dominant" else \
            "stored whole (--keep dominant stores only the largest voice)"
        print(f"{len(multi)} recording(s) hold more than one voice, {kept}:")
    for m in multi:
        shares = "/".join(f"{100 * x:.0f}" for x in m["shares"])
        print(f"  {m['input']}: {m['voices']} voices ({shares} % of its speech)")

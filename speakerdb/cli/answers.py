"""How ``speakerdb identify`` writes its answers on stdout (text, one JSON document, JSON lines
or CSV rows, each as it comes) and a run's summary (in the JSON document, else on stderr).

Light: the standard library only (``--help`` must stay instant).
"""

from __future__ import annotations

import csv
import json
import sys

from speakerdb.cli.shell import _finite, cli_message, err, print_json

__all__ = ["AnswerWriter", "print_identify", "summary_lines"]

CSV_COLUMNS = ("input", "decision", "speaker", "score")
CSV_TRUTH = ("truth", "correct")


def print_identify(r: dict) -> None:
    """The text answer of one input: the decision line and the candidates."""
    who = r["speaker"] if r["decision"] == "match" else "unknown"
    norm = r["score_norm"] != "none"
    score = "n/a" if r["score"] is None else f"{r['score']:.4f}"
    if norm and r["cosine"] is not None:
        score = f"{score} {r['score_norm']}, cosine {r['cosine']:.4f}"
    lead = "n/a" if r["margin"] is None else f"{r['margin']:.4f}"
    print(f"{r['input']}: {who} (score {score}, threshold {r['threshold']:.4f} "
          f"[{r['threshold_source']}], margin {lead})")
    for c in r["candidates"]:
        cos = f"  (cosine {c['cosine']:.4f})" if norm else ""
        print(f"  {c['score']:.4f}{cos}  {c['speaker']}")


def _cell(x) -> str:
    if x is None:
        return ""
    if isinstance(x, bool):
        return "true" if x else "false"
    return str(x)


class AnswerWriter:
    """Writes each answer as it comes in ``fmt`` (``text``, ``json``, ``jsonl`` or ``csv``);
    ``finish`` closes the output with the summary. ``truths``: whether any input has a known
    speaker (the CSV then has ``truth`` and ``correct`` columns); ``summary``: whether the run
    reports one (it named a folder or manifest); ``note``: how a line reaches stderr while a
    progress bar is drawn there."""

    def __init__(self, fmt: str, truths: bool, summary: bool, note=err):
        self.fmt, self.summary, self.note = fmt, summary, note
        self.results: list[dict] = []
        self.columns = CSV_COLUMNS + (CSV_TRUTH if truths else ()) + ("error",)
        self._csv = None
        if fmt == "csv":
            self._csv = csv.writer(sys.stdout, lineterminator="\n")
            self._csv.writerow(self.columns)
            sys.stdout.flush()

    def add(self, answer) -> None:
        d = answer.as_dict()
        if self.fmt == "json":
            self.results.append(d)
        elif self.fmt == "jsonl":
            sys.stdout.write(json.dumps(_finite(d), allow_nan=False) + "\n")
            sys.stdout.flush()
        elif self.fmt == "csv":
            self._csv.writerow([_cell(d.get(c)) for c in self.columns])
            sys.stdout.flush()
        elif answer.error is not None:
            self.note(cli_message(answer.error))
        else:
            print_identify(d)
            sys.stdout.flush()

    def finish(self, summary: dict) -> None:
        if self.fmt == "json":
            print_json({"results": self.results,
                        **({"summary": summary} if self.summary else {})})
        elif self.summary:
            for line in summary_lines(summary):
                print(line, file=sys.stderr)


def _share(x: dict, of: str) -> str:
    rate = "n/a" if x["rate"] is None else f"{100 * x['rate']:.1f} %"
    return f"{x['count']} ({rate} of {of})"


def summary_lines(s: dict) -> list[str]:
    """The summary of a run as text lines (for stderr)."""
    sec = s["seconds"]
    speed = "n/a" if s["probes_per_s"] is None else f"{s['probes_per_s']:.1f}"
    lines = [f"identify: {s['inputs']} inputs, {s['answered']} answered, {s['failed']} failed; "
             f"{speed} probes/s [wall {s['wall_s']:.2f} s: decode {sec['decode']:.2f} s"
             + (f" in {s['workers']} workers, waited for {sec['wait']:.2f} s" if s["workers"]
                else "")
             + f", embed {sec['embed']:.2f} s, search {sec['search']:.2f} s]"]
    a = s["accuracy"]
    if a is not None:
        known, other = f"{a['enrolled']} enrolled", f"{a['not_enrolled']} not enrolled"
        lines.append(
            f"accuracy over {a['with_truth']} answered inputs with a known speaker: correct "
            f"{_share(a['correct'], 'all')}; correct matches {_share(a['correct_matches'], known)}, "
            f"wrong matches {_share(a['wrong_matches'], known)}, misses "
            f"{_share(a['misses'], known)}; correct rejections "
            f"{_share(a['correct_rejections'], other)}, false accepts "
            f"{_share(a['false_accepts'], other)}")
    return lines

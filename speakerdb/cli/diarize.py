"""``speakerdb identify --diarize``: who spoke when in each input, as a JSON document, a
readable timeline or an RTTM file.

Light at import: the standard library only (``--help`` must stay instant).
"""

from __future__ import annotations

import sys

__all__ = ["run_diarize", "timeline"]


def timeline(doc: dict) -> list[str]:
    """The text form of one ``DiarizeResult.as_dict()``: a heading, the voices found, then
    one line per turn."""
    lines = [f"{doc['input']}: {len(doc['speakers'])} speaker(s), {doc['speech_s']:.1f} s of "
             f"speech in {doc['duration_s']:.1f} s (vad {doc['vad']})"]
    width = max([len(s["speaker"]) for s in doc["speakers"]] + [7])
    for s in doc["speakers"]:
        score = "" if s["score"] is None else f"score {s['score']:.3f}"
        if s["margin"] is not None:
            score += f", margin {s['margin']:.3f}"
        best = f" (closest: {s['candidate']})" if s["decision"] != "match" and s["candidate"] \
            else ""
        lines.append(f"  {s['speaker']:<{width}}  {s['speech_s']:7.1f} s  {score}{best}")
    for t in doc["turns"]:
        lines.append(f"  {_clock(t['start'])} - {_clock(t['end'])}  {t['speaker']}")
    return lines


def _clock(s: float) -> str:
    m, sec = divmod(s, 60.0)
    return f"{int(m):02d}:{sec:05.2f}"


def run_diarize(db, items, *, num_speakers, max_speakers, rttm, json_, options) -> int:
    """Diarize each input; print its timeline (or the JSON document of all); write ``rttm``.
    Returns the number of inputs that failed (each an error line on stderr)."""
    from pathlib import Path

    from speakerdb.audio.names import display_name
    from speakerdb.cli.shell import print_json
    from speakerdb.diarize.turns import rttm_lines
    from speakerdb.errors import AudioError

    docs, failed, lines = [], 0, []
    for it in items:
        try:
            r = db.diarize(it.path, num_speakers=num_speakers, max_speakers=max_speakers,
                           name=display_name(it.path), **options)
        except AudioError as e:
            print(f"speakerdb: error: {e}", file=sys.stderr)
            failed += 1
            continue
        doc = r.as_dict()
        docs.append(doc)
        if not json_:
            print("\n".join(timeline(doc)), flush=True)
        lines += rttm_lines(r.turns, Path(str(it.path)).stem)
    if rttm is not None:
        from speakerdb.files.atomic import atomic_write

        atomic_write(Path(rttm), "".join(line + "\n" for line in lines))
    if json_:
        print_json({"results": docs, "failed": failed})
    return failed

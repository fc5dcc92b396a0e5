"""``speakerdb eval --conversations``: diarization error rate (pyannote.metrics, 0.25 s collar,
with and without the overlapping regions) and how much of each speaker's speech is named
right, on synthetic conversations of held-out and enrolled speakers (``eval.conversations``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from speakerdb.diarize.turns import STEP_S
from speakerdb.errors import UsageError

__all__ = ["COLLAR_S", "evaluate_conversations", "naming_counts", "der_parts"]

COLLAR_S = 0.25


def _metrics():
    try:
        from pyannote.metrics.diarization import DiarizationErrorRate
    except ImportError:
        raise UsageError("diarization error rates need pyannote.metrics: "
                         "pip install 'speakerdb[eval]'") from None
    return DiarizationErrorRate


def _annotation(turns, uri: str):
    from pyannote.core import Annotation, Segment

    a = Annotation(uri=uri)
    for i, t in enumerate(turns):
        if t.end > t.start:
            a[Segment(t.start, t.end), i] = t.speaker
    return a


def der_parts(metric) -> dict:
    """The accumulated DER of a pyannote metric and its parts, as shares of the reference
    speech (``total``, in seconds)."""
    total = metric["total"]

    def share(k):
        return round(metric[k] / total, 4) if total else None

    return {"der": round(abs(metric), 4) if total else None,
            "missed": share("missed detection"), "false_alarm": share("false alarm"),
            "confusion": share("confusion"), "reference_s": round(total, 2)}


def _frames(turns, n: int) -> list[set]:
    out = [set() for _ in range(n)]
    for t in turns:
        for i in range(int(round(t.start / STEP_S)), min(n, int(round(t.end / STEP_S)))):
            out[i].add(t.speaker)
    return out


def naming_counts(reference, hypothesis, enrolled, names) -> dict:
    """Seconds of single-speaker reference speech: of enrolled speakers (``enrolled``) and how
    much of it the hypothesis names right; of the others and how much of it is called unknown
    (not one of the database's ``names``) or given a database name."""
    end = max([t.end for t in reference] + [t.end for t in hypothesis] + [0.0])
    n = int(np.ceil(end / STEP_S)) + 1
    ref, hyp = _frames(reference, n), _frames(hypothesis, n)
    c = {"enrolled_s": 0, "named_right_s": 0, "held_out_s": 0, "unknown_s": 0,
         "misnamed_s": 0}
    for r, h in zip(ref, hyp):
        if len(r) != 1:
            continue
        (s,) = r
        label = next(iter(h)) if len(h) == 1 else None
        if s in enrolled:
            c["enrolled_s"] += 1
            c["named_right_s"] += label == s
        else:
            c["held_out_s"] += 1
            c["unknown_s"] += label is not None and label not in names
            c["misnamed_s"] += label is not None and label in names
    return {k: v * STEP_S for k, v in c.items()}


def _naming_doc(c: dict) -> dict:
    def share(a, b):
        return round(c[a] / c[b], 4) if c[b] else None

    return {"enrolled_speech_s": round(c["enrolled_s"], 2),
            "enrolled_named_right": share("named_right_s", "enrolled_s"),
            "held_out_speech_s": round(c["held_out_s"], 2),
            "held_out_called_unknown": share("unknown_s", "held_out_s"),
            "held_out_given_a_name": share("misnamed_s", "held_out_s")}


def evaluate_conversations(source, *, model: str | None = None, embedder=None,
                           split: str = "test", sizes=(2, 3, 4), per_size: int = 10,
                           overlap_share: float = 0.3, seed: int = 0, vad: str | None = None,
                           distance: float | None = None, out: Path | None = None,
                           device: str = "auto", progress=None) -> dict:
    """Build the conversations of ``split``'s speakers (every other one enrolled, from files
    the conversations do not use), diarize each against a scratch database of the enrolled
    speakers, and measure. ``out``: write each conversation's WAV and reference and
    hypothesis RTTM there. ``vad``: the scratch database's speech detector (default: the
    model's, as a new database of it would have)."""
    from speakerdb.api import SpeakerDB
    from speakerdb.diarize.run import diarize_samples
    from speakerdb.diarize.turns import write_rttm
    from speakerdb.eval.conversations import SPLITS, conversations, pools, split_speakers
    from speakerdb.eval.trials import labelled_files

    DER = _metrics()
    if split not in SPLITS + ("all",):
        raise UsageError(f"split {split!r}: choose dev, test or all", option="split")
    root, files = labelled_files(source)
    parts = split_speakers(f.speaker for f in files)
    speakers = parts["dev"] + parts["test"] if split == "all" else parts[split]
    pool = pools(root, files, speakers)
    names = sorted(pool)
    enrolled = set(names[::2])
    metrics = {}
    naming: dict[str, dict] = {}
    audio_s = diarize_s = 0.0
    per_conv = []
    with tempfile.TemporaryDirectory(prefix="speakerdb-conv-") as tmp:
        with SpeakerDB.create(Path(tmp) / "home", model=model, embedder=embedder,
                              device=device, vad=vad) as db:
            vad = db.policy.vad
            for s in sorted(enrolled):
                db.enroll(s, [root / p for p in pool[s].enroll])
            for conv in conversations(pool, enrolled, sizes, per_size, overlap_share, seed):
                t0 = time.perf_counter()
                r = diarize_samples(db, conv.samples, conv.name, distance=distance)
                diarize_s += time.perf_counter() - t0
                audio_s += conv.duration_s
                from pyannote.core import Segment, Timeline

                ref = _annotation(conv.reference, conv.name)
                hyp = _annotation(r.turns, conv.name)
                uem = Timeline([Segment(0.0, conv.duration_s)])
                k = str(len(conv.speakers))
                for group in (k, "all"):
                    for skip in (True, False):
                        m = metrics.setdefault((group, skip), DER(collar=COLLAR_S,
                                                                  skip_overlap=skip))
                        m(ref, hyp, uem=uem)
                counts = naming_counts(conv.reference, r.turns, set(conv.enrolled),
                                       set(enrolled))
                acc = naming.setdefault(conv.enrolment, {})
                for key, v in counts.items():
                    acc[key] = acc.get(key, 0.0) + v
                per_conv.append({"name": conv.name, "speakers": len(conv.speakers),
                                 "enrolled": len(conv.enrolled), "overlap": conv.overlap,
                                 "duration_s": round(conv.duration_s, 2),
                                 "found": len(r.speakers)})
                if out is not None:
                    _write(out, conv, r, write_rttm)
                if progress:
                    progress(1)
            model_name = db.embedder.name
    groups = sorted({g for g, _ in metrics}, key=lambda g: (g == "all", g))
    return {"mode": "conversations", "source": str(source), "model": model_name, "vad": vad,
            "split": split, "speakers": len(names), "enrolled": len(enrolled), "seed": seed,
            "collar_s": COLLAR_S, "conversations": len(per_conv),
            "der": {g: {"overlap_excluded": der_parts(metrics[(g, True)]),
                        "overlap_included": der_parts(metrics[(g, False)])} for g in groups},
            "naming": {plan: _naming_doc(c) for plan, c in sorted(naming.items())},
            "speed": {"audio_s": round(audio_s, 1), "seconds": round(diarize_s, 2),
                      "real_time_factor": round(diarize_s / audio_s, 4) if audio_s else None},
            "items": per_conv}


def _write(out: Path, conv, result, write_rttm) -> None:
    import soundfile as sf

    out.mkdir(parents=True, exist_ok=True)
    sf.write(out / f"{conv.name}.wav", conv.samples, 16000, subtype="PCM_16")
    write_rttm(out / f"{conv.name}.ref.rttm", conv.reference, conv.name)
    write_rttm(out / f"{conv.name}.hyp.rttm", result.turns, conv.name)

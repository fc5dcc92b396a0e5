"""Diarization speed: a 10-minute conversation of speech-dev speakers (4 voices, turns of
1-8 s, pauses; ``eval.conversations``) diarized against a scratch database of the default
model, with the energy gate and with Silero VAD; seconds per stage and the ratio of wall time
to the audio's length (real time = 1).

    python -m bench.diarization [--minutes 10] [--model campplus] [--json OUT]

Prints one JSON document (also written to ``--json``). The error rates come from
``speakerdb eval --conversations`` (README, "Several speakers in one file").
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from speakerdb.api import SpeakerDB
from speakerdb.audio.vad import silero_available
from speakerdb.diarize.run import diarize_samples
from speakerdb.eval.conversations import build_conversation, pools, split_speakers
from speakerdb.eval.trials import labelled_files

SPEECH_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech-dev"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--data", default=str(SPEECH_DEV))
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    root, files = labelled_files(args.data)
    test = split_speakers(f.speaker for f in files)["test"]
    pool = pools(root, files, test[:4])
    turns = int(args.minutes * 60 / 5.2)  # turns of 4.5 s on average and pauses of 0.7 s
    x, ref = build_conversation("bench", [pool[s] for s in sorted(pool)], turns, False, 0)
    audio_s = len(x) / 16000
    doc = {"model": args.model, "audio_s": round(audio_s, 1), "turns": len(ref), "runs": {}}
    vads = ("energy", "silero") if silero_available() else ("energy",)
    with tempfile.TemporaryDirectory() as tmp:
        for vad in vads:
            with SpeakerDB.create(Path(tmp) / vad, model=args.model, device="cpu",
                                  vad=vad) as db:
                db.embedder([x[:16000]])  # load and warm the model outside the timing
                t0 = time.perf_counter()
                r = diarize_samples(db, x, "bench")
                wall = time.perf_counter() - t0
            doc["runs"][vad] = {"seconds": round(wall, 2),
                                "real_time_factor": round(wall / audio_s, 4),
                                "speed_x_real_time": round(audio_s / wall, 1),
                                "windows": r.windows, "voices_found": len(r.speakers),
                                "stages_s": {k: round(v, 2) for k, v in r.timings.items()
                                             if k != "start"}}
    text = json.dumps(doc, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return doc


if __name__ == "__main__":
    main()

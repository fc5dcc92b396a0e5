#!/usr/bin/env python
"""How well the default model verifies and identifies voices on ../shared/data/speech-dev:
the figures of the README's "Evaluation" section.

    python bench/eval_speech_dev.py [--model campplus] [--data DIR] [--plot DIR] [--json FILE]

Verification: trial lists made by ``speakerdb trials`` (seed 0): lenient (every target pair)
and strict (target pairs cut from one original recording left out), each with 50 non-target
partners drawn per file (about 14,000 non-targets, so that minDCF at p 0.01 means something).
Conditions: clean whole files, and the test side cropped to 1 s and mixed with the babble
of 3 other speakers at 5 dB SNR. EER and minDCF (p 0.01, 0.05) per dimension,
raw cosine and AS-norm (cohort: the speaker means of speech-dev, each side's own speaker left
out; top 300, i.e. all 62 others).

Identification: a database holds every file but the last of 50 speakers (the gallery); the
other 13 speakers are unknown. Probes: the 50 held-back files and every file of the unknown
speakers. Closed-set top-1 / top-5, open-set DIR at FPIR 1 % and 10 % per dimension, and the
cascade against exhaustive search. Deterministic; embeddings are computed once per run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from speakerdb.eval.conditions import CLEAN, parse_condition
from speakerdb.eval.report import format_report
from speakerdb.eval.trials import LabelledFile, labelled_files, make_trials

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "speech-dev"
HARD = "crop=1,babble=3,snr=5"
GALLERY_SPEAKERS = 50


def verification(emb, root, files, plot: Path | None) -> dict:
    from speakerdb.eval.verification import evaluate_verification

    conds = [CLEAN, parse_condition(HARD)]
    caches: dict = {}
    out = {}
    for name, strict in (("lenient", False), ("strict", True)):
        trials = make_trials(files, seed=0, nontargets_per_file=50,
                             exclude_same_recording=strict)
        doc, scores = evaluate_verification([emb], trials, root, files, conds,
                                            cohort_files=files, cohort_root=root, caches=caches)
        doc["mode"] = "verification"
        print(f"\n== verification, {name} trials ==")
        print(format_report(doc))
        out[name] = doc
        if plot is not None and name == "strict":
            from speakerdb.eval.plots import plot_det, plot_histograms

            for (model, cond, norm), per_dim in scores.items():
                if norm != "none":
                    continue
                curves = {f"{d}-D": pair for d, pair in sorted(per_dim.items())}
                tag = "clean" if cond == "clean" else "1s-babble"
                title = f"{model}, speech-dev strict trials, {cond}"
                plot_det(curves, plot / f"det_{model}_{tag}.png", title=title)
                plot_histograms(curves, plot / f"hist_{model}_{tag}.png", title=title,
                                threshold=emb.default_threshold)
    return out


def split(files: list[LabelledFile]):
    """(gallery manifest rows, probes): every file but the last of the first
    GALLERY_SPEAKERS speakers (sorted) enrolled; their last files and all files of the
    others are probes."""
    by_spk: dict[str, list[LabelledFile]] = {}
    for f in files:
        by_spk.setdefault(f.speaker, []).append(f)
    multi = sorted(s for s, fs in by_spk.items() if len(fs) > 1)
    known = multi[:GALLERY_SPEAKERS]
    gallery, probes = [], []
    for s in sorted(by_spk):
        fs = by_spk[s]
        if s in known:
            gallery += fs[:-1]
            probes.append(fs[-1])
        else:
            probes += fs
    return gallery, probes


def identification(spec, emb, root, files) -> dict:
    from speakerdb.api import SpeakerDB
    from speakerdb.eval.embed import EmbeddingCache
    from speakerdb.eval.identification import evaluate_identification

    gallery, probes = split(files)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "gallery.csv"
        manifest.write_text("path,speaker\n" + "".join(
            f"{(root / f.path).resolve()},{f.speaker}\n" for f in gallery))
        with SpeakerDB.create(Path(tmp) / "home", model=spec, embedder=emb) as db:
            t0 = time.perf_counter()
            db.ingest([manifest], layout="manifest")
            print(f"\n== identification: gallery of {len(gallery)} files "
                  f"({time.perf_counter() - t0:.0f} s to ingest), {len(probes)} probes ==")
            cache = EmbeddingCache(emb, root, files)
            doc = evaluate_identification(db, probes, root, [CLEAN, parse_condition(HARD)],
                                          rules=("max", "mean", "top2"), cache=cache)
            doc["through_identify"] = through_identify(db, cache, probes)
    doc = {"mode": "identification", "model": emb.name, **doc}
    print(format_report(doc))
    print("\nthrough `identify` (cascade, rule max), raw cosine against AS-norm "
          "(cohort: the gallery's 49 other speaker means):")
    print(f"{'condition':<24} {'norm':<7} {'top-1':>6} {'DIR@1%':>7} {'DIR@10%':>8}")
    for r in doc["through_identify"]:
        print(f"{r['condition']:<24} {r['norm']:<7} {r['top1']:>6.3f} {r['dir_0.01']:>7.3f} "
              f"{r['dir_0.1']:>8.3f}")
    return doc


def through_identify(db, cache, probes) -> list[dict]:
    """Closed-set top-1 and open-set DIR at FPIR 1 % / 10 % from ``SpeakerDB.identify`` itself
    (cascade search, rule max), without and with AS-norm."""
    from speakerdb.audio import Waveform
    from speakerdb.eval.embed import Job
    from speakerdb.eval.metrics import dir_at_fpir

    gallery = {s.label for s in db.speakers()}
    out = []
    for cond in (CLEAN, parse_condition(HARD)):
        for norm in ("none", "asnorm"):
            known_s, known_ok, unknown_s = [], [], []
            for p in probes:
                x = cache.signal(Job(p.path, cond))
                r = db.identify(Waveform(x, 16000), name=p.path, score_norm=norm)
                top = r.candidates[0] if r.candidates else None
                score = top.score if top else -1e9
                if p.speaker in gallery:
                    known_s.append(score)
                    known_ok.append(top is not None and top.speaker == p.speaker)
                else:
                    unknown_s.append(score)
            row = {"condition": cond.name, "norm": norm,
                   "top1": float(sum(known_ok) / len(known_ok))}
            for f in (0.01, 0.1):
                row[f"dir_{f}"] = float(dir_at_fpir(known_s, known_ok, unknown_s, f)[0])
            out.append(row)
    return out



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--plot", type=Path, help="write DET curves and histograms here")
    ap.add_argument("--json", type=Path, help="write every figure as JSON here")
    ap.add_argument("--skip-identification", action="store_true")
    args = ap.parse_args()
    if not (args.data / "manifest.csv").is_file():
        print(f"no speech-dev at {args.data}", file=sys.stderr)
        return 2
    from speakerdb.model.registry import load_embedder

    emb = load_embedder(args.model, "cpu")
    root, files = labelled_files(args.data / "manifest.csv")
    t0 = time.perf_counter()
    doc = {"model": {"name": emb.name, "sha256": emb.sha256},
           "verification": verification(emb, root, files, args.plot)}
    if not args.skip_identification:
        doc["identification"] = identification(args.model, emb, root, files)
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

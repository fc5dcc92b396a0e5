#!/usr/bin/env python
"""Open-set identification on ../shared/data/speech-dev at the system's own operating points:
what `speakerdb identify` answers for voices that are and are not in the database.

    python bench/openset_speech_dev.py [--splits 20] [--model campplus] [--json FILE]

Speaker-disjoint: in each split (seeded), 2/3 of the speakers (42) are enrolled with every
file but their last; their last files are the known probes, and every file of the other 21
speakers is an unknown probe. Galleries of 10 and 20 speakers are the first speakers of the 42.
Probes are clean whole files, and the same files cropped to 1 s with 3 other talkers' babble at
5 dB SNR (the babble comes from any speech-dev speaker). Scores are what identify computes with
the default rule (max over the speaker's stored segments, top dimension, every segment scored).

Operating points (each as identify would choose it, nothing tuned on the unknown probes;
rule max unless named):

* ``calibrated``: `speakerdb calibrate` (target FPIR 1 %) on the gallery's own speakers, the
  threshold for the gallery's size (the functions calibrate and identify call);
* ``calibrated at 20, used at 42``: made on the first 20 speakers, used for all 42;
* ``calibrated, rule R``: the same calibration at 42 speakers for the other rules;
* ``model default``: the statistics shipped with the model (fitted on all of speech-dev, so
  the unknown speakers were seen: in-sample), and ``model default, disjoint``: the same fit
  redone in each split without the unknown speakers (on the 42 enrolled ones);
* for reference, the former rules: ``calibrate --far 0.01`` (per comparison) and the fixed
  cosine 0.40, and the oracle: DIR at the threshold that gives FPIR 1 % on these very unknown
  probes.

FPIR: unknown probes matched to anyone. DIR: known probes matched to their own speaker.
Rates are pooled over the splits (counts given).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "speech-dev"
HARD = "crop=1,babble=3,snr=5"
SIZES = (10, 20, 42)
OTHER_RULES = ("mean", "topk:3", "centroid")  # calibrated at 42 speakers, beside max
FPIR = 0.01


def embed_all(model: str, conditions):
    """(segment gallery of every file, probe vectors per condition, files, the model's
    shipped impostor statistics, the database's speech detector)."""
    from speakerdb.api import SpeakerDB
    from speakerdb.eval.embed import EmbeddingCache, Job
    from speakerdb.eval.trials import labelled_files

    root, files = labelled_files(DATA / "manifest.csv")
    with tempfile.TemporaryDirectory() as tmp:
        with SpeakerDB.create(Path(tmp) / "home", model=model, device="cpu") as db:
            db.ingest([DATA / "manifest.csv"])
            g = db.scorer.gallery()
            vecs, labels, recs = g.labelled()
            cache = EmbeddingCache(db.embedder, root, files, db.policy)
            probes = {}
            top = max(db.space.dims)
            for cond in conditions:
                jobs = [Job(f.path, cond) for f in files]
                cache.ensure(jobs)
                probes[cond.name] = cache.matrix(jobs, top)[0].astype(np.float64)
            shipped = getattr(db.embedder, "impostor_stats", None) or {}
            vad = db.policy.vad
    file_of = [str(Path(r).resolve().relative_to(DATA.resolve())) for r in recs]
    return (np.asarray(vecs, np.float64), list(labels), file_of), probes, files, shipped, vad


def best_scores(q, gvecs, gspk, speakers, rule: str = "max"):
    """(probes, speakers) score of each probe against each speaker's gallery segments by
    identify's ``rule``: max, mean, topk:3 (mean of the 3 best) or centroid (cosine with the
    unit mean of the speaker's unit segment vectors)."""
    sims = q @ gvecs.T
    cols = []
    for s in speakers:
        mine = gspk == s
        if rule == "centroid":
            c = gvecs[mine].sum(axis=0)
            cols.append(q @ (c / np.linalg.norm(c)))
        elif rule == "topk:3":
            cols.append(-np.sort(-sims[:, mine], axis=1)[:, :3].mean(axis=1))
        elif rule == "mean":
            cols.append(sims[:, mine].mean(axis=1))
        else:
            cols.append(sims[:, mine].max(axis=1))
    return np.stack(cols, axis=1)


def main() -> None:
    from speakerdb.eval.calibrate import calibrate as far_threshold
    from speakerdb.eval.conditions import CLEAN, parse_condition
    from speakerdb.eval.openset_calibration import calibrate_identification
    from speakerdb.search.leave_one_out import loo_matrix, split_loo
    from speakerdb.search.openset import ImpostorModel, fit_impostors

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA}: speech-dev is not there (it ships beside the repository)")
    conds = (CLEAN, parse_condition(HARD))
    (gv, gl, gf), probes, files, shipped, vad = embed_all(args.model, conds)
    gl = np.array(gl)
    gf = np.array(gf)
    shipped_model = ImpostorModel.from_dict(shipped["none/max/256"]) if shipped else None
    speakers = sorted(set(f.speaker for f in files))
    by_spk = {s: [i for i, f in enumerate(files) if f.speaker == s] for s in speakers}
    tally: dict = {}

    def count(point, size, cond, fp, n_unk, hit, n_known, thr):
        t = tally.setdefault((point, size, cond), [0, 0, 0, 0, []])
        t[0] += fp
        t[1] += n_unk
        t[2] += hit
        t[3] += n_known
        t[4].append(thr)

    rng = np.random.default_rng(0)
    for split in range(args.splits):
        order = [speakers[i] for i in rng.permutation(len(speakers))]
        enrolled, unknown = order[:42], order[42:]
        held = {s: files[by_spk[s][-1]].path for s in enrolled}
        unk_rows = [i for s in unknown for i in by_spk[s]]
        thresholds = {}
        for n in SIZES:
            gal = enrolled[:n]
            rows = np.flatnonzero(np.isin(gl, gal) & ~np.isin(gf, list(held.values())))
            agg, spk = loo_matrix(gv[rows], gl[rows].tolist(), gf[rows].tolist(), "max")
            cal = calibrate_identification(agg, spk, FPIR)
            thresholds[("calibrated", n)] = cal.threshold_at(n)
            if n == 20:
                thresholds[("calibrated at 20, used at 42", 42)] = cal.threshold_at(42)
            if n == 42:
                for rule in OTHER_RULES:
                    ragg, rspk = loo_matrix(gv[rows], gl[rows].tolist(), gf[rows].tolist(),
                                            rule.split(":")[0], 3)
                    rcal = calibrate_identification(ragg, rspk, FPIR)
                    thresholds[(f"calibrated, rule {rule}", 42)] = rcal.threshold_at(42)
                disjoint = fit_impostors(agg, spk)
                t, nt = split_loo(agg, spk)
                thresholds[("calibrate --far 0.01 (former)", 42)] = \
                    far_threshold(t, nt, target_far=0.01).threshold
                thresholds[("fixed 0.40 (former)", 42)] = 0.40
            if shipped_model is not None:
                thresholds[("model default", n)] = shipped_model.threshold(FPIR, n)
        for n in SIZES:
            thresholds[("model default, disjoint", n)] = disjoint.threshold(FPIR, n)
        for cond in conds:
            q = probes[cond.name]
            for n in SIZES:
                gal = enrolled[:n]
                rows = np.flatnonzero(np.isin(gl, gal) & ~np.isin(gf, list(held.values())))
                gvecs, gspk = gv[rows], gl[rows]
                known_rows = [by_spk[s][-1] for s in gal]
                ku = best_scores(q[known_rows], gvecs, gspk, gal)
                uu = best_scores(q[unk_rows], gvecs, gspk, gal).max(axis=1)
                right = ku.argmax(axis=1) == np.arange(n)
                kbest = ku.max(axis=1)
                for (point, size), thr in thresholds.items():
                    if size != n:
                        continue
                    rule = point.split("rule ")[1] if "rule " in point else "max"
                    if rule != "max":
                        rk = best_scores(q[known_rows], gvecs, gspk, gal, rule)
                        ru = best_scores(q[unk_rows], gvecs, gspk, gal, rule).max(axis=1)
                        ok = (rk.argmax(axis=1) == np.arange(n)) & (rk.max(axis=1) >= thr)
                        count(point, n, cond.name, int((ru >= thr).sum()), len(ru),
                              int(ok.sum()), n, thr)
                        continue
                    count(point, n, cond.name, int((uu >= thr).sum()), len(uu),
                          int((right & (kbest >= thr)).sum()), n, thr)
                # oracle: the threshold giving FPIR 1 % on these unknowns
                k = int(np.floor(FPIR * len(uu)))
                thr = float(np.sort(uu)[::-1][k]) + 1e-9
                count("oracle (FPIR 1 % on the unknowns)", n, cond.name, int((uu >= thr).sum()),
                      len(uu), int((right & (kbest >= thr)).sum()), n, thr)
    doc = {"data": str(DATA), "model": args.model, "vad": vad, "splits": args.splits,
           "target_fpir": FPIR,
           "results": per_size(tally),
           "larger_galleries": larger(shipped_model, probes, gv, gl, gf, files)}
    print_table(doc)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


def larger(model, probes, gv, gl, gf, files) -> list[dict]:
    """What the model default would do in galleries of thousands of speakers: its threshold
    for FPIR 1 % at each size, and the fraction of known probes (each speech-dev file against
    its own speaker's other files, leave-one-file-out) whose own-speaker score reaches it: an
    upper bound of DIR (the own speaker must also rank first)."""
    if model is None:
        return []
    out = []
    for n in (100, 1000, 10000, 100000):
        thr = model.threshold(FPIR, n)
        row = {"gallery_speakers": n, "threshold": round(thr, 4)}
        for cond, q in probes.items():
            own = []
            for i, f in enumerate(files):
                others = np.flatnonzero((gl == f.speaker) & (gf != f.path))
                if others.size:
                    own.append(float((gv[others] @ q[i]).max()))
            row[f"own_score_reaches_{cond}"] = round(float(np.mean(np.array(own) >= thr)), 4)
        out.append(row)
    return out


def per_size(tally):
    return [{"operating_point": p, "gallery_speakers": n, "condition": c, "fpir": fp / nu,
             "false_matches": fp,
             "unknown_probes": nu, "dir": hit / nk, "known_probes": nk,
             "threshold_mean": round(float(np.mean(t)), 4),
             "threshold_sd": round(float(np.std(t)), 4)}
            for (p, n, c), (fp, nu, hit, nk, t) in sorted(tally.items(),
                                                          key=lambda kv: (kv[0][2], kv[0][0],
                                                                          kv[0][1]))]


def print_table(doc) -> None:
    print(f"speech-dev, {doc['splits']} speaker-disjoint splits, target FPIR "
          f"{doc['target_fpir']:g}, model {doc['model']}, vad {doc['vad']}")
    print(f"{'operating point':<36} {'N':>3} {'condition':<22} {'FPIR':>7} {'(n)':>9} "
          f"{'DIR':>7} {'(n)':>7} {'thr':>7}")
    for r in doc["results"]:
        print(f"{r['operating_point']:<36} {r['gallery_speakers']:>3} {r['condition']:<22} "
              f"{r['fpir']:7.4f} "
              f"{r['false_matches']:>4}/{r['unknown_probes']:<4} {r['dir']:7.4f} "
              f"{r['known_probes']:>7} {r['threshold_mean']:7.3f}")
    if doc["larger_galleries"]:
        print("\nmodel default in larger galleries: threshold for FPIR 1 %, and the share of "
              "known probes whose own-speaker score reaches it (an upper bound of DIR)")
        for r in doc["larger_galleries"]:
            rest = "  ".join(f"{k.removeprefix('own_score_reaches_')} {v:.3f}"
                             for k, v in r.items() if k.startswith("own_"))
            print(f"  {r['gallery_speakers']:>7} speakers: threshold {r['threshold']:.3f}  {rest}")


if __name__ == "__main__":
    main()

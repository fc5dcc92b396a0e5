#!/usr/bin/env python
"""Fit the impostor statistics shipped with the default model (campplus) on a labelled
speech folder, by default ../shared/data/speech-dev:

    python scripts/fit_impostor_stats.py [--data DIR] [--out speakerdb/model/campplus/impostors.json]

The folder is ingested into a throw-away database with the model; then, for every aggregation
rule and score normalisation identify offers, at the top dimension, the leave-one-out matrix
of every labelled segment against every speaker (``search.leave_one_out.loo_matrix``, the same
scores ``speakerdb calibrate`` uses) is fitted with ``search.openset.fit_impostors`` (seeded
bootstrap). Deterministic: the same data and model give the same file.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "speech-dev"
OUT = ROOT / "speakerdb" / "model" / "campplus" / "impostors.json"
SPACES = [(norm, rule) for norm in ("none", "asnorm")
          for rule in ("max", "mean", "top2", "topk", "centroid")]


def main() -> None:
    from speakerdb.api import SpeakerDB
    from speakerdb.search.decision import DEFAULT_AGG_K, rule_label
    from speakerdb.search.leave_one_out import loo_matrix
    from speakerdb.search.openset import fit_impostors, space_key

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--model", default="campplus")
    args = ap.parse_args()
    source = args.data / "manifest.csv" if (args.data / "manifest.csv").is_file() else args.data
    spaces = {}
    with tempfile.TemporaryDirectory() as tmp:
        with SpeakerDB.create(Path(tmp) / "home", model=args.model, device="cpu") as db:
            db.ingest([source])
            vecs, labels, recs = db.scorer.gallery().labelled()
            n_spk = len(set(labels))
            dim = max(db.space.dims)
            for norm, rule in SPACES:
                agg, spk = loo_matrix(vecs, labels, recs, rule, DEFAULT_AGG_K, score_norm=norm)
                label = rule_label(rule, DEFAULT_AGG_K)
                model = fit_impostors(agg, spk, segments_per_speaker=len(labels) / n_spk,
                                      source=f"{n_spk} speakers of {args.data.name}")
                spaces[space_key(norm, label, dim)] = model.to_dict()
                print(f"{space_key(norm, label, dim)}: threshold at 10/100/1000 speakers "
                      + " / ".join(f"{model.threshold(0.01, n):.3f}" for n in (10, 100, 1000)))
    doc = {"model": args.model, "data": args.data.name, "speakers": n_spk,
           "segments": len(labels), "spaces": spaces}
    args.out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""``speakerdb eval`` and ``speakerdb trials``: how well a model identifies voices on the
user's own data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from speakerdb.cli.shell import Device, Home, Json, print_json, shell

__all__ = ["register"]


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="input", desc=desc, file=sys.stderr, mininterval=0.5,
                dynamic_ncols=True, leave=False)


@shell
def trials(
    source: Annotated[Path, typer.Argument(help="Labelled folder (one sub-folder per speaker) or CSV manifest (path,speaker[,recording|source]).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Trial list to write (VoxCeleb1-O format: `1 a.wav b.wav`, paths relative to SOURCE's folder).")],
    seed: Annotated[int, typer.Option(help="Seed of the non-target draw.")] = 0,
    targets_per_file: Annotated[Optional[int], typer.Option(help="Target partners drawn per file (default: every target pair).")] = None,
    nontargets_per_file: Annotated[Optional[int], typer.Option(help="Non-target partners drawn per file (default: as many non-targets as targets overall).")] = None,
    exclude_same_recording: Annotated[bool, typer.Option("--exclude-same-recording", help="Leave out target pairs cut from one original recording (strict trials).")] = False,
    recording_column: Annotated[str, typer.Option(help="Manifest column naming the original recording.")] = "recording",
    layout: Annotated[str, typer.Option(help="auto | voxceleb | folders | manifest.")] = "auto",
    json_: Json = False,
):
    """Make a deterministic trial list from labelled audio."""
    from speakerdb.eval.trials import labelled_files, make_trials, trial_stats, write_trials

    root, files = labelled_files(source, layout, recording_column)
    made = make_trials(files, seed=seed, targets_per_file=targets_per_file,
                       nontargets_per_file=nontargets_per_file,
                       exclude_same_recording=exclude_same_recording)
    write_trials(made, out)
    doc = {"out": str(out), "root": str(root), "seed": seed,
           "exclude_same_recording": exclude_same_recording, **trial_stats(made)}
    if json_:
        print_json(doc)
    else:
        print(f"{out}: {doc['trials']} trials ({doc['targets']} target, {doc['nontargets']} "
              f"non-target) over {doc['files']} files; paths relative to {root}")


def _conditions(texts: list[str] | None):
    from speakerdb.eval.conditions import CLEAN, parse_condition

    conds = [parse_condition(t) for t in (texts or ["clean"])]
    return list(dict.fromkeys(conds)) or [CLEAN]


def _labelled(source: Path | None):
    from speakerdb.eval.trials import labelled_files

    return labelled_files(source) if source is not None else (None, [])


@shell
def eval_(
    trials_file: Annotated[Optional[Path], typer.Option("--trials", help="Verification trial list (`1 a.wav b.wav`).")] = None,
    root: Annotated[Optional[Path], typer.Option(help="Folder the trial or probe paths are relative to (default: the list's folder).")] = None,
    probes: Annotated[Optional[Path], typer.Option(help="Identification probes: a labelled folder or manifest; the database is the gallery.")] = None,
    labels: Annotated[Optional[Path], typer.Option(help="Labelled folder or manifest giving the trial files' speakers (default: the first path component).")] = None,
    model: Annotated[Optional[list[str]], typer.Option("--model", help="Model to evaluate; repeat to compare models side by side (verification).")] = None,
    condition: Annotated[Optional[list[str]], typer.Option("--condition", help="Test-side condition, repeatable: clean, or e.g. crop=1,babble=3,snr=5 / crop=2,noise=pink,snr=10.")] = None,
    cohort_files: Annotated[Optional[Path], typer.Option(help="Labelled folder or manifest whose speaker means form the AS-norm cohort (adds asnorm scores).")] = None,
    cohort_top: Annotated[Optional[int], typer.Option(help="AS-norm top-N cohort scores (default 300, at most the cohort size).")] = None,
    aggregation: Annotated[Optional[list[str]], typer.Option("--aggregation", help="Identification: speaker score rule(s) to evaluate (max, mean, top2, ...).")] = None,
    gallery_sizes: Annotated[Optional[str], typer.Option("--gallery-sizes", help="Identification: comma-separated gallery sizes (subsets of the enrolled speakers) at which to measure FPIR/DIR at identify's own operating point, e.g. 10,20,40.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write DET curves and score histograms (PNG) into this folder.")] = None,
    conversations: Annotated[Optional[Path], typer.Option(help="Diarization: synthetic conversations built from this labelled folder or manifest (DER with pyannote.metrics, naming accuracy); needs no database.")] = None,
    split: Annotated[str, typer.Option(help="Conversations: the speakers they are built from: test (default), dev (for tuning; disjoint from test) or all.")] = "test",
    per_size: Annotated[int, typer.Option(help="Conversations: how many of each number of speakers.", min=1)] = 12,
    sizes: Annotated[str, typer.Option(help="Conversations: numbers of speakers, comma-separated.")] = "2,3,4",
    overlap_share: Annotated[float, typer.Option(help="Conversations: the share with overlapping turns.", min=0.0, max=1.0)] = 0.3,
    seed: Annotated[int, typer.Option(help="Conversations: seed of the draws.")] = 0,
    vad: Annotated[Optional[str], typer.Option(help="Conversations: the speech detector of the scratch database (silero, energy, none) [default: the model's, as `init` would choose].")] = None,
    cluster_distance: Annotated[Optional[float], typer.Option(help="Conversations: the clustering's cosine distance threshold (default: the model's).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Conversations: write each one's WAV and reference and hypothesis RTTM here.")] = None,
    home: Home = None,
    device: Device = "auto",
    json_: Json = False,
):
    """Measure EER / minDCF per dimension on a trial list, or identification accuracy on probes."""
    from speakerdb.errors import UsageError

    if conversations is not None:
        if trials_file is not None or probes is not None:
            raise UsageError("give one of --trials, --probes or --conversations")
        doc = _conversations(conversations, model, split, per_size, sizes, overlap_share,
                             seed, vad, cluster_distance, out, device)
        if json_:
            print_json(doc)
        else:
            from speakerdb.eval.report import format_report

            print(format_report(doc))
        return
    if (trials_file is None) == (probes is None):
        raise UsageError("give either --trials FILE (verification), --probes SOURCE "
                         "(identification against the database) or --conversations SOURCE "
                         "(diarization)")
    if trials_file is not None and gallery_sizes is not None:
        raise UsageError("--gallery-sizes measures identification: use it with --probes")
    if probes is not None and plot is not None:
        raise UsageError("--plot draws DET curves of a trial list: use it with --trials")
    conds = _conditions(condition)
    if trials_file is not None:
        doc, scores = _verification(trials_file, root, labels, model, conds, cohort_files,
                                    cohort_top, device)
    else:
        doc, scores = _identification(probes, root, model, conds, aggregation, home, device,
                                      _sizes(gallery_sizes))
    if plot is not None:
        doc["plots"] = _plots(scores, plot)
    if json_:
        print_json(doc)
    else:
        from speakerdb.eval.report import format_report

        print(format_report(doc))


def _verification(trials_file, root, labels, models, conds, cohort_files, cohort_top, device):
    from speakerdb.config import default_model
    from speakerdb.errors import UsageError
    from speakerdb.eval.trials import read_trials
    from speakerdb.eval.verification import evaluate_verification
    from speakerdb.model.registry import load_embedder

    trial_list = read_trials(trials_file)
    root = Path(root) if root is not None else Path(trials_file).parent
    missing = sorted({p for t in trial_list for p in (t.a, t.b) if not (root / p).is_file()})
    if missing:
        raise UsageError(f"{trials_file}: {len(missing)} file(s) not found under {root}, "
                         f"e.g. {missing[0]} (give --root)")
    _, files = _labelled(labels)
    croot, cfiles = _labelled(cohort_files)
    embedders = [load_embedder(m, device) for m in dict.fromkeys(models or [default_model()])]
    n_inputs = len({(t.a, 'clean') for t in trial_list}
                   | {(t.b, c.name) for t in trial_list for c in conds})
    bar = _progress(len(embedders) * (n_inputs + len(cfiles)), "eval")
    try:
        doc, scores = evaluate_verification(
            embedders, trial_list, root, files, conds, cohort_files=cfiles, cohort_root=croot,
            cohort_top=cohort_top, progress=bar.update)
    finally:
        bar.close()
    doc = {"mode": "verification", "trials_file": str(trials_file), "root": str(root), **doc}
    return doc, {f"{m} {c}" + ("" if n == "none" else f" {n}"): v
                 for (m, c, n), v in scores.items()}


def _sizes(text: str | None) -> tuple[int, ...]:
    from speakerdb.errors import UsageError

    if text is None:
        return ()
    try:
        sizes = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(n < 1 for n in sizes):
        raise UsageError(f"--gallery-sizes must be positive integers separated by commas, "
                         f"got {text!r}")
    return sizes


def _identification(probes, root, models, conds, aggregation, home, device, sizes=()):
    from speakerdb.api import SpeakerDB
    from speakerdb.errors import UsageError
    from speakerdb.eval.embed import EmbeddingCache
    from speakerdb.eval.identification import evaluate_identification
    from speakerdb.eval.trials import labelled_files

    if models and len(models) > 1:
        raise UsageError("identification evaluates the database's own model; compare models "
                         "with --trials")
    src_root, files = labelled_files(probes)
    root = Path(root) if root is not None else src_root
    with SpeakerDB.open(home, device=device, **({"model": models[0]} if models else {})) as db:
        bar = _progress(len(files) * len(conds), "eval")
        try:
            cache = EmbeddingCache(db.embedder, root, files)
            doc = evaluate_identification(db, files, root, conds,
                                          rules=tuple(aggregation or ("max",)), cache=cache,
                                          progress=bar.update, gallery_sizes=sizes)
        finally:
            bar.close()
        name = db.embedder.name
    return {"mode": "identification", "probes": str(probes), "model": name, **doc}, {}


def _conversations(source, models, split, per_size, sizes, overlap_share, seed, vad,
                   distance, out, device) -> dict:
    from speakerdb.audio.vad import check_vad
    from speakerdb.config import default_model
    from speakerdb.errors import UsageError
    from speakerdb.eval.diarization import evaluate_conversations

    if models and len(models) > 1:
        raise UsageError("--conversations evaluates one model")
    try:
        counts = tuple(int(x) for x in sizes.split(",") if x.strip())
    except ValueError:
        counts = ()
    if not counts or any(n < 2 for n in counts):
        raise UsageError(f"--sizes must be numbers of speakers of at least 2 separated by "
                         f"commas, got {sizes!r}")
    if vad is not None:
        check_vad(vad)
    bar = _progress(per_size * len(counts), "conversations")
    try:
        return evaluate_conversations(source, model=(models or [default_model()])[0],
                                      split=split, sizes=counts, per_size=per_size,
                                      overlap_share=overlap_share, seed=seed, vad=vad,
                                      distance=distance, out=out, device=device,
                                      progress=bar.update)
    finally:
        bar.close()


def _plots(scores: dict, folder: Path) -> list[str]:
    """One DET plot (every dimension) and one histogram sheet per (model, condition, norm)."""
    import re

    from speakerdb.eval.plots import plot_det, plot_histograms

    out = []
    for label, per_dim in scores.items():
        stem = re.sub(r"[^A-Za-z0-9.=_-]+", "_", label).strip("_")
        curves = {f"{d}-D": pair for d, pair in sorted(per_dim.items())}
        out.append(str(plot_det(curves, folder / f"det_{stem}.png", title=label)))
        out.append(str(plot_histograms(curves, folder / f"hist_{stem}.png", title=label)))
    return out


def register(app: typer.Typer) -> None:
    """Add the evaluation commands to ``app``."""
    app.command("eval")(eval_)
    app.command("trials")(trials)

"""The ``speakerdb`` command line: every command parses, calls one library function, prints.

Imports only typer and the standard library at module level, so ``--help`` is instant; the
library (numpy, torch, faiss, SQLAlchemy) loads inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from speakerdb.cli.identify import register as _register_identify
from speakerdb.cli.shell import (CohortFile, CohortTop, Device, Home, Json,
                                 MaxDuration, MinDuration, NoWait, ScoreNorm, Vad, cli_message, err,
                                 audio_policy, print_ingest, print_json, open_db, shell)

__all__ = ["app", "main"]

app = typer.Typer(
    name="speakerdb",
    help="Vector-search speaker identification with Matryoshka speaker embeddings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_open = open_db


def _uses_db(home, model: str | None) -> bool:
    """Whether a command that needs no database uses the one at ``home``: when there is one
    and either no ``--model`` was named or ``--home`` was (then the model must be the
    database's: a ModelMismatchError otherwise)."""
    from speakerdb.config import read_home_file, resolve_home

    return (model is None or home is not None) and \
        read_home_file(resolve_home(home)) is not None


def _model_for(home, model: str | None, device: str = "auto", vad: str | None = None):
    """(embedder, speech detector): the database's at ``home`` (``model`` and ``vad``, if
    named, must be its), else the model named by ``model`` (else the default) with ``vad``
    (else that model's default detector)."""
    from speakerdb.audio.vad import check_vad, default_vad
    from speakerdb.config import default_model
    from speakerdb.model.registry import load_embedder

    if vad is not None:
        check_vad(vad)
    if _uses_db(home, model):
        with _open(home, catch_up=False, device=device, model=model) as db:
            from speakerdb.database.opening import require_vad

            return db.embedder, require_vad(db, vad)
    emb = load_embedder(model or default_model(), device)
    return emb, vad or default_vad(emb)


@app.command()
@shell
def init(
    home: Home = None,
    model: Annotated[Optional[str], typer.Option(help="Built-in model name, ReDimNet release name or checkpoint path [env SPEAKERDB_MODEL].")] = None,
    db_url: Annotated[Optional[str], typer.Option(help="SQLAlchemy URL of the metadata store, e.g. postgresql+psycopg://user@host/db (password from PGPASSWORD or ~/.pgpass) [env SPEAKERDB_DB_URL; default: SQLite in the home].")] = None,
    vectors: Annotated[Optional[str], typer.Option(help="Vector tier: faiss (default) or qdrant.")] = None,
    qdrant: Annotated[Optional[str], typer.Option(help="Qdrant of the qdrant tier: http(s)://host:6333, a folder or :memory: [env SPEAKERDB_QDRANT].")] = None,
    collection: Annotated[Optional[str], typer.Option(help="Qdrant collection name [default: one derived from the home].")] = None,
    device: Device = "auto",
    vad: Annotated[Optional[str], typer.Option(help="Speech detection before embedding, recorded with the database: silero, energy (frames above -60 dBFS) or none [default: silero; energy for the spectral test embedder].")] = None,
    json_: Json = False,
):
    """Create a database bound to one model (runs the store migrations); in a folder whose
    home.json is missing or unreadable, rebuild it from the store."""
    from speakerdb.api import SpeakerDB
    from speakerdb.config import home_file_problem, read_home_file, resolve_home
    from speakerdb.index.tier import tier_kind
    from speakerdb.store.engine import redact

    existed = read_home_file(resolve_home(home)) is not None
    problem = home_file_problem(resolve_home(home))
    with SpeakerDB.create(home, model=model, db_url=db_url, device=device, vad=vad,
                          vectors=vectors, qdrant=qdrant, collection=collection) as db:
        doc = {
            "home": str(db.home),
            "created": not existed and problem is None,
            "rebuilt_home_file": problem,
            "model": {"name": db.model.name, "sha256": db.model.sha256, "dims": list(db.model.dims)},
            "db_url": redact(db.store.url),
            "vectors": tier_kind(read_home_file(db.home) or {}),
            "vad": db.policy.vad,
        }
    if json_:
        print_json(doc)
    else:
        verb = "created" if doc["created"] else "already exists:"
        if problem is not None:
            verb = f"rebuilt home.json from the store ({problem}):"
        print(f"{verb} {doc['home']} (model {doc['model']['name']} "
              f"{doc['model']['sha256'][:12]}, vad {doc['vad']})")


@app.command()
@shell
def ingest(
    sources: Annotated[list[str], typer.Argument(help="Directories, audio files or CSV manifests (with --engine ray also URIs: file://, s3://, gs://).")],
    home: Home = None,
    layout: Annotated[str, typer.Option(help="auto | voxceleb | folders | manifest")] = "auto",
    batch: Annotated[int, typer.Option(help="Files per store transaction.", min=1)] = 32,
    retry_failed: Annotated[bool, typer.Option(help="Try inputs that failed before again.")] = False,
    relabel: Annotated[bool, typer.Option(help="A label given for a stored recording that has another one replaces it (else it is reported and kept).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    strict: Annotated[bool, typer.Option(help="Exit 2 when any input failed (they are stored as failures either way).")] = False,
    workers: Annotated[Optional[int], typer.Option(help="Processes that read and decode beside the model (0: the model's process does; default: one per core when the inputs fill more than one batch). With --engine ray: the embedding actors (default: one per --gpus-per-worker GPUs, or one per two CPUs).", min=0)] = None,
    engine: Annotated[str, typer.Option(help="local | ray: read, decode and embed on a Ray cluster (pip install 'speakerdb[ray]'); this process writes the database.")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(help="With --engine ray: the cluster to join (auto, ray://host:port); default: start a local Ray.")] = None,
    gpus_per_worker: Annotated[float, typer.Option(help="With --engine ray: GPUs each embedding actor holds (0: CPU actors).", min=0)] = 0.0,
    diarize: Annotated[bool, typer.Option("--diarize", help="Check each new recording for more than one voice (reported in the summary and in `stats`).")] = False,
    keep: Annotated[str, typer.Option(help="With --diarize: all (store a recording of several voices whole) or dominant (store only its largest voice's speech).")] = "all",
    min_duration: MinDuration = None,
    max_duration: MaxDuration = None,
    device: Device = "auto",
    no_wait: NoWait = False,
    json_: Json = False,
):
    """Embed and store audio; re-running skips what is already in (by content hash)."""
    from tqdm import tqdm

    from speakerdb.config import IngestConfig

    bar = None  # made once the inputs are known, so a usage error leaves stderr one line

    def on_start(n):
        nonlocal bar
        bar = tqdm(total=n, unit="file", desc="ingest", file=sys.stderr, disable=quiet,
                   mininterval=0.5, dynamic_ncols=True)

    def progress(k):
        if bar is not None:
            bar.update(k)

    cfg = IngestConfig(files_per_batch=batch, retry_failed=retry_failed,
                       min_duration_s=min_duration, relabel=relabel, workers=workers,
                       engine=engine, ray_address=ray_address, gpus_per_worker=gpus_per_worker,
                       diarize=diarize, keep=keep)
    if engine == "ray":  # before the home is opened: a missing extra is one line, exit 2
        from speakerdb.ingest.ray_engine import require_ray

        require_ray()
    with _open(home, no_wait, max_duration, device=device) as db:
        try:
            stats = db.ingest(sources, layout, cfg, progress=progress, on_start=on_start)
        finally:
            if bar is not None:
                bar.close()
    doc = {"home": str(db.home), **stats.as_dict()}
    if json_:
        print_json(doc)
    else:
        print_ingest(doc)
    if strict and doc["failed"]:
        raise typer.Exit(2)


_register_identify(app)


@app.command()
@shell
def verify(
    a: Annotated[Path, typer.Argument(help="First audio file.")],
    b: Annotated[Path, typer.Argument(help="Second audio file.")],
    home: Home = None,
    model: Annotated[Optional[str], typer.Option(help="Model (default: the database's, else the built-in default); with --home it must be the database's.")] = None,
    threshold: Annotated[Optional[float], typer.Option(
        help="Decision threshold at the top dimension (default: calibrated, else the model's "
             "or the AS-norm default).")] = None,
    score_norm: ScoreNorm = "none",
    cohort: CohortFile = None,
    cohort_top: CohortTop = None,
    vad: Vad = None,
    min_duration: MinDuration = None,
    max_duration: MaxDuration = None,
    device: Device = "auto",
    json_: Json = False,
):
    """Same speaker or not: cosine (or AS-norm) score at every dimension and a decision."""
    from speakerdb.config import check_score_norm, default_model
    from speakerdb.errors import UsageError

    check_score_norm(score_norm)
    kw = dict(score_norm=score_norm, cohort=cohort, cohort_top=cohort_top,
              min_duration_s=min_duration)
    if _uses_db(home, model):
        with _open(home, max_duration=max_duration, catch_up=False, device=device,
                   model=model) as db:
            from speakerdb.database.opening import require_vad

            require_vad(db, vad)
            r = db.verify(a, b, threshold, **kw)
    else:
        if score_norm == "asnorm" and cohort is None:
            raise UsageError("--score-norm asnorm without a database needs --cohort FILE")
        from speakerdb.audio import with_vad
        from speakerdb.search.verify import verify_with

        emb, detector = _model_for(None, model or default_model(), device, vad)
        r = verify_with(emb, a, b, threshold, with_vad(audio_policy(max_duration), detector),
                        **kw)
    if json_:
        print_json(r.as_dict())
        return
    dims = "  ".join(f"{d}-D {s:.4f}" for d, s in r.scores.items())
    norm = "" if r.score_norm == "none" else f" {r.score_norm}"
    print(f"{r.decision} (score {r.score:.4f}{norm}, threshold {r.threshold:.4f} "
          f"[{r.threshold_source}])\n  {dims}")


@app.command()
@shell
def embed(
    audio: Annotated[list[Path], typer.Argument(help="Audio files to embed.")],
    home: Home = None,
    model: Annotated[Optional[str], typer.Option(help="Model (default: the database's, else the built-in default); with --home it must be the database's.")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Also give the raw model outputs.")] = False,
    vad: Vad = None,
    max_duration: MaxDuration = None,
    device: Device = "auto",
    json_: Json = False,
):
    """Nested 64/128/192/256-D embeddings of audio files (no database needed)."""
    from speakerdb.search.query import embed_audio
    from speakerdb.errors import AudioError
    from speakerdb.model.base import model_info

    from speakerdb.audio import with_vad

    emb, detector = _model_for(home, model, device, vad)
    policy = with_vad(audio_policy(max_duration), detector)
    results, bad = [], 0
    for a in audio:
        try:
            results.append(embed_audio(emb, a, policy).as_dict(raw=raw))
        except AudioError as e:
            bad += 1
            results.append({"input": e.where, "error": str(e)})
            if not json_:
                err(cli_message(e))
    if json_:
        print_json({"model": model_info(emb), "results": results})
    else:
        for r in results:
            if "error" not in r:
                head = " ".join(f"{x:+.3f}" for x in r["embeddings"]["64"][:4])
                print(f"{r['input']}: {r['duration_s']:.2f} s, {r['segments']} segment(s), "
                      f"64-D [{head} ...]")
    if bad:
        raise typer.Exit(2)


@app.command()
@shell
def check(
    home: Home = None,
    repair: Annotated[bool, typer.Option(help="Rebuild the indexes from the store if they disagree.")] = False,
    quick: Annotated[bool, typer.Option(help="Compare a sample of 64 vectors instead of every one, and hash no file.")] = False,
    no_wait: NoWait = False,
    json_: Json = False,
):
    """Prove the indexes agree with the store (counts, ids, every vector, file checksums,
    model); exit 1 if not (a damaged store too)."""
    from speakerdb.errors import DamagedStoreError
    from speakerdb.database.results import CheckReport

    try:
        with _open(home, no_wait, catch_up=False) as db:
            report = db.check(repair=repair, quick=quick)
    except DamagedStoreError as e:  # the store cannot even be opened: the check failed
        report = CheckReport(False, [str(e)], {}, False, "quick" if quick else "full")
    if json_:
        print_json(report.as_dict())
    else:
        for p in report.problems:
            print(f"problem: {p}")
        for n in report.notes:
            print(f"note: {n}")
        c = report.counts
        state = "ok" if report.ok else "FAILED"
        fixed = " (repaired)" if report.repaired else ""
        counts = (f": {c['segments']} segments, {c['recordings']} recordings, "
                  f"{c['speakers']} speakers") if c else " (the store cannot be read)"
        print(f"check {state}{fixed}{counts} ({report.mode} check, {report.seconds:.2f} s)")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@shell
def stats(home: Home = None, json_: Json = False):
    """What the database holds: counts, durations, model, indexes."""
    with _open(home, catch_up=False) as db:
        doc = db.stats()
    if json_:
        print_json(doc)
        return
    c = doc["counts"]
    print(f"{doc['home']}: model {doc['model']['name']} ({doc['model']['sha256'][:12]}), "
          f"vad {doc['vad']}")
    if doc["multi_voice_recordings"]:
        print(f"  {doc['multi_voice_recordings']} recording(s) flagged by ingest --diarize as "
              "holding more than one voice")
    print(f"  {c['speakers']} speakers, {c['recordings']} recordings "
          f"({c['unlabelled_recordings']} unlabelled), {c['segments']} segments, "
          f"{c['duration_s'] / 3600:.2f} h, {c['failures']} failed inputs, "
          f"{c['ingest_runs']} ingest runs")
    v = doc["vectors"]
    if v.get("engine") == "qdrant":
        held = (f"{v['ntotal']} at {'/'.join(map(str, v['dims']))}-D" if "ntotal" in v
                else v.get("error", "no collection"))
        print(f"  vectors: Qdrant collection {v['collection']} at {v['location']}: {held}")
    elif v:
        sc = v["screen"]
        screen = (f"screened exactly at {sc['dim']}-D" if sc["index_key"] == "Flat" else
                  f"{sc['dim']}-D screen {sc['index_key']} ({sc['index_param']}), "
                  f"{sc['bytes']} bytes")
        print(f"  vectors: {v['ntotal']} at {'/'.join(map(str, v['dims']))}-D, "
              f"{v['rows_bytes']} bytes; {screen}")
    for key, c in doc.get("identify_calibrations", {}).items():
        if "error" in c:
            print(f"  identify calibration {key}: {c['error']}")
            continue
        note = "" if c["speaks_for_now"] else \
            " -- the database grew past what it speaks for: run `speakerdb calibrate`"
        print(f"  identify calibration {key}: {c['method']}, made at {c['made_at_speakers']} "
              f"speakers, speaks for up to {c['speaks_for_speakers']}, threshold now "
              f"{c['threshold_now']:.4f}{note}")


def _click_exceptions():
    try:  # typer >= 0.16 carries its own click
        import typer._click.exceptions as exceptions
    except ImportError:  # pragma: no cover - older typer on the real click
        import click.exceptions as exceptions
    return exceptions


def _add_groups() -> None:
    from speakerdb.cli.models import models_app

    app.add_typer(models_app, name="models")

    from speakerdb.cli.calibrate import register as _register_calibrate
    from speakerdb.cli.eval import register as _register_eval
    from speakerdb.cli.server import register as _register_server
    from speakerdb.cli.speakers import register as _register_speakers

    _register_calibrate(app)
    _register_eval(app)
    _register_speakers(app)
    _register_server(app)


_add_groups()


def _log_to_stderr() -> None:
    """Library log records (weights being fetched, ...) as ``speakerdb: message`` on stderr."""
    import logging

    log = logging.getLogger("speakerdb")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("speakerdb: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def main() -> None:
    """The console script: usage errors become one stderr line too (exit 2)."""
    ex = _click_exceptions()
    _log_to_stderr()
    try:
        rv = app(standalone_mode=False, prog_name="speakerdb")
    except ex.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `speakerdb`: the help, not an error
            print(e.format_message())
            sys.exit(0)
        where = e.ctx.command_path if e.ctx is not None else "speakerdb"
        err(f"{where}: {e.format_message()} (see '{where} --help')")
        sys.exit(2)
    except ex.ClickException as e:
        err(e.format_message())
        sys.exit(e.exit_code)
    except typer.Abort:  # typer's own click has no exceptions.Abort
        err("aborted")
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()

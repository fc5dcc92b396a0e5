"""Ingest into one database: the sources listed, the engine chosen (this process's pipeline or
a Ray cluster), the job run through the database's writer, and the run recorded in the store
(``SpeakerDB.ingest`` is the entry point)."""

from __future__ import annotations

import time

from speakerdb.audio.gates import gate_seconds
from speakerdb.config import IngestConfig
from speakerdb.database import management as manage
from speakerdb.errors import UsageError

__all__ = ["MULTI_VOICE_KEY", "run_ingest"]

MULTI_VOICE_KEY = "multi_voice_recordings"  # the store setting listing them (ingest --diarize)


def _diarize_keep(config: IngestConfig) -> str | None:
    from speakerdb.diarize.voices import KEEPS

    if config.keep not in KEEPS:
        raise UsageError(f"keep {config.keep!r}: choose one of {', '.join(KEEPS)}",
                         option="keep")
    if config.keep != "all" and not config.diarize:
        raise UsageError("keep applies to a diarized ingest: give diarize too", option="keep",
                         also=("diarize",))
    return config.keep if config.diarize else None


def run_ingest(db, sources, layout, config: IngestConfig, progress, on_start):
    """``SpeakerDB.ingest`` (see there) once the writer lock is held."""
    from speakerdb.ingest.engine import IngestJob, ingest_engine
    from speakerdb.ingest.pool import resolve_workers
    from speakerdb.ingest.sources import discover
    from speakerdb.ingest.writer import StoreWriter

    db.require_writable("ingest")
    keep = _diarize_keep(config)
    gate = gate_seconds(config.min_duration_s, db.gates.min_enroll_s)
    local = config.engine == "local"
    if keep is not None and not local:
        raise UsageError("diarize: works with the local ingest engine only",
                         option="diarize")
    engine = ingest_engine("local") if local else _engine(db, config)
    if local:
        items = discover([str(s) for s in sources], layout, config.extensions)
    else:  # workers elsewhere: URIs too, read where the workers run
        from speakerdb.ingest.ray_files import discover_with_uris

        items = discover_with_uris([str(s) for s in sources], layout, config.extensions)
    if on_start:
        on_start(len(items))
    embedder = db.embedder
    db.indexes.ensure_open()
    db.indexes.flush_s = config.index_flush_s
    run_id = db.store.start_run([str(s) for s in sources], layout)

    def known(shas):
        have = db.store.known_recordings(shas)
        return have if config.retry_failed else have | db.store.known_failures(shas)

    workers = (resolve_workers(config.workers, len(items), config.files_per_batch)
               if local else 0)
    job = IngestJob(items, embedder, db.policy, gate, known,
                    labels=db.store.recording_labels,
                    files_per_batch=config.files_per_batch, embed_batch=config.embed_batch,
                    relabel=config.relabel, progress=progress, workers=workers,
                    diarize=keep)
    writer = manage.LockedWriter(StoreWriter(db.store, db.indexes, run_id), db.lock,
                                 db.scorer.invalidate)
    t0 = time.perf_counter()
    status = "failed"
    try:
        stats = engine.run(job, writer)
        t1 = time.perf_counter()
        with db.lock:
            db.indexes.flush(force=True)
            db.fit_rotation()
        stats.write_s += time.perf_counter() - t1
        status = "done"
    finally:
        with db.lock:
            db.scorer.invalidate()
        summary = None if status != "done" else stats.as_dict()
        if summary is not None:
            summary["wall_s"] = round(time.perf_counter() - t0, 3)
            summary["multi_voice"] = len(summary["multi_voice"])
            if stats.multi_voice:
                flagged = db.store.get_setting(MULTI_VOICE_KEY) or []
                db.store.set_setting(MULTI_VOICE_KEY, flagged + stats.multi_voice)
            summary.pop("failures")
            summary["label_conflicts"] = len(summary["label_conflicts"])
        db.store.finish_run(run_id, status, summary)
    return stats

def _engine(db, config: IngestConfig):
    """The ingest engine ``config.engine`` names, other than the local one (its
    workers load the model this database is bound to)."""
    from speakerdb.ingest.engine import ingest_engine

    if config.engine != "ray":
        return ingest_engine(config.engine)
    from speakerdb.ingest.ray_engine import RayOptions, require_ray
    from speakerdb.ingest.ray_stages import EmbedderSpec

    require_ray()  # before the run is recorded: without Ray, nothing is started

    options = RayOptions(address=config.ray_address, workers=config.workers,
                         gpus_per_worker=config.gpus_per_worker,
                         resources=config.worker_resources)
    spec = EmbedderSpec(db.model_spec, db.model.sha256, db.device)
    return ingest_engine("ray", options=options, spec=spec)

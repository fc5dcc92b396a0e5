"""Ingest on a Ray cluster, with Ray Data: the same batches for the same writer as a local
ingest, so the database it leaves is the same.

The driver (this process, which owns the database) cuts the inputs into batches of
``files_per_batch`` and never reads audio. Two Ray Data pipelines run over them:

1. read + hash (CPU tasks, ``ray_stages.hash_rows``): each worker reads its inputs where it
   runs and sends back their content hashes. The driver skips what the store knows and what
   the run already met (``reader.triage``, batches in their order: each duplicate is decoded
   where a local ingest decodes it), before anything is decoded.
2. decode (CPU tasks, ``decode_rows``) → embed (a pool of ``Embed`` actors, the model loaded
   once per actor, ``num_gpus`` each when GPUs are asked for) → streamed back to the driver,
   whose ``Runner`` writes each batch in one store transaction and adds it to the vector tier.

Ray Data retries a task whose worker died and restarts a dead actor, retrying its batch
(its defaults: without limit); the store skips by content hash, so a re-run after a killed
driver writes nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from speakerdb.errors import EngineMissing, UsageError
from speakerdb.ingest.engine import IngestJob
from speakerdb.ingest.ray_stages import Embed, EmbedderSpec, decode_rows, hash_rows, pack, unpack

__all__ = ["RayEngine", "RayOptions", "require_ray"]

# memory a decode task reserves (a batch of decoded audio); the actors reserve none, so Ray
# Data keeps decoding in CPU tasks of its own instead of fusing it into the actors
DECODE_MEMORY = 256 << 20

@dataclass(frozen=True)
class RayOptions:
    """``address``: the cluster to join (``auto``, ``ray://host:port``); None starts a local
    Ray on this machine. ``workers``: embedding actors (None: one per ``gpus_per_worker``
    GPUs, or one per two CPUs). ``gpus_per_worker``: GPUs each actor holds (0: CPU actors).
    ``init``: further ``ray.init`` arguments for a local Ray (object store size, CPUs)."""

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    resources: dict | None = None  # custom Ray resources each actor needs
    init: dict | None = None


def require_ray():
    """The ``ray`` module, or an ``EngineMissing`` that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineMissing("the ray ingest engine needs Ray: pip install 'speakerdb[ray]'") \
            from None
    return ray


class RayEngine:
    def __init__(self, options: RayOptions | None = None, spec: EmbedderSpec | None = None):
        self.options, self.spec = options or RayOptions(), spec
        self.nodes: dict[str, int] = {}  # node id -> inputs embedded there

    def run(self, job: IngestJob, writer):
        from speakerdb.audio.gates import gated_policy
        from speakerdb.ingest.runner import Runner

        if self.spec is None:
            raise UsageError("the ray ingest engine needs the model spec of the database")
        ray = require_ray()
        opts = self.options
        if opts.workers is not None and opts.workers < 1:
            raise UsageError(f"workers {opts.workers}: the ray engine needs 1 or more",
                             option="workers")
        if opts.gpus_per_worker < 0:
            raise UsageError(f"gpus_per_worker {opts.gpus_per_worker}: must be 0 or more",
                             option="gpus_per_worker")
        started = _connect(ray, opts)
        try:
            reader = _RayReader(self, job, gated_policy(job.policy, job.gate_s))
            stats = Runner(reader, job.embedder, writer, job.embed_batch, job.progress,
                           job.relabel).run()
            stats.workers = reader.actors
            stats.engine = {"name": "ray", "actors": reader.actors,
                            "gpus_per_worker": opts.gpus_per_worker,
                            "nodes": dict(sorted(self.nodes.items()))}
            return stats
        finally:
            if started:
                ray.shutdown()


def _connect(ray, opts: RayOptions) -> bool:
    """Join the cluster at ``opts.address``, or start a local Ray, unless this process is
    connected already; True when this call started the connection."""
    import os

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    # stderr is the progress bar's: Ray's own notices (C++ core and Python) only when fatal
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    kwargs = {"include_dashboard": False, "log_to_driver": False,
              "logging_level": logging.ERROR}
    if opts.address is None:
        kwargs.update(opts.init or {})
    try:
        ray.init(address=opts.address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UsageError(f"ray address {opts.address!r}: cannot connect "
                         f"({' '.join(str(e).split())[:200]})", option="ray_address") from None
    return True


def _quiet(ray) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_operator_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


class _RayReader:
    """``ReadBatch``es, embedded already, in the order they come back from the cluster."""

    def __init__(self, engine: RayEngine, job: IngestJob, gated):
        self.engine, self.job, self.gated = engine, job, gated
        self.actors = 0

    def _actors(self, ray) -> int:
        """The embedding actors: as asked, or one per ``gpus_per_worker`` GPUs, or one per
        two CPUs; a UsageError where they would hold every CPU (none left to decode on:
        the pipeline would wait for ever)."""
        opts = self.engine.options
        res = ray.cluster_resources()
        cpus = res.get("CPU", 0)
        if opts.workers is not None:
            n = opts.workers
        elif opts.gpus_per_worker > 0:
            n = max(1, int(res.get("GPU", 0) // opts.gpus_per_worker))
        else:
            n = max(1, int(cpus // 2))
        if n * opts.cpus_per_worker > cpus - 1:
            most = int((cpus - 1) // opts.cpus_per_worker) if opts.cpus_per_worker else n
            raise UsageError(f"workers {n}: {n} embedding actors of {opts.cpus_per_worker:g} "
                             f"CPU would leave less than one of the Ray cluster's {cpus:g} CPUs "
                             f"to decode on; use at most {max(0, most)}", option="workers")
        return n

    def __iter__(self) -> Iterator:
        import ray

        from speakerdb.ingest.reader import triage

        _quiet(ray)
        job, opts = self.job, self.engine.options
        n = job.files_per_batch
        chunks = [list(job.items[i : i + n]) for i in range(0, len(job.items), n)]
        if not chunks:
            return
        t0 = time.perf_counter()
        hashed = ray.data.from_items([{"chunk": i, "data": pack(c)} for i, c in
                                      enumerate(chunks)], override_num_blocks=len(chunks))
        hashed = hashed.map(hash_rows)
        results: dict[int, tuple[list, float]] = {}
        for row in _rows(hashed):
            results[row["chunk"]] = (unpack(row["data"]), row["seconds"])
        wait = time.perf_counter() - t0

        seen: set[str] = set()
        pending: dict[int, object] = {}
        todo_rows = []
        for i, chunk in enumerate(chunks):
            out, seconds = results.pop(i)
            batch, todo = triage(chunk, out, job.known, seen, job.labels)
            batch.decode_s = seconds
            if todo:
                pending[i] = batch
                todo_rows.append({"chunk": i, "data": pack(todo)})
            else:  # nothing to decode: its failures, skips and labels are written at once
                batch.wait_s, wait = wait, 0.0
                yield batch
        if not todo_rows:
            return
        self.actors = self._actors(ray)
        ds = ray.data.from_items(todo_rows, override_num_blocks=len(todo_rows))
        ds = ds.map(decode_rows, fn_kwargs={"policy": job.policy, "gate_s": job.gate_s,
                                            "gated": self.gated},
                    memory=DECODE_MEMORY)
        ds = ds.map_batches(Embed.bound(self.engine.spec, job.embed_batch), batch_size=1,
                            compute=ray.data.ActorPoolStrategy(size=self.actors),
                            num_cpus=opts.cpus_per_worker, num_gpus=opts.gpus_per_worker,
                            resources=opts.resources)
        t0 = time.perf_counter()
        for row in _rows(ds):
            if row["error"]:  # the actor could not load the model
                raise unpack(row["error"])
            got = unpack(row["data"])
            batch = pending.pop(row["chunk"])
            batch.decoded = got.decoded
            batch.failures = batch.failures + got.failures
            batch.decode_s += got.decode_s
            batch.embed_s += got.embed_s
            batch.wait_s = wait + time.perf_counter() - t0
            node = row["node"]
            self.engine.nodes[node] = self.engine.nodes.get(node, 0) + len(got.decoded)
            yield batch
            wait, t0 = 0.0, time.perf_counter()


def _rows(ds) -> Iterator[dict]:
    """``ds.iter_rows()``; a speakerdb error raised in a task on a worker is raised here as
    itself, not wrapped in Ray's errors."""
    from speakerdb.errors import SpeakerDBError

    try:
        yield from ds.iter_rows()
    except Exception as e:
        seen, err = set(), e
        while err is not None and id(err) not in seen:
            seen.add(id(err))
            cause = getattr(err, "cause", None)
            if isinstance(cause, SpeakerDBError):
                raise cause from None
            err = cause if isinstance(cause, BaseException) else (err.__cause__
                                                                  or err.__context__)
        raise

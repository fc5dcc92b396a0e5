"""The work of the Ray ingest stages, run on the cluster's workers (``ray_engine`` builds the
pipeline). Each row of a stage is one batch of inputs (one store transaction), its values
pickled: ``{"chunk": index, "data": bytes}``.

- ``hash_rows`` (a CPU task): the content hash of each input, read where the worker runs
  (``reader._hash_one``; URIs through ``ray_files``), so no audio crosses to the driver.
- ``decode_rows`` (a CPU task): the inputs the driver left to do, decoded, checked and cut
  into segments (``reader.decode_many``), then held to the duration gate
  (``gates.gate_batches``): the same failures, with the same reasons, as a local ingest.
- ``Embed`` (an actor, the model loaded once): every segment of the batch embedded in
  batches of similar length (``runner.embed_segments``); the samples are dropped before the
  batch goes back, so the driver receives vectors and segment times only.
"""

from __future__ import annotations

import os
import pickle
import time
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["EmbedderSpec", "Embed", "hash_rows", "decode_rows", "pack", "unpack"]


def pack(obj) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(data: bytes):
    return pickle.loads(data)


@dataclass(frozen=True)
class EmbedderSpec:
    """How a worker builds the database's embedder: the model spec the home is bound to
    (``registry.load_embedder``) and the device; ``sha256`` is checked against what loads."""

    model: str
    sha256: str
    device: str = "auto"

    def load(self):
        from speakerdb.errors import ModelMismatchError
        from speakerdb.model.registry import load_embedder

        emb = load_embedder(self.model, self.device)
        if emb.sha256 != self.sha256:
            raise ModelMismatchError(f"model {self.model!r} on this worker has weights "
                                     f"{emb.sha256[:12]}, the database's are {self.sha256[:12]}")
        return emb


def hash_rows(row: dict) -> dict:
    """``{"chunk", "data": [(item, (sha, stamp or FailureIn))], "seconds"}``."""
    from speakerdb.ingest.ray_files import hash_item

    t0 = time.perf_counter()
    items = unpack(row["data"])
    out = [hash_item(item) for item in items]
    return {"chunk": row["chunk"], "data": pack(out), "seconds": time.perf_counter() - t0}


def decode_rows(row: dict, policy, gate_s: float, gated) -> dict:
    """``{"chunk", "data": ReadBatch (decoded inputs and their failures), "seconds"}`` for
    the ``(item, sha, stamp)`` of a row; ``gated``: the policy decoded with
    (``gates.gated_policy``), ``policy`` the one the gate re-describes failures with."""
    from speakerdb.audio.gates import gate_batches
    from speakerdb.ingest.ray_files import decode_items
    from speakerdb.ingest.reader import ReadBatch, add_decoded

    t0 = time.perf_counter()
    batch = ReadBatch()
    for out in decode_items(unpack(row["data"]), gated):
        add_decoded(batch, out)
    [batch] = gate_batches([batch], gate_s, policy)
    batch.decode_s = time.perf_counter() - t0
    return {"chunk": row["chunk"], "data": pack(batch), "seconds": batch.decode_s}


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray (unit use)
        return os.uname().nodename


class Embed:
    """The embedding stage: one model per actor, loaded when the actor starts. ``bound``
    makes the class an actor pool runs (its settings travel with the class, so a restarted
    actor needs nothing else from the object store)."""

    spec: EmbedderSpec
    embed_batch: int = 16

    @classmethod
    def bound(cls, spec: EmbedderSpec, embed_batch: int) -> type:
        return type("Embed", (cls,), {"spec": spec, "embed_batch": embed_batch})

    def __init__(self):
        from speakerdb.errors import SpeakerDBError

        self.embedder, self.error = None, b""
        try:
            self.embedder = self.spec.load()
        except SpeakerDBError as e:  # sent to the driver with the first batch, raised there
            self.error = pack(e)
        self.node = _node_id()

    def __call__(self, rows: dict) -> dict:
        out = {"chunk": [], "data": [], "seconds": [], "node": [], "error": []}
        for chunk, data in zip(rows["chunk"], rows["data"]):
            out["error"].append(self.error)
            if self.error:
                out["chunk"].append(chunk)
                out["data"].append(b"")
                out["seconds"].append(0.0)
                out["node"].append(self.node)
                continue
            batch = unpack(data)
            t0 = time.perf_counter()
            embed_batch(self.embedder, batch.decoded, self.embed_batch)
            batch.embed_s = time.perf_counter() - t0
            out["chunk"].append(chunk)
            out["data"].append(pack(batch))
            out["seconds"].append(batch.embed_s)
            out["node"].append(self.node)
        return out


def embed_batch(embedder, decoded: list, batch: int) -> None:
    """Embed the segments of ``decoded`` (``Decoded``s) together, as the local runner does;
    each gets its vectors as ``raw`` and its segments lose their samples."""
    from speakerdb.ingest.runner import embed_segments

    segs = [s.samples for d in decoded for s in d.prepared.segments]
    raw = embed_segments(embedder, segs, batch)
    empty, at = np.zeros(0, np.float32), 0
    for d in decoded:
        n = len(d.prepared.segments)
        d.raw = raw[at : at + n]
        at += n
        d.prepared = replace(d.prepared, segments=[replace(s, samples=empty)
                                                   for s in d.prepared.segments])

"""Reader: inputs → content hash → skip what is known → decode, check and segment, in batches."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from speakerdb.audio import AudioPolicy, Prepared, prepare
from speakerdb.errors import AudioError
from speakerdb.ingest.sources import SourceItem
from speakerdb.store.records import FailureIn

__all__ = ["Decoded", "ReadBatch", "Reader"]


@dataclass
class Decoded:
    item: SourceItem
    sha256: str
    prepared: Prepared


@dataclass
class ReadBatch:
    """One store transaction's worth of inputs."""

    decoded: list[Decoded] = field(default_factory=list)
    failures: list[FailureIn] = field(default_factory=list)
    skipped: int = 0  # already in the database (or already known to fail)
    n_inputs: int = 0
    decode_s: float = 0.0


def _hash_one(item: SourceItem) -> tuple[str, bytes | FailureIn]:
    name = str(item.path)
    if item.error is not None:
        return "", FailureIn(name, "", item.reason, f"{name}: {item.error}")
    try:
        data = item.path.read_bytes()
    except OSError as e:
        return "", FailureIn(name, "", "unreadable", f"{name}: cannot read ({e.strerror or e})")
    return hashlib.sha256(data).hexdigest(), data


def _decode_one(item: SourceItem, sha: str, data: bytes, policy: AudioPolicy):
    name = str(item.path)
    try:
        return Decoded(item, sha, prepare(io.BytesIO(data), policy, name=name))
    except AudioError as e:
        return FailureIn(name, sha, e.reason, str(e))


class Reader:
    """Iterates ``ReadBatch``es over ``items``.

    ``known(shas) -> set`` says which content hashes need no work (already stored or known bad).
    Files are hashed and decoded on ``workers`` threads (the decoders release the GIL).
    """

    def __init__(
        self,
        items: list[SourceItem],
        known: Callable[[list[str]], set[str]],
        policy: AudioPolicy = AudioPolicy(),
        files_per_batch: int = 32,
        workers: int = 2,
    ):
        self.items, self.known, self.policy = items, known, policy
        self.files_per_batch, self.workers = files_per_batch, max(1, workers)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ReadBatch]:
        seen: set[str] = set()
        with ThreadPoolExecutor(self.workers) as pool:
            for start in range(0, len(self.items), self.files_per_batch):
                chunk = self.items[start : start + self.files_per_batch]
                t0 = time.perf_counter()
                hashed = list(pool.map(_hash_one, chunk))
                batch = ReadBatch(n_inputs=len(chunk))
                known = self.known([sha for sha, _ in hashed if sha])
                todo = []
                for item, (sha, data) in zip(chunk, hashed):
                    if isinstance(data, FailureIn):
                        batch.failures.append(data)
                    elif sha in known or sha in seen:
                        batch.skipped += 1
                    else:
                        seen.add(sha)
                        todo.append((item, sha, data))
                del hashed
                for out in pool.map(lambda t: _decode_one(*t, self.policy), todo):
                    if isinstance(out, FailureIn):
                        batch.failures.append(out)
                    else:
                        batch.decoded.append(out)
                batch.decode_s = time.perf_counter() - t0
                yield batch

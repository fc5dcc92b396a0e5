"""Writer: one store transaction per batch, then the indexes (store first: it is the truth)."""

from __future__ import annotations

from speakerdb.store.records import FailureIn, RecordingIn

__all__ = ["StoreWriter"]


class StoreWriter:
    def __init__(self, store, indexes, run_id: int | None = None):
        self.store, self.indexes, self.run_id = store, indexes, run_id

    def write(self, recordings: list[RecordingIn], failures: list[FailureIn]) -> int:
        ids, raw = self.store.write_batch(self.run_id, recordings, failures)
        self.indexes.add(ids, raw)
        return len(ids)

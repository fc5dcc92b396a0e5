"""Writer: one store transaction per batch, then the indexes (store first: it is the truth)."""

from __future__ import annotations

from speakerdb.ingest.runner import Written
from speakerdb.store.records import FailureIn, LabelIn, RecordingIn

__all__ = ["StoreWriter"]


class StoreWriter:
    def __init__(self, store, indexes, run_id: int | None = None):
        self.store, self.indexes, self.run_id = store, indexes, run_id

    def write(self, recordings: list[RecordingIn], failures: list[FailureIn],
              labels: list[LabelIn] = ()) -> Written:
        counts: dict = {}
        ids, raw = self.store.write_batch(self.run_id, recordings, failures, counts=counts,
                                          labels=labels)
        self.indexes.add(ids, raw, counts.get("generation"))
        if counts.get("labels"):  # stored recordings that changed speaker
            self.indexes.owners_changed(self.store.recording_segment_ids(counts["labels"]))
        return Written(len(ids), counts.get("recordings", len(recordings)),
                       frozenset(counts.get("labels", ())))

"""The ingest runner with fake parts: batching, bucketing, failures, timings."""

from pathlib import Path

import numpy as np

from speakerdb.audio import Prepared, Segment
from speakerdb.ingest.reader import Decoded, ReadBatch
from speakerdb.ingest.runner import Runner, embed_segments
from speakerdb.ingest.sources import SourceItem
from speakerdb.store.records import FailureIn


class FakeEmbedder:
    name, sha256, dims, raw_dim, sample_rate, default_threshold = "fake", "f" * 64, (64, 128, 192, 256), 256, 16000, 0.5

    def __init__(self, nan_for_length=None):
        self.calls = []
        self.nan_for_length = nan_for_length

    def __call__(self, waves):
        self.calls.append([len(w) for w in waves])
        out = np.stack([np.full(256, len(w), np.float32) for w in waves])
        if self.nan_for_length is not None:
            out[[len(w) == self.nan_for_length for w in waves]] = np.nan
        return out


class FakeWriter:
    def __init__(self):
        self.calls = []

    def write(self, recordings, failures):
        self.calls.append((recordings, failures))
        return sum(len(r.starts) for r in recordings)


def decoded(name, lengths, speaker="ann"):
    segs = [Segment(i * 10.0, i * 10.0 + n / 16000, np.zeros(n, np.float32)) for i, n in enumerate(lengths)]
    prep = Prepared(name, sum(lengths) / 16000, 16000, 1, segs)
    return Decoded(SourceItem(Path(name), speaker, "folders"), name * 8, prep)


def test_embed_segments_buckets_by_length_and_keeps_order():
    emb = FakeEmbedder()
    lengths = [500, 100, 400, 200, 300]
    out = embed_segments(emb, [np.zeros(n, np.float32) for n in lengths], batch=2)
    assert emb.calls == [[100, 200], [300, 400], [500]]
    np.testing.assert_array_equal(out[:, 0], lengths)


def test_one_writer_call_per_batch_with_stats():
    batches = [
        ReadBatch([decoded("a", [800, 1600]), decoded("b", [1200])],
                  [FailureIn("c", "c" * 64, "silent", "c: silent")], skipped=1, n_inputs=4, decode_s=0.5),
        ReadBatch([decoded("d", [900])], [], skipped=0, n_inputs=1, decode_s=0.25),
    ]
    writer, progress = FakeWriter(), []
    stats = Runner(batches, FakeEmbedder(), writer, embed_batch=8, progress=progress.append).run()
    assert len(writer.calls) == 2
    recs, fails = writer.calls[0]
    assert [r.path for r in recs] == ["a", "b"] and [f.path for f in fails] == ["c"]
    np.testing.assert_array_equal(recs[0].raw[:, 0], [800, 1600])
    assert recs[0].starts == [0.0, 10.0] and recs[0].speaker == "ann"
    assert (stats.inputs, stats.added, stats.segments, stats.skipped, stats.failed) == (5, 3, 4, 1, 1)
    assert stats.decode_s == 0.75 and stats.embed_s >= 0 and stats.write_s >= 0
    assert progress == [4, 1]
    d = stats.as_dict()
    assert set(d["seconds"]) == {"decode", "embed", "write", "wait"}
    assert d["failures"] == [{"input": "c", "reason": "silent", "error": "c: silent"}]


def test_nan_embeddings_become_failures_not_rows():
    writer = FakeWriter()
    batch = ReadBatch([decoded("a", [700]), decoded("b", [900])], [], n_inputs=2)
    stats = Runner([batch], FakeEmbedder(nan_for_length=700), writer).run()
    recs, fails = writer.calls[0]
    assert [r.path for r in recs] == ["b"]
    assert [(f.path, f.reason) for f in fails] == [("a", "embedding_nan")]
    assert stats.failed == 1 and stats.added == 1

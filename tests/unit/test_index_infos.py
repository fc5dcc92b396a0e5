import dataclasses
import hashlib
import json
import os

import numpy as np
import pytest

from speakerdb.errors import IndexOutOfDateError, StoreError
from speakerdb.index.infos import IndexInfo, ids_digest, read_info, write_info


def _info(**kw):
    base = dict(index_key="Flat", index_param="", dim=64, ntotal=3, model_sha256="ab" * 32,
                schema_revision="0001", store_max_id=9, ids_digest=ids_digest(np.array([1, 5, 9])),
                size_bytes=1234, created_at="2024-01-01T00:00:00+00:00")
    base.update(kw)
    return IndexInfo(**base)


def test_ids_digest_is_sorted_int64_sha256():
    ids = np.array([9, 1, 5], dtype=np.int32)
    want = hashlib.sha256(np.array([1, 5, 9], dtype="<i8").tobytes()).hexdigest()
    assert ids_digest(ids) == want
    assert ids_digest(np.array([], dtype=np.int64)) == hashlib.sha256(b"").hexdigest()
    assert ids_digest(np.array([1, 5])) != want


def test_round_trip(tmp_path):
    path = tmp_path / "index-64.json"
    info = _info()
    write_info(path, info)
    assert read_info(path) == info
    data = json.loads(path.read_text())
    assert data == dataclasses.asdict(info)
    assert [p.name for p in tmp_path.iterdir()] == ["index-64.json"]  # no temp left


def test_unknown_extra_keys_are_ignored(tmp_path):
    path = tmp_path / "i.json"
    data = dataclasses.asdict(_info())
    data["future_field"] = 1
    path.write_text(json.dumps(data))
    assert read_info(path) == _info()


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "missing"),
        ("{not json", "unreadable"),
        ("[1, 2]", "not a JSON object"),
        ("MISSING_KEY", "lacks ntotal"),
        ("BAD_TYPE", "ntotal should be int"),
        (b"\xff\xfe\x00", "unreadable"),
    ],
)
def test_read_errors_name_the_file(tmp_path, content, words):
    path = tmp_path / "index-128.json"
    if content == "MISSING_KEY":
        data = dataclasses.asdict(_info())
        del data["ntotal"]
        path.write_text(json.dumps(data))
    elif content == "BAD_TYPE":
        path.write_text(json.dumps({**dataclasses.asdict(_info()), "ntotal": "3"}))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(IndexOutOfDateError) as e:
        read_info(path)
    msg = str(e.value)
    assert "index-128.json" in msg and words in msg and "\n" not in msg


def test_failed_write_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "index-64.json"
    old = _info()
    write_info(path, old)

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(StoreError, match="index-64.json: cannot be written"):
        write_info(path, _info(ntotal=4))
    monkeypatch.undo()
    assert read_info(path) == old
    assert [p.name for p in tmp_path.iterdir()] == ["index-64.json"]

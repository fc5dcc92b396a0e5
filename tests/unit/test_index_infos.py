import hashlib
import json
import os

import numpy as np
import pytest

from speakerdb.errors import IndexOutOfDateError, StoreError
from speakerdb.index.infos import SetInfo, ids_digest, read_info, write_info
from speakerdb.index.matrix import MatrixState


def _info(**kw):
    base = dict(dims=(64, 128, 192, 256), ntotal=3, model_sha256="ab" * 32,
                schema_revision="0001", store_max_id=9, ids_digest=ids_digest(np.array([1, 5, 9])),
                created_at="2024-01-01T00:00:00+00:00", matrix=MatrixState(4, 1, 2, ((0, 4, "f" * 64),)),
                index_key="IVF1024,SQfp16", index_param="nprobe=170", screen_file="screen-64-3.faiss",
                screen_size_bytes=1234, screen_sha256="e" * 64)
    base.update(kw)
    return SetInfo(**base)


def test_ids_digest_is_sorted_int64_sha256():
    ids = np.array([9, 1, 5], dtype=np.int32)
    want = hashlib.sha256(np.array([1, 5, 9], dtype="<i8").tobytes()).hexdigest()
    assert ids_digest(ids) == want
    assert ids_digest(np.array([], dtype=np.int64)) == hashlib.sha256(b"").hexdigest()
    assert ids_digest(np.array([1, 5])) != want


def test_round_trip(tmp_path):
    path = tmp_path / "vectors.json"
    info = _info()
    write_info(path, info)
    assert read_info(path) == info
    data = json.loads(path.read_text())
    assert data == info.to_dict() and data["dims"] == [64, 128, 192, 256]
    assert data["matrix"] == {"rows": 4, "deleted": 1, "epoch": 2, "parts": [[0, 4, "f" * 64]]}
    assert [p.name for p in tmp_path.iterdir()] == ["vectors.json"]  # no temp left


def test_unknown_extra_keys_are_ignored(tmp_path):
    path = tmp_path / "i.json"
    data = _info().to_dict()
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
        ("BAD_DIMS", "dims should be a list"),
        ("BAD_MATRIX", "impossible vector matrix counts"),
        ("COUNTS", "says 4 vectors, its rows hold 3"),
        ("FORMAT", "format 2"),
    ],
)
def test_read_errors_name_the_file(tmp_path, content, words):
    path = tmp_path / "vectors.json"
    if content == "MISSING_KEY":
        data = _info().to_dict()
        del data["ntotal"]
        path.write_text(json.dumps(data))
    elif content == "BAD_TYPE":
        path.write_text(json.dumps({**_info().to_dict(), "ntotal": "3"}))
    elif content == "BAD_DIMS":
        path.write_text(json.dumps({**_info().to_dict(), "dims": [64, "128"]}))
    elif content == "BAD_MATRIX":
        path.write_text(json.dumps({**_info().to_dict(), "matrix": {"rows": 2, "deleted": 3,
                                                                     "epoch": 1}}))
    elif content == "COUNTS":
        path.write_text(json.dumps({**_info().to_dict(), "ntotal": 4}))
    elif content == "FORMAT":
        path.write_text(json.dumps({**_info().to_dict(), "format": 2}))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(IndexOutOfDateError) as e:
        read_info(path)
    msg = str(e.value)
    assert "vectors.json" in msg and words in msg and "\n" not in msg


def test_failed_write_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "vectors.json"
    old = _info()
    write_info(path, old)

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(StoreError, match="vectors.json: cannot be written"):
        write_info(path, _info(ntotal=4))
    monkeypatch.undo()
    assert read_info(path) == old
    assert [p.name for p in tmp_path.iterdir()] == ["vectors.json"]

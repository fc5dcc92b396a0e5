"""Inputs where a Ray worker runs: paths on a file system the nodes mount, read as a local
ingest reads them (``reader._hash_one``, ``reader.decode_many``), and URIs (``file://``,
``s3://``, ``gs://``, ...) opened through pyarrow's file systems, the layer Ray Data reads
with. ``uri_items`` lists the audio files under a URI for the driver (names only)."""

from __future__ import annotations

import hashlib
import re

from speakerdb.ingest.sources import AUDIO_EXTENSIONS, SourceItem

__all__ = ["is_uri", "uri_items", "discover_with_uris", "hash_item", "decode_items"]

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CHUNK = 1 << 20


def is_uri(x) -> bool:
    return isinstance(x, str) and bool(_URI.match(x))


def _fs(uri: str):
    from pyarrow import fs

    return fs.FileSystem.from_uri(uri)


def uri_items(uri: str, extensions=AUDIO_EXTENSIONS) -> list[SourceItem]:
    """The audio files at ``uri`` (one file, or every file under a folder, in name order),
    each labelled with the name of its folder below ``uri`` (the ``folders`` layout), or none
    for a single file."""
    from pyarrow import fs

    from speakerdb.errors import UsageError

    try:
        filesystem, root = _fs(uri)
        info = filesystem.get_file_info(root)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds for a bad URI
        raise UsageError(f"{uri}: cannot open ({' '.join(str(e).split())})") from None
    scheme = uri[: uri.index("://") + 3]
    if info.type == fs.FileType.File:
        return [SourceItem(uri, None, "file")]
    if info.type != fs.FileType.Directory:
        raise UsageError(f"{uri}: no such file or directory")
    found = filesystem.get_file_info(fs.FileSelector(root, recursive=True))
    out = []
    for f in sorted(found, key=lambda f: f.path):
        rel = f.path[len(root):].lstrip("/")
        if f.type != fs.FileType.File or not f.base_name.lower().endswith(tuple(extensions)):
            continue
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        parts = rel.split("/")
        speaker = parts[-2] if len(parts) > 1 else None
        out.append(SourceItem(scheme + f.path, speaker, "folders"))
    return out


def discover_with_uris(sources: list[str], layout: str, extensions=AUDIO_EXTENSIONS):
    """``sources.discover`` of the paths among ``sources``, ``uri_items`` of the URIs, in the
    order given."""
    from speakerdb.ingest.sources import discover

    items = []
    for s in sources:
        items.extend(uri_items(s, extensions) if is_uri(s) else discover([s], layout, extensions))
    return list({it.path: it for it in reversed(items)}.values())[::-1]


def hash_item(item: SourceItem) -> tuple[str, object]:
    """``reader._hash_one`` for a path; for a URI, (sha256, ("uri", size, mtime)) or
    ("", FailureIn)."""
    from speakerdb.ingest.reader import _hash_one

    if not is_uri(item.path):
        return _hash_one(item)
    from speakerdb.store.records import FailureIn

    name = str(item.path)
    try:
        filesystem, path = _fs(name)
        info = filesystem.get_file_info(path)
        h = hashlib.sha256()
        with filesystem.open_input_stream(path) as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    except FileNotFoundError:
        return "", FailureIn(name, "", "unreadable", f"{name}: no such file")
    except Exception as e:  # noqa: BLE001 - pyarrow's file systems raise several kinds
        return "", FailureIn(name, "", "unreadable", f"{name}: cannot read ({_short(e)})")
    return h.hexdigest(), ("uri", info.size, info.mtime_ns)


def decode_items(todo: list[tuple], policy) -> list:
    """``Decoded`` or ``FailureIn`` of each ``(item, sha, stamp)`` (``reader.decode_many``, no
    model: a worker that decodes holds every segment of its input; with Silero VAD the
    inputs are scored together). A URI is read whole, then decoded from memory."""
    from speakerdb.ingest.reader import decode_many
    from speakerdb.store.records import FailureIn

    out: list = [None] * len(todo)
    ready = []
    for i, (item, sha, stamp) in enumerate(todo):
        data = _uri_data(item, sha) if is_uri(item.path) else stamp
        if isinstance(data, FailureIn):
            out[i] = data
        else:
            ready.append((i, (item, sha, data)))
    decoded = decode_many([t for _, t in ready], policy, None, None)
    for (i, _), (res, _) in zip(ready, decoded):
        out[i] = res
    return out


def _uri_data(item: SourceItem, sha: str):
    """The bytes of a URI input as an ``AudioSource``, or its FailureIn."""
    from speakerdb.audio.inputs import AudioSource
    from speakerdb.store.records import FailureIn

    name = str(item.path)
    try:
        filesystem, path = _fs(name)
        with filesystem.open_input_stream(path) as fh:
            return AudioSource(name, data=fh.read())
    except Exception as e:  # noqa: BLE001 - as in hash_item
        return FailureIn(name, sha, "unreadable", f"{name}: cannot read ({_short(e)})")


def _short(e: Exception) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__

"""Names of inputs as text that any JSON, SQL or terminal output can hold, without loss.

A POSIX file name is any bytes. Names that are valid UTF-8 without a backslash (nearly all)
are kept as they are; in any other name each backslash is doubled and each byte that is not
UTF-8 is written ``\\xNN``, so ``c_\\xff.wav`` names the file whose name has the byte 0xff,
and ``input_path`` turns the text back into the path.
"""

from __future__ import annotations

import os
import re

__all__ = ["display_name", "input_path"]

_ESCAPE = re.compile(r"\\\\|\\x([0-9a-fA-F]{2})")


def display_name(p) -> str:
    """The name of a path (``str``, ``bytes``, ``os.PathLike``) as valid UTF-8 text, reversible
    by ``input_path``; ``str(p)`` for anything else (in-memory inputs)."""
    if not isinstance(p, (str, bytes, os.PathLike)):
        return str(p)
    if os.sep != "/":  # Windows names are Unicode already; a backslash separates
        text = os.fsdecode(p)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    try:
        raw = os.fsencode(p)
    except UnicodeEncodeError:  # a str with lone surrogates that no file name decodes to
        return os.fspath(p).encode("utf-8", "backslashreplace").decode("utf-8")
    try:
        text = raw.decode("utf-8")
        if "\\" not in text:
            return text
    except UnicodeDecodeError:
        pass
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def input_path(name: str) -> str:
    """The path (``os.fsdecode`` form) whose ``display_name`` is ``name``."""
    if os.sep != "/" or "\\" not in name:
        return name
    out, at = bytearray(), 0
    for m in _ESCAPE.finditer(name):
        out += name[at : m.start()].encode("utf-8")
        out += b"\\" if m.group(1) is None else bytes([int(m.group(1), 16)])
        at = m.end()
    out += name[at:].encode("utf-8")
    return os.fsdecode(bytes(out))

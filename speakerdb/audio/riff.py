"""RIFF/WAVE header checks that decoders skip: a file shorter than its own header says.

libsndfile reads a WAV whose data was cut off and returns what is there; a speaker database
should not store a clipped recording as if it were whole, so ingest rejects it with the sizes.
"""

from __future__ import annotations

import struct

__all__ = ["wav_truncation"]

_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # streaming writers leave the size open


def wav_truncation(head: bytes, file_size: int) -> str | None:
    """A one-line reason if ``head`` (the first bytes of a file of ``file_size`` bytes) is a
    RIFF/WAVE header whose data chunk extends past the end of the file, else None."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        chunk_id = head[pos : pos + 4]
        (size,) = struct.unpack("<I", head[pos + 4 : pos + 8])
        if chunk_id == b"data":
            if size in _UNKNOWN_SIZES:
                return None
            present = file_size - (pos + 8)
            if present < size:
                return f"truncated: the data chunk declares {size} bytes, {max(present, 0)} are present"
            return None
        pos += 8 + size + (size & 1)
    return None

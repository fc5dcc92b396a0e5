"""The vectors derived from the metadata store: every vector once at full precision, and a
16-bit FAISS screen for large sets.

Importing this package does not import FAISS; it is loaded when a screen is first built,
read or written, or rows are rescored.
"""

from __future__ import annotations

from speakerdb.index.catch_up import CatchUp, catch_up_plan
from speakerdb.index.choose import FLAT_MAX_VECTORS, choose_index_key
from speakerdb.index.index_set import IndexSet, PrefixIndex, info_path
from speakerdb.index.infos import SetInfo, ids_digest, read_info, write_info
from speakerdb.index.vector_index import VectorIndex

__all__ = [
    "CatchUp",
    "FLAT_MAX_VECTORS",
    "IndexSet",
    "PrefixIndex",
    "SetInfo",
    "VectorIndex",
    "catch_up_plan",
    "choose_index_key",
    "ids_digest",
    "info_path",
    "read_info",
    "write_info",
]

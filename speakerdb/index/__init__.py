"""FAISS indexes derived from the metadata store: one exact index per nested dimension.

Importing this package does not import FAISS; it is loaded when an index is first built,
read or written.
"""

from __future__ import annotations

from speakerdb.index.catch_up import CatchUp, catch_up_plan
from speakerdb.index.choose import FLAT_MAX_VECTORS, choose_index_key
from speakerdb.index.index_set import IndexSet, index_paths, saved_dims
from speakerdb.index.infos import IndexInfo, ids_digest, read_info, write_info
from speakerdb.index.vector_index import VectorIndex

__all__ = [
    "CatchUp",
    "FLAT_MAX_VECTORS",
    "IndexInfo",
    "IndexSet",
    "VectorIndex",
    "catch_up_plan",
    "choose_index_key",
    "ids_digest",
    "index_paths",
    "saved_dims",
    "read_info",
    "write_info",
]

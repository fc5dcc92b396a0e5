"""Which FAISS index to build for a given number of vectors and dimension.

A pure function of its arguments, so catch-up and rebuild decisions can be made (and tested)
without FAISS. Measured by ``bench/search_scale.py`` (README, "Search at scale"):

* Every dimension the cascade rescores (128, 192, 256) stays ``Flat``: the shortlist is
  rescored exactly from those stored vectors, and the full dimension also answers exhaustive
  searches.
* The screening dimension (the space's first, 64 for a Matryoshka model: ``screen_dim``) is
  ``Flat`` (exact) below ``FLAT_MAX_VECTORS``; from there an
  inverted-file index ``IVF<nlist>,SQfp16`` (vectors kept as 16-bit floats, half the memory
  traffic of a scan; only the lists nearest the query are scanned) with about ``4 * sqrt(n)``
  lists, of which ``nlist / PROBE_DIVISOR`` are probed. The screen only picks the shortlist:
  every score the cascade reports comes from the exact flat indexes.
  HNSW screens were measured too: comparable latency, but a 1M-vector graph takes minutes to
  build (IVF: seconds), cannot delete, and needs efSearch >= the shortlist.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["FLAT_KEY", "FLAT_MAX_VECTORS", "PROBE_DIVISOR", "IndexChoice", "choose_index",
           "choose_index_key", "ivf_lists", "parse_choice", "screen_dim"]

FLAT_KEY = "Flat"
"""Exact inner-product search over every stored vector."""

FLAT_MAX_VECTORS = 200_000
"""From this many vectors the screen is an inverted-file index instead of flat."""

PROBE_DIVISOR = 6
"""An IVF screen probes one list in this many (about 17 % of the vectors). On the 1M store of
``bench/search_scale.py`` (3000-segment shortlist) speaker agreement with exhaustive search was
0.9987 probing 1/8 and 0.999+ from 1/6: the best 256-D segment of an unseen voice can sit in a
list far from the query at 64-D."""

MIN_LISTS, MAX_LISTS = 1024, 65536

_IVF = re.compile(r"IVF(\d+),SQfp16")
_NPROBE = re.compile(r"nprobe=(\d+)")


@dataclass(frozen=True)
class IndexChoice:
    """A FAISS factory ``key`` (``Flat`` or ``IVF<nlist>,SQfp16``) and its search-time
    ``param`` (``""`` or ``nprobe=<n>``), as recorded in the index JSON."""

    key: str
    param: str = ""

    @property
    def nlist(self) -> int:
        """Number of inverted lists (0 for a flat index)."""
        m = _IVF.fullmatch(self.key)
        return int(m.group(1)) if m else 0

    @property
    def nprobe(self) -> int:
        """Lists probed per query (0 for a flat index)."""
        m = _NPROBE.fullmatch(self.param)
        return int(m.group(1)) if m else 0


def ivf_lists(n_vectors: int) -> int:
    """The power of two nearest ``4 * sqrt(n)``, within [1024, 65536]."""
    want = 4.0 * math.sqrt(max(1, n_vectors))
    return int(min(MAX_LISTS, max(MIN_LISTS, 2 ** round(math.log2(want)))))


def screen_dim(dims) -> int | None:
    """The dimension the identify cascade screens everything with: the first of a space's
    ``dims`` (ascending). None for a space of one dimension: it is searched exhaustively, so
    its one index answers exactly and stays flat."""
    dims = tuple(dims)
    return dims[0] if len(dims) > 1 else None


def choose_index(n_vectors: int, dim: int, screen_dim: int | None) -> IndexChoice:
    """The index for ``n_vectors`` unit vectors of ``dim`` values (``screen_dim``: the
    dimension the cascade screens with, see ``screen_dim``; every other dimension is flat)."""
    if n_vectors < 0:
        raise ValueError(f"n_vectors must be >= 0, got {n_vectors}")
    if dim <= 0:
        raise ValueError(f"dim must be > 0, got {dim}")
    if dim != screen_dim or n_vectors < FLAT_MAX_VECTORS:
        return IndexChoice(FLAT_KEY)
    nlist = ivf_lists(n_vectors)
    return IndexChoice(f"IVF{nlist},SQfp16", f"nprobe={max(1, nlist // PROBE_DIVISOR)}")


def choose_index_key(n_vectors: int, dim: int, screen_dim: int | None) -> str:
    """The FAISS factory key alone (see ``choose_index``)."""
    return choose_index(n_vectors, dim, screen_dim).key


def parse_choice(key: str, param: str) -> IndexChoice:
    """An ``IndexChoice`` from a JSON's ``index_key``/``index_param``; ValueError when it is
    not one this version builds."""
    if key == FLAT_KEY and param == "":
        return IndexChoice(FLAT_KEY)
    choice = IndexChoice(key, param)
    if choice.nlist < 1 or choice.nprobe < 1 or choice.nprobe > choice.nlist:
        raise ValueError(f"unknown index {key!r} with parameters {param!r}")
    return choice

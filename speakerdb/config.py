"""Defaults and the on-disk layout of a database home directory.

A home (``--home``, ``SPEAKERDB_HOME``, default ``indexes/default``) holds ``home.json`` (how to
reach the metadata store), the SQLite file when no other URL was given, and the FAISS indexes
with their infos JSON.
"""

from __future__ import annotations

import json
import operator
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

__all__ = [
    "DEFAULT_HOME",
    "DEFAULT_MODEL",
    "default_model",
    "HOME_FILE",
    "ASNORM_DEFAULT_THRESHOLD",
    "COHORT_TOP_N",
    "MIN_DURATION_S",
    "HTTP_MAX_DURATION_S",
    "check_max_duration",
    "SCORE_NORMS",
    "AGGREGATIONS",
    "Aggregation",
    "ScoreNorm",
    "CascadeConfig",
    "DEFAULT_AGG_K",
    "DEFAULT_SHORTLIST",
    "DEFAULT_TOP_K",
    "DurationGates",
    "IngestConfig",
    "check_duration",
    "check_finite",
    "check_score_norm",
    "resolve_home",
    "read_home_file",
    "home_file_problem",
    "write_home_file",
]

DEFAULT_HOME = Path("indexes") / "default"
DEFAULT_MODEL = "campplus"  # CAM++ with the packaged Matryoshka head
HOME_FILE = "home.json"

ScoreNorm = Literal["none", "asnorm"]
"""Score normalisation: none, or AS-norm against a cohort."""
SCORE_NORMS: tuple[str, ...] = get_args(ScoreNorm)
Aggregation = Literal["max", "mean", "top2", "topk", "centroid"]
"""How a speaker's segment scores become one score (``speakerdb.search.decision``)."""
AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)
COHORT_TOP_N = 300  # AS-norm top-N; clamped to the cohort size unless given explicitly
MIN_DURATION_S = 0.5  # seconds of signal needed at enrollment and at query by default
HTTP_MAX_DURATION_S = 1800.0  # the most seconds of audio in one HTTP upload, by default
# Decision threshold on AS-norm scores when no calibration in that space exists. An AS-norm
# score is the mean of two z-scores of the score against the top-N cohort (impostor) scores,
# so it does not depend on the model's cosine scale. Measured with campplus on speech-dev
# (leave-one-out, 62-speaker cohort, every rule): the best impostor of a query reached 3.3 in
# fewer than 1 % of queries and never 4.0, while 95 % of genuine trials scored above 5.5.
# `speakerdb calibrate --score-norm asnorm` replaces it with one chosen on the user's data.
ASNORM_DEFAULT_THRESHOLD = 4.0
DEFAULT_SHORTLIST = (3000, 3000, 100)  # cascade: kept after the 64-D, 128-D and 192-D stages
DEFAULT_TOP_K = 5  # speakers reported by identify
DEFAULT_AGG_K = 3  # segments averaged by the "topk" rule


@dataclass(frozen=True, init=False)
class CascadeConfig:
    """Shortlist sizes of the identify cascade, one per dimension of the database's space but
    the last: the first dimension screens everything and keeps ``shortlist[0]`` segments, each
    later one rescores the shortlist exactly and keeps the next size; the last dimension ranks
    what is left. ``stages(dims)`` pairs them up.

    ``k64=``, ``k128=``, ``k192=`` give the sizes by their old names (the first three stages of
    a 64/128/192/256-D space). Such sizes and the default are ``fit`` to a space with another
    number of stages: the first ones are used, and the last is repeated where more are needed
    (keeping as many changes nothing). A ``shortlist`` given as such must match the space.

    ``bench/search_scale.py`` (1M segments) set the defaults: the best segment of an unseen
    voice at 256-D can rank in the thousands at 64-D, so a 3000-segment screen shortlist kept
    speaker agreement with exhaustive search above 0.999 where 1000 stopped at 0.998; the 128-D
    prefix ranks unseen voices hardly better than the 64-D one, so the 128-D stage keeps the
    whole shortlist (its scores are then computed for the final hits only)."""

    shortlist: tuple[int, ...]
    top_k: int  # speakers reported
    aggregation: Aggregation
    agg_k: int  # segments averaged by the "topk" rule
    fit: bool  # sizes fit to a space with another number of stages (see above)

    def __init__(self, shortlist: tuple[int, ...] | None = None, top_k: int = DEFAULT_TOP_K,
                 aggregation: Aggregation = "max", agg_k: int = DEFAULT_AGG_K, *,
                 k64: int | None = None, k128: int | None = None, k192: int | None = None,
                 fit: bool | None = None):
        from speakerdb.errors import UsageError
        from speakerdb.search.decision import check_rule

        named = (k64, k128, k192)
        if any(k is not None for k in named):
            if shortlist is not None:
                raise UsageError("give the shortlist as a tuple or as k64/k128/k192, not both",
                                 option="shortlist")
            shortlist = tuple(d if k is None else k for k, d in zip(named, DEFAULT_SHORTLIST))
        elif shortlist is None:
            shortlist = DEFAULT_SHORTLIST
        elif fit is None:
            fit = False
        try:  # ints, numpy's included; not bools or floats
            sizes = tuple(operator.index(k) for k in shortlist if not isinstance(k, bool))
        except TypeError:
            sizes = ()
        if not sizes or len(sizes) != len(tuple(shortlist)):
            raise UsageError(f"shortlist must hold whole numbers, got {shortlist!r}",
                             option="shortlist")
        check_rule(aggregation, agg_k)
        if sizes[-1] < 1 or any(a < b for a, b in zip(sizes, sizes[1:])):
            raise UsageError(f"shortlist sizes must shrink: got {' '.join(map(str, sizes))}",
                             option="shortlist")
        if top_k < 1:
            raise UsageError(f"top_k must be at least 1, got {top_k}", option="top_k")
        for name, value in (("shortlist", sizes), ("top_k", top_k),
                            ("aggregation", aggregation), ("agg_k", agg_k),
                            ("fit", True if fit is None else bool(fit))):
            object.__setattr__(self, name, value)

    @property
    def kept(self) -> int:
        """Segments the last stage keeps (and an exhaustive search returns)."""
        return self.shortlist[-1]

    def stages(self, dims) -> list[tuple[int, int]]:
        """``(dim, kept)`` for every dimension of ``dims`` (ascending, the space's) but the
        last: the first screens, the others rescore; ``UsageError`` when the shortlist does not
        fit the space. A space of one dimension has no stages (it is searched exhaustively)."""
        from speakerdb.errors import UsageError

        dims = tuple(dims)
        if list(dims) != sorted(set(dims)) or not dims:
            raise ValueError(f"dims must ascend, got {dims}")
        cut = dims[:-1]
        sizes = self.shortlist
        if cut and len(sizes) != len(cut):
            if not self.fit:
                raise UsageError(
                    f"shortlist has {len(sizes)} sizes; the {'/'.join(map(str, dims))}-D space "
                    f"has {len(cut)} stages ({', '.join(f'{d}-D' for d in cut)})",
                    option="shortlist")
            sizes = (sizes + (sizes[-1],) * len(cut))[: len(cut)]
        return list(zip(cut, sizes))


@dataclass(frozen=True)
class IngestConfig:
    files_per_batch: int = 32  # one store transaction per batch
    embed_batch: int = 16  # segments per embedder call, bucketed by length
    index_flush_s: float = 30.0  # indexes are saved at most this often (and at the end)
    retry_failed: bool = False
    # a label given for a stored recording that has another one replaces it (else reported)
    relabel: bool = False
    min_duration_s: float | None = None  # enrollment gate; None: the database's (DurationGates)
    # processes that read, hash and decode beside the model; 0: this process does; None: one
    # per core when the inputs fill more than one batch (ingest.pool.resolve_workers)
    workers: int | None = None
    # "local", or "ray": read, decode and embed on a Ray cluster (ingest/ray_engine.py), which
    # ``ray_address`` names (None: a local Ray); ``workers`` is then its embedding actors, each
    # holding ``gpus_per_worker`` GPUs
    engine: str = "local"
    ray_address: str | None = None
    gpus_per_worker: float = 0.0
    worker_resources: dict | None = None  # custom Ray resources each embedding actor needs
    # diarize each new recording: one holding several voices is reported (``multi_voice``);
    # keep "dominant": only its largest voice's speech is stored ("all": all of it)
    diarize: bool = False
    keep: str = "all"
    extensions: tuple[str, ...] = field(
        default=(".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".mp4", ".opus")
    )


@dataclass(frozen=True)
class DurationGates:
    """Seconds of signal (25 ms frames above the silence floor) an input needs: ``min_enroll_s``
    to be ingested, ``min_query_s`` to be identified or verified."""

    min_enroll_s: float = MIN_DURATION_S
    min_query_s: float = MIN_DURATION_S

    def __post_init__(self):
        for name in ("min_enroll_s", "min_query_s"):
            check_duration(getattr(self, name))


def check_duration(seconds) -> float:
    """``seconds`` as a float if it is a usable duration gate, else ``UsageError``."""
    from speakerdb.errors import UsageError

    ok = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
    if not ok or not 0.0 < float(seconds) <= 3600.0:
        raise UsageError(f"min_duration must be a number of seconds in (0, 3600], "
                         f"got {seconds!r}", option="min_duration")
    return float(seconds)


def check_max_duration(seconds) -> float:
    """``seconds`` as a float if it is a usable limit on one input's length, else
    ``UsageError``."""
    import math

    from speakerdb.errors import UsageError

    ok = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
    if not ok or not math.isfinite(seconds) or not seconds > 0:
        raise UsageError(f"max_duration must be a positive number of seconds, got {seconds!r}",
                         option="max_duration")
    return float(seconds)


def check_finite(option: str, value) -> float:
    """``value`` as a float if it is a finite number, else ``UsageError`` naming ``option``
    (the library parameter, e.g. ``"threshold"``). NaN would make every comparison false and
    print as non-JSON ``NaN``."""
    import math

    from speakerdb.errors import UsageError

    try:
        ok = not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UsageError(f"{option} must be a finite number, got {value!r}", option=option)
    return float(value)


def check_score_norm(score_norm: str) -> str:
    from speakerdb.errors import UsageError

    if score_norm not in SCORE_NORMS:
        raise UsageError(f"score_norm {score_norm!r}: choose one of {', '.join(SCORE_NORMS)}",
                         option="score_norm")
    return score_norm


def default_model() -> str:
    """The model used when none is named: ``$SPEAKERDB_MODEL``, else ``DEFAULT_MODEL``."""
    return os.environ.get("SPEAKERDB_MODEL") or DEFAULT_MODEL


def resolve_home(home: str | os.PathLike | None) -> Path:
    if home is None:
        home = os.environ.get("SPEAKERDB_HOME") or DEFAULT_HOME
    return Path(home)


def read_home_file(home: Path) -> dict | None:
    """What ``home.json`` says, or None when it is missing or unusable."""
    p = home / HOME_FILE
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def home_file_problem(home: Path) -> str | None:
    """Why ``home.json`` cannot be used in a folder that holds database files (a SQLite store
    or vector files); None when it can, or when the folder holds no database."""
    try:
        from speakerdb.index.index_set import holds_vector_files
        from speakerdb.store.engine import STORE_FILE_SUFFIXES

        held = home.is_dir() and (holds_vector_files(home) or any(
            p.suffix in STORE_FILE_SUFFIXES for p in home.iterdir()))
    except OSError:
        held = False
    if not held:
        return None
    p = home / HOME_FILE
    if not p.exists():
        return f"{HOME_FILE} is missing"
    try:
        data = json.loads(p.read_text())
    except OSError as e:
        return f"{HOME_FILE} cannot be read ({e.strerror or e})"
    except ValueError as e:
        return f"{HOME_FILE} is not valid JSON ({e})"
    return None if isinstance(data, dict) else f"{HOME_FILE} does not hold a JSON object"


def write_home_file(home: Path, data: dict) -> None:
    from speakerdb.files.atomic import atomic_write

    atomic_write(home / HOME_FILE, json.dumps(data, indent=2) + "\n")

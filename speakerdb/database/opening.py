"""Creating and opening a database: its home, metadata store, bound model, vector space and
indexes (the life cycle behind ``SpeakerDB.create`` and ``SpeakerDB.open``)."""

from __future__ import annotations

import os

from speakerdb.config import default_model, read_home_file, resolve_home, write_home_file
from speakerdb.errors import (DatabaseExistsError, ModelMismatchError, ReadOnlyError,
                              StoreError, UsageError)
from speakerdb.database.home import not_found, rebuild_home_file, remove_stray_temps, store_left

__all__ = ["DB_URL_ENV", "create", "open_parts", "require_vad", "stored_space", "tier_entry"]

DB_URL_ENV = "SPEAKERDB_DB_URL"  # the store of a new home when no db_url is given


def tier_entry(home, vectors: str | None, qdrant: str | None,
               collection: str | None) -> dict | None:
    """What home.json records of a new database's vector tier (None: the default), checked
    before anything is created: an unknown tier is an UnknownEngineError, a Qdrant tier
    without its client library a VectorEngineMissing."""
    from speakerdb.errors import UnknownEngineError
    from speakerdb.index.tier import DEFAULT_TIER, TIERS

    if vectors is None or vectors == DEFAULT_TIER:
        if qdrant or collection:
            raise UsageError("qdrant and collection apply to the qdrant vector tier only "
                             "(vectors qdrant)", option="qdrant")
        return None if vectors is None else {"vectors": DEFAULT_TIER}
    if vectors not in TIERS:
        raise UnknownEngineError(f"unknown vector tier {vectors!r} (known: "
                                 f"{', '.join(sorted(TIERS))})")
    from speakerdb.index.qdrant_link import connect, default_collection, normalise_location

    location = normalise_location(qdrant)
    try:
        import qdrant_client  # noqa: F401 - said missing before any file is written
    except ImportError:
        connect(location)
    return {"vectors": vectors, "qdrant": {
        "location": location, "collection": collection or default_collection(resolve_home(home))}}


def _check_tier(home, info: dict, tier: dict | None) -> None:
    """A tier asked of an existing database must be the one it has."""
    from speakerdb.index.tier import tier_kind

    if tier is not None and tier_kind(info) != tier["vectors"]:
        raise UsageError(f"{home}: the database uses the {tier_kind(info)} vector tier, not "
                         f"{tier['vectors']}", option="vectors")


def create(cls, home, model, db_url, embedder, device, vad=None, tier=None):
    """``SpeakerDB.create`` (see there); ``cls`` is the class whose ``open`` ends it;
    ``tier``: ``tier_entry``'s."""
    from speakerdb.audio.vad import check_vad, default_vad
    from speakerdb.model.registry import load_embedder

    if vad is not None:
        check_vad(vad)

    from speakerdb.model.prefixes import DIMS

    home = resolve_home(home)
    db_url = db_url or os.environ.get(DB_URL_ENV) or None
    if read_home_file(home) is None and store_left(home, db_url):
        rebuild_home_file(home, db_url, model, embedder, device, tier)
    if read_home_file(home) is not None:
        _check_tier(home, read_home_file(home), tier)
    if model is None and embedder is None and read_home_file(home) is not None:
        return _same_vad(cls.open(home, device=device), vad)  # whatever its model
    model = model or default_model()
    embedder = embedder or load_embedder(model, device)
    if tuple(embedder.dims) != DIMS and tuple(embedder.dims) != (embedder.raw_dim,):
        raise UsageError(f"{model}: {embedder.name} has nested dimensions "
                         f"{embedder.dims}; a database needs {DIMS} or none")
    if read_home_file(home) is not None:
        db = cls.open(home, embedder=embedder, device=device)
        if db.model.sha256 != embedder.sha256:
            db.close()
            raise ModelMismatchError(
                f"{home}: a database bound to {db.model.name} ({db.model.sha256[:12]}) "
                f"already exists; {embedder.name} ({embedder.sha256[:12]}) differs"
            )
        return _same_vad(db, vad)
    if home.exists() and not home.is_dir():
        raise UsageError(f"{home}: exists and is not a directory")
    from speakerdb.index.index_set import holds_vector_files
    from sqlalchemy.exc import SQLAlchemyError

    from speakerdb.store.engine import (STORE_FILE_SUFFIXES, home_store_url, make_engine, redact,
                                        store_error)

    if home.exists() and (holds_vector_files(home) or any(
            p.suffix in STORE_FILE_SUFFIXES for p in home.iterdir())):
        raise DatabaseExistsError(
            f"{home}: holds vector files but no usable home.json nor a SQLite store; its "
            f"store was elsewhere: `speakerdb init --home {home} --db-url URL` rebuilds "
            "home.json from it")
    home.mkdir(parents=True, exist_ok=True)
    vad = check_vad(vad or default_vad(embedder))
    from speakerdb.store.migrate import upgrade
    from speakerdb.store.store import Store

    url = db_url or home_store_url(home)
    engine = make_engine(url)
    try:
        upgrade(engine)
        store = Store(engine, redact(url) if db_url else str(home))
        store.bind_model(embedder.name, embedder.sha256, embedder.dims, embedder.raw_dim)
        store.set_setting("model_spec", model)
        store.set_setting("vad", vad)
    except SQLAlchemyError as e:
        engine.dispose()
        raise store_error(redact(url) if db_url else str(home), e) from None
    except Exception:
        engine.dispose()
        raise
    from speakerdb.index.tier import DEFAULT_TIER

    write_home_file(home, {"db_url": db_url, "model_spec": model,
                           **(tier or {"vectors": DEFAULT_TIER}), "vad": vad})
    engine.dispose()
    return cls.open(home, embedder=embedder, device=device)


def require_vad(db, vad: str | None) -> str:
    """The speech detector ``db`` was made with; ``vad``, if named, must be it (else a
    UsageError)."""
    if vad is not None and vad != db.policy.vad:
        raise UsageError(f"{db.home}: the database cuts its audio with the {db.policy.vad} "
                         f"speech detector; vad {vad!r} differs (it is chosen when the "
                         "database is created)", option="vad")
    return db.policy.vad


def _same_vad(db, vad):
    """``db``, when ``vad`` is None or the speech detector it was made with (else it is
    closed and the UsageError raised)."""
    try:
        require_vad(db, vad)
    except UsageError:
        db.close()
        raise
    return db


def database_vad(store, info: dict | None) -> str:
    """The speech detector a database was made with: the store's setting, else home.json's,
    else ``energy`` (databases made before the choice existed)."""
    from speakerdb.audio.vad import LEGACY_VAD

    return store.get_setting("vad") or (info or {}).get("vad") or LEGACY_VAD


def open_parts(home, catch_up, model, embedder):
    """What ``SpeakerDB.open`` builds the database from: (home, store, bound model, indexes,
    model spec)."""
    from sqlalchemy.exc import SQLAlchemyError

    from speakerdb.index.tier import open_tier, tier_kind
    from speakerdb.store.engine import (home_store_url, make_engine, redact, store_error,
                                        url_read_only)
    from speakerdb.store.migrate import current_revision, head_revision, upgrade
    from speakerdb.store.store import Store

    home = resolve_home(home)
    info = read_home_file(home)
    if info is None:
        raise not_found(home)
    remove_stray_temps(home)
    url = info.get("db_url") or home_store_url(home)
    read_only = url_read_only(url)
    engine = make_engine(url, read_only=read_only)
    try:
        rev = current_revision(engine)
        if rev is None:
            raise StoreError(f"{home}: the metadata store has no schema (was init interrupted?)")
        if rev != head_revision():
            if read_only:
                raise ReadOnlyError(f"{home}: the store needs a schema upgrade, which this "
                                    "read-only home does not allow; open it once where "
                                    "it can be written")
            upgrade(engine)
        store = Store(engine, str(home) if not info.get("db_url") else redact(url))
        bound = store.bound_model()
        if bound is None:
            raise StoreError(f"{home}: the metadata store is not bound to a model")
        spec = model or store.get_setting("model_spec") or info.get("model_spec")
        if embedder is not None and embedder.sha256 != bound.sha256:
            raise ModelMismatchError(
                f"{home}: database model {bound.name} ({bound.sha256[:12]}) is not "
                f"{embedder.name} ({embedder.sha256[:12]})"
            )
        space = stored_space(store, bound)
        indexes = open_tier(tier_kind(info), home, store, bound.sha256, head_revision(), space,
                            read_only=read_only or not os.access(home, os.W_OK))
        indexes.open(catch_up=catch_up) if catch_up else None
    except SQLAlchemyError as e:
        engine.dispose()
        raise store_error(str(home), e) from None
    except Exception:
        engine.dispose()
        raise
    return home, store, bound, indexes, spec


def stored_space(store, bound):
    """The database's vector space: identity, or the rotation stored with it."""
    from speakerdb.index.space import ROTATION_KEY, space_for

    stored = store.get_setting(ROTATION_KEY)
    try:
        return space_for(bound.dims, bound.raw_dim, stored)
    except (ValueError, KeyError, TypeError) as e:
        raise StoreError(f"the database's stored rotation is unusable ({e})") from None

"""A home directory's own files: home.json lost and rebuilt from the store, a store that this
process may not write, temporaries left by a killed save."""

from __future__ import annotations

import os
from pathlib import Path

from speakerdb.config import HOME_FILE, home_file_problem, write_home_file
from speakerdb.errors import DatabaseNotFound, ModelMismatchError, StoreError, UsageError

__all__ = ["not_found", "rebuild_home_file", "remove_stray_temps", "store_left"]


def not_found(home: Path) -> DatabaseNotFound:
    """The error for a home without a usable home.json: where the folder still holds a
    database, it says what is wrong with home.json and how to rebuild it."""
    problem = home_file_problem(home)
    if problem is None:
        return DatabaseNotFound(f"{home}: no speakerdb database here (run `speakerdb init`)")
    from speakerdb.store.engine import home_has_store

    how = "" if home_has_store(home) else " --db-url URL"
    return DatabaseNotFound(f"{home}: {problem} but the folder holds a database; `speakerdb "
                            f"init --home {home}{how}` rebuilds it from the store")


def store_left(home: Path, db_url: str | None) -> bool:
    """Whether ``home`` lost its home.json but not its store: its own store file, or index
    vector files and the ``db_url`` of the store they belong to."""
    from speakerdb.index.index_set import holds_vector_files
    from speakerdb.store.engine import home_has_store

    if home_has_store(home):
        return True
    return bool(db_url) and holds_vector_files(home)


def rebuild_home_file(home: Path, db_url: str | None, model, embedder, device,
                      tier: dict | None = None) -> None:
    """Write home.json again from what the store records (its model and model spec); a
    ``model`` or ``embedder`` given must be the store's; ``tier``: the vector tier entry
    (default: the FAISS tier). An unreadable home.json is kept as ``home.json.unreadable``."""
    from sqlalchemy.exc import SQLAlchemyError

    from speakerdb.model.registry import load_embedder
    from speakerdb.index.tier import DEFAULT_TIER
    from speakerdb.store.engine import home_store_url, make_engine, store_error
    from speakerdb.store.migrate import current_revision
    from speakerdb.store.store import Store

    engine = make_engine(db_url or home_store_url(home))
    try:
        if current_revision(engine) is None:
            raise StoreError(f"{home}: the store has no schema; there is no database to "
                             "rebuild home.json from")
        store = Store(engine)
        bound, spec = store.bound_model(), store.get_setting("model_spec")
        vad = store.get_setting("vad")
    except SQLAlchemyError as e:
        raise store_error(f"{home} (rebuilding home.json)", e) from None
    finally:
        engine.dispose()
    if bound is None:
        raise StoreError(f"{home}: the store is bound to no model; there is no database to "
                         "rebuild home.json from")
    if model is not None or embedder is not None:
        emb = embedder or load_embedder(model, device)
        if emb.sha256 != bound.sha256:
            raise ModelMismatchError(
                f"{home}: the store is bound to {bound.name} ({bound.sha256[:12]}), not "
                f"{emb.name} ({emb.sha256[:12]})")
        spec = spec or model
    if not spec:
        raise UsageError(f"{home}: the store does not record where {bound.name}, the network "
                         "it is bound to, comes from; give model", option="model")
    old = home / HOME_FILE
    if old.exists():
        os.replace(old, home / (HOME_FILE + ".unreadable"))
    write_home_file(home, {"db_url": db_url, "model_spec": spec,
                           **(tier or {"vectors": DEFAULT_TIER}),
                           **({"vad": vad} if vad else {})})


def remove_stray_temps(home: Path) -> None:
    """Temporaries of index or home.json saves that a killed process left behind."""
    from speakerdb.files.atomic import remove_stray_temps as remove

    remove(home, extra=(HOME_FILE + ".tmp",))

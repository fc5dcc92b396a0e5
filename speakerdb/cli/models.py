"""``speakerdb models``: fetch model weights into the cache, list what is there."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from speakerdb.cli.shell import Json, print_json, shell

__all__ = ["models_app"]

models_app = typer.Typer(help="Model weights: fetch them into the cache, list what is there.",
                         no_args_is_help=True)


@models_app.command("fetch")
@shell
def models_fetch(
    name: Annotated[str, typer.Argument(help="campplus, or a ReDimNet release such as b2-vox2-ft_lm.")] = "campplus",
    from_: Annotated[Optional[Path], typer.Option("--from", help="Use this local file (checked by sha256) instead of downloading.")] = None,
    json_: Json = False,
):
    """Fetch model weights into the cache ($SPEAKERDB_CACHE), verified by sha256."""
    from speakerdb.model.checkpoint import sha256_file
    from speakerdb.model.registry import fetch

    path = fetch(name, None if from_ is None else str(from_))
    doc = {"name": name, "path": str(path), "sha256": sha256_file(path),
           "bytes": path.stat().st_size}
    if json_:
        print_json(doc)
    else:
        print(f"{name}: {doc['path']} ({doc['bytes']} bytes, sha256 {doc['sha256'][:12]})")


@models_app.command("list")
@shell
def models_list(json_: Json = False):
    """Built-in models and the weights already in the cache."""
    from speakerdb.model.campplus.weights import cache_dir
    from speakerdb.model.registry import BUILTIN

    cache = cache_dir()
    files = sorted(p.name for p in cache.glob("*.pt")) if cache.is_dir() else []
    doc = {"builtin": BUILTIN, "cache": str(cache), "cached": files}
    if json_:
        print_json(doc)
        return
    for name, what in BUILTIN.items():
        print(f"{name:10s} {what}")
    print(f"cache {cache}: {', '.join(files) or 'empty'}")

"""The ``speakerdb`` command line (typer): ``main`` is the console entry point."""

from speakerdb.cli.main import app, main

__all__ = ["app", "main"]

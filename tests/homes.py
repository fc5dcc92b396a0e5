"""Databases for tests: a synthetic corpus (``tests.synth``) ingested into a new home bound to
the deterministic ``spectral`` model."""

from __future__ import annotations

from pathlib import Path

from tests.synth import write_corpus


def synthetic_home(parent: Path, speakers: int, utterances: int, embedder=None) -> Path:
    """``parent/home`` holding ``speakers`` x ``utterances`` synthetic voices written to
    ``parent/corpus`` (folders layout); ``embedder`` is a loaded ``spectral`` model to reuse."""
    from speakerdb.api import SpeakerDB

    corpus = parent / "corpus"
    write_corpus(corpus, speakers=speakers, utterances=utterances)
    home = parent / "home"
    with SpeakerDB.create(home, model="spectral", embedder=embedder) as db:
        db.ingest([corpus])
    return home

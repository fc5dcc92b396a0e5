"""speakerdb: vector-search speaker identification with Matryoshka speaker embeddings.

Light to import: heavy modules (torch, faiss, SQLAlchemy) load only when used.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "SpeakerDB"]


def __getattr__(name):
    if name == "SpeakerDB":
        from speakerdb.api import SpeakerDB

        return SpeakerDB
    raise AttributeError(f"module 'speakerdb' has no attribute {name!r}")

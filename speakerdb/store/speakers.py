"""Store queries and transactions of speaker management (a mixin of ``Store``).

Every public method is one transaction. A speaker exists only while it has recordings: the
operations that take recordings away from a speaker (``merge_speakers``, ``delete_recording``
through ``drop_empty_speakers``) delete it when none are left, and ``speaker_infos`` lists only
speakers with recordings.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from speakerdb.errors import NotFound, UsageError
from speakerdb.database.results import SpeakerInfo
from speakerdb.store.engine import retried_on_conflict
from speakerdb.store.models import Recording, Segment, Speaker
from speakerdb.store.records import LabelIn

__all__ = ["MAX_LABEL", "SpeakerQueries", "check_label", "label_problem"]


MAX_LABEL = 200  # characters
# what a label may not hold, so that any label is one URL path segment once percent-encoded
# (a server splits at ``/``; ``?``, ``#`` and ``%`` break a path wherever a client forgets to
# encode them) and is safe as text in a page. A backslash is allowed: the label of a folder
# whose name is not UTF-8 holds ``\\xNN`` (``speakerdb.audio.names``).
FORBIDDEN = "/<>?#%"


def label_problem(label) -> str | None:
    """Why ``label`` is not a usable speaker label, or None. The one rule of every entry:
    manifests, folder names, enroll, rename and merge, on the command line, API and HTTP."""
    if not isinstance(label, str) or not label.strip():
        return f"speaker label must be a non-empty string, got {label!r}"
    if label != label.strip():
        return f"speaker label {label!r} has leading/trailing white space"
    if len(label) > MAX_LABEL:
        return (f"speaker label {label[:40]!r}... is {len(label)} characters long; "
                f"at most {MAX_LABEL}")
    bad = sorted({c for c in label if c in FORBIDDEN or unicodedata.category(c) in _CONTROL})
    if bad:
        return (f"speaker label {label!r} holds {', '.join(repr(c) for c in bad)}: a label may "
                "not hold / < > ? # % nor control characters or line breaks")
    if label in (".", ".."):
        return f"speaker label {label!r} cannot be named in a URL"
    return None


def check_label(label) -> str:
    """``label`` itself, or UsageError when it is not a usable speaker label."""
    problem = label_problem(label)
    if problem is not None:
        raise UsageError(problem)
    return label


_CONTROL = frozenset({"Cc", "Cs", "Zl", "Zp"})


class SpeakerQueries:
    """Speaker management over ``self.session()`` (provided by ``Store``)."""

    def speaker_infos(self, labels: Iterable[str] | None = None) -> list[SpeakerInfo]:
        """Every speaker with recordings (or those of ``labels``), sorted by label."""
        with self.session() as s:
            return _infos(s, None if labels is None else list(labels))

    def recording_labels(self, shas: Iterable[str]) -> dict[str, str | None]:
        """{sha256: speaker label or None} for the given content hashes that are stored."""
        shas = list(set(shas))
        out: dict[str, str | None] = {}
        with self.session() as s:
            for i in range(0, len(shas), 500):
                q = (select(Recording.sha256, Speaker.label)
                     .outerjoin(Speaker, Recording.speaker_id == Speaker.id)
                     .where(Recording.sha256.in_(shas[i : i + 500])))
                out.update({sha: label for sha, label in s.execute(q)})
        return out

    @retried_on_conflict
    def rename_speaker(self, old: str, new: str) -> SpeakerInfo:
        """Give speaker ``old`` the label ``new`` (NotFound / UsageError when ``new`` exists)."""
        check_label(new)
        with self.session() as s:
            sp = _speaker(s, old)
            if new != old:
                if _find(s, new) is not None:
                    raise UsageError(f"speaker {new!r} exists already; use merge to move the "
                                     f"recordings of {old!r} into it")
                sp.label = new
                s.flush()
            return _info(s, new)

    @retried_on_conflict
    def merge_speakers(self, source: str, target: str) -> SpeakerInfo:
        """Move every recording of ``source`` to ``target`` and delete ``source``."""
        if source == target:
            raise UsageError(f"cannot merge speaker {source!r} into itself")
        check_label(target)
        with self.session() as s:
            src, dst = _speaker(s, source), _speaker(s, target)
            s.execute(update(Recording).where(Recording.speaker_id == src.id)
                      .values(speaker_id=dst.id))
            s.execute(delete(Speaker).where(Speaker.id == src.id))
            s.expunge(src)
            return _info(s, target)

    def apply_labels(self, s: Session, labels: list[LabelIn]) -> set[str]:
        """Give stored recordings the labels ``labels`` name (inside session ``s``), each only
        while it still has the label it had when it was looked up; a speaker left without
        recordings goes. Only labels and speakers change, never a vector. Returns the sha256s
        of the recordings relabelled."""
        if not labels:
            return set()
        rows = s.execute(select(Recording.sha256, Recording.id, Recording.speaker_id,
                                Speaker.label)
                         .outerjoin(Speaker, Recording.speaker_id == Speaker.id)
                         .where(Recording.sha256.in_([x.sha256 for x in labels])))
        now = {sha: (rid, sid, label) for sha, rid, sid, label in rows}
        todo = {x.sha256: x for x in labels
                if x.sha256 in now and now[x.sha256][2] == x.stored and x.given != x.stored}
        ids = self._speaker_ids(s, {x.given for x in todo.values()})
        for sha, x in todo.items():
            s.execute(update(Recording).where(Recording.id == now[sha][0])
                      .values(speaker_id=ids[x.given]))
        self.drop_empty_speakers(s, [now[sha][1] for sha in todo])
        return set(todo)

    @staticmethod
    def drop_empty_speakers(s: Session, speaker_ids: Iterable[int | None]) -> None:
        """Delete those of ``speaker_ids`` that have no recordings left (inside session ``s``)."""
        ids = {i for i in speaker_ids if i is not None}
        if not ids:
            return
        used = set(s.scalars(select(Recording.speaker_id)
                             .where(Recording.speaker_id.in_(ids)).distinct()))
        empty = ids - used
        if empty:
            s.execute(delete(Speaker).where(Speaker.id.in_(empty)))


def _find(s: Session, label: str) -> Speaker | None:
    return s.scalars(select(Speaker).where(Speaker.label == label)).first()


def _speaker(s: Session, label: str) -> Speaker:
    sp = _find(s, label)
    if sp is None:
        raise NotFound(f"speaker {label!r} is not in the database")
    return sp


def _info(s: Session, label: str) -> SpeakerInfo:
    found = _infos(s, [label])
    return found[0] if found else SpeakerInfo(label, 0, 0, 0.0)


def _infos(s: Session, labels: list[str] | None) -> list[SpeakerInfo]:
    recs = (select(Speaker.label, func.count(Recording.id),
                   func.coalesce(func.sum(Recording.duration_s), 0.0))
            .join(Recording, Recording.speaker_id == Speaker.id)
            .group_by(Speaker.label))
    segs = (select(Speaker.label, func.count(Segment.id))
            .join(Recording, Recording.speaker_id == Speaker.id)
            .join(Segment, Segment.recording_id == Recording.id)
            .group_by(Speaker.label))
    if labels is not None:
        recs = recs.where(Speaker.label.in_(labels))
        segs = segs.where(Speaker.label.in_(labels))
    n_segs = dict(s.execute(segs).all())
    return sorted((SpeakerInfo(label, int(n), n_segs.get(label, 0), float(secs))
                   for label, n, secs in s.execute(recs)), key=lambda i: i.label)

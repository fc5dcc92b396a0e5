"""Discovering inputs: VoxCeleb trees, speaker folders, CSV manifests, single files."""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

from speakerdb.errors import UsageError
from speakerdb.audio.names import display_name
from speakerdb.ingest.manifest import read_manifest
from speakerdb.store.speakers import label_problem

__all__ = ["LAYOUTS", "SourceItem", "discover", "detect_layout"]

LAYOUTS = ("auto", "voxceleb", "folders", "manifest")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".mp4", ".opus")
_VOX_ID = re.compile(r"^id\d+$")


@dataclass(frozen=True)
class SourceItem:
    path: Path  # as given (joined to the source as given, never resolved)
    speaker: str | None
    source: str  # layout plus what the layout knows, e.g. "voxceleb:<video>"
    error: str | None = None  # why this input cannot be used, known before reading it
    reason: str = "unreadable"  # the failure reason stored with ``error``


def detect_layout(source: Path) -> str:
    """``manifest`` for a .csv file, ``file`` for one audio file, ``voxceleb`` for a directory of
    ``idNNNNN`` speaker folders, otherwise ``folders``."""
    if source.is_file():
        return "manifest" if source.suffix.lower() == ".csv" else "file"
    try:
        subdirs = [p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:  # unreadable: the walk reports it as a failure
        subdirs = []
    if subdirs and all(_VOX_ID.match(p.name) for p in subdirs):
        return "voxceleb"
    return "folders"


def _why(e: OSError) -> str:
    return e.strerror or str(e)


def _link_problem(p: Path) -> str | None:
    """Why the symbolic link ``p`` leads nowhere usable (None if it leads to something)."""
    try:
        os.stat(p)
        return None
    except FileNotFoundError:
        try:
            target = os.readlink(p)
        except OSError:
            target = "?"
        return f"dangling symbolic link (its target {target} does not exist)"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop (the link leads back to itself)"
        return f"cannot follow the symbolic link ({_why(e)})"


def _audio_files(root: Path, extensions) -> list[tuple[Path, str | None]]:
    """``(path, None)`` for every audio file under ``root`` (symbolic links followed, names
    starting with ``.`` skipped) and ``(path, why)`` for what is in the way: a folder that
    cannot be listed, a dangling link named like audio, a symbolic link loop."""
    out: list[tuple[Path, str | None]] = []
    visited: set[tuple[int, int]] = set()

    def visit(d: Path, ancestors: frozenset) -> None:
        try:
            st = os.stat(d)
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                out.append((d, "symbolic link loop (a folder that contains itself)"))
                return
            if key in visited:  # reached again through another link: its files are in already
                return
            visited.add(key)
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            out.append((d, f"cannot list the folder ({_why(e)})"))
            return
        inner = ancestors | {key}
        for e in entries:
            if e.name.startswith("."):
                continue
            p = d / e.name
            audio = p.suffix.lower() in extensions
            try:
                if e.is_dir():
                    visit(p, inner)
                    continue
                is_file = e.is_file()
            except OSError:  # a link loop, or a target that cannot be looked at
                is_file = False
            if is_file:
                if audio:
                    out.append((p, None))
            elif e.is_symlink():
                problem = _link_problem(p)
                if problem and (audio or "loop" in problem):
                    out.append((p, problem))
            elif audio:
                out.append((p, "not a regular file"))

    visit(root, frozenset())
    return sorted(out, key=lambda t: t[0])


def _from_tree(root: Path, layout: str, extensions) -> list[SourceItem]:
    items = []
    for p, error in _audio_files(root, extensions):
        parts = [display_name(part) for part in p.relative_to(root).parts]
        speaker = parts[0] if len(parts) > 1 else None
        if error is not None:
            items.append(SourceItem(p, speaker, layout, error))
        elif speaker is not None and label_problem(speaker):
            items.append(_bad_label(p, speaker, layout))
        elif layout == "voxceleb":
            if len(parts) < 3:
                raise UsageError(
                    f"{display_name(p)}: not in the VoxCeleb layout idXXXXX/<video>/<utterance> under {root}"
                )
            items.append(SourceItem(p, speaker, f"voxceleb:{parts[1]}"))
        else:
            items.append(SourceItem(p, speaker, "folders"))
    return items


def _bad_label(path: Path, speaker: str, source: str) -> SourceItem:
    """An input whose speaker label breaks the rule of every label: a failure (``bad_label``)."""
    return SourceItem(path, speaker, source, label_problem(speaker), "bad_label")


def _from_manifest(path: Path) -> list[SourceItem]:
    items = []
    for row in read_manifest(path).rows:
        speaker = row.get("speaker") or None
        if speaker is not None and label_problem(speaker):
            items.append(_bad_label(row.path, speaker, "manifest"))
        else:
            items.append(SourceItem(row.path, speaker, "manifest"))
    return _each_path_once(items)


def discover(
    sources: list[str | Path], layout: str = "auto", extensions=AUDIO_EXTENSIONS
) -> list[SourceItem]:
    """Every input named by ``sources`` under ``layout``, in a stable order, each path once."""
    if layout not in LAYOUTS:
        raise UsageError(f"layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    items: list[SourceItem] = []
    for src in sources:
        root = Path(src)
        if not root.exists():
            raise UsageError(f"{src}: no such file or directory")
        kind = detect_layout(root) if layout == "auto" else layout
        if kind == "file" or (root.is_file() and kind != "manifest"):
            items.append(SourceItem(root, None, "file"))
        elif kind == "manifest":
            if not root.is_file():
                raise UsageError(f"{src}: a manifest layout needs a CSV file")
            items.extend(_from_manifest(root))
        else:
            items.extend(_from_tree(root, kind, extensions))
    seen: set[Path] = set()
    unique = []
    for it in items:
        if it.path not in seen:
            seen.add(it.path)
            unique.append(it)
    return unique


def _each_path_once(items: list[SourceItem]) -> list[SourceItem]:
    """The first item of each path of one manifest; a path it lists with different speakers
    becomes one failure that names them (which label is right is not for ingest to guess)."""
    first: dict[Path, SourceItem] = {}
    labels: dict[Path, list[str | None]] = {}
    for it in items:
        if it.path not in first:
            first[it.path] = it
            labels[it.path] = [it.speaker]
        elif it.speaker not in labels[it.path]:
            labels[it.path].append(it.speaker)
    out = []
    for path, it in first.items():
        if len(labels[path]) > 1 and it.error is None:
            names = ", ".join("(none)" if x is None else repr(x) for x in labels[path])
            it = SourceItem(path, None, it.source, f"listed with different speakers ({names}); "
                            "give it once", "conflicting_labels")
        out.append(it)
    return out

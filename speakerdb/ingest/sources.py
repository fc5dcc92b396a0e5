"""Discovering inputs: VoxCeleb trees, speaker folders, CSV manifests, single files."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from speakerdb.errors import ManifestError, UsageError
from speakerdb.names import display_name

__all__ = ["LAYOUTS", "SourceItem", "discover", "detect_layout"]

LAYOUTS = ("auto", "voxceleb", "folders", "manifest")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".mp4", ".opus")
_VOX_ID = re.compile(r"^id\d+$")


@dataclass(frozen=True)
class SourceItem:
    path: Path  # as given (joined to the source as given, never resolved)
    speaker: str | None
    source: str  # layout plus what the layout knows, e.g. "voxceleb:<video>"


def detect_layout(source: Path) -> str:
    """``manifest`` for a .csv file, ``file`` for one audio file, ``voxceleb`` for a directory of
    ``idNNNNN`` speaker folders, otherwise ``folders``."""
    if source.is_file():
        return "manifest" if source.suffix.lower() == ".csv" else "file"
    subdirs = [p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if subdirs and all(_VOX_ID.match(p.name) for p in subdirs):
        return "voxceleb"
    return "folders"


def _audio_files(root: Path, extensions) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in extensions
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _from_tree(root: Path, layout: str, extensions) -> list[SourceItem]:
    items = []
    for p in _audio_files(root, extensions):
        parts = [display_name(part) for part in p.relative_to(root).parts]
        speaker = parts[0] if len(parts) > 1 else None
        if layout == "voxceleb":
            if len(parts) < 3:
                raise UsageError(
                    f"{display_name(p)}: not in the VoxCeleb layout idXXXXX/<video>/<utterance> under {root}"
                )
            items.append(SourceItem(p, speaker, f"voxceleb:{parts[1]}"))
        else:
            items.append(SourceItem(p, speaker, "folders"))
    return items


def _from_manifest(path: Path) -> list[SourceItem]:
    base = path.parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            if "path" not in fields:
                raise ManifestError(f"{path}: line 1: no 'path' column (found: {', '.join(fields)})")
            items = []
            for row in reader:
                line = reader.line_num
                rel = (row.get("path") or "").strip()
                if not rel:
                    raise ManifestError(f"{path}: line {line}: empty path")
                speaker = (row.get("speaker") or "").strip() or None
                items.append(SourceItem(base / rel, speaker, "manifest"))
            return items
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not a UTF-8 CSV file ({e.reason})") from None
    except csv.Error as e:
        raise ManifestError(f"{path}: not a valid CSV file ({e})") from None


def discover(
    sources: list[str | Path], layout: str = "auto", extensions=AUDIO_EXTENSIONS
) -> list[SourceItem]:
    """Every input named by ``sources`` under ``layout``, in a stable order, each path once."""
    if layout not in LAYOUTS:
        raise UsageError(f"--layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
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
                raise UsageError(f"{src}: --layout manifest needs a CSV file")
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

"""Verification trial lists in the VoxCeleb1-O format (``1 a.wav b.wav`` per line).

``labelled_files`` collects speaker-labelled files from a folder tree or a CSV manifest, with the
recording each file was cut from; ``make_trials`` builds a seeded, balanced list of target and
non-target pairs from them; ``read_trials`` / ``write_trials`` read and write such lists.

Default policy of ``make_trials``: every target pair (two files of one speaker, unordered), and
exactly as many non-target trials, spread evenly over the files: with ``T`` targets and ``N``
files each file draws ``T // N`` non-target partners from other speakers, and ``T % N`` files
(chosen with the seed) draw one more. The list is balanced and every file is the drawing side of
the same number of non-targets, give or take one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speakerdb.errors import ManifestError, UsageError
from speakerdb.files.atomic import atomic_write
from speakerdb.ingest.manifest import ManifestRow, read_manifest
from speakerdb.ingest.sources import detect_layout, discover

__all__ = [
    "LabelledFile",
    "Trial",
    "labelled_files",
    "make_trials",
    "read_trials",
    "trial_stats",
    "write_trials",
]

_SPLIT_MARK = " [split"


@dataclass(frozen=True)
class Trial:
    """One verification trial: ``target`` when ``a`` and ``b`` are the same speaker. Paths are
    as written in the list, relative to a root the caller knows."""

    target: bool
    a: str
    b: str


@dataclass(frozen=True)
class LabelledFile:
    """A file (posix path relative to a root), its speaker, and the recording it comes from
    (files of one recording share channel and session, so they make easy target pairs)."""

    path: str
    speaker: str
    recording: str


# --- reading and writing ----------------------------------------------------------------------


def _parse_line(path: Path, n: int, line: str) -> Trial | None:
    """The trial on line ``n``, or None for a blank or comment line."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    fields = text.split()
    if len(fields) != 3:
        raise ManifestError(
            f"{path}: line {n}: expected 3 fields 'LABEL A B', found {len(fields)}"
        )
    label, a, b = fields
    if label not in ("0", "1"):
        raise ManifestError(f"{path}: line {n}: label {label!r} is not 0 or 1")
    return Trial(label == "1", a, b)


def read_trials(path: str | Path) -> list[Trial]:
    """The trials of the list at ``path``, in file order. Blank lines and lines starting with
    ``#`` are skipped; a malformed line or a list without trials is a ``ManifestError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such trial list") from None
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not a UTF-8 text file ({e.reason})") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read the trial list ({e.strerror})") from None
    trials = []
    for n, line in enumerate(text.splitlines(), start=1):
        t = _parse_line(path, n, line)
        if t is not None:
            trials.append(t)
    if not trials:
        raise ManifestError(f"{path}: no trials in the list")
    return trials


def write_trials(trials: Iterable[Trial], path: str | Path) -> Path:
    """Write ``trials`` to ``path`` in the VoxCeleb format, atomically (a temporary file in the
    same folder, then ``os.replace``, see :func:`atomic_write`). Paths must be non-empty and free of whitespace."""
    path = Path(path)
    lines = []
    for t in trials:
        for p in (t.a, t.b):
            if not p or len(p.split()) != 1 or p != p.strip():
                raise UsageError(f"{path}: trial path {p!r} is empty or contains whitespace")
        lines.append(f"{int(bool(t.target))} {t.a} {t.b}\n")
    folder = path.parent if str(path.parent) else Path(".")
    atomic_write(folder / path.name, "".join(lines))
    return path


# --- labelled files ---------------------------------------------------------------------------


def _manifest_recording(row: ManifestRow, columns: Sequence[str], column: str) -> str:
    """The recording of one manifest row: the named column if present and filled, else the
    ``source`` text before `` [split``, else the file itself."""
    if column in columns and row.get(column):
        return row.get(column)
    if "source" in columns:
        value = row.get("source").split(_SPLIT_MARK, 1)[0].strip()
        if value:
            return value
    return row.rel


def _from_manifest(source: Path, recording_column: str) -> list[LabelledFile]:
    """Labelled rows of a CSV manifest (``path``, ``speaker`` and optional extra columns)."""
    manifest = read_manifest(source, required=("path", "speaker"))
    return [LabelledFile(row.rel, row.get("speaker"),
                         _manifest_recording(row, manifest.columns, recording_column))
            for row in manifest.rows if row.get("speaker")]


def _from_tree(source: Path, layout: str) -> list[LabelledFile]:
    """Labelled files of a speaker-folder or VoxCeleb tree; in a VoxCeleb tree the recording is
    the video folder, otherwise each file is its own recording."""
    files = []
    for item in discover([source], layout):
        if not item.speaker:
            continue
        rel = item.path.relative_to(source).as_posix()
        if item.source.startswith("voxceleb:"):
            recording = f"{item.speaker}/{item.source.split(':', 1)[1]}"
        else:
            recording = rel
        files.append(LabelledFile(rel, item.speaker, recording))
    return files


def labelled_files(
    source: str | Path, layout: str = "auto", recording_column: str = "recording"
) -> tuple[Path, list[LabelledFile]]:
    """The speaker-labelled files of a folder tree or CSV manifest, with the root their paths
    are relative to (the folder itself, or the manifest's folder), sorted by path, each path
    once. Unlabelled files are skipped.

    Manifest recordings come from ``recording_column`` when the manifest has it, else from the
    ``source`` column's text before `` [split`` (pieces cut from one recording), else each file
    is its own recording."""
    source = Path(source)
    if not source.exists():
        raise UsageError(f"{source}: no such file or directory")
    kind = detect_layout(source) if layout == "auto" else layout
    if kind == "manifest":
        if not source.is_file():
            raise UsageError(f"{source}: a manifest layout needs a CSV file")
        root, files = source.parent, _from_manifest(source, recording_column)
    elif source.is_dir():
        root, files = source, _from_tree(source, kind)
    else:
        raise UsageError(f"{source}: a single file has no speaker labels; give a folder or CSV")
    unique: dict[str, LabelledFile] = {}
    for f in files:
        unique.setdefault(f.path, f)
    return root, sorted(unique.values(), key=lambda f: f.path)


# --- making trials ----------------------------------------------------------------------------


def _draw(
    rng: np.random.Generator, pool: Sequence[int], k: int, ok: Callable[[int], bool]
) -> list[int]:
    """Up to ``k`` distinct members of ``pool`` accepted by ``ok``, drawn by ``rng``: random
    probes first (cheap when few are rejected), then an exhaustive draw from the rest."""
    chosen: list[int] = []
    seen: set[int] = set()
    for _ in range(4 * k + 16):
        if len(chosen) == k or len(seen) == len(pool):
            return chosen
        i = pool[int(rng.integers(len(pool)))]
        if i in seen:
            continue
        seen.add(i)
        if ok(i):
            chosen.append(i)
    rest = [i for i in pool if i not in seen and ok(i)]
    for j in rng.permutation(len(rest))[: k - len(chosen)]:
        chosen.append(rest[int(j)])
    return chosen


def _unique_files(files: Iterable[LabelledFile]) -> list[LabelledFile]:
    """``files`` sorted by path, each path once; one path with two speakers is an error."""
    by_path: dict[str, LabelledFile] = {}
    for f in files:
        old = by_path.setdefault(f.path, f)
        if old.speaker != f.speaker:
            raise UsageError(f"{f.path}: labelled as both {old.speaker!r} and {f.speaker!r}")
    return [by_path[p] for p in sorted(by_path)]


def _even_quota(rng: np.random.Generator, total: int, n: int) -> list[int]:
    """``total`` spread over ``n`` slots: ``total // n`` each, one more in ``total % n`` slots
    chosen by ``rng``."""
    q, r = divmod(total, n)
    quota = [q] * n
    for i in rng.choice(n, r, replace=False):
        quota[int(i)] += 1
    return quota


def _check_count(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or int(value) != value or value < 0):
        raise UsageError(f"{name}={value!r}: must be a whole number >= 0")


def make_trials(
    files: Iterable[LabelledFile],
    *,
    seed: int = 0,
    targets_per_file: int | None = None,
    nontargets_per_file: int | None = None,
    exclude_same_recording: bool = False,
) -> list[Trial]:
    """A trial list over ``files``, sorted by ``(a, b)`` with ``a < b`` in every trial; the same
    for a given seed whatever the input order. No pair occurs twice and no file meets itself.

    Targets: all same-speaker pairs when ``targets_per_file`` is None, else each file (in path
    order) draws up to that many same-speaker partners it is not yet paired with.
    ``exclude_same_recording`` leaves out target pairs cut from one recording.
    Non-targets: each file draws ``nontargets_per_file`` partners of other speakers it is not yet
    paired with; None spreads as many non-targets as targets evenly over the files (each draws
    ``targets // files``, a seeded ``targets % files`` of them one more).
    Fewer than two speakers, or no target pair left, is a ``UsageError``."""
    _check_count("targets_per_file", targets_per_file)
    _check_count("nontargets_per_file", nontargets_per_file)
    items = _unique_files(files)
    speakers: dict[str, list[int]] = {}
    for i, f in enumerate(items):
        speakers.setdefault(f.speaker, []).append(i)
    if len(speakers) < 2:
        raise UsageError(f"trials need at least 2 speakers, found {len(speakers)}")
    rng = np.random.default_rng(seed)
    pairs: set[tuple[int, int]] = set()
    targets: list[tuple[int, int]] = []

    def free(i: int) -> Callable[[int], bool]:
        return lambda j: j != i and (min(i, j), max(i, j)) not in pairs

    def same_recording(i: int, j: int) -> bool:
        return exclude_same_recording and items[i].recording == items[j].recording

    if targets_per_file is None:
        for members in speakers.values():
            for x, i in enumerate(members):
                for j in members[x + 1:]:
                    if not same_recording(i, j):
                        targets.append((i, j))
        pairs.update(targets)
    else:
        for i, f in enumerate(items):
            ok = free(i)

            def mate(j: int, ok=ok, i=i) -> bool:
                return ok(j) and not same_recording(i, j)

            for j in _draw(rng, speakers[f.speaker], targets_per_file, mate):
                pair = (min(i, j), max(i, j))
                pairs.add(pair)
                targets.append(pair)
    if not targets:
        raise UsageError(
            f"no target pair among {len(items)} files of {len(speakers)} speakers"
            + (" (after excluding pairs from one recording)" if exclude_same_recording else "")
        )
    if nontargets_per_file is None:
        quota = _even_quota(rng, len(targets), len(items))
    else:
        quota = [nontargets_per_file] * len(items)
    everyone = range(len(items))
    nontargets: list[tuple[int, int]] = []
    for i, f in enumerate(items):
        ok = free(i)

        def other(j: int, ok=ok, s=f.speaker) -> bool:
            return ok(j) and items[j].speaker != s

        for j in _draw(rng, everyone, quota[i], other):
            pair = (min(i, j), max(i, j))
            pairs.add(pair)
            nontargets.append(pair)
    trials = [Trial(True, items[i].path, items[j].path) for i, j in targets]
    trials += [Trial(False, items[i].path, items[j].path) for i, j in nontargets]
    return sorted(trials, key=lambda t: (t.a, t.b))


def trial_stats(trials: Iterable[Trial]) -> dict:
    """Counts of a trial list: ``trials``, ``targets``, ``nontargets`` and distinct ``files``."""
    trials = list(trials)
    targets = sum(1 for t in trials if t.target)
    files = {p for t in trials for p in (t.a, t.b)}
    return {
        "trials": len(trials),
        "targets": targets,
        "nontargets": len(trials) - targets,
        "files": len(files),
    }

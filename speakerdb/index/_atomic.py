"""Atomic file replacement: write a temporary sibling, fsync it, then ``os.replace``.

A temporary is named ``.<name>.<pid>.<random>.tmp``; one whose process is gone (killed during
a save) is removed by ``remove_stray_temps`` when the database is next opened.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "remove_stray_temps"]

_TEMP = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<pid>\d+)\.)?[^.]+\.tmp$")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not supported everywhere (e.g. Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Make ``path`` hold what ``write(tmp_path)`` writes, or leave it untouched on failure.

    ``write`` is given the path of a fresh temporary file in the same directory; after it
    returns the file is fsynced and moved over ``path``. Any exception removes the temporary.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:  # someone else's process
        return True
    except (OSError, OverflowError):
        return False
    return True


def remove_stray_temps(directory: str | os.PathLike, extra: tuple[str, ...] = ()) -> list[Path]:
    """Remove the temporaries of saves that never finished (their writer is gone; those of a
    running process are left alone) and the files named in ``extra`` (fixed-name temporaries).
    Best effort: what cannot be removed (a read-only home) stays. Returns what was removed."""
    directory = Path(directory)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        m = _TEMP.match(name)
        if name not in extra and (m is None or (m["pid"] and _alive(int(m["pid"])))):
            continue
        try:
            (directory / name).unlink()
            removed.append(directory / name)
        except OSError:
            pass
    return removed

"""Atomic file replacement: write a temporary sibling, fsync it, then ``os.replace``.

A temporary is named ``.<name>.<pid>.<random>.tmp``; one whose process is gone (killed during
a save) is removed by ``remove_stray_temps`` when the database is next opened.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "remove_stray_temps", "write_error"]

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


def atomic_write(path: str | os.PathLike,
                 write: bytes | str | Callable[[str], None]) -> None:
    """Make ``path`` hold ``write``, or leave it untouched on failure.

    ``write`` is bytes, a str (written as UTF-8), or a callable given the path of a fresh
    temporary file in the same directory (for ``np.save``, ``torch.save``,
    ``faiss.write_index``); the file is then fsynced and moved over ``path``. Any exception
    removes the temporary.
    """
    path = Path(path)
    if isinstance(write, str):
        write = write.encode("utf-8")
    if isinstance(write, (bytes, bytearray, memoryview)):
        data = bytes(write)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(data)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                                   suffix=".tmp")
    except OSError as e:
        raise write_error(path, e) from None
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) or _says_no_space(e):
            raise write_error(path, e) from None
        raise
    _fsync_dir(path.parent)


def _says_no_space(e: BaseException) -> bool:
    """FAISS reports a failed write as a RuntimeError quoting the C library's words."""
    return isinstance(e, RuntimeError) and "No space left on device" in str(e)


def write_error(path: Path, e: BaseException):
    """The typed error of a failed write of ``path``: disk full, read-only, or other."""
    from speakerdb.errors import DiskFullError, ReadOnlyError, StoreError

    code = getattr(e, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT) or _says_no_space(e):
        return DiskFullError(f"{path}: no space left on the device (free some space and "
                             "run the command again)")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ReadOnlyError(f"{path}: cannot be written ({e.strerror}); the home is "
                             "read-only for this process")
    return StoreError(f"{path}: cannot be written ({getattr(e, 'strerror', None) or e})")


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

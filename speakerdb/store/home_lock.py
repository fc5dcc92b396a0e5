"""The writer lock of one home: an advisory ``fcntl.flock`` on ``<home>/writer.lock``.

Every process that changes a database (ingest, enroll, speaker management, calibrate,
repair, index saves) holds it while it writes, so writers on one home take turns; readers
never take it. The holder writes who it is into the file (process id, command, since when),
so that a second writer can say for whom it waits, or fail at once (``Busy``) when it was
told not to wait. The lock goes with the process: a killed writer never leaves it held.

``HomeLock`` is re-entrant within a process (threads of one process share it through a
``threading.RLock``); ``try_hold`` takes it only when it is free, for work that may be
skipped (saving indexes after a catch-up on open).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from speakerdb.errors import Busy, StoreError

__all__ = ["LOCK_FILE", "HomeLock"]

LOCK_FILE = "writer.lock"
log = logging.getLogger("speakerdb.lock")


def _who() -> str:
    """This process in words: ``pid 123 (speakerdb ingest corpus/) since 2026-...Z``. Only
    the words before the first option are shown (options may hold secrets, e.g. a token)."""
    argv = sys.argv or [""]
    prog = os.path.basename(argv[0]) or "python"
    if prog == "__main__.py":  # python -m <package>
        prog = os.path.basename(os.path.dirname(argv[0])) or "python"
    elif prog == "cli.py":
        prog = "speakerdb"
    words = []
    for arg in argv[1:4]:
        if arg.startswith("-"):
            break
        words.append(arg)
    command = " ".join([prog, *words])[:200]
    since = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"pid {os.getpid()} ({command}) since {since}"


class HomeLock:
    def __init__(self, home: str | os.PathLike):
        self.path = Path(home) / LOCK_FILE
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @property
    def depth(self) -> int:
        """How many ``hold`` blocks of this process are open (0: not held)."""
        return self._depth

    @property
    def held(self) -> bool:
        """Whether this process holds the lock (through any thread)."""
        return self._depth > 0

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it (or ``another process``)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            text = ""
        return text.splitlines()[0][:300] if text else "another process"

    @contextmanager
    def hold(self, wait_s: float | None = None):
        """Hold the lock for the block. ``wait_s``: None waits as long as it takes (saying for
        whom on the ``speakerdb.lock`` logger), 0 raises ``Busy`` at once when another process
        holds it, a number waits that long at most."""
        with self._mutex:
            if self._depth == 0:
                self._fd = self._acquire(wait_s)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._release()

    @contextmanager
    def try_hold(self):
        """Yield True holding the lock when it is free now (or held by this process already),
        else yield False at once; also False when the lock file cannot be made (a read-only
        home)."""
        if not self._mutex.acquire(blocking=False):
            yield False
            return
        try:
            if self._depth > 0:
                self._depth += 1
                try:
                    yield True
                finally:
                    self._depth -= 1
                return
            try:
                fd = self._try_open_locked()
            except OSError:
                fd = None
            if fd is None:
                yield False
                return
            self._fd, self._depth = fd, 1
            try:
                yield True
            finally:
                self._depth = 0
                self._release()
        finally:
            self._mutex.release()

    # the file --------------------------------------------------------------------------------
    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)

    def _try_open_locked(self) -> int | None:
        import fcntl

        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        self._mark(fd)
        return fd

    def _acquire(self, wait_s: float | None) -> int:
        import fcntl

        try:
            fd = self._try_open_locked()
        except OSError as e:
            raise StoreError(f"{self.path}: cannot take the writer lock "
                             f"({e.strerror or e})") from None
        if fd is not None:
            return fd
        holder = self.holder()
        home = self.path.parent
        if wait_s is not None and wait_s <= 0:
            raise Busy(f"{home}: another process is writing to this database ({holder}); "
                       "try again when it is done")
        log.warning("waiting for %s to finish writing to %s", holder, home)
        fd = self._open()
        deadline = None if wait_s is None else time.monotonic() + wait_s
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise Busy(f"{home}: another process is still writing to this database "
                                   f"after {wait_s:g} s ({self.holder()}); try again "
                                   "later") from None
                    time.sleep(0.05)
        except BaseException:  # Busy, or an interrupt while waiting
            os.close(fd)
            raise
        self._mark(fd)
        return fd

    @staticmethod
    def _mark(fd: int) -> None:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (_who() + "\n").encode("utf-8", "replace"), 0)
        except OSError:
            pass  # who holds it is a courtesy to waiters; the lock itself is held

    def _release(self) -> None:
        import fcntl

        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

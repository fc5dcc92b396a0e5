"""Make a folder read-only for this process, for the tests of read-only homes.

Root writes through any permission bits, so as root the folder is bind-mounted read-only
over itself (writes fail with EROFS, as on a read-only volume); otherwise its write
permission bits are cleared (writes fail with EACCES). Where neither works the test skips.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["read_only"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=False)


@contextmanager
def read_only(folder: Path):
    folder = Path(folder)
    if os.geteuid() == 0:
        r = _run("mount", "--bind", str(folder), str(folder))
        if r.returncode:
            pytest.skip(f"running as root and cannot bind-mount read-only: {r.stderr.strip()}")
        r = _run("mount", "-o", "remount,ro,bind", str(folder))
        if r.returncode:
            _run("umount", str(folder))
            pytest.skip(f"running as root and cannot remount read-only: {r.stderr.strip()}")
        try:
            yield folder
        finally:
            _run("umount", str(folder))
        return
    modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
    for p, mode in modes.items():
        p.chmod(mode & ~0o222)
    try:
        yield folder
    finally:
        for p, mode in modes.items():
            p.chmod(mode)

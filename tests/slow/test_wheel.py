"""The Alembic migrations travel inside the wheel and work from an installed copy."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_installed_wheel_creates_a_database(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = wheels.glob("speakerdb-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "speakerdb/migrations/env.py" in names
    assert "speakerdb/migrations/script.py.mako" in names
    assert any(n.startswith("speakerdb/migrations/versions/0001") for n in names)

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, capture_output=True)
    code = (
        "import speakerdb.store.migrate as m, sys;"
        f"assert m.migrations_dir().is_relative_to({str(site)!r}), m.migrations_dir();"
        "from speakerdb.api import SpeakerDB;"
        f"db = SpeakerDB.create({str(tmp_path / 'home')!r}, model='spectral');"
        "print(db.stats()['counts']['segments']); db.close()"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"

"""A throwaway PostgreSQL server for the tests, and the ``store_url`` fixture that runs a test
on SQLite and on PostgreSQL.

``pg_server`` (once per session) starts a server from Debian's ``postgresql`` package
(``/usr/lib/postgresql/*/bin``): ``initdb`` and ``pg_ctl`` as the ``postgres`` user when the
tests run as root (they refuse root), a temporary data folder (its unix socket in it too), a
free loopback port, ``fsync=off``; it stops at the end of the session (a server left by a
killed session is stopped when the next one starts). ``SPEAKERDB_TEST_PG_URL``
(``postgresql+psycopg://user[:password]@host:port/db`` of a role that may create databases)
points the tests at an existing server instead. Without either, or without psycopg, the
PostgreSQL tests skip, saying why. ``pg_url``: a fresh database per test.

Connections from the loopback address are trusted, but for the role ``secretive`` (password
``PASSWORD``), which tests of passwords from the environment and ``~/.pgpass`` use.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

URL_ENV = "SPEAKERDB_TEST_PG_URL"
SECRET_ROLE, PASSWORD = "secretive", "pw-S3cret-x9"


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """A server the tests may create databases on (``own``: started here, so restartable)."""

    def __init__(self, admin_url: str, own: bool, data: Path | None = None,
                 bin_dir: Path | None = None, options: str = ""):
        from sqlalchemy.engine import make_url

        self.admin = make_url(admin_url).set(drivername="postgresql+psycopg")
        self.own, self.data, self.bin_dir, self.options = own, data, bin_dir, options

    def url(self, database: str, user: str | None = None, password: str | None = None) -> str:
        u = self.admin.set(database=database)
        if user is not None:
            u = u.set(username=user, password=password)
        return u.render_as_string(hide_password=False)

    def sql(self, statement: str) -> None:
        """Run ``statement`` on the server's maintenance database, outside a transaction."""
        import psycopg

        u = self.admin
        with psycopg.connect(host=u.host, port=u.port, user=u.username, password=u.password,
                             dbname=u.database or "postgres", autocommit=True) as con:
            con.execute(statement)

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.sql(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        try:
            self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception:  # the server is gone or still busy: its folder goes anyway
            pass

    def pg_ctl(self, *args: str) -> None:
        _as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data / "data"),
                      "-l", str(self.data / "log"), "-o", self.options, "-w", *args])

    def restart(self) -> None:
        """Restart the server (``pg_ctl restart -m fast``): every connection is cut."""
        if not self.own:
            pytest.skip(f"{URL_ENV} names a server the tests cannot restart")
        self.pg_ctl("restart", "-m", "fast")


def _as_postgres(cmd: list[str]) -> None:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr or p.stdout}")


def _stop_orphans(bin_dir: Path) -> None:
    """Stop servers that a killed test session left running (their owner process is gone)."""
    for owner in glob.glob(os.path.join(tempfile.gettempdir(), "speakerdb-pg-*", "owner")):
        root = Path(owner).parent
        try:
            os.kill(int(Path(owner).read_text()), 0)
            continue  # its session is still running
        except ProcessLookupError:
            pass
        except (ValueError, OSError):
            continue
        try:
            _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-w", "stop",
                          "-m", "immediate"])
        except RuntimeError:
            pass  # not running
        shutil.rmtree(root, ignore_errors=True)


def _start() -> PgServer:
    bin_dir = _bin_dir()
    _stop_orphans(bin_dir)
    root = Path(tempfile.mkdtemp(prefix="speakerdb-pg-"))
    (root / "owner").write_text(str(os.getpid()))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    os.chmod(root, 0o700)
    _as_postgres([str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "postgres",
                  "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"])
    (root / "data" / "pg_hba.conf").write_text(
        "local all all trust\n"
        f"host all {SECRET_ROLE} 127.0.0.1/32 scram-sha-256\n"
        "host all all 127.0.0.1/32 trust\n")
    port = _free_port()
    options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c full_page_writes=off -c synchronous_commit=off -c max_connections=200")
    server = PgServer(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", own=True,
                      data=root, bin_dir=bin_dir, options=options)
    server.pg_ctl("start")
    server.sql(f"CREATE ROLE {SECRET_ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
    return server


@pytest.fixture(scope="session")
def pg_server():
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'speakerdb[postgres]')")
    if os.environ.get(URL_ENV):
        yield PgServer(os.environ[URL_ENV], own=False)
        return
    if _bin_dir() is None:
        pytest.skip(f"no PostgreSQL: neither /usr/lib/postgresql/*/bin/initdb (Debian's "
                    f"postgresql package) nor {URL_ENV}")
    server = _start()
    try:
        yield server
    finally:
        try:
            server.pg_ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(server.data, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL of a fresh, empty database on the test server."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def store_url(request, tmp_path) -> str:
    """A store URL: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        from speakerdb.store.engine import sqlite_url

        return sqlite_url(tmp_path / "store.sqlite")
    return request.getfixturevalue("pg_url")

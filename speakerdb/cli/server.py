"""``speakerdb serve``: the HTTP server."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from speakerdb.cli.shell import Device, Home, err, shell

__all__ = ["is_loopback", "listen", "register"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    home: Home = None,
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs "
                                           "a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.", min=0, max=65535)] = 8000,
    token: Annotated[str | None, typer.Option(
        envvar="SPEAKERDB_TOKEN", show_envvar=False,
        help="Bearer token every endpoint but /health requires [env SPEAKERDB_TOKEN].")] = None,
    read_token: Annotated[str | None, typer.Option(
        envvar="SPEAKERDB_READ_TOKEN", show_envvar=False,
        help="A second token that opens only search and listing (identify, verify, embed, "
             "speakers, stats), for search-only clients; needs --token "
             "[env SPEAKERDB_READ_TOKEN].")] = None,
    max_upload_mb: Annotated[float, typer.Option(
        help="Most megabytes of audio one request may upload.", min=0.001)] = 20.0,
    max_duration: Annotated[float, typer.Option(
        help="Most seconds of audio one uploaded input may hold; a longer one fails with the "
             "reason (default 1800: 30 min).")] = 1800.0,
    device: Device = "auto",
):
    """Serve the database over HTTP (JSON API, docs at /docs, a web page at /)."""
    from speakerdb.config import check_finite

    check_finite("max_upload_mb", max_upload_mb)
    if not token and not is_loopback(host):
        err(f"--host {host} is not a loopback address: set --token or SPEAKERDB_TOKEN so "
             "that requests need it")
        raise typer.Exit(2)
    from speakerdb.config import check_max_duration
    from speakerdb.server.auth import check_tokens

    check_tokens(token or None, read_token or None)
    check_max_duration(max_duration)
    sock = listen(host, port)  # a port in use fails here, before anything is loaded
    try:
        import uvicorn

        from speakerdb.api import SpeakerDB
        from speakerdb.server import create_app

        with SpeakerDB.open(home, device=device) as db:
            _ = db.embedder  # load the model before the first request; fail here if it cannot
            app = create_app(db, token=token or None, read_token=read_token or None,
                             max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                             max_duration_s=max_duration)
            access = ("no token: every endpoint is open" if not token else
                      "every endpoint but /health needs the token"
                      + (" (or the read token for searches)" if read_token else ""))
            print(f"speakerdb: serving {db.home} on http://{host}:{port} ({access})",
                  file=sys.stderr)
            config = uvicorn.Config(app, host=host, port=port, log_level="info")
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def listen(host: str, port: int):
    """A socket bound to ``host``:``port`` (what uvicorn would bind); a port in use, a port
    that needs privileges or a host that does not resolve is a UsageError."""
    import errno
    import socket

    from speakerdb.errors import UsageError

    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise UsageError(f"--host {host}: cannot resolve it ({e})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.set_inheritable(True)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UsageError(f"--port {port}: {host}:{port} is already in use by another "
                             "program; choose another --port") from None
        if e.errno == errno.EACCES:
            raise UsageError(f"--port {port}: not allowed to listen on {host}:{port} "
                             "(ports below 1024 need privileges)") from None
        raise UsageError(f"--host {host} --port {port}: cannot listen there "
                         f"({e.strerror or e})") from None
    return sock


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command("serve")(shell(serve))

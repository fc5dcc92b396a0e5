"""A file server on 127.0.0.1 for the download tests: nothing leaves the machine."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                   "ALL_PROXY")


def without_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make HTTP clients connect to 127.0.0.1 directly, whatever proxy the machine sets."""
    for var in PROXY_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")


class LoopbackServer:
    """Serves the files of ``root`` at ``url`` and lists the paths requested; a path under
    ``/short/`` serves the same file but announces 10 bytes more than it sends."""

    def __init__(self, root: Path):
        self.root, self.requests = root, []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(root), **kw)

            def do_GET(self):
                requests.append(self.path)
                if not self.path.startswith("/short/"):
                    return super().do_GET()
                data = (root / self.path[len("/short/"):]).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data) + 10))
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True
                return None

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

"""The HTTP side of the local Compute Engine: the server on 127.0.0.1, its request
handler (JSON in and out, errors in Google's shape, one request log line per request) and
injected faults."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cloudnorm.testing.gce.common import ApiError
from cloudnorm.testing.gce.routes import Api


class Fault:
    """An error the endpoint answers instead of the real reply (see ``GceSandbox.inject``)."""

    def __init__(self, method: str, path: str, code: int, reason: str, message: str,
                 times: int | None) -> None:
        self.method = method
        self.path = re.compile(path)
        self.error = ApiError(code, reason, message)
        self.times = times
        self.calls = 0
        self.failed = 0

    def applies(self, method: str, path: str) -> bool:
        if method != self.method or not self.path.search(path):
            return False
        self.calls += 1
        if self.times is None or self.failed < self.times:
            self.failed += 1
            return True
        return False


class Server(ThreadingHTTPServer):
    """The HTTP server: JSON in and out, one request log line per request."""

    daemon_threads = True

    def __init__(self, request_log: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        # Set once the port is known: the state's resource links name it.
        self.api: Api | None = None
        self.faults: list[Fault] = []
        self._log_fd = os.open(request_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._log_lock = threading.Lock()

    def record(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        with self._log_lock:
            os.write(self._log_fd, line)

    def server_close(self) -> None:
        super().server_close()
        os.close(self._log_fd)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        """The request log replaces the stdlib's stderr lines."""

    def _serve(self) -> None:
        started = time.time()
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status = 200
        try:
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                raise ApiError(400, "parseError", "Parse Error") from None
            fault = next((f for f in list(self.server.faults)
                          if f.applies(self.command, url.path)), None)
            if fault is not None:
                raise fault.error
            if self.server.api is None:
                raise ApiError(503, "backendError", "The service is starting")
            reply: dict[str, Any] = self.server.api.dispatch(self.command, url.path, query,
                                                             body)
        except ApiError as error:
            status, reply = error.code, error.body()
        except Exception as exc:  # a bug here must answer like a server fault, not hang
            status = 500
            reply = ApiError(500, "backendError", f"Internal error: {exc!r}").body()
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        project = re.match(r"/compute/v1/projects/([^/]+)", url.path)
        agent = self.headers.get("X-Cloudnorm-Agent")
        self.server.record({
            "t": started, "service": f"compute-{agent}" if agent else "compute",
            "method": self.command, "path": url.path, "query": url.query, "status": status,
            "project": project.group(1) if project else None,
            # Google's clients name themselves (and the application) in x-goog-api-client.
            "user_agent": " ".join(filter(None, (self.headers.get("User-Agent"),
                                                 self.headers.get("x-goog-api-client"))))})

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

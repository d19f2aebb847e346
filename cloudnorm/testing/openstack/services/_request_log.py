"""WSGI middleware that appends one JSON line per request to the sandbox's request log.

Every service process writes to the same file, so each line goes out in a single
``os.write`` on an ``O_APPEND`` descriptor (the kernel keeps whole lines apart between
processes) under a lock (threads of one process never interleave).
"""

from __future__ import annotations

import json
import os
import threading
import time


class RequestLog:
    def __init__(self, app, service: str, path: str) -> None:
        self._app = app
        self._service = service
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        started = time.time()
        seen: dict = {}

        def recording_start_response(status, headers, exc_info=None):
            seen["status"] = status
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        try:
            body = self._app(environ, recording_start_response)
        except BaseException:
            self._record(environ, started, "500")
            raise
        if "status" in seen:
            # The project name is read only now: keystonemiddleware adds it to environ
            # while the inner application runs.
            self._record(environ, started, seen["status"])
            return body
        return _RecordWhenDone(
            body, lambda: self._record(environ, started, seen.get("status", "500")))

    def _record(self, environ, started: float, status: str) -> None:
        try:
            code = int(str(status).split(" ", 1)[0])
        except ValueError:
            code = 0
        entry = {
            "t": started,
            "service": self._service,
            "method": environ.get("REQUEST_METHOD", ""),
            "path": environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
            "query": environ.get("QUERY_STRING", ""),
            "status": code,
            "project": environ.get("HTTP_X_PROJECT_NAME") or None,
            "user_agent": environ.get("HTTP_USER_AGENT", ""),
        }
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)


class _RecordWhenDone:
    """Response body of an application that calls start_response lazily."""

    def __init__(self, body, record) -> None:
        self._body = body
        self._record = record
        self._done = False

    def __iter__(self):
        try:
            yield from self._body
        finally:
            self.close()

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._record()

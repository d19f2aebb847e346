"""Write-serializing HTTP proxies in front of the sandbox's Nova, Neutron and Placement.

The sandbox cannot take concurrent writes, which a production cloud does:

* Neutron and Placement keep their state in SQLite, which refuses a second concurrent
  write transaction ("database is locked", answered as HTTP 500; Nova turns a failed
  port or allocation into "No valid host was found");
* Nova (one eventlet process) deadlocks when two ``POST /servers`` overlap: both fetch
  the image schema through glanceclient, whose ``memoized_property`` holds a lock that
  eventlet does not make green, and the whole API stops answering.

So the bench lets one write (POST, PUT, PATCH, DELETE) at a time through to each of
these services; reads pass freely. The proxies are registered in the Keystone catalog
*before* any service starts, so every client goes through them alike: cloudnorm,
openstacksdk, Libcloud, Nova's and Neutron's calls to each other and the SSH data plane.
Every request is still logged by the service itself, with its project and user agent,
exactly as without a proxy; request counts do not change, only writes queue.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
               "trailer", "trailers", "transfer-encoding", "upgrade", "content-length"}
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
UPSTREAM_TIMEOUT = 120.0


class SerializingProxy:
    """``start()`` returns the URL to publish instead of ``upstream`` (same path)."""

    def __init__(self, name: str, upstream: str, host: str = "127.0.0.1") -> None:
        parts = urlsplit(upstream)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the proxy forwards to loopback addresses only, not {upstream}")
        self.name = name
        self.upstream = (parts.hostname, parts.port or 80)
        self.path = parts.path.rstrip("/")
        self._host = host
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.write_lock = threading.Lock()
        self.writes = 0
        self.write_wait = 0.0  # seconds writes spent queued behind another write
        self.url = ""

    def start(self) -> str:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if body is not None:
                    headers["Content-Length"] = str(len(body))
                write = self.command in _WRITES
                queued = time.monotonic()
                lock = proxy.write_lock if write else contextlib.nullcontext()
                with lock:
                    if write:
                        proxy.writes += 1
                        proxy.write_wait += time.monotonic() - queued
                    conn = http.client.HTTPConnection(*proxy.upstream, timeout=UPSTREAM_TIMEOUT)
                    try:
                        conn.request(self.command, self.path, body=body,
                                     headers=headers)
                        resp = conn.getresponse()
                        data = resp.read()
                        status, reason, out_headers = resp.status, resp.reason, resp.getheaders()
                    except (OSError, http.client.HTTPException) as exc:
                        status, reason, out_headers = 502, "Bad Gateway", []
                        data = f"bench proxy: upstream failed: {exc}".encode()
                    finally:
                        conn.close()
                self.send_response(status, reason)
                for key, value in out_headers:
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        server = ThreadingHTTPServer((self._host, 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=f"{self.name}-proxy",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        self.url = f"http://{self._host}:{server.server_address[1]}{self.path}"
        return self.url

    def stats(self) -> dict[str, float]:
        return {"writes": self.writes, "write_wait_s": round(self.write_wait, 3)}

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

"""An HTTP proxy on 127.0.0.1 that makes a sandbox cloud misbehave the way real ones do.

It sits in front of the sandbox's OpenStack services, one listening port per service,
and passes every request on unchanged -- except those a :class:`Rule` picks, which get
an error status (5xx; 429 or 413 with Retry-After), a reset connection, a slow reply,
a reply cut short or garbled JSON. Two lies of eventually consistent clouds are built
in as well: a new server missing from server lists for its first few appearances, and
409 on a server's actions while it builds::

    with FaultProxy(sandbox.endpoints_of("fip-required"), seed=7) as proxy:
        proxy.add(Rule("status", status=503, service="compute", probability=0.1))
        path = proxy.clouds_yaml(sandbox.clouds_yaml, "sandbox-fip-required", tmp / "c.yaml")
        cloud = cloudnorm.connect("sandbox-fip-required", config_files=[str(path)])

Identity (Keystone) is not proxied: tokens come straight from it. Randomness is
seeded, and every rule can be bounded by ``count``; ``max_faults`` bounds them all.

A service can also be throttled the way an API gateway in front of a cloud does it: a
token bucket (``rate`` requests a second, ``burst`` at once) whose empty state is
answered 429 with Retry-After and Nova's rate limit fault, before any rule is looked at::

    bucket = proxy.throttle("compute", rate=5, burst=5, methods=("POST", "DELETE"))
    ...
    print(bucket.passed, bucket.refused)   # requests let through, 429s sent

Any other HTTP API works the same way with a single upstream, named as you like; a rule's
``body`` gives the error document that API answers with (:func:`ec2_error`,
:func:`google_error`), and :meth:`FaultProxy.clouds_yaml_endpoint` points a cloud's
``cloudnorm: endpoint_url:`` at the proxy::

    with FaultProxy({"gce": sandbox.endpoint_url}, seed=7) as proxy:
        proxy.add(Rule("status", status=429, body=google_error(429, "rateLimitExceeded"),
                       probability=0.02))
        path = proxy.clouds_yaml_endpoint(sandbox.write_clouds_yaml(), "sandbox-gce",
                                          tmp / "c.yaml", "gce")
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import math
import os
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs

KINDS = ("status", "reset", "reset_after", "slow", "truncate", "malformed", "hide_new",
         "conflict_building")
# What a service answers in the body of each injected status (the shapes OpenStack uses).
_BODIES = {
    429: {"overLimit": {"code": 429, "message": "Rate limit exceeded: try again later"}},
    413: {"overLimit": {"code": 413, "message": "This request was rate-limited."}},
    409: {"conflictingRequest": {"code": 409, "message":
          "Cannot 'os-getConsoleOutput' instance while it is in vm_state building"}},
}


@attrs.define
class Rule:
    """One kind of fault, for the requests it matches.

    ``kind``: ``status`` (answer ``status``, with ``retry_after`` seconds when set),
    ``reset`` (drop the connection before the service sees the request),
    ``reset_after`` (the service acts, then the connection drops: a lost reply),
    ``slow`` (wait ``delay`` seconds first), ``truncate`` (half the body, then close),
    ``malformed`` (a body that is not JSON), ``hide_new`` (a server is left out of
    server lists the first ``polls`` times it would appear), ``conflict_building``
    (409 on a server's actions while it is in BUILD).
    ``service`` (compute, image, network), ``method`` and ``path`` (a regular expression
    searched in the path) narrow what it matches; ``probability`` and ``count`` (how many
    times at most) decide when.
    ``body`` and ``content_type`` are what a ``status`` answer carries (default: the
    error document OpenStack's services send); ``items_key`` and ``id_key`` say where a
    ``hide_new`` list reply keeps its records and their ids (Nova's ``servers``/``id``;
    ``items``/``id`` for Compute Engine).
    """

    kind: str
    service: str | None = None
    method: str | None = None
    path: str | None = None
    probability: float = 1.0
    count: int | None = None
    status: int = 503
    retry_after: float | None = None
    delay: float = 2.0
    polls: int = 2
    body: bytes | None = None
    content_type: str = "application/json"
    items_key: str = "servers"
    id_key: str = "id"
    fired: int = 0

    def __attrs_post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if self.delay > 30:
            raise ValueError("a slow reply waits 30 s at most: the proxy must stay bounded")

    def matches(self, service: str, method: str, path: str) -> bool:
        return ((self.service is None or self.service == service)
                and (self.method is None or self.method.upper() == method)
                and (self.path is None or re.search(self.path, path) is not None))


@attrs.define
class Throttle:
    """A token bucket in front of one service: ``rate`` tokens a second, at most ``burst``
    of them; each request (of ``methods``, or any) takes one. A request that finds none
    is refused with 429 and a Retry-After of the whole seconds until a token is back, as
    Nova's rate limit middleware answered (``nova.api.openstack.wsgi.RateLimitFault``)."""

    service: str
    rate: float
    burst: float
    methods: tuple[str, ...] | None = None
    tokens: float = -1.0
    stamp: float = attrs.field(factory=time.monotonic)
    #: Requests let through, and refused (with when, in ``time.time()`` seconds).
    passed: int = 0
    refused: int = 0
    refused_at: list[float] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a throttle needs rate > 0 and a burst of at least 1 request")
        if self.tokens < 0:
            self.tokens = float(self.burst)

    def take(self, method: str) -> int | None:
        """None when the request may pass, else the Retry-After seconds (call under the
        proxy's lock)."""
        if self.methods is not None and method not in self.methods:
            return None
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.passed += 1
            return None
        self.refused += 1
        self.refused_at.append(time.time())
        return max(1, math.ceil((1 - self.tokens) / self.rate))

    def body(self, method: str, retry_after: int) -> bytes:
        """Nova's 429 document (the ``overLimit`` fault of its rate limit middleware)."""
        return json.dumps({"overLimit": {
            "code": 429, "message": "This request was rate-limited.",
            "details": f"Only {self.rate:g} {method} request(s) can be made to "
                       f"{self.service} every second.",
            "retryAfter": str(retry_after)}}).encode()


@attrs.frozen
class Injected:
    """One fault the proxy injected."""

    t: float
    kind: str
    service: str
    method: str
    path: str
    detail: str = ""


class FaultProxy:
    """Start with :meth:`start` (or ``with``); ``upstreams`` maps service type to the URL
    its catalog names (``{"compute": "http://127.0.0.1:8774/v2.1", ...}``)."""

    def __init__(self, upstreams: dict[str, str], *, seed: int = 0,
                 max_faults: int | None = None) -> None:
        self.upstreams = dict(upstreams)
        #: A clouds.yaml that goes through this proxy, once one is written for a test.
        self.clouds_yaml_path: Path | None = None
        self.rules: list[Rule] = []
        self.injected: list[Injected] = []
        self.forwarded = 0
        #: Every request that reached the proxy (faulted or not).
        self.received = 0
        self.max_faults = max_faults
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._servers: dict[str, http.server.ThreadingHTTPServer] = {}
        self._threads: list[threading.Thread] = []
        self._seen_servers: dict[str, int] = {}
        self._building: set[str] = set()
        self.endpoints: dict[str, str] = {}
        #: The token bucket of each throttled service (see :meth:`throttle`).
        self.throttles: dict[str, Throttle] = {}

    # -- life cycle -------------------------------------------------------------------
    def start(self) -> FaultProxy:
        for service, url in self.upstreams.items():
            server = _Server(("127.0.0.1", 0), _handler(self, service))
            self._servers[service] = server
            parts = urlsplit(url)
            self.endpoints[service] = urlunsplit(
                (parts.scheme, f"127.0.0.1:{server.server_address[1]}", parts.path, "", ""))
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                      name=f"fault-proxy-{service}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- rules ---------------------------------------------------------------------
    def add(self, *rules: Rule) -> FaultProxy:
        with self._lock:
            self.rules.extend(rules)
        return self

    def clear(self) -> None:
        """Drop every rule and throttle: requests pass unchanged from now on."""
        with self._lock:
            self.rules.clear()
            self.throttles.clear()

    def throttle(self, service: str, rate: float, burst: float,
                 methods: tuple[str, ...] | None = None) -> Throttle:
        """Throttle ``service`` (its ``methods`` only, when given) with a token bucket of
        ``rate`` requests a second and ``burst`` at once; returns the bucket, which
        counts what it let through and the 429s it sent."""
        if service not in self.upstreams:
            raise ValueError(f"no upstream named {service!r}: {', '.join(self.upstreams)}")
        bucket = Throttle(service, float(rate), float(burst),
                          tuple(m.upper() for m in methods) if methods else None)
        with self._lock:
            self.throttles[service] = bucket
        return bucket

    def throttled(self) -> int:
        """429s the token buckets sent, all services together."""
        with self._lock:
            return sum(bucket.refused for bucket in self.throttles.values())

    def _throttle(self, service: str, method: str) -> tuple[Throttle, int] | None:
        with self._lock:
            bucket = self.throttles.get(service)
            wait = bucket.take(method) if bucket is not None else None
            if wait is not None:
                self.received += 1  # answered here: _pick never sees it
        return (bucket, wait) if bucket is not None and wait is not None else None

    def counts(self) -> dict[str, int]:
        """Injected faults by kind."""
        found: dict[str, int] = {}
        for fault in self.injected:
            found[fault.kind] = found.get(fault.kind, 0) + 1
        return found

    def _pick(self, service: str, method: str, path: str) -> list[Rule]:
        """The rules that fire for this request (at most one of the kinds that answer)."""
        with self._lock:
            self.received += 1
            if self.max_faults is not None and len(self.injected) >= self.max_faults:
                return []
            chosen = []
            for rule in self.rules:
                if rule.count is not None and rule.fired >= rule.count:
                    continue
                if not rule.matches(service, method, path):
                    continue
                if rule.kind in ("hide_new", "conflict_building"):
                    chosen.append(rule)  # decided on the reply, not by chance
                elif self._random.random() < rule.probability:
                    chosen.append(rule)
            return chosen

    def _record(self, rule: Rule, service: str, method: str, path: str,
                detail: str = "") -> None:
        with self._lock:
            rule.fired += 1
            self.injected.append(Injected(time.time(), rule.kind, service, method, path,
                                          detail))

    # -- clouds.yaml ------------------------------------------------------------------
    def clouds_yaml(self, source: Path, cloud: str, dest: Path) -> Path:
        """A copy of ``source`` where ``cloud`` reaches its services through this proxy."""
        import yaml

        from cloudnorm.testing.openstack import clouds_yaml as writer

        with open(source, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
        entry = document["clouds"][cloud]
        for service, url in self.endpoints.items():
            entry[f"{service}_endpoint_override"] = url
        return writer.write(Path(dest), {"clouds": {cloud: entry}})

    def clouds_yaml_endpoint(self, source: Path, cloud: str, dest: Path,
                             service: str | None = None) -> Path:
        """A copy of ``source``'s entry ``cloud`` (a cloudnorm provider that takes an
        ``endpoint_url:``, such as aws or gce) whose endpoint is this proxy's ``service``
        (the only upstream when None)."""
        import yaml

        if service is None:
            (service,) = self.endpoints
        with open(source, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
        entry = document["clouds"][cloud]
        entry["cloudnorm"] = {**entry.get("cloudnorm", {}),
                              "endpoint_url": self.endpoints[service].rstrip("/")}
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump({"clouds": {cloud: entry}}, handle, sort_keys=False)
        return Path(dest)

    # -- eventual consistency -------------------------------------------------------------
    def _rewrite_servers(self, rule: Rule, body: bytes, service: str, method: str,
                         path: str) -> bytes:
        try:
            data = json.loads(body)
        except ValueError:
            return body
        servers = data.get(rule.items_key) if isinstance(data, dict) else None
        if not isinstance(servers, list):
            return body
        kept = []
        with self._lock:
            for server in servers:
                sid = str(server.get(rule.id_key)) if isinstance(server, dict) else ""
                seen = self._seen_servers.get(sid, 0)
                self._seen_servers[sid] = seen + 1
                if seen < rule.polls and (rule.count is None or rule.fired < rule.count):
                    rule.fired += 1
                    self.injected.append(Injected(time.time(), rule.kind, service, method,
                                                  path, f"hid server {sid}"))
                    continue
                kept.append(server)
        if len(kept) == len(servers):
            return body
        data[rule.items_key] = kept
        return json.dumps(data).encode()

    def _note_building(self, body: bytes) -> None:
        try:
            data = json.loads(body)
        except ValueError:
            return
        records = []
        if isinstance(data, dict):
            if isinstance(data.get("server"), dict):
                records = [data["server"]]
            elif isinstance(data.get("servers"), list):
                records = data["servers"]
        with self._lock:
            for record in records:
                if not isinstance(record, dict) or "id" not in record:
                    continue
                if str(record.get("status", "BUILD")).upper() == "BUILD":
                    self._building.add(str(record["id"]))
                else:
                    self._building.discard(str(record["id"]))

    def _is_building(self, path: str) -> bool:
        match = re.search(r"/servers/([0-9a-f-]{36})/action", path)
        if match is None:
            return False
        with self._lock:
            return match.group(1) in self._building


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _handler(proxy: FaultProxy, service: str) -> type[http.server.BaseHTTPRequestHandler]:
    upstream = urlsplit(proxy.upstreams[service])

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        @property
        def proxy_netloc(self) -> str:
            return f"127.0.0.1:{self.server.server_address[1]}"  # type: ignore[index]

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # the services log every request already

        def _relay(self) -> None:
            method = self.command
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path
            refused = proxy._throttle(service, method)
            if refused is not None:
                bucket, wait = refused
                return self._answer(429, bucket.body(method, wait), wait)
            rules = proxy._pick(service, method, urlsplit(path).path)
            by_kind = {r.kind: r for r in rules}
            for kind in ("slow",):
                if kind in by_kind:
                    proxy._record(by_kind[kind], service, method, path)
                    time.sleep(by_kind[kind].delay)
            if "reset" in by_kind:
                proxy._record(by_kind["reset"], service, method, path)
                return self._reset()
            if "status" in by_kind:
                rule = by_kind["status"]
                proxy._record(rule, service, method, path, str(rule.status))
                return self._answer(rule.status, rule.body if rule.body is not None
                                    else _status_body(rule.status), rule.retry_after,
                                    rule.content_type)
            conflict = by_kind.get("conflict_building")
            if conflict is not None and method == "POST" and proxy._is_building(path) and (
                    conflict.count is None or conflict.fired < conflict.count):
                proxy._record(conflict, service, method, path, "409 while building")
                return self._answer(409, _status_body(409), None)
            status, headers, reply = self._forward(method, path, body)
            # Links in replies (version documents, pagination) must lead back through
            # the proxy, or clients would follow them around it.
            reply = reply.replace(upstream.netloc.encode(), self.proxy_netloc.encode())
            headers = [(k, v.replace(upstream.netloc, self.proxy_netloc)) for k, v in headers]
            if service == "compute":
                proxy._note_building(reply)
            if "reset_after" in by_kind:
                proxy._record(by_kind["reset_after"], service, method, path, f"lost {status}")
                return self._reset()
            hide = by_kind.get("hide_new")
            if hide is not None and method == "GET" and status == 200:
                reply = proxy._rewrite_servers(hide, reply, service, method, path)
            if "truncate" in by_kind and len(reply) > 1:
                proxy._record(by_kind["truncate"], service, method, path)
                return self._send(status, headers, reply, cut=len(reply) // 2)
            if "malformed" in by_kind and reply:
                proxy._record(by_kind["malformed"], service, method, path)
                reply = b"<html><body>502 upstream sent garbage</body></html>"[:len(reply) + 40]
            with proxy._lock:
                proxy.forwarded += 1
            return self._send(status, headers, reply)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _relay

        def _forward(self, method: str, path: str, body: bytes
                     ) -> tuple[int, list[tuple[str, str]], bytes]:
            conn = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port,
                                              timeout=120)
            try:
                # The client's Host header goes along: services build their links from it,
                # so the links they return point back at the proxy.
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("connection", "keep-alive", "content-length")}
                if body:
                    headers["Content-Length"] = str(len(body))
                conn.request(method, path, body=body or None, headers=headers)
                resp = conn.getresponse()
                reply = resp.read()
                kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in (
                    "connection", "keep-alive", "transfer-encoding", "content-length")]
                return resp.status, kept, reply
            finally:
                conn.close()

        def _answer(self, status: int, body: bytes, retry_after: float | None,
                    content_type: str = "application/json") -> None:
            headers = [("Content-Type", content_type)]
            if retry_after is not None:
                headers.append(("Retry-After", f"{retry_after:g}"))
            self._send(status, headers, body)

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes,
                  cut: int | None = None) -> None:
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            if cut is not None:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body if cut is None else body[:cut])
            self.wfile.flush()

        def _reset(self) -> None:
            # SO_LINGER 0: close sends RST, as a crashed load balancer does.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.close_connection = True

    return Handler


def _status_body(status: int) -> bytes:
    body = _BODIES.get(status) or {"computeFault": {
        "code": status, "message": f"injected fault: the service answered {status}"}}
    return json.dumps(body).encode()


def ec2_error(code: str, message: str = "injected fault") -> bytes:
    """The XML error document of EC2's query API (what botocore parses into a
    ``ClientError`` with ``code``); send it with ``content_type="text/xml"``."""
    from xml.sax.saxutils import escape

    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>'
            f"{escape(code)}</Code><Message>{escape(message)}</Message></Error></Errors>"
            "<RequestID>00000000-0000-0000-0000-fault0injected</RequestID></Response>"
            ).encode()


_GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                  429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def google_error(code: int, reason: str, message: str = "injected fault") -> bytes:
    """The JSON error document of Google's REST APIs: HTTP ``code`` and one error with
    ``reason`` (``rateLimitExceeded``, ``backendError``...)."""
    return json.dumps({"error": {"code": code, "message": message, "errors": [
        {"message": message, "domain": "usageLimits" if "Limit" in reason else "global",
         "reason": reason}], "status": _GOOGLE_STATUS.get(code, "UNKNOWN")}}).encode()


def catalog_endpoints(conn: Any, services: tuple[str, ...] = ("compute", "image", "network")
                      ) -> dict[str, str]:
    """The URL of each service for an ``<service>_endpoint_override`` (what the proxy fronts).

    openstacksdk takes an override of compute and network as the versioned API root,
    but discovers Glance's version below the override: so the image service gets the
    catalog's unversioned URL and the others the discovered one.
    """
    catalog = conn.session.auth.get_access(conn.session).service_catalog
    found = {}
    for service in services:
        if service == "image":
            found[service] = catalog.url_for(service_type=service, interface="public",
                                             region_name=conn.config.region_name)
        else:
            found[service] = getattr(conn, service).get_endpoint()
    return found


@contextlib.contextmanager
def in_front_of(sandbox: Any, profile: str, cloud: str, clouds_yaml: Path,
                services: tuple[str, ...] = ("compute", "image", "network"),
                seed: int = 0) -> Iterator[FaultProxy]:
    """A fault proxy in front of ``services`` of a running local OpenStack's ``profile``,
    and at ``clouds_yaml`` (its ``clouds_yaml_path``) a clouds.yaml whose entry ``cloud``
    reaches them through it."""
    sdk = sandbox.connect(profile)
    try:
        upstreams = catalog_endpoints(sdk, services)
    finally:
        sdk.close()
    with FaultProxy(upstreams, seed=seed) as running:
        running.clouds_yaml_path = running.clouds_yaml(sandbox.clouds_yaml, cloud, clouds_yaml)
        yield running


def summary(proxy: FaultProxy) -> Iterator[str]:
    yield (f"{proxy.received} requests received, {proxy.forwarded} passed through, "
           f"{len(proxy.injected)} faults injected")
    for kind, number in sorted(proxy.counts().items()):
        yield f"  {kind}: {number}"
    for bucket in proxy.throttles.values():
        yield (f"  throttled {bucket.service} ({bucket.rate:g}/s, burst {bucket.burst:g}): "
               f"{bucket.passed} passed, {bucket.refused} answered 429")

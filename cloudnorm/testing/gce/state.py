"""The stores of the local Compute Engine, its clock (changes scheduled for later, applied
when a request arrives), resource ids, the project, zone and region lookups, and the
Operations that writes return."""

from __future__ import annotations

import heapq
import itertools
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloudnorm.testing.gce import catalog
from cloudnorm.testing.gce.common import ApiError, Pool, not_found, timestamp


class ComputeState:
    """What the local Compute Engine holds, its clock, lookups and operations; the mixins
    in :mod:`.images`, :mod:`.networks`, :mod:`.instances` and :mod:`.guest_attributes` act
    on it, and :class:`.compute.Compute` seeds it."""

    def __init__(self, base_url: str, console_dir: Path, boot_seconds: float = 0.6,
                 delete_seconds: float = 0.4, firewall_seconds: float = 0.2) -> None:
        self.base = base_url.rstrip("/") + "/compute/v1/"
        self.console_dir = console_dir
        self.boot_seconds = boot_seconds
        self.delete_seconds = delete_seconds
        self.firewall_seconds = firewall_seconds
        self.lock = threading.RLock()
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self.projects: dict[str, dict[str, Any]] = {}
        self.images: dict[str, dict[str, dict[str, Any]]] = {}
        self.networks: dict[str, dict[str, dict[str, Any]]] = {}
        self.subnetworks: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        self.firewalls: dict[str, dict[str, dict[str, Any]]] = {}
        self.instances: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        self.disks: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        self.operations: dict[str, dict[str, Any]] = {}  # "project/scope/name" -> record
        #: Guest attributes by instance selfLink: namespace -> key -> value.
        self.guest_attributes: dict[str, dict[str, dict[str, str]]] = {}
        self.request_operations: dict[str, dict[str, Any]] = {}  # requestId -> operation
        self.nat_pool = Pool([str(h) for h in reversed(list(catalog.NAT_ADDRESSES.hosts()))])
        self.internal_pools: dict[str, Pool] = {}
        #: Errors the next instance inserts' operations end with (after the insert was
        #: accepted), as GCE reports a zone out of capacity: the instance goes away.
        self.insert_failures: list[ApiError] = []

    # -- links and time --------------------------------------------------------------
    def link(self, project: str, *parts: str) -> str:
        return f"{self.base}projects/{project}/" + "/".join(parts)

    def schedule(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (time.monotonic() + delay, next(self._sequence), action))

    def advance(self) -> None:
        """Apply every change whose time has come (call with the lock held)."""
        now = time.monotonic()
        while self._events and self._events[0][0] <= now:
            _, _, action = heapq.heappop(self._events)
            action()

    def new_id(self) -> str:
        return str(secrets.randbits(62) | (1 << 62))

    # -- lookups -----------------------------------------------------------------------
    def project(self, project: str) -> dict[str, Any]:
        if project not in self.projects:
            raise not_found(f"projects/{project}")
        return self.projects[project]

    def zone(self, project: str, zone: str) -> str:
        self.project(project)
        if zone not in catalog.ZONES:
            raise not_found(f"projects/{project}/zones/{zone}")
        return zone

    def region(self, project: str, region: str) -> str:
        self.project(project)
        if region not in {z.rsplit("-", 1)[0] for z in catalog.ZONES}:
            raise not_found(f"projects/{project}/regions/{region}")
        return region

    # -- operations --------------------------------------------------------------------
    def new_operation(self, project: str, scope: str, kind: str, target: str, target_id: str,
                      request_id: str | None) -> dict[str, Any]:
        if request_id and request_id in self.request_operations:
            return self.request_operations[request_id]
        name = f"operation-{int(time.time() * 1000)}-{secrets.token_hex(6)}-" \
               f"{secrets.token_hex(4)}-{secrets.token_hex(4)}"
        record = {"kind": "compute#operation", "id": self.new_id(), "name": name,
                  "operationType": kind, "targetLink": target, "targetId": target_id,
                  "status": "RUNNING", "user": "cloudnorm-sandbox@example.com", "progress": 0,
                  "insertTime": timestamp(), "startTime": timestamp(),
                  "selfLink": self.link(project, scope, "operations", name)}
        if scope.startswith("zones/"):
            record["zone"] = self.link(project, scope)
        self.operations[f"{project}/{scope}/{name}"] = record
        if request_id:
            self.request_operations[request_id] = record
        return record

    @staticmethod
    def finish(operation: dict[str, Any], error: ApiError | None = None) -> None:
        operation.update(status="DONE", progress=100, endTime=timestamp())
        if error is not None:
            operation["error"] = {"errors": [{"code": error.reason, "message": error.message}]}
            operation["httpErrorStatusCode"] = error.code
            operation["httpErrorMessage"] = error.reason.upper()

    def get_operation(self, project: str, scope: str, name: str) -> dict[str, Any]:
        self.project(project)
        key = f"{project}/{scope}/{name}"
        if key not in self.operations:
            raise not_found(f"projects/{project}/{scope}/operations/{name}")
        return self.operations[key]

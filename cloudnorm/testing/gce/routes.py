"""The REST routes of the local Compute Engine: a request's method and path matched to a
handler, which answers from a :class:`.compute.Compute` (with its lock held and its clock
advanced)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from cloudnorm.testing.gce import catalog
from cloudnorm.testing.gce.common import ApiError, invalid, not_found
from cloudnorm.testing.gce.compute import Compute
from cloudnorm.testing.gce.filters import compile_filter, page

_WAIT_LIMIT = 10.0  # GCE's wait answers after at most 2 minutes; tests want less


class Api:
    """The REST routes over a :class:`Compute`."""

    def __init__(self, compute: Compute) -> None:
        self.compute = compute
        p, z, n = r"(?P<project>[^/]+)", r"(?P<zone>[^/]+)", r"(?P<name>[^/]+)"
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Any]]] = [
            (method, re.compile(pattern), handler) for method, pattern, handler in (
                ("GET", rf"projects/{p}", self.get_project),
                ("GET", rf"projects/{p}/zones", self.list_zones),
                ("GET", rf"projects/{p}/zones/{z}", self.get_zone),
                ("GET", rf"projects/{p}/global/images", self.list_images),
                ("GET", rf"projects/{p}/global/images/family/{n}", self.image_from_family),
                ("GET", rf"projects/{p}/global/images/{n}", self.get_image),
                ("GET", rf"projects/{p}/zones/{z}/machineTypes", self.list_machine_types),
                ("GET", rf"projects/{p}/zones/{z}/machineTypes/{n}", self.get_machine_type),
                ("GET", rf"projects/{p}/global/networks", self.list_networks),
                ("GET", rf"projects/{p}/global/networks/{n}", self.get_network),
                ("GET", rf"projects/{p}/regions/(?P<region>[^/]+)/subnetworks",
                 self.list_subnetworks),
                ("GET", rf"projects/{p}/regions/(?P<region>[^/]+)/subnetworks/{n}",
                 self.get_subnetwork),
                ("GET", rf"projects/{p}/global/firewalls", self.list_firewalls),
                ("POST", rf"projects/{p}/global/firewalls", self.insert_firewall),
                ("GET", rf"projects/{p}/global/firewalls/{n}", self.get_firewall),
                ("DELETE", rf"projects/{p}/global/firewalls/{n}", self.delete_firewall),
                ("GET", rf"projects/{p}/zones/{z}/instances", self.list_instances),
                ("POST", rf"projects/{p}/zones/{z}/instances", self.insert_instance),
                ("GET", rf"projects/{p}/zones/{z}/instances/{n}", self.get_instance),
                ("DELETE", rf"projects/{p}/zones/{z}/instances/{n}", self.delete_instance),
                ("GET", rf"projects/{p}/zones/{z}/instances/{n}/serialPort", self.serial_port),
                ("POST", rf"projects/{p}/zones/{z}/instances/{n}/setMetadata",
                 self.set_metadata),
                ("GET", rf"projects/{p}/zones/{z}/instances/{n}/getGuestAttributes",
                 self.guest_attributes),
                # Not the Compute API: the guest's own PUT to its metadata server, which the
                # data plane makes on the instance's behalf.
                ("PUT", rf"projects/{p}/zones/{z}/instances/{n}/guest-attributes/"
                 r"(?P<namespace>[^/]+)/(?P<key>[^/]+)", self.put_guest_attribute),
                ("GET", rf"projects/{p}/aggregated/instances", self.aggregated_instances),
                ("GET", rf"projects/{p}/zones/{z}/disks", self.list_disks),
                ("GET", rf"projects/{p}/zones/{z}/disks/{n}", self.get_disk),
                ("DELETE", rf"projects/{p}/zones/{z}/disks/{n}", self.delete_disk),
                ("GET", rf"projects/{p}/zones/{z}/operations/{n}", self.get_zone_operation),
                ("POST", rf"projects/{p}/zones/{z}/operations/{n}/wait", self.wait_zone_operation),
                ("GET", rf"projects/{p}/global/operations/{n}", self.get_global_operation),
                ("POST", rf"projects/{p}/global/operations/{n}/wait",
                 self.wait_global_operation),
            )]

    def dispatch(self, method: str, path: str, query: dict[str, str],
                 body: dict[str, Any] | None) -> dict[str, Any]:
        if not path.startswith("/compute/v1/"):
            raise ApiError(404, "notFound", f"The requested URL {path} was not found")
        rest = path[len("/compute/v1/"):].rstrip("/")
        allowed = False
        for verb, pattern, handler in self.routes:
            match = pattern.fullmatch(rest)
            if match:
                if verb != method:
                    allowed = True
                    continue
                with self.compute.lock:
                    self.compute.advance()
                    return handler(query=query, body=body or {}, **match.groupdict())
        if allowed:
            raise ApiError(405, "httpMethodNotAllowed", f"Method {method} is not allowed")
        raise ApiError(404, "notFound", f"The requested URL {path} was not found")

    # -- projects and zones ------------------------------------------------------------
    def get_project(self, project: str, **_: Any) -> dict[str, Any]:
        state = self.compute.project(project)
        return {"kind": "compute#project", "id": state["id"], "name": project,
                "creationTimestamp": state["created"],
                "commonInstanceMetadata": {
                    "kind": "compute#metadata", "fingerprint": state["fingerprint"],
                    "items": [{"key": k, "value": v} for k, v in state["metadata"].items()]},
                "selfLink": self.compute.link(project).rstrip("/"),
                "defaultServiceAccount": "123456789012-compute@developer.gserviceaccount.com",
                "xpnProjectStatus": "UNSPECIFIED_XPN_PROJECT_STATUS",
                "defaultNetworkTier": "PREMIUM",
                "quotas": [{"metric": "FIREWALLS", "limit": 200.0,
                            "usage": float(len(self.compute.firewalls[project]))}]}

    def _zone(self, project: str, zone: str) -> dict[str, Any]:
        region = zone.rsplit("-", 1)[0]
        return {"kind": "compute#zone", "id": str(2000 + catalog.ZONES.index(zone)),
                "name": zone, "status": "UP", "region": self.compute.link(project, "regions",
                                                                           region),
                "selfLink": self.compute.link(project, "zones", zone),
                "availableCpuPlatforms": ["Intel Broadwell", "AMD Milan"]}

    def list_zones(self, project: str, query: dict[str, str], **_: Any) -> dict[str, Any]:
        self.compute.project(project)
        return page([self._zone(project, z) for z in catalog.ZONES], query, "compute#zoneList",
                    self.compute.link(project, "zones"))

    def get_zone(self, project: str, zone: str, **_: Any) -> dict[str, Any]:
        return self._zone(project, self.compute.zone(project, zone))

    # -- images and machine types ------------------------------------------------------
    def list_images(self, project: str, query: dict[str, str], **_: Any) -> dict[str, Any]:
        self.compute.project(project)
        return page(sorted(self.compute.images[project].values(), key=lambda i: i["name"]),
                    query, "compute#imageList", self.compute.link(project, "global", "images"))

    def get_image(self, project: str, name: str, **_: Any) -> dict[str, Any]:
        return self.compute.image(project, name)

    def image_from_family(self, project: str, name: str, **_: Any) -> dict[str, Any]:
        return self.compute.image_from_family(project, name)

    def list_machine_types(self, project: str, zone: str, query: dict[str, str],
                           **_: Any) -> dict[str, Any]:
        return page(self.compute.machine_types(project, zone), query,
                    "compute#machineTypeList",
                    self.compute.link(project, "zones", zone, "machineTypes"))

    def get_machine_type(self, project: str, zone: str, name: str, **_: Any) -> dict[str, Any]:
        for record in self.compute.machine_types(project, zone):
            if record["name"] == name:
                return record
        raise not_found(f"projects/{project}/zones/{zone}/machineTypes/{name}")

    # -- networks ----------------------------------------------------------------------
    def list_networks(self, project: str, query: dict[str, str], **_: Any) -> dict[str, Any]:
        self.compute.project(project)
        return page(sorted(self.compute.networks[project].values(), key=lambda n: n["name"]),
                    query, "compute#networkList",
                    self.compute.link(project, "global", "networks"))

    def get_network(self, project: str, name: str, **_: Any) -> dict[str, Any]:
        return self.compute.network(project, name)

    def list_subnetworks(self, project: str, region: str, query: dict[str, str],
                         **_: Any) -> dict[str, Any]:
        self.compute.region(project, region)
        found = self.compute.subnetworks[project].get(region, {})
        return page(sorted(found.values(), key=lambda s: s["name"]), query,
                    "compute#subnetworkList",
                    self.compute.link(project, "regions", region, "subnetworks"))

    def get_subnetwork(self, project: str, region: str, name: str, **_: Any) -> dict[str, Any]:
        self.compute.region(project, region)
        found = self.compute.subnetworks[project].get(region, {}).get(name)
        if found is None:
            raise not_found(f"projects/{project}/regions/{region}/subnetworks/{name}")
        return found

    # -- firewalls ---------------------------------------------------------------------
    def list_firewalls(self, project: str, query: dict[str, str], **_: Any) -> dict[str, Any]:
        self.compute.project(project)
        return page(sorted(self.compute.firewalls[project].values(), key=lambda f: f["name"]),
                    query, "compute#firewallList",
                    self.compute.link(project, "global", "firewalls"))

    def get_firewall(self, project: str, name: str, **_: Any) -> dict[str, Any]:
        self.compute.project(project)
        found = self.compute.firewalls[project].get(name)
        if found is None:
            raise not_found(f"projects/{project}/global/firewalls/{name}")
        return found

    def insert_firewall(self, project: str, query: dict[str, str], body: dict[str, Any],
                        **_: Any) -> dict[str, Any]:
        return self.compute.insert_firewall(project, body, query.get("requestId"))

    def delete_firewall(self, project: str, name: str, **_: Any) -> dict[str, Any]:
        return self.compute.delete_firewall(project, name)

    # -- instances and disks -----------------------------------------------------------
    def list_instances(self, project: str, zone: str, query: dict[str, str],
                       **_: Any) -> dict[str, Any]:
        self.compute.zone(project, zone)
        found = self.compute.instances[project].get(zone, {})
        return page(sorted(found.values(), key=lambda i: i["name"]), query,
                    "compute#instanceList",
                    self.compute.link(project, "zones", zone, "instances"))

    def insert_instance(self, project: str, zone: str, query: dict[str, str],
                        body: dict[str, Any], **_: Any) -> dict[str, Any]:
        return self.compute.insert_instance(project, zone, body, query.get("requestId"))

    def get_instance(self, project: str, zone: str, name: str, **_: Any) -> dict[str, Any]:
        return self.compute.instance(project, zone, name)

    def delete_instance(self, project: str, zone: str, name: str, **_: Any) -> dict[str, Any]:
        return self.compute.delete_instance(project, zone, name)

    def set_metadata(self, project: str, zone: str, name: str, body: dict[str, Any],
                     **_: Any) -> dict[str, Any]:
        return self.compute.set_metadata(project, zone, name, body)

    def serial_port(self, project: str, zone: str, name: str, query: dict[str, str],
                    **_: Any) -> dict[str, Any]:
        return self.compute.serial_port(project, zone, name, int(query.get("port") or 1),
                                        int(query.get("start") or 0))

    def guest_attributes(self, project: str, zone: str, name: str, query: dict[str, str],
                         **_: Any) -> dict[str, Any]:
        return self.compute.get_guest_attributes(project, zone, name,
                                                 query.get("queryPath") or "",
                                                 query.get("variableKey") or "")

    def put_guest_attribute(self, project: str, zone: str, name: str, namespace: str,
                            key: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        value = body.get("value")
        if not isinstance(value, str):
            raise invalid("value", value, "A guest attribute's value is text.")
        self.compute.put_guest_attribute(project, zone, name, namespace, key, value)
        return {}

    def aggregated_instances(self, project: str, query: dict[str, str],
                             **_: Any) -> dict[str, Any]:
        self.compute.project(project)
        predicate = compile_filter(query["filter"]) if query.get("filter") else None
        items: dict[str, Any] = {}
        for zone in catalog.ZONES:
            found = [i for i in self.compute.instances[project].get(zone, {}).values()
                     if predicate is None or predicate(i)]
            items[f"zones/{zone}"] = {"instances": found} if found else {"warning": {
                "code": "NO_RESULTS_ON_PAGE",
                "message": "There are no results for scope 'zones/" + zone + "' on this page.",
                "data": [{"key": "scope", "value": f"zones/{zone}"}]}}
        return {"kind": "compute#instanceAggregatedList", "items": items,
                "selfLink": self.compute.link(project, "aggregated", "instances")}

    def list_disks(self, project: str, zone: str, query: dict[str, str],
                   **_: Any) -> dict[str, Any]:
        self.compute.zone(project, zone)
        found = self.compute.disks[project].get(zone, {})
        return page(sorted(found.values(), key=lambda d: d["name"]), query,
                    "compute#diskList", self.compute.link(project, "zones", zone, "disks"))

    def get_disk(self, project: str, zone: str, name: str, **_: Any) -> dict[str, Any]:
        return self.compute.disk(project, zone, name)

    def delete_disk(self, project: str, zone: str, name: str, **_: Any) -> dict[str, Any]:
        return self.compute.delete_disk(project, zone, name)

    # -- operations --------------------------------------------------------------------
    def get_zone_operation(self, project: str, zone: str, name: str, **_: Any) -> dict[str, Any]:
        return self.compute.get_operation(project, f"zones/{self.compute.zone(project, zone)}",
                                          name)

    def get_global_operation(self, project: str, name: str, **_: Any) -> dict[str, Any]:
        return self.compute.get_operation(project, "global", name)

    def _wait(self, project: str, scope: str, name: str) -> dict[str, Any]:
        operation = self.compute.get_operation(project, scope, name)
        deadline = time.monotonic() + _WAIT_LIMIT
        # Called with the lock held: let other requests in while time passes.
        while operation["status"] != "DONE" and time.monotonic() < deadline:
            self.compute.lock.release()
            try:
                time.sleep(0.02)
            finally:
                self.compute.lock.acquire()
            self.compute.advance()
        return operation

    def wait_zone_operation(self, project: str, zone: str, name: str,
                            **_: Any) -> dict[str, Any]:
        return self._wait(project, f"zones/{self.compute.zone(project, zone)}", name)

    def wait_global_operation(self, project: str, name: str, **_: Any) -> dict[str, Any]:
        return self._wait(project, "global", name)

"""The local Compute Engine: compute v1 REST on 127.0.0.1, answering as Google does.

What it serves (under ``/compute/v1/``) is what cloudnorm and the SSH data plane use:
projects (with their common instance metadata), zones, images (``get``, ``list``,
``getFromFamily``), machine types, networks, subnetworks, firewalls, instances (``insert``,
``get``, ``list``, ``delete``, ``aggregatedList``, ``getSerialPortOutput``,
``getGuestAttributes``), disks, and zone and global operations (``get`` and ``wait``). It
checks requests the way GCE does (names, labels, metadata keys, machine types, images, the
subnetwork a custom network needs, the CPUS quota) and answers errors in Google's shape::

    {"error": {"code": 404, "message": "...", "errors": [{"message": "...",
               "domain": "global", "reason": "notFound"}]}}

Writes return Operations that finish a moment later: an instance goes PROVISIONING ->
STAGING -> RUNNING (its insert operation is DONE then) and, deleted, STOPPING -> gone. Time
moves on lazily, whenever a request arrives, so nothing runs between requests.

Guest attributes are what the guest writes to its metadata server
(``instance/guest-attributes/<namespace>/<key>``): the data plane makes those writes, on the
instance's behalf, with a ``PUT`` to ``.../instances/<name>/guest-attributes/<ns>/<key>``
(JSON ``{"value": ...}``), which the real Compute API does not have. They are stored only
where the instance's metadata (else the project's) says ``enable-guest-attributes=TRUE``.

Every request is logged as one JSON line (the OpenStack sandbox's format, read with
:func:`cloudnorm.testing.request_log.read_requests`); requests carrying the header
``X-Cloudnorm-Agent: dataplane`` are logged under service ``compute-dataplane``.
"""

from __future__ import annotations

import base64
import datetime
import heapq
import ipaddress
import itertools
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cloudnorm.testing.gce import catalog

_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_METADATA_KEY = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_GUEST_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_-]+")
_PACIFIC = datetime.timezone(datetime.timedelta(hours=-7))
_WAIT_LIMIT = 10.0  # GCE's wait answers after at most 2 minutes; tests want less
_PAGE = 500
_BIOS = ("SeaBIOS (version 1.8.2-google)\r\n"
         "Total RAM Size = 0x0000000080000000 = 2048 MiB\r\n"
         "CPUs found: 2     Max CPUs supported: 2\r\n"
         "Booting from Hard Disk 0...\r\n"
         "[    0.000000] Linux version 5.15.0-1057-gcp (buildd@lcy02-amd64-041) (gcc (Ubuntu "
         "11.4.0-1ubuntu1~22.04) 11.4.0, GNU ld (GNU Binutils for Ubuntu) 2.38) #65-Ubuntu SMP\r\n"
         "[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz-5.15.0-1057-gcp root=LABEL="
         "cloudimg-rootfs ro console=ttyS0,38400n8\r\n")


class ApiError(Exception):
    """An error answer: HTTP ``code``, Google's ``reason`` and ``message``."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "errors": [
            {"message": self.message, "domain": "global", "reason": self.reason}]}}


def _not_found(path: str) -> ApiError:
    return ApiError(404, "notFound", f"The resource '{path}' was not found")


def _guest_attribute_not_found(path: str) -> ApiError:
    # The wording gcloud's compute ssh matches to tell "nothing published" from a failure.
    return ApiError(404, "notFound",
                    f"The resource '{path}' of type 'Guest Attribute' was not found.")


def _invalid(field: str, value: Any, why: str) -> ApiError:
    return ApiError(400, "invalid", f"Invalid value for field '{field}': '{value}'. {why}")


def _now() -> str:
    return datetime.datetime.now(_PACIFIC).isoformat(timespec="milliseconds")


def _fingerprint() -> str:
    return base64.b64encode(secrets.token_bytes(8)).decode()


def _last(link: Any) -> str:
    return str(link or "").rstrip("/").rsplit("/", 1)[-1]


# -- list filters (the subset of GCE's filter syntax cloudnorm's clients send) -----------------
_TOKEN = re.compile(r'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'|'
                    r'(!=|=|:)|([^\s()=!:"\']+))')


def _field(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def compile_filter(expression: str) -> Callable[[dict[str, Any]], bool]:
    """A predicate for GCE's ``filter``: ``field eq 'RE2'`` / ``field ne 'RE2'``, or
    comparisons ``field = value``, ``!=``, ``:`` (``*`` wildcards), parenthesized, joined by
    AND (or juxtaposition) and OR, with NOT."""
    text = expression.strip()
    regex = re.fullmatch(r"(\S+)\s+(eq|ne)\s+(.+)", text)
    if regex:
        field, op, value = regex.groups()
        value = value.strip()
        if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise _invalid("filter", expression, f"Invalid regular expression: {exc}") from exc

        def matches(record: dict[str, Any]) -> bool:
            found = bool(pattern.fullmatch(str(_field(record, field) or "")))
            return found if op == "eq" else not found
        return matches

    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise _invalid("filter", expression, "Invalid list filter expression.")
        position = match.end()
        opening, closing, dquoted, squoted, op, word = match.groups()
        if opening:
            tokens.append(("(", "("))
        elif closing:
            tokens.append((")", ")"))
        elif dquoted is not None or squoted is not None:
            tokens.append(("value", dquoted if dquoted is not None else squoted))
        elif op:
            tokens.append(("op", op))
        elif word:
            tokens.append(("word", word))
    index = 0

    def peek() -> tuple[str, str] | None:
        return tokens[index] if index < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal index
        if index >= len(tokens):
            raise _invalid("filter", expression, "Invalid list filter expression.")
        index += 1
        return tokens[index - 1]

    def comparison() -> Callable[[dict[str, Any]], bool]:
        kind, field = take()
        if kind != "word":
            raise _invalid("filter", expression, "Invalid list filter expression.")
        kind, op = take()
        if kind != "op":
            raise _invalid("filter", expression, "Invalid list filter expression.")
        kind, value = take()
        if kind not in ("word", "value"):
            raise _invalid("filter", expression, "Invalid list filter expression.")

        def test(record: dict[str, Any]) -> bool:
            have = _field(record, field)
            if op == ":":
                if value == "*":
                    return have is not None
                pattern = re.escape(value).replace(r"\*", ".*")
                values = have if isinstance(have, list) else [have]
                return any(re.fullmatch(pattern, str(v)) for v in values if v is not None)
            if isinstance(have, bool):
                have = str(have).lower()
            equal = have is not None and str(have) == value
            return equal if op == "=" else not equal
        return test

    def atom() -> Callable[[dict[str, Any]], bool]:
        token = peek()
        if token == ("word", "NOT"):
            take()
            inner = atom()
            return lambda r: not inner(r)
        if token and token[0] == "(":
            take()
            inner = disjunction()
            if take()[0] != ")":
                raise _invalid("filter", expression, "Invalid list filter expression.")
            return inner
        return comparison()

    def conjunction() -> Callable[[dict[str, Any]], bool]:
        parts = [atom()]
        while (token := peek()) is not None and token[0] != ")" and token != ("word", "OR"):
            if token == ("word", "AND"):
                take()
            parts.append(atom())
        return lambda r: all(p(r) for p in parts)

    def disjunction() -> Callable[[dict[str, Any]], bool]:
        parts = [conjunction()]
        while peek() == ("word", "OR"):
            take()
            parts.append(conjunction())
        return lambda r: any(p(r) for p in parts)

    predicate = disjunction()
    if index != len(tokens):
        raise _invalid("filter", expression, "Invalid list filter expression.")
    return predicate


class _Pool:
    """Addresses of a range handed out in order, skipping those in use."""

    def __init__(self, hosts: list[str]) -> None:
        self._hosts = hosts
        self._next = 0

    def take(self, in_use: set[str], what: str) -> str:
        for _ in range(len(self._hosts)):
            candidate = self._hosts[self._next % len(self._hosts)]
            self._next += 1
            if candidate not in in_use:
                return candidate
        raise ApiError(403, "quotaExceeded", f"Quota exceeded: no free {what} left")


class Compute:
    """The state of the local Compute Engine. Every call holds one lock."""

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
        self._requests: dict[str, dict[str, Any]] = {}  # requestId -> operation
        self._nat = _Pool([str(h) for h in reversed(list(catalog.NAT_ADDRESSES.hosts()))])
        self._internal: dict[str, _Pool] = {}
        #: Errors the next instance inserts' operations end with (after the insert was
        #: accepted), as GCE reports a zone out of capacity: the instance goes away.
        self.insert_failures: list[ApiError] = []
        self.seed()

    # -- links and time --------------------------------------------------------------
    def link(self, project: str, *parts: str) -> str:
        return f"{self.base}projects/{project}/" + "/".join(parts)

    def _schedule(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (time.monotonic() + delay, next(self._sequence), action))

    def advance(self) -> None:
        """Apply every change whose time has come (call with the lock held)."""
        now = time.monotonic()
        while self._events and self._events[0][0] <= now:
            _, _, action = heapq.heappop(self._events)
            action()

    def _id(self) -> str:
        return str(secrets.randbits(62) | (1 << 62))

    # -- seeding -----------------------------------------------------------------------
    def seed(self) -> None:
        for project in (catalog.PROJECT, catalog.OSLOGIN_PROJECT, *catalog.IMAGE_PROJECTS):
            self.projects[project] = {"id": self._id(), "metadata": {},
                                      "fingerprint": _fingerprint(), "created": _now()}
            self.images[project] = {}
            self.networks[project] = {}
            self.subnetworks[project] = {}
            self.firewalls[project] = {}
            self.instances[project] = {}
            self.disks[project] = {}
        self.projects[catalog.OSLOGIN_PROJECT]["metadata"] = {"enable-oslogin": "TRUE"}
        for project, entries in catalog.IMAGES.items():
            newest: dict[str, str] = {}
            for name, created, family, size, arch in sorted(entries, key=lambda e: e[1]):
                newest[family] = name
                self.images[project][name] = {
                    "kind": "compute#image", "id": self._id(), "creationTimestamp": created,
                    "name": name, "description": f"{family}, built on {created[:10]}",
                    "sourceType": "RAW", "status": "READY", "archiveSizeBytes": "3100000000",
                    "diskSizeGb": str(size), "family": family, "architecture": arch,
                    "licenses": [self.link(project, "global", "licenses", family)],
                    "guestOsFeatures": [{"type": "VIRTIO_SCSI_MULTIQUEUE"}, {"type": "GVNIC"},
                                        {"type": "UEFI_COMPATIBLE"}],
                    "selfLink": self.link(project, "global", "images", name),
                    "labelFingerprint": "42WmSpB8rSM=", "storageLocations": ["us", "eu"]}
            for record in self.images[project].values():
                current = newest[record["family"]]
                if record["name"] != current:
                    record["deprecated"] = {
                        "state": "DEPRECATED",
                        "replacement": self.link(project, "global", "images", current)}
        for project in (catalog.PROJECT, catalog.OSLOGIN_PROJECT):
            self._seed_network(project, "default", True,
                               {f"default-{r}": (r, c) for r, c in catalog.DEFAULT_SUBNETS.items()},
                               catalog.default_firewalls)
            self._seed_network(project, catalog.CUSTOM_NETWORK, False, catalog.CUSTOM_SUBNETS,
                               catalog.custom_firewalls)

    def _seed_network(self, project: str, name: str, auto: bool,
                      subnets: dict[str, tuple[str, str]],
                      rules: Callable[[str], list[dict[str, Any]]]) -> None:
        link = self.link(project, "global", "networks", name)
        links = []
        for subnet, (region, cidr) in subnets.items():
            # Auto-mode subnets are all named after the network, one per region.
            subnet_name = name if auto else subnet
            self_link = self.link(project, "regions", region, "subnetworks", subnet_name)
            links.append(self_link)
            network = ipaddress.ip_network(cidr)
            self.subnetworks[project].setdefault(region, {})[subnet_name] = {
                "kind": "compute#subnetwork", "id": self._id(), "creationTimestamp": _now(),
                "name": subnet_name, "network": link, "ipCidrRange": cidr,
                "gatewayAddress": str(network.network_address + 1),
                "region": self.link(project, "regions", region), "selfLink": self_link,
                "privateIpGoogleAccess": False, "fingerprint": _fingerprint(),
                "purpose": "PRIVATE", "stackType": "IPV4_ONLY"}
        self.networks[project][name] = {
            "kind": "compute#network", "id": self._id(), "creationTimestamp": _now(),
            "name": name, "description": "Default network for the project" if auto else "",
            "selfLink": link, "autoCreateSubnetworks": auto, "subnetworks": links,
            "routingConfig": {"routingMode": "REGIONAL"}, "mtu": 1460,
            "networkFirewallPolicyEnforcementOrder": "AFTER_CLASSIC_FIREWALL"}
        for rule in rules(link):
            self._store_firewall(project, dict(rule))

    def _store_firewall(self, project: str, rule: dict[str, Any]) -> dict[str, Any]:
        rule.update({"kind": "compute#firewall", "id": self._id(), "creationTimestamp": _now(),
                     "selfLink": self.link(project, "global", "firewalls", rule["name"]),
                     "disabled": bool(rule.get("disabled", False)),
                     "logConfig": {"enable": False}})
        rule.setdefault("direction", "INGRESS")
        rule.setdefault("priority", 1000)
        self.firewalls[project][rule["name"]] = rule
        return rule

    # -- lookups -----------------------------------------------------------------------
    def project(self, project: str) -> dict[str, Any]:
        if project not in self.projects:
            raise _not_found(f"projects/{project}")
        return self.projects[project]

    def zone(self, project: str, zone: str) -> str:
        self.project(project)
        if zone not in catalog.ZONES:
            raise _not_found(f"projects/{project}/zones/{zone}")
        return zone

    def region(self, project: str, region: str) -> str:
        self.project(project)
        if region not in {z.rsplit("-", 1)[0] for z in catalog.ZONES}:
            raise _not_found(f"projects/{project}/regions/{region}")
        return region

    def machine_types(self, project: str, zone: str) -> list[dict[str, Any]]:
        self.zone(project, zone)
        return [{"kind": "compute#machineType", "id": str(1000 + n), "creationTimestamp":
                 "1969-12-31T16:00:00.000-08:00", "name": name,
                 "description": f"{cpus} vCPU{'s' if cpus > 1 else ''}"
                 + (" (shared core)" if shared else "") + f", {memory / 1024:g} GB RAM",
                 "guestCpus": cpus, "memoryMb": memory, "imageSpaceGb": 0,
                 "maximumPersistentDisks": 16 if shared else 128,
                 "maximumPersistentDisksSizeGb": "3072" if shared else "263168",
                 "zone": zone, "isSharedCpu": shared, "architecture": "X86_64",
                 "selfLink": self.link(project, "zones", zone, "machineTypes", name)}
                for n, (name, cpus, memory, shared) in enumerate(catalog.MACHINE_TYPES)]

    def image(self, project: str, name: str) -> dict[str, Any]:
        self.project(project)
        if name not in self.images[project]:
            raise _not_found(f"projects/{project}/global/images/{name}")
        return self.images[project][name]

    def image_from_family(self, project: str, family: str) -> dict[str, Any]:
        self.project(project)
        members = [i for i in self.images[project].values() if i.get("family") == family
                   and (i.get("deprecated") or {}).get("state", "ACTIVE") == "ACTIVE"]
        if not members:
            raise _not_found(f"projects/{project}/global/images/family/{family}")
        return max(members, key=lambda i: i["creationTimestamp"])

    def resolve_image(self, project: str, source: str) -> dict[str, Any]:
        """An instance's ``sourceImage``: full or partial URL, of an image or a family."""
        match = re.search(r"(?:projects/([^/]+)/)?global/images/(family/)?([^/]+)$", source)
        if not match:
            raise _invalid("resource.disks[0].initializeParams.sourceImage", source,
                           "The URL is malformed.")
        owner, family, name = match.groups()
        owner = owner or project
        image = (self.image_from_family(owner, name) if family else self.image(owner, name))
        state = (image.get("deprecated") or {}).get("state", "ACTIVE")
        if state in ("OBSOLETE", "DELETED"):
            raise ApiError(400, "resourceNotReady",
                           f"The image '{image['selfLink']}' is {state.lower()}")
        return image

    def network(self, project: str, reference: str) -> dict[str, Any]:
        name = _last(reference)
        owner = re.search(r"projects/([^/]+)/", reference)
        where = owner.group(1) if owner else project
        self.project(where)
        if name not in self.networks[where]:
            raise _not_found(f"projects/{where}/global/networks/{name}")
        return self.networks[where][name]

    # -- operations --------------------------------------------------------------------
    def _operation(self, project: str, scope: str, kind: str, target: str, target_id: str,
                   request_id: str | None) -> dict[str, Any]:
        if request_id and request_id in self._requests:
            return self._requests[request_id]
        name = f"operation-{int(time.time() * 1000)}-{secrets.token_hex(6)}-" \
               f"{secrets.token_hex(4)}-{secrets.token_hex(4)}"
        record = {"kind": "compute#operation", "id": self._id(), "name": name,
                  "operationType": kind, "targetLink": target, "targetId": target_id,
                  "status": "RUNNING", "user": "cloudnorm-sandbox@example.com", "progress": 0,
                  "insertTime": _now(), "startTime": _now(),
                  "selfLink": self.link(project, scope, "operations", name)}
        if scope.startswith("zones/"):
            record["zone"] = self.link(project, scope)
        self.operations[f"{project}/{scope}/{name}"] = record
        if request_id:
            self._requests[request_id] = record
        return record

    @staticmethod
    def _finish(operation: dict[str, Any], error: ApiError | None = None) -> None:
        operation.update(status="DONE", progress=100, endTime=_now())
        if error is not None:
            operation["error"] = {"errors": [{"code": error.reason, "message": error.message}]}
            operation["httpErrorStatusCode"] = error.code
            operation["httpErrorMessage"] = error.reason.upper()

    def get_operation(self, project: str, scope: str, name: str) -> dict[str, Any]:
        self.project(project)
        key = f"{project}/{scope}/{name}"
        if key not in self.operations:
            raise _not_found(f"projects/{project}/{scope}/operations/{name}")
        return self.operations[key]

    # -- firewalls -----------------------------------------------------------------------
    def insert_firewall(self, project: str, body: dict[str, Any],
                        request_id: str | None) -> dict[str, Any]:
        self.project(project)
        if request_id and request_id in self._requests:
            return self._requests[request_id]
        name = str(body.get("name") or "")
        if not _NAME.fullmatch(name):
            raise _invalid("resource.name", name, "Must be a match of regex "
                           "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
        if name in self.firewalls[project]:
            raise ApiError(409, "alreadyExists",
                           f"The resource 'projects/{project}/global/firewalls/{name}' "
                           "already exists")
        network = self.network(project, str(body.get("network") or "global/networks/default"))
        allowed, denied = body.get("allowed") or [], body.get("denied") or []
        if bool(allowed) == bool(denied):
            raise _invalid("resource", name, "Exactly one of 'allowed' or 'denied' must be "
                           "specified.")
        for entry in [*allowed, *denied]:
            if str(entry.get("IPProtocol", "")).lower() not in (
                    "tcp", "udp", "icmp", "esp", "ah", "sctp", "ipip", "all", "6", "17", "1"):
                raise _invalid("resource.allowed[0].IPProtocol", entry.get("IPProtocol"),
                               "Unknown protocol.")
        direction = str(body.get("direction") or "INGRESS")
        if direction not in ("INGRESS", "EGRESS"):
            raise _invalid("resource.direction", direction, "Unknown direction.")
        priority = int(body.get("priority", 1000))
        if not 0 <= priority <= 65535:
            raise _invalid("resource.priority", priority, "Must be between 0 and 65535.")
        ranges = list(body.get("sourceRanges") or [])
        for cidr in ranges:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise _invalid("resource.sourceRanges[0]", cidr, "Invalid IP range.") from None
        if direction == "INGRESS" and not (ranges or body.get("sourceTags")
                                           or body.get("sourceServiceAccounts")):
            ranges = ["0.0.0.0/0"]  # GCE's default source for an ingress rule
        for tag in body.get("targetTags") or []:
            if not _NAME.fullmatch(tag):
                raise _invalid("resource.targetTags[0]", tag, "Invalid network tag.")
        rule: dict[str, Any] = {key: body[key] for key in (
            "description", "sourceTags", "targetTags", "sourceServiceAccounts",
            "targetServiceAccounts", "destinationRanges", "disabled") if key in body}
        rule.update({"name": name, "network": network["selfLink"], "priority": priority,
                     "direction": direction, "sourceRanges": ranges,
                     "allowed" if allowed else "denied": allowed or denied})
        link = self.link(project, "global", "firewalls", name)
        operation = self._operation(project, "global", "insert", link, self._id(), request_id)

        def apply() -> None:
            if name in self.firewalls[project]:
                self._finish(operation, ApiError(409, "alreadyExists",
                                                 f"The resource '{link}' already exists"))
                return
            stored = self._store_firewall(project, rule)
            operation["targetId"] = stored["id"]
            self._finish(operation)
        self._schedule(self.firewall_seconds, apply)
        return operation

    def delete_firewall(self, project: str, name: str) -> dict[str, Any]:
        self.project(project)
        rule = self.firewalls[project].get(name)
        if rule is None:
            raise _not_found(f"projects/{project}/global/firewalls/{name}")
        operation = self._operation(project, "global", "delete", rule["selfLink"], rule["id"],
                                    None)

        def apply() -> None:
            self.firewalls[project].pop(name, None)
            self._finish(operation)
        self._schedule(self.firewall_seconds, apply)
        return operation

    # -- instances -----------------------------------------------------------------------
    def _nat_in_use(self) -> set[str]:
        return {a.get("natIP") for zones in self.instances.values() for found in zones.values()
                for i in found.values() for nic in i.get("networkInterfaces", [])
                for a in nic.get("accessConfigs", []) if a.get("natIP")}

    def _internal_address(self, project: str, subnet: dict[str, Any]) -> str:
        key = subnet["selfLink"]
        if key not in self._internal:
            network = ipaddress.ip_network(subnet["ipCidrRange"])
            # GCE keeps the first two and the last two addresses of every subnet.
            self._internal[key] = _Pool([str(h) for h in list(network.hosts())[1:-1]])
        in_use = {nic.get("networkIP") for found in self.instances[project].values()
                  for i in found.values() for nic in i.get("networkInterfaces", [])}
        return self._internal[key].take(in_use, f"addresses in subnet {subnet['name']}")

    def insert_instance(self, project: str, zone: str, body: dict[str, Any],
                        request_id: str | None) -> dict[str, Any]:
        self.zone(project, zone)
        if request_id and request_id in self._requests:
            return self._requests[request_id]
        region = zone.rsplit("-", 1)[0]
        name = str(body.get("name") or "")
        if not _NAME.fullmatch(name):
            raise _invalid("resource.name", name, "Must be a match of regex "
                           "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
        zone_instances = self.instances[project].setdefault(zone, {})
        if name in zone_instances:
            raise ApiError(409, "alreadyExists",
                           f"The resource 'projects/{project}/zones/{zone}/instances/{name}' "
                           "already exists")
        machine_link = str(body.get("machineType") or "")
        machine = next((m for m in self.machine_types(project, zone)
                        if m["name"] == _last(machine_link)), None)
        if machine is None or f"zones/{zone}/" not in machine_link + "/":
            raise _invalid("resource.machineType", machine_link,
                           f"Machine type with name '{_last(machine_link)}' does not exist in "
                           f"zone '{zone}'.")
        labels = dict(body.get("labels") or {})
        self._check_labels(labels, "resource.labels")
        items = list((body.get("metadata") or {}).get("items") or [])
        for item in items:
            if not _METADATA_KEY.fullmatch(str(item.get("key", ""))):
                raise _invalid("resource.metadata", item.get("key"),
                               "Metadata keys must match '[a-zA-Z0-9-_]{1,128}'.")
        if len(json.dumps(items)) > 512 * 1024:
            raise _invalid("resource.metadata", "...", "Metadata exceeds 512 KB.")
        tags = list((body.get("tags") or {}).get("items") or [])
        for tag in tags:
            if not _NAME.fullmatch(tag):
                raise _invalid("resource.tags.items[0]", tag, "Invalid network tag.")
        disks = body.get("disks") or []
        boot = [d for d in disks if d.get("boot")]
        if len(boot) != 1 or not (boot[0].get("initializeParams") or {}).get("sourceImage"):
            raise _invalid("resource.disks", "", "Exactly one boot disk created from an image "
                           "(initializeParams.sourceImage) is required here.")
        params = boot[0]["initializeParams"]
        image = self.resolve_image(project, params["sourceImage"])
        disk_labels = dict(params.get("labels") or {})
        self._check_labels(disk_labels, "resource.disks[0].initializeParams.labels")
        size = int(params.get("diskSizeGb") or image["diskSizeGb"])
        if size < int(image["diskSizeGb"]):
            raise _invalid("resource.disks[0].initializeParams.diskSizeGb", size,
                           f"Requested disk size cannot be smaller than the image size "
                           f"({image['diskSizeGb']} GB).")
        if name in self.disks[project].setdefault(zone, {}):
            raise ApiError(409, "alreadyExists",
                           f"The resource 'projects/{project}/zones/{zone}/disks/{name}' "
                           "already exists")
        nics_in = body.get("networkInterfaces") or [{}]
        nics = []
        for index, nic in enumerate(nics_in):
            network = self.network(project, str(nic.get("network") or "global/networks/default"))
            subnet = self._subnet_for(project, region, network, nic, index)
            accesses = []
            for access in nic.get("accessConfigs") or []:
                if access.get("type", "ONE_TO_ONE_NAT") != "ONE_TO_ONE_NAT":
                    raise _invalid(f"resource.networkInterfaces[{index}].accessConfigs[0].type",
                                   access.get("type"), "Only ONE_TO_ONE_NAT is supported.")
                accesses.append({"kind": "compute#accessConfig", "type": "ONE_TO_ONE_NAT",
                                 "name": access.get("name") or "External NAT",
                                 "natIP": access.get("natIP")
                                 or self._nat.take(self._nat_in_use(), "external addresses"),
                                 "networkTier": access.get("networkTier") or "PREMIUM"})
            nics.append({"kind": "compute#networkInterface", "name": f"nic{index}",
                         "network": network["selfLink"], "subnetwork": subnet["selfLink"],
                         "networkIP": self._internal_address(project, subnet),
                         "accessConfigs": accesses, "fingerprint": _fingerprint(),
                         "stackType": "IPV4_ONLY"})
        used = sum(int(m["guestCpus"]) for z, found in self.instances[project].items()
                   if z.rsplit("-", 1)[0] == region for i in found.values()
                   for m in self.machine_types(project, z) if m["selfLink"] == i["machineType"])
        if used + int(machine["guestCpus"]) > catalog.CPU_QUOTA:
            raise ApiError(403, "quotaExceeded",
                           f"Quota 'CPUS' exceeded.  Limit: {catalog.CPU_QUOTA}.0 in region "
                           f"{region}.")
        instance_id = self._id()
        link = self.link(project, "zones", zone, "instances", name)
        disk_link = self.link(project, "zones", zone, "disks", name)
        self.disks[project][zone][name] = {
            "kind": "compute#disk", "id": self._id(), "creationTimestamp": _now(),
            "name": name, "sizeGb": str(size), "zone": self.link(project, "zones", zone),
            "status": "READY", "selfLink": disk_link, "sourceImage": image["selfLink"],
            "sourceImageId": image["id"], "type": self.link(project, "zones", zone,
                                                             "diskTypes", "pd-standard"),
            "labels": disk_labels, "users": [link], "architecture": image.get("architecture")}
        instance = {
            "kind": "compute#instance", "id": instance_id, "creationTimestamp": _now(),
            "name": name, "description": str(body.get("description") or ""),
            "tags": {"items": tags, "fingerprint": _fingerprint()},
            "machineType": machine["selfLink"], "status": "PROVISIONING",
            "zone": self.link(project, "zones", zone), "canIpForward": False,
            "networkInterfaces": nics,
            "disks": [{"kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": "READ_WRITE",
                       "source": disk_link, "deviceName": "persistent-disk-0", "index": 0,
                       "boot": True, "autoDelete": bool(boot[0].get("autoDelete", False)),
                       "licenses": image.get("licenses", []), "interface": "SCSI",
                       "diskSizeGb": str(size), "architecture": image.get("architecture")}],
            "metadata": {"kind": "compute#metadata", "fingerprint": _fingerprint(),
                         "items": items},
            "serviceAccounts": list(body.get("serviceAccounts") or []),
            "selfLink": link,
            "scheduling": {"onHostMaintenance": "MIGRATE", "automaticRestart": True,
                           "preemptible": False, "provisioningModel": "STANDARD"},
            "cpuPlatform": "Unknown CPU Platform", "labels": labels,
            "labelFingerprint": _fingerprint(), "startRestricted": False,
            "deletionProtection": bool(body.get("deletionProtection", False)),
            "fingerprint": _fingerprint(), "lastStartTimestamp": _now()}
        zone_instances[name] = instance
        operation = self._operation(project, f"zones/{zone}", "insert", link, instance_id,
                                    request_id)
        if self.insert_failures:
            failure = self.insert_failures.pop(0)

            def fail() -> None:
                zone_instances.pop(name, None)
                self.disks[project][zone].pop(name, None)
                self._finish(operation, failure)
            self._schedule(self.boot_seconds / 3, fail)
            return operation

        def staging() -> None:
            if instance["status"] == "PROVISIONING":
                instance["status"] = "STAGING"

        def running() -> None:
            if instance["status"] in ("PROVISIONING", "STAGING"):
                instance.update(status="RUNNING", cpuPlatform="Intel Broadwell")
            self._finish(operation)
        self._schedule(self.boot_seconds / 3, staging)
        self._schedule(self.boot_seconds, running)
        return operation

    def _subnet_for(self, project: str, region: str, network: dict[str, Any],
                    nic: dict[str, Any], index: int) -> dict[str, Any]:
        regional = self.subnetworks[project].get(region, {})
        mine = [s for s in regional.values() if s["network"] == network["selfLink"]]
        wanted = nic.get("subnetwork")
        if wanted:
            named = re.search(r"regions/([^/]+)/", str(wanted))
            found = regional.get(_last(wanted)) if named is None or named.group(1) == region \
                else None
            if found is None:
                raise _not_found(f"projects/{project}/regions/{region}/subnetworks/"
                                 f"{_last(wanted)}")
            if found["network"] != network["selfLink"]:
                raise _invalid(f"resource.networkInterfaces[{index}].subnetwork", wanted,
                               f"Subnetwork does not belong to network '{network['name']}'.")
            return found
        if not network.get("autoCreateSubnetworks"):
            raise _invalid(f"resource.networkInterfaces[{index}]", "",
                           "Subnetwork should be specified for custom subnetmode network")
        if not mine:
            raise _invalid(f"resource.networkInterfaces[{index}].network", network["selfLink"],
                           f"The network has no subnetwork in region {region}.")
        return mine[0]

    @staticmethod
    def _check_labels(labels: dict[str, Any], field: str) -> None:
        for key, value in labels.items():
            if not _LABEL_KEY.fullmatch(str(key)) or not _LABEL_VALUE.fullmatch(str(value)):
                raise _invalid(field, f"{key}={value}",
                               "Label keys and values can only contain lowercase letters, "
                               "numeric characters, underscores and dashes.")

    def instance(self, project: str, zone: str, name: str) -> dict[str, Any]:
        self.zone(project, zone)
        found = self.instances[project].get(zone, {}).get(name)
        if found is None:
            raise _not_found(f"projects/{project}/zones/{zone}/instances/{name}")
        return found

    def delete_instance(self, project: str, zone: str, name: str) -> dict[str, Any]:
        instance = self.instance(project, zone, name)
        operation = self._operation(project, f"zones/{zone}", "delete", instance["selfLink"],
                                    instance["id"], None)
        instance["status"] = "STOPPING"

        def gone() -> None:
            if self.instances[project].get(zone, {}).get(name) is instance:
                del self.instances[project][zone][name]
            for disk in instance["disks"]:
                stored = self.disks[project].get(zone, {}).get(_last(disk["source"]))
                if stored is None:
                    continue
                stored["users"] = [u for u in stored.get("users", [])
                                   if u != instance["selfLink"]]
                if disk.get("autoDelete"):
                    del self.disks[project][zone][stored["name"]]
            (self.console_dir / f"{instance['id']}.log").unlink(missing_ok=True)
            self.guest_attributes.pop(instance["selfLink"], None)
            self._finish(operation)
        self._schedule(self.delete_seconds, gone)
        return operation

    def set_metadata(self, project: str, zone: str, name: str,
                     body: dict[str, Any]) -> dict[str, Any]:
        instance = self.instance(project, zone, name)
        current = instance["metadata"]
        if body.get("fingerprint") != current["fingerprint"]:
            raise ApiError(412, "conditionNotMet",
                           "Supplied fingerprint does not match current metadata fingerprint.")
        items = list(body.get("items") or [])
        for item in items:
            if not _METADATA_KEY.fullmatch(str(item.get("key", ""))):
                raise _invalid("metadata", item.get("key"),
                               "Metadata keys must match '[a-zA-Z0-9-_]{1,128}'.")
        operation = self._operation(project, f"zones/{zone}", "setMetadata",
                                    instance["selfLink"], instance["id"], None)
        current.update(items=items, fingerprint=_fingerprint())
        self._schedule(self.firewall_seconds, lambda: self._finish(operation))
        return operation

    def serial_port(self, project: str, zone: str, name: str, port: int,
                    start: int) -> dict[str, Any]:
        instance = self.instance(project, zone, name)
        if not 1 <= port <= 4:
            raise _invalid("port", port, "Must be between 1 and 4.")
        if instance["status"] != "RUNNING":
            raise ApiError(400, "resourceNotReady",
                           f"The resource '{instance['selfLink']}' is not ready")
        text = _BIOS if port == 1 else ""
        if port == 1:
            try:
                text += (self.console_dir / f"{instance['id']}.log").read_text()
            except FileNotFoundError:
                pass
        data = text.encode()
        start = max(0, min(start, len(data)))
        return {"kind": "compute#serialPortOutput", "contents": data[start:].decode(
            errors="replace"), "start": str(start), "next": str(len(data)),
            "selfLink": instance["selfLink"] + f"/serialPort?port={port}"}

    # -- guest attributes --------------------------------------------------------------
    def guest_attributes_enabled(self, project: str, instance: dict[str, Any]) -> bool:
        """``enable-guest-attributes`` of the instance's metadata, else of the project's
        (gcloud's compute ssh reads them in that order); off when neither says TRUE."""
        def setting(items: dict[str, Any]) -> str | None:
            value = items.get("enable-guest-attributes")
            return None if value is None else str(value).strip().lower()
        own = setting({i.get("key"): i.get("value") for i in
                       instance.get("metadata", {}).get("items") or []})
        if own is None:
            own = setting(self.project(project)["metadata"])
        return own == "true"

    def put_guest_attribute(self, project: str, zone: str, name: str, namespace: str,
                            key: str, value: str) -> None:
        """What the instance's metadata server does with a PUT to
        ``instance/guest-attributes/<namespace>/<key>`` from inside the instance."""
        instance = self.instance(project, zone, name)
        if not _GUEST_ATTRIBUTE_NAME.fullmatch(namespace) or \
                not _GUEST_ATTRIBUTE_NAME.fullmatch(key):
            raise _invalid("guest-attributes", f"{namespace}/{key}",
                           "Use only letters, numerals, underscores and hyphens.")
        if not self.guest_attributes_enabled(project, instance):
            # The metadata server refuses the guest's write (the guest agents log "403
            # Forbidden"): nothing is stored.
            raise ApiError(403, "forbidden", "Guest attributes are disabled for this instance.")
        self.guest_attributes.setdefault(instance["selfLink"], {}).setdefault(
            namespace, {})[key] = value

    def get_guest_attributes(self, project: str, zone: str, name: str, query_path: str,
                             variable_key: str) -> dict[str, Any]:
        """``instances.getGuestAttributes``: one ``variableKey`` (``ns/key``), or every
        entry under ``queryPath`` (``''``, ``ns/`` or ``ns/key``)."""
        instance = self.instance(project, zone, name)
        if not self.guest_attributes_enabled(project, instance):
            raise ApiError(403, "forbidden", "Guest attributes are disabled for this instance.")
        stored = self.guest_attributes.get(instance["selfLink"], {})
        link = f"{instance['selfLink']}/guestAttributes/"
        if variable_key:
            namespace, _, key = variable_key.partition("/")
            if key in stored.get(namespace, {}):
                return {"kind": "compute#guestAttributes", "variableKey": variable_key,
                        "variableValue": stored[namespace][key],
                        "selfLink": link + variable_key}
            raise _guest_attribute_not_found(variable_key)
        namespace, _, key = query_path.partition("/")
        items = [{"namespace": ns, "key": k, "value": v}
                 for ns in sorted(stored) for k, v in sorted(stored[ns].items())
                 if ns == namespace or not namespace
                 if k == key or not key]
        if not items:
            raise _guest_attribute_not_found(query_path)
        return {"kind": "compute#guestAttributes", "queryPath": query_path,
                "queryValue": {"items": items}, "selfLink": link + query_path}

    def disk(self, project: str, zone: str, name: str) -> dict[str, Any]:
        self.zone(project, zone)
        found = self.disks[project].get(zone, {}).get(name)
        if found is None:
            raise _not_found(f"projects/{project}/zones/{zone}/disks/{name}")
        return found

    def delete_disk(self, project: str, zone: str, name: str) -> dict[str, Any]:
        disk = self.disk(project, zone, name)
        if disk.get("users"):
            raise ApiError(400, "resourceInUseByAnotherResource",
                           f"The disk resource '{disk['selfLink']}' is already being used by "
                           f"'{disk['users'][0]}'")
        operation = self._operation(project, f"zones/{zone}", "delete", disk["selfLink"],
                                    disk["id"], None)

        def apply() -> None:
            self.disks[project][zone].pop(name, None)
            self._finish(operation)
        self._schedule(self.delete_seconds, apply)
        return operation


def _page(items: list[dict[str, Any]], query: dict[str, str], kind: str,
          link: str) -> dict[str, Any]:
    if query.get("filter"):
        predicate = compile_filter(query["filter"])
        items = [i for i in items if predicate(i)]
    if query.get("orderBy"):
        field = query["orderBy"].split()[0]
        items = sorted(items, key=lambda i: str(_field(i, field) or ""),
                       reverse=query["orderBy"].endswith(" desc"))
    size = max(1, min(int(query.get("maxResults") or _PAGE), _PAGE))
    start = int(query.get("pageToken") or 0)
    reply: dict[str, Any] = {"kind": kind, "id": link, "items": items[start:start + size],
                             "selfLink": link}
    if start + size < len(items):
        reply["nextPageToken"] = str(start + size)
    return reply


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
        return _page([self._zone(project, z) for z in catalog.ZONES], query, "compute#zoneList",
                     self.compute.link(project, "zones"))

    def get_zone(self, project: str, zone: str, **_: Any) -> dict[str, Any]:
        return self._zone(project, self.compute.zone(project, zone))

    # -- images and machine types ------------------------------------------------------
    def list_images(self, project: str, query: dict[str, str], **_: Any) -> dict[str, Any]:
        self.compute.project(project)
        return _page(sorted(self.compute.images[project].values(), key=lambda i: i["name"]),
                     query, "compute#imageList", self.compute.link(project, "global", "images"))

    def get_image(self, project: str, name: str, **_: Any) -> dict[str, Any]:
        return self.compute.image(project, name)

    def image_from_family(self, project: str, name: str, **_: Any) -> dict[str, Any]:
        return self.compute.image_from_family(project, name)

    def list_machine_types(self, project: str, zone: str, query: dict[str, str],
                           **_: Any) -> dict[str, Any]:
        return _page(self.compute.machine_types(project, zone), query,
                     "compute#machineTypeList",
                     self.compute.link(project, "zones", zone, "machineTypes"))

    def get_machine_type(self, project: str, zone: str, name: str, **_: Any) -> dict[str, Any]:
        for record in self.compute.machine_types(project, zone):
            if record["name"] == name:
                return record
        raise _not_found(f"projects/{project}/zones/{zone}/machineTypes/{name}")

    # -- networks ----------------------------------------------------------------------
    def list_networks(self, project: str, query: dict[str, str], **_: Any) -> dict[str, Any]:
        self.compute.project(project)
        return _page(sorted(self.compute.networks[project].values(), key=lambda n: n["name"]),
                     query, "compute#networkList",
                     self.compute.link(project, "global", "networks"))

    def get_network(self, project: str, name: str, **_: Any) -> dict[str, Any]:
        return self.compute.network(project, name)

    def list_subnetworks(self, project: str, region: str, query: dict[str, str],
                         **_: Any) -> dict[str, Any]:
        self.compute.region(project, region)
        found = self.compute.subnetworks[project].get(region, {})
        return _page(sorted(found.values(), key=lambda s: s["name"]), query,
                     "compute#subnetworkList",
                     self.compute.link(project, "regions", region, "subnetworks"))

    def get_subnetwork(self, project: str, region: str, name: str, **_: Any) -> dict[str, Any]:
        self.compute.region(project, region)
        found = self.compute.subnetworks[project].get(region, {}).get(name)
        if found is None:
            raise _not_found(f"projects/{project}/regions/{region}/subnetworks/{name}")
        return found

    # -- firewalls ---------------------------------------------------------------------
    def list_firewalls(self, project: str, query: dict[str, str], **_: Any) -> dict[str, Any]:
        self.compute.project(project)
        return _page(sorted(self.compute.firewalls[project].values(), key=lambda f: f["name"]),
                     query, "compute#firewallList",
                     self.compute.link(project, "global", "firewalls"))

    def get_firewall(self, project: str, name: str, **_: Any) -> dict[str, Any]:
        self.compute.project(project)
        found = self.compute.firewalls[project].get(name)
        if found is None:
            raise _not_found(f"projects/{project}/global/firewalls/{name}")
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
        return _page(sorted(found.values(), key=lambda i: i["name"]), query,
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
            raise _invalid("value", value, "A guest attribute's value is text.")
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
        return _page(sorted(found.values(), key=lambda d: d["name"]), query,
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

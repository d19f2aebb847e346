"""OpenStack driver over openstacksdk's service proxies.

Calls go through openstacksdk's authenticated proxies (compute, image,
network) as plain REST requests, so the JSON cloudnorm normalizes is the
cloud's own and every decision stays cloudnorm's: none of openstacksdk's
cloud-layer guessing (``auto_ip``, ``get_server_public_ip``) is used.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import functools
import logging
import random
import re
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import attrs

from cloudnorm import __version__, errors, images, networks, parallel, ratelimit
from cloudnorm.drivers import records
from cloudnorm.drivers.base import BootSpec, Created, Driver
from cloudnorm.models import (
    OWNER_KEY,
    Address,
    Decision,
    Flavor,
    Image,
    KeyPair,
    Location,
    Network,
    Server,
)

LOG = logging.getLogger(__name__)

# Nova states, named as EC2 names them.
_STATUS = {
    "ACTIVE": "running", "BUILD": "pending", "REBUILD": "pending", "REBOOT": "running",
    "HARD_REBOOT": "running", "PASSWORD": "running", "RESIZE": "running",
    "VERIFY_RESIZE": "running", "REVERT_RESIZE": "running", "MIGRATING": "running",
    "SHUTOFF": "stopped", "SUSPENDED": "stopped", "PAUSED": "stopped", "SHELVED": "stopped",
    "SHELVED_OFFLOADED": "stopped", "RESCUE": "running", "DELETED": "terminated",
    "SOFT_DELETED": "terminated", "ERROR": "error", "UNKNOWN": "error",
}
_TASK_STATUS = {"powering-off": "stopping", "deleting": "terminated", "spawning": "pending",
                "scheduling": "pending", "networking": "pending",
                "block_device_mapping": "pending"}
_COMPUTE_MICROVERSION = "2.79"  # embedded flavor details (2.47), server tags (2.26)
_ROUTER_PORT_OWNERS = ("network:router_interface", "network:router_interface_distributed",
                       "network:ha_router_replicated_interface")
_PAGE = 1000
# Retries of one request: how many attempts, and how long all of them may take together.
_ATTEMPTS = 6
_RETRY_DEADLINE = 60.0
_BACKOFF_BASE, _BACKOFF_CAP = 0.25, 4.0
# Answers that mean "not now" rather than "no". 429, and 413 when it carries Retry-After,
# are rate limits: the cloud refused before acting, so even a POST may be sent again.
# The 5xx ones may come after the cloud acted: only requests safe to repeat are retried.
_THROTTLED = frozenset({429, 413})
_TRANSIENT = frozenset({500, 502, 503, 504})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


def _parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


@records.guarded("image")
def normalize_image(raw: dict[str, Any], user_properties: tuple[str, ...] = ()) -> Image:
    """A Glance v2 image record as an :class:`Image`."""
    distro, version, arch = images.describe_image(raw.get("id", ""), raw.get("name") or "", raw)
    login_user = next((str(raw[p]) for p in user_properties if raw.get(p)), None)
    return Image(
        id=raw["id"], name=raw.get("name") or raw["id"], os_distro=distro, os_version=version,
        created=_parse_time(raw.get("created_at")), min_ram=int(raw.get("min_ram") or 0),
        min_disk=int(raw.get("min_disk") or 0), status=str(raw.get("status", "active")),
        visibility=str(raw.get("visibility", "public")),
        hidden=str(raw.get("os_hidden", False)).lower() == "true",
        is_snapshot=raw.get("image_type") == "snapshot" or bool(raw.get("instance_uuid")),
        architecture=arch, login_user=login_user, raw=raw)


@records.guarded("flavor")
def normalize_flavor(raw: dict[str, Any]) -> Flavor:
    """A Nova flavor record as a :class:`Flavor`."""
    return Flavor(
        id=str(raw["id"]), name=raw.get("name") or str(raw["id"]), ram=int(raw.get("ram") or 0),
        vcpus=int(raw.get("vcpus") or 0), disk=int(raw.get("disk") or 0),
        is_public=bool(raw.get("os-flavor-access:is_public", True)),
        disabled=bool(raw.get("OS-FLV-DISABLED:disabled", False)), raw=raw)


@records.guarded("server")
def normalize_server(raw: dict[str, Any], location: Location, nets: list[Network],
                     hints: networks.NetworkHints) -> Server:
    """A Nova server record as a :class:`Server` with classified addresses."""
    addresses: list[Address] = []
    for label, entries in (raw.get("addresses") or {}).items():
        for entry in entries:
            ip = entry.get("addr")
            if not ip:
                continue
            address = networks.classify_address(
                ip, label, floating=entry.get("OS-EXT-IPS:type") == "floating",
                networks=nets, hints=hints)
            if entry.get(_FROM_NEUTRON):
                address = attrs.evolve(address, reason=_FROM_NEUTRON_REASON)
            addresses.append(address)
    for field in ("accessIPv4", "accessIPv6"):
        addresses = _with_access_address(addresses, raw.get(field), field)
    status = _STATUS.get(str(raw.get("status", "UNKNOWN")).upper(), "error")
    status = _TASK_STATUS.get(raw.get("OS-EXT-STS:task_state") or "", status)
    interface, _ = networks.choose_interface(addresses)
    flavor = raw.get("flavor") or {}
    image = raw.get("image") or {}
    return Server(
        id=raw["id"], name=raw.get("name", ""), status=status,
        location=_server_location(location.cloud, location.region,
                                  raw.get("OS-EXT-AZ:availability_zone") or None,
                                  raw.get("tenant_id") or location.project),
        image=(image.get("id") if isinstance(image, dict) else None) or None,
        flavor=flavor.get("original_name") or flavor.get("id"),
        addresses=tuple(addresses),
        public_v4=_best(addresses, True, 4), public_v6=_best(addresses, True, 6),
        private_v4=_best(addresses, False, 4),
        interface_ip=interface.ip if interface else None,
        # Server's converter copies the metadata (as it copies raw).
        key_name=raw.get("key_name"), tags=raw.get("metadata") or {},
        created=_parse_time(raw.get("created")), raw=raw)


@functools.lru_cache(maxsize=1024, typed=True)
def _cached_location(cloud: str, region: str | None, zone: str | None,
                     project: str | None) -> Location:
    return Location(cloud=cloud, region=region, zone=zone, project=project)


def _server_location(cloud: str, region: str | None, zone: Any, project: Any) -> Location:
    # The servers of a listing share a handful of (zone, project) pairs, and Location is
    # frozen: one object per pair, not one per server.
    if (zone is None or type(zone) is str) and (project is None or type(project) is str):
        return _cached_location(cloud, region, zone, project)
    return Location(cloud=cloud, region=region, zone=zone, project=project)  # odd record


def _best(addresses: list[Address], public: bool, version: int) -> str | None:
    best = networks.best_address(addresses, public, version)
    return best.ip if best is not None else None


# Nova's accessIPv4/accessIPv6 are where a cloud (or whoever booted the server) says the
# server is to be reached: openstacksdk's get_server_external_ipv4/ipv6 return them before
# anything else (openstack/cloud/meta.py). Whether the address is public still follows
# from what it is; that it is the one to use does not.
def _with_access_address(addresses: list[Address], value: Any, field: str) -> list[Address]:
    if value is None or value == "":
        return addresses
    version, routable = networks.address_facts(value)
    if version != (4 if field == "accessIPv4" else 6):
        raise ValueError(f"{field} is {errors.describe(value)}, an IPv{version} address")
    said = f"the cloud publishes it as the server's access address ({field})"
    for i, known in enumerate(addresses):
        if known.ip == value:
            addresses = list(addresses)
            addresses[i] = attrs.evolve(known, basis="published",
                                        reason=f"{known.reason}; {said}")
            return addresses
    return [*addresses, Address(
        value, version, None, routable,
        f"{said}; {'globally routable' if routable else 'a private-range'} address",
        "fixed", "published")]


@attrs.frozen
class _Refused:
    """A network service endpoint that answered 403 or 404 (``status``)."""

    status: int


def _nova_floating(raw: dict[str, Any]) -> bool:
    addresses = raw.get("addresses")
    return isinstance(addresses, dict) and any(
        isinstance(e, dict) and e.get("OS-EXT-IPS:type") == "floating"
        for entries in addresses.values() if isinstance(entries, list) for e in entries)


def _add_floating(raw: dict[str, Any], fips: list[dict[str, Any]]) -> dict[str, Any]:
    """A copy of ``raw`` with each floating IP listed beside the fixed address it maps
    to (under that address's network label); one whose fixed address Nova does not show
    is left out, as it cannot be told which network it belongs to."""
    nova = raw.get("addresses")
    if not isinstance(nova, dict) or not all(isinstance(v, list) for v in nova.values()):
        return raw  # malformed: the record guard names it when it is normalized
    addresses = {label: list(entries) for label, entries in nova.items()}
    for fip in fips:
        label = next((label for label, entries in addresses.items() for e in entries
                      if isinstance(e, dict) and e.get("addr") == fip["fixed_ip_address"]),
                     None)
        if label is not None and all(e.get("addr") != fip.get("floating_ip_address")
                                     for e in addresses[label]):
            addresses[label].append({"addr": fip.get("floating_ip_address"), "version": 4,
                                     "OS-EXT-IPS:type": "floating", _FROM_NEUTRON: True})
    return {**raw, "addresses": addresses}


# Marks an address entry taken from Neutron because Nova's record did not show it yet.
_FROM_NEUTRON = "cloudnorm:from_neutron"
_FROM_NEUTRON_REASON = ("floating IP bound to the server's port in Neutron (Nova's record "
                        "does not list it yet)")


class OpenStackDriver(Driver):
    provider = "openstack"

    def __init__(self, settings: Any, profile: Any) -> None:
        super().__init__(settings, profile)
        if settings.openstack is None:
            raise errors.ConfigError("an OpenStack cloud needs an openstack.config entry",
                                     cloud=settings.name)
        self._region = settings.openstack
        auth = self._region.config.get("auth") or {}
        if "password" in str(self._region.config.get("auth_type") or "password") \
                and not auth.get("password"):
            # keystoneauth would find out only at the first request, with a bare Exception.
            raise errors.ConfigError(
                f"cloud '{settings.name}' ({settings.source or 'clouds.yaml'}) lacks auth "
                "settings: password; add it under auth: (or in secure.yaml), or set "
                "OS_PASSWORD", cloud=settings.name)
        self._conn: Any = None
        self._conn_lock = threading.RLock()
        self._microversion: str | None = None
        self._microversion_lock = threading.Lock()
        self._made_ports: dict[str, dict[str, Any]] = {}  # by id, until their address
        self.limiter = ratelimit.limiter_for(self.identity(), ratelimit.RateLimit.from_options(
            "openstack", settings.options.get("rate_limit"), settings.name))
        self.retries = 0  # requests sent again after a throttled or transient failure

    # -- plumbing -------------------------------------------------------------
    @property
    def conn(self) -> Any:
        with self._conn_lock:
            if self._conn is None:
                import openstack.connection

                self._conn = openstack.connection.Connection(
                    config=self._region, app_name="cloudnorm", app_version=__version__)
            return self._conn

    def _proxy(self, service: str) -> Any:
        """openstacksdk's proxy for ``service``: made once, although threads ask at once
        (making one authenticates and discovers the service's versions)."""
        with self._conn_lock:
            return getattr(self.conn, service)

    def _auth_url(self) -> str:
        return str((self._region.config.get("auth") or {}).get("auth_url", "?"))

    @contextlib.contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """Turn SDK and transport exceptions into cloudnorm errors naming what to fix."""
        from keystoneauth1 import exceptions as ksa
        from openstack import exceptions as os_exc

        name = self.settings.name
        try:
            yield
        except ksa.Unauthorized as exc:
            raise errors.AuthError(
                f"cloud '{name}' refused the credentials at {self._auth_url()} while {what}: "
                f"check username, password and project in {self.settings.source or 'clouds.yaml'}",
                cloud=name) from exc
        except ksa.EndpointNotFound as exc:
            raise errors.ServiceUnavailable(
                f"cloud '{name}' has no endpoint for {what} in its catalog ({exc}); "
                "check region_name and interface in clouds.yaml", cloud=name) from exc
        except (ksa.ConnectFailure, ksa.ConnectTimeout, ksa.DiscoveryFailure,
                ksa.UnknownConnectionError) as exc:  # the last: a reply broken off mid-way
            raise errors.ServiceUnavailable(
                f"cannot reach cloud '{name}' while {what}: {exc}; check that "
                f"{self._auth_url()} and the catalog's endpoints are reachable", cloud=name
            ) from exc
        except ksa.MissingRequiredOptions as exc:
            raise errors.ConfigError(f"cloud '{name}' lacks auth settings: {exc}",
                                     cloud=name) from exc
        except ksa.ClientException as exc:
            raise errors.ProviderError(f"cloud '{name}' failed while {what}: {exc}",
                                       cloud=name) from exc
        except (os_exc.ServiceDisabledException, os_exc.ServiceDiscoveryException) as exc:
            raise errors.ServiceUnavailable(
                f"cloud '{name}' offers no usable service for {what} ({exc}); check the "
                "region and the catalog of this cloud", cloud=name) from exc
        except os_exc.SDKException as exc:
            raise errors.ProviderError(f"cloud '{name}' failed while {what}: {exc}",
                                       cloud=name) from exc

    def _request(self, service: str, method: str, path: str, *, reads_only: bool = False,
                 **kwargs: Any) -> Any:
        """One REST call through openstacksdk's proxy; returns the decoded JSON body.

        Each attempt waits for its turn in the account's rate limit. Throttled
        answers (429, 413 with Retry-After) are retried after what the cloud asks
        for; transient failures (5xx, lost connections, garbled replies) only for
        methods that are safe to repeat. All attempts together stay within
        ``_RETRY_DEADLINE``. ``reads_only`` marks a POST that changes nothing (a
        server action such as reading the console): limited and retried as a read.
        """
        from keystoneauth1 import exceptions as ksa_exc

        if service == "compute":
            kwargs.setdefault("microversion", self._compute_microversion())
        idempotent = reads_only or method.upper() in _IDEMPOTENT
        write = not (reads_only or ratelimit.is_read(method))
        deadline = time.monotonic() + _RETRY_DEADLINE
        what = f"calling {service} {method} {path.split('?')[0]}"
        for attempt in range(_ATTEMPTS):
            last = attempt == _ATTEMPTS - 1
            self.limiter.acquire(write, deadline)
            try:
                with self._translate(what):
                    resp = self._proxy(service).request(path, method, raise_exc=False,
                                                        **kwargs)
            except errors.ServiceUnavailable as exc:
                # Only a broken connection is worth another try; a missing service is not.
                lost = isinstance(exc.__cause__, ksa_exc.ConnectionError)
                if not (lost and idempotent) or last \
                        or not self._pause(attempt, None, deadline, exc):
                    raise
                continue
            status = resp.status_code
            retry_after = _retry_after(resp.headers.get("Retry-After"))
            throttled = status == 429 or (status == 413 and retry_after is not None)
            if (throttled or (idempotent and status in _TRANSIENT)) and not last \
                    and self._pause(attempt, retry_after, deadline, f"{status} to {what}"):
                continue
            try:
                return self._decode(service, method, path, resp)
            except errors.ProviderError as exc:
                # A reply cut short or garbled on the way: a read may simply be asked again.
                if exc.status != status or status >= 400 or not idempotent or last \
                        or not self._pause(attempt, None, deadline, exc):
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _pause(self, attempt: int, retry_after: float | None, deadline: float,
               why: object) -> bool:
        """Sleep before attempt ``attempt + 1``; False when that would pass the deadline.

        The cloud's Retry-After wins; otherwise exponential backoff with full jitter,
        so that many clients throttled at once do not come back at once.
        """
        if retry_after is not None:
            delay = retry_after + random.uniform(0, min(1.0, retry_after * 0.1 + 0.1))
        else:
            delay = random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** attempt))
        if time.monotonic() + delay >= deadline:
            return False
        LOG.info("cloud '%s': %s; trying again in %.1f s", self.settings.name, why, delay)
        self.retries += 1
        time.sleep(delay)
        return True

    def _decode(self, service: str, method: str, path: str, resp: Any) -> Any:
        request_id = (resp.headers.get("x-openstack-request-id")
                      or resp.headers.get("x-compute-request-id"))
        endpoint = f"{service} {method} {path.split('?')[0]}"
        if resp.status_code >= 400:
            raise _http_error(self.settings.name, resp, endpoint, request_id)
        if resp.status_code == 204 or not resp.content:
            return {}
        try:
            return resp.json()
        except ValueError:
            raise errors.ProviderError(
                f"cloud '{self.settings.name}' sent a malformed reply (not JSON) to {endpoint}",
                status=resp.status_code, request_id=request_id, endpoint=endpoint,
                cloud=self.settings.name) from None

    def _compute_microversion(self) -> str:
        if self._microversion is not None:
            return self._microversion
        # One discovery for all threads of this driver, not one each.
        with self._microversion_lock:
            if self._microversion is None:
                with self._translate("discovering the compute API version"):
                    data = self.conn.compute.get_endpoint_data()
                highest = getattr(data, "max_microversion", None)
                want = tuple(int(p) for p in _COMPUTE_MICROVERSION.split("."))
                if highest and tuple(highest) < want:
                    self._microversion = f"{highest[0]}.{highest[1]}"
                else:
                    self._microversion = _COMPUTE_MICROVERSION if highest else "2.1"
            return self._microversion

    def _paged(self, service: str, path: str, key: str, **query: Any) -> list[dict[str, Any]]:
        """Every record of a paginated list: follows Glance's ``next`` and the
        ``<key>_links`` of Nova and Neutron, whatever page size the cloud caps at."""
        items: list[dict[str, Any]] = []
        query = {"limit": _PAGE, **query}
        for _ in range(10_000):  # bounded: 10 million records is beyond any real account
            sep = "&" if "?" in path else "?"
            body = self._request(service, "GET", f"{path}{sep}{urlencode(query, doseq=True)}")
            page = body.get(key) if isinstance(body, dict) else None
            if not isinstance(page, list):
                raise errors.ProviderError(
                    f"cloud '{self.settings.name}' sent a malformed reply to {service} GET {path}:"
                    f" no '{key}' list", endpoint=f"{service} GET {path}",
                    cloud=self.settings.name)
            items.extend(page)
            # A link says there is more; so does a full page from a service that omits links.
            more = len(page) >= query["limit"] or bool(body.get("next")) or any(
                link.get("rel") == "next" for link in body.get(f"{key}_links") or ())
            if not page or not more:
                return items
            query["marker"] = page[-1]["id"]
        return items

    def has_service(self, service_type: str) -> bool:
        with self._translate("reading the service catalog"):
            access = self.conn.session.auth.get_access(self.conn.session)
        endpoints = access.service_catalog.get_endpoints(
            service_type=service_type, region_name=self._region.region_name or None)
        return bool(endpoints.get(service_type))

    # -- Driver ---------------------------------------------------------------
    def identity(self) -> str:
        auth = self._region.config.get("auth") or {}
        return "|".join(str(x) for x in (
            "openstack", auth.get("auth_url"), auth.get("project_id") or auth.get("project_name"),
            auth.get("project_domain_id") or auth.get("project_domain_name"),
            auth.get("username") or auth.get("application_credential_id"),
            self._region.region_name))

    def location(self) -> Location:
        auth = self._region.config.get("auth") or {}
        return Location(cloud=self.settings.name, region=self._region.region_name or None,
                        project=auth.get("project_name") or auth.get("project_id"))

    def list_images(self) -> list[Image]:
        raw = self._paged("image", "/images", "images")
        return [normalize_image(r, self.profile.image_user_properties) for r in raw]

    def list_flavors(self) -> list[Flavor]:
        return [normalize_flavor(r) for r in self._paged("compute", "/flavors/detail", "flavors")]

    def _network_service(self) -> bool:
        return self.network_service_note is None and self.has_service("network")

    def network_facts(self) -> tuple[list[networks.NetworkFacts], list[networks.Router]] | None:
        if not self._network_service():
            return None
        queries = {
            "networks": "/networks", "subnets": "/subnets", "routers": "/routers",
            "ports": "/ports?" + urlencode({"device_owner": _ROUTER_PORT_OWNERS,
                                            "fields": ["network_id", "device_id"]}, doseq=True),
            "floatingips": "/floatingips?fields=floating_network_id"}
        replies = parallel.all_at_once([functools.partial(self._refusable, path)
                                        for path in queries.values()])
        refused = replies[0]
        if isinstance(refused, _Refused):
            # A catalog may list a network service whose endpoint refuses (openstacksdk's
            # test_get_server_external_ipv4_neutron_exception plays a 404 on /networks):
            # the cloud is then described from Nova's records alone, as with no service.
            self.network_service_note = (
                f"the catalog lists a network service, but it answered {refused.status} to "
                "GET /networks: servers are described from the compute service's records "
                "alone")
            LOG.warning("cloud '%s': %s", self.settings.name, self.network_service_note)
            return None
        # A Neutron without the L3 extension has no routers or floating IPs to list.
        replies = [{} if isinstance(r, _Refused) else r for r in replies]
        nets, subnets, routers, ports, fips = (reply.get(key, []) for key, reply in
                                               zip(queries, replies, strict=True))
        by_net: dict[str, list[networks.Subnet]] = {}
        for s in subnets:
            by_net.setdefault(s["network_id"], []).append(networks.Subnet(
                id=s["id"], network_id=s["network_id"], cidr=s["cidr"],
                ip_version=int(s.get("ip_version", 4)),
                service_types=tuple(s.get("service_types") or ())))
        fip_nets = {f.get("floating_network_id") for f in fips}
        facts = [networks.NetworkFacts(
            id=n["id"], name=n.get("name") or n["id"],
            router_external=bool(n.get("router:external")), shared=bool(n.get("shared")),
            subnets=tuple(by_net.get(n["id"], ())), has_floating_ips=n["id"] in fip_nets, raw=n)
            for n in nets]
        interfaces: dict[str, list[str]] = {}
        for p in ports:
            interfaces.setdefault(p["device_id"], []).append(p["network_id"])
        router_list = [networks.Router(
            id=r["id"], name=r.get("name") or r["id"],
            external_network_id=(r.get("external_gateway_info") or {}).get("network_id"),
            internal_network_ids=tuple(interfaces.get(r["id"], ()))) for r in routers]
        return facts, router_list

    def _refusable(self, path: str) -> Any:
        """GET ``path`` from the network service; a 403 or 404 comes back as _Refused."""
        try:
            return self._request("network", "GET", path)
        except errors.NotFound:
            return _Refused(404)
        except errors.ProviderError as exc:
            if exc.status == 403:
                return _Refused(403)
            raise

    def network_hints(self) -> networks.NetworkHints:
        profile_hints = networks.NetworkHints.from_entries(
            self.profile.networks, f"profile '{self.profile.name}'")
        configured = self.settings.networks
        if not configured:
            return profile_hints
        return networks.NetworkHints.from_entries(
            configured, self.settings.source or "clouds.yaml").merged_over(profile_hints)

    def list_servers(self) -> list[dict[str, Any]]:
        return self._paged("compute", "/servers/detail", "servers")

    def get_server(self, name_or_id: str) -> list[dict[str, Any]]:
        body = None
        with contextlib.suppress(errors.NotFound):
            body = self._request("compute", "GET", f"/servers/{name_or_id}")
        if body and isinstance(body.get("server"), dict):
            return [body["server"]]
        # Nova's name filter is a regular expression: anchor it for an exact match.
        found = self._paged("compute", "/servers/detail", "servers",
                            name=f"^{re.escape(name_or_id)}$")
        return [s for s in found if s.get("name") == name_or_id]

    def normalize_server(self, raw: dict[str, Any], nets: list[Network]) -> Server:
        return normalize_server(raw, self.location(), nets, self.network_hints())

    def describe_servers(self, raws: list[dict[str, Any]], nets: list[Network]
                         ) -> list[Server]:
        location, hints = self.location(), self.network_hints()
        return [normalize_server(raw, location, nets, hints)
                for raw in self._with_neutron_floating_ips(raws, nets)]

    def _with_neutron_floating_ips(self, raws: list[dict[str, Any]], nets: list[Network]
                                   ) -> list[dict[str, Any]]:
        """``raws`` with the floating IPs Neutron has bound to an ACTIVE server's port
        but Nova's ``addresses`` do not show yet (Nova refreshes its network info
        cache from Neutron's events, a moment or minutes later).

        Asked only for servers Nova lists no floating IP for, on clouds with an
        external network: one listing of the project's floating IPs (and of the ports
        they are bound to, where Neutron's records lack ``port_details``). openstacksdk
        does the same per server (``_get_supplemental_addresses`` in
        openstack/cloud/meta.py). A failure here costs only the extra address.
        """
        lacking = {r["id"]: r for r in raws if isinstance(r, dict) and r.get("id")
                   and str(r.get("status")).upper() == "ACTIVE" and not _nova_floating(r)}
        if not lacking or not any(n.external for n in nets):
            return raws
        try:
            found = self._floating_ips_by_server(set(lacking))
        except errors.CloudnormError as exc:
            LOG.debug("cloud '%s': floating IPs not looked up in Neutron: %s",
                      self.settings.name, exc)
            return raws
        if not found:
            return raws
        completed = []
        for raw in raws:
            extra = found.get(str(raw.get("id"))) if isinstance(raw, dict) else None
            completed.append(_add_floating(raw, extra) if extra else raw)
        return completed

    def _floating_ips_by_server(self, server_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
        fips = [f for f in self._request("network", "GET", "/floatingips").get(
            "floatingips", []) if f.get("port_id") and f.get("fixed_ip_address")]
        if not fips:
            return {}
        device_of = {f["port_id"]: (f.get("port_details") or {}).get("device_id")
                     for f in fips}
        if not all(device_of.values()):  # Neutron without the fip-port-details extension
            query = {"fields": ["id", "device_id"]}
            if len(server_ids) == 1:
                query["device_id"] = sorted(server_ids)
            ports = self._request("network", "GET", "/ports?" + urlencode(
                query, doseq=True)).get("ports", [])
            device_of = {p["id"]: p.get("device_id") for p in ports}
        by_server: dict[str, list[dict[str, Any]]] = {}
        for fip in fips:
            server = device_of.get(fip["port_id"])
            if server in server_ids:
                by_server.setdefault(server, []).append(fip)
        return by_server

    def list_keypairs(self) -> list[KeyPair]:
        body = self._request("compute", "GET", "/os-keypairs")
        return [KeyPair(name=k["keypair"]["name"], public_key=k["keypair"].get("public_key", ""),
                        fingerprint=k["keypair"].get("fingerprint"))
                for k in body.get("keypairs", [])]

    def create_keypair(self, name: str, public_key: str) -> KeyPair:
        body = self._request("compute", "POST", "/os-keypairs",
                             json={"keypair": {"name": name, "public_key": public_key}})
        kp = body.get("keypair") or {}
        return KeyPair(name=kp.get("name", name), public_key=kp.get("public_key", public_key),
                       fingerprint=kp.get("fingerprint"))

    def delete_keypair(self, name: str) -> bool:
        try:
            self._request("compute", "DELETE", f"/os-keypairs/{name}")
        except errors.NotFound:
            return False
        return True

    # -- provisioning -------------------------------------------------------------
    def supports_security_groups(self) -> bool:
        return self.profile.secgroup_source == "neutron" and self._network_service()

    def create_ssh_access(self, owner: str) -> Created:
        body = self._request("network", "POST", "/security-groups", json={
            "security_group": {"name": f"cloudnorm-{owner}",
                               "description": f"{OWNER_KEY}={owner} ssh access"}})
        group = body["security_group"]
        created = Created("security_group", group["id"], group["name"])
        try:
            # Both rules in one request: Neutron creates a list of rules at once (or none).
            self._request("network", "POST", "/security-group-rules", json={
                "security_group_rules": [{
                    "security_group_id": group["id"], "direction": "ingress",
                    "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
                    "ethertype": ethertype, "remote_ip_prefix": prefix}
                    for ethertype, prefix in (("IPv4", "0.0.0.0/0"), ("IPv6", "::/0"))]})
        except errors.CloudnormError:
            self.delete(created)
            raise
        return created

    def make_port(self, attach: Network, owner: str, security_group: str | None
                  ) -> Created | None:
        request: dict[str, Any] = {"network_id": attach.id, "name": f"cloudnorm-{owner}",
                                   "description": f"{OWNER_KEY}={owner}"}
        if security_group:
            # Nova leaves the groups of a port it is given alone: the port carries them.
            request["security_groups"] = [security_group]
        port = self._request("network", "POST", "/ports", json={"port": request})["port"]
        self._made_ports[port["id"]] = port
        return Created("port", port["id"], port.get("name") or port["id"])

    def boot(self, spec: BootSpec) -> Created:
        server: dict[str, Any] = {
            "name": spec.name, "imageRef": spec.image.id, "flavorRef": spec.flavor.id,
            "key_name": spec.key_name, "metadata": {OWNER_KEY: spec.owner, **spec.metadata},
            "networks": [{"port": spec.port}] if spec.port
            else [{"uuid": spec.network.id}] if spec.network else "auto",
        }
        if spec.security_group and not spec.port:
            server["security_groups"] = [{"name": spec.security_group}]
        if spec.config_drive:
            server["config_drive"] = True
        for attempt in range(3):
            try:
                body = self._request("compute", "POST", "/servers", json={"server": server})
            except (errors.ProviderError, errors.ServiceUnavailable) as exc:
                if attempt == 2 or not _may_have_acted(exc):
                    raise
                # The reply was lost, not the request: Nova may have made the server.
                # Sending the POST again blindly could make a second one.
                found = self._find_booted(spec.name, spec.owner)
                if found is not None:
                    LOG.info("cloud '%s': server %s was created although the reply was "
                             "lost (%s)", self.settings.name, found, exc)
                    return Created("server", found, spec.name)
                LOG.info("cloud '%s': no server %s after a lost reply (%s); booting again",
                         self.settings.name, spec.name, exc)
                continue
            return Created("server", body["server"]["id"], spec.name)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _find_booted(self, name: str, owner: str) -> str | None:
        """The id of the server ``name`` carrying ``owner``'s marker, if Nova made it.

        Nova lists a new server a moment after accepting it, so a miss is checked
        again before it is believed.
        """
        for pause in (0.0, 1.0, 2.0):
            time.sleep(pause)
            found = self._paged("compute", "/servers/detail", "servers",
                                name=f"^{re.escape(name)}$")
            mine = [s["id"] for s in found
                    if (s.get("metadata") or {}).get(OWNER_KEY) == owner and s.get("id")]
            if mine:
                return str(mine[0])
        return None

    def poll_servers(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        if len(ids) == 1:  # one GET is cheaper than listing a whole project
            (only,) = ids
            try:
                return {only: self._request("compute", "GET", f"/servers/{only}")["server"]}
            except errors.NotFound:
                return {}
        return {s["id"]: s for s in self.list_servers() if s.get("id") in ids}

    def console_output(self, server_id: str) -> str:
        try:
            body = self._request("compute", "POST", f"/servers/{server_id}/action",
                                 reads_only=True,
                                 json={"os-getConsoleOutput": {"length": -1}})
        except errors.ProviderError as exc:
            if exc.status == 409:  # not ready for console yet (still building)
                return ""
            raise
        return str(body.get("output") or "")

    def _server_port(self, server_id: str, network_id: str) -> dict[str, Any]:
        ports = self._request("network", "GET", "/ports?" + urlencode(
            {"device_id": server_id, "network_id": network_id})).get("ports", [])
        if not ports:
            raise errors.NotReachable(
                f"server {server_id} has no port on network {network_id}: cannot attach a "
                "floating IP", cloud=self.settings.name)
        return ports[0]

    def attach_public_address(self, raw: dict[str, Any], attach: Network,
                              pools: list[Network], owner: str, port: Created | None = None
                              ) -> tuple[Created, Address, list[Decision]]:
        # A port made for the server is known already (and may not be bound to it yet).
        made = self._made_ports.pop(port.id, None) if port is not None else None
        interface = made or self._server_port(raw["id"], attach.id)
        fixed = next((ip["ip_address"] for ip in interface.get("fixed_ips", [])
                      if ":" not in ip["ip_address"]), None)
        notes: list[Decision] = []
        for pool in pools:
            request = {"floating_network_id": pool.id, "port_id": interface["id"],
                       "description": f"{OWNER_KEY}={owner}"}
            if fixed:
                request["fixed_ip_address"] = fixed
            try:
                body = self._request("network", "POST", "/floatingips",
                                     json={"floatingip": request})
            except errors.QuotaExceeded as exc:
                exc.resource = "floating IP"
                raise
            except (errors.ProviderError, errors.NotFound) as exc:
                notes.append(Decision("public_address", f"not {pool.name}",
                                      f"floating IP on '{pool.name}' refused: {exc.message}"))
                continue
            fip = body["floatingip"]
            address = Address(fip["floating_ip_address"], 4, attach.name, True,
                              f"floating IP from '{pool.name}' on port {interface['id'][:8]}",
                              "floating")
            notes.append(Decision("public_address", fip["floating_ip_address"],
                                  f"floating IP from '{pool.name}' attached to the server's"
                                  f" port on '{attach.name}'"))
            return Created("floating_ip", fip["id"], fip["floating_ip_address"]), address, notes
        raise errors.NotReachable(
            f"no external network gave a floating IP for a server on '{attach.name}': "
            + "; ".join(n.reason for n in notes), cloud=self.settings.name)

    def forward_ssh_port(self, raw: dict[str, Any], attach: Network, owner: str
                         ) -> tuple[Created, Address, int, list[Decision]]:
        port = self._server_port(raw["id"], attach.id)
        fixed = next((ip["ip_address"] for ip in port.get("fixed_ips", [])
                      if ":" not in ip["ip_address"]), None)
        shared = [f for f in self._request("network", "GET", "/floatingips").get(
            "floatingips", []) if not f.get("port_id")
            and OWNER_KEY not in (f.get("description") or "")]
        if not shared or fixed is None:
            raise errors.NotReachable(
                f"cloud '{self.settings.name}' reaches servers through port forwarding, but "
                "the project has no unattached floating IP to forward from"
                + ("" if fixed else f" (and the server has no IPv4 address on '{attach.name}')")
                + ": allocate one, or change the profile", cloud=self.settings.name)
        fip = shared[0]
        path = f"/floatingips/{fip['id']}/port_forwardings"
        used = {pf.get("external_port") for pf in self._request("network", "GET", path).get(
            "port_forwardings", [])}
        request = {"protocol": "tcp", "internal_port_id": port["id"],
                   "internal_ip_address": fixed, "internal_port": 22,
                   "description": f"{OWNER_KEY}={owner}"}
        # Two creates may pick the same free port at once; Neutron refuses the second.
        for external in (p for p in range(2201, 2300) if p not in used):
            try:
                body = self._request("network", "POST", path, json={
                    "port_forwarding": {**request, "external_port": external}})
            except errors.ProviderError as exc:
                if exc.status in (400, 409) and re.search(r"already exist|duplicate|in use",
                                                          exc.message, re.I):
                    continue
                raise
            forwarding = body["port_forwarding"]
            address = Address(fip["floating_ip_address"], 4, attach.name, True,
                              f"port {external} of the shared floating IP forwards to port 22",
                              "floating")
            note = Decision("public_address", f"{fip['floating_ip_address']}:{external}",
                            f"port forwarding {external} -> 22 on the shared floating IP "
                            f"{fip['floating_ip_address']}")
            return (Created("port_forwarding", f"{fip['id']}/{forwarding['id']}",
                            f"{fip['floating_ip_address']}:{external}"),
                    address, external, [note])
        raise errors.QuotaExceeded(
            f"no free port left on the shared floating IP {fip['floating_ip_address']}",
            resource="port forwarding", cloud=self.settings.name)

    def delete(self, resource: Created) -> None:
        if resource.kind == "port_forwarding":
            fip_id, forwarding_id = resource.id.split("/", 1)
            with contextlib.suppress(errors.NotFound):
                self._request("network", "DELETE",
                              f"/floatingips/{fip_id}/port_forwardings/{forwarding_id}")
            return
        paths = {"server": ("compute", "/servers/{}"),
                 "keypair": ("compute", "/os-keypairs/{}"),
                 "port": ("network", "/ports/{}"),
                 "security_group": ("network", "/security-groups/{}"),
                 "floating_ip": ("network", "/floatingips/{}")}
        service, path = paths[resource.kind]
        self._made_ports.pop(resource.id, None)
        with contextlib.suppress(errors.NotFound):
            self._request(service, "DELETE", path.format(resource.id))

    def server_gone(self, server_id: str) -> bool:
        try:
            server = self._request("compute", "GET", f"/servers/{server_id}")["server"]
        except errors.NotFound:
            return True
        return server.get("status") == "DELETED"

    def set_server_metadata(self, server_id: str, items: dict[str, str]) -> None:
        # One request for all items: POST merges them into the server's metadata.
        self._request("compute", "POST", f"/servers/{server_id}/metadata",
                      json={"metadata": items})

    def owned_resources(self, owner: str | None) -> list[Created]:
        def marked(text: str | None) -> str | None:
            found = _OWNER_MARKER.search(text or "")
            return found.group(1) if found and owner in (None, found.group(1)) else None

        found: list[Created] = []
        network = self._network_service()
        if network:
            fips = self._request("network", "GET", "/floatingips").get("floatingips", [])
            found += [Created("floating_ip", f["id"], f.get("floating_ip_address", ""),
                              marked(f.get("description")) or "", _parse_time(f.get("created_at")))
                      for f in fips if marked(f.get("description"))]
            if self.profile.public_access == "port_forwarding":
                for fip in fips:
                    if fip.get("port_id"):
                        continue
                    forwardings = self._request(
                        "network", "GET", f"/floatingips/{fip['id']}/port_forwardings").get(
                        "port_forwardings", [])
                    found += [Created("port_forwarding", f"{fip['id']}/{pf['id']}",
                                      f"{fip.get('floating_ip_address')}:{pf['external_port']}",
                                      marked(pf.get("description")) or "")
                              for pf in forwardings if marked(pf.get("description"))]
        for s in self.list_servers():
            mark = (s.get("metadata") or {}).get(OWNER_KEY)
            if mark and owner in (None, mark):
                found.append(Created("server", s["id"], s.get("name", ""), mark,
                                     _parse_time(s.get("created"))))
        if network:
            query = "" if owner is None else "?" + urlencode({"name": f"cloudnorm-{owner}"})
            ports = self._request("network", "GET", "/ports" + (query or "?" + urlencode(
                {"fields": ["id", "name", "description", "created_at"]}, doseq=True))).get(
                "ports", [])
            found += [Created("port", p["id"], p["name"], marked(p.get("description")) or "",
                              _parse_time(p.get("created_at")))
                      for p in ports if (p.get("name") or "").startswith("cloudnorm-")
                      and marked(p.get("description"))]
            groups = self._request("network", "GET", "/security-groups" + query).get(
                "security_groups", [])
            found += [Created("security_group", g["id"], g["name"],
                              marked(g.get("description")) or "", _parse_time(g.get("created_at")))
                      for g in groups if (g.get("name") or "").startswith("cloudnorm-")
                      and marked(g.get("description"))]
        for k in self.list_keypairs():
            key_owner = _key_owner(k.name) if owner is None else (
                owner if k.name == f"cloudnorm-{owner}" else None)
            if key_owner is None:
                continue
            created = None
            if owner is None:  # only the detail says when; cleanup needs it, delete does not
                with contextlib.suppress(errors.NotFound):
                    created = _parse_time(self._request(
                        "compute", "GET", f"/os-keypairs/{k.name}").get(
                        "keypair", {}).get("created_at"))
            found.append(Created("keypair", k.name, k.name, key_owner, created))
        return found

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None




def _may_have_acted(exc: errors.CloudnormError) -> bool:
    """Whether a failed request may still have been carried out: its reply was lost,
    cut short or garbled, or the cloud failed after accepting it (5xx). A 4xx is a refusal."""
    if isinstance(exc, errors.ServiceUnavailable):
        return exc.status is None
    status = getattr(exc, "status", None)
    return status is None or (isinstance(status, int) and (status >= 500 or status < 400))


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number or an HTTP date); None when absent."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN is no answer


def _http_error(cloud: str, resp: Any, endpoint: str, request_id: str | None
                ) -> errors.CloudnormError:
    status = resp.status_code
    try:
        body = resp.json()
    except ValueError:
        body = {}
    message = _error_message(body) or (resp.text or "")[:200] or resp.reason or ""
    text = f"cloud '{cloud}' answered {status} to {endpoint}: {message}".rstrip(": ")
    if status == 401:
        return errors.AuthError(text + "; check the credentials in clouds.yaml", cloud=cloud)
    if status == 404:
        return errors.NotFound(text, cloud=cloud)
    if status in (403, 409, 413) and _QUOTA.search(message):
        return errors.QuotaExceeded(text + "; free resources or ask for a higher quota",
                                    resource=endpoint.split()[-1].strip("/").split("/")[-1],
                                    cloud=cloud)
    return errors.ProviderError(text, status=status, request_id=request_id, endpoint=endpoint,
                                cloud=cloud)


_OWNER_MARKER = re.compile(re.escape(OWNER_KEY) + r"=([A-Za-z0-9_-]+)")
# Node keys are named cloudnorm-<owner>, the owner being 12 hex digits: a key a person
# named cloudnorm-something is not taken for one.
_NODE_KEY = re.compile(r"cloudnorm-([0-9a-f]{12})")


def _key_owner(name: str) -> str | None:
    match = _NODE_KEY.fullmatch(name)
    return match.group(1) if match else None


_QUOTA = re.compile(r"quota exceeded|exceeds? (?:the |your )?quota|over ?quota|"
                    r"quota .*(?:reached|exhausted)|maximum number of .* (?:reached|exceeded)",
                    re.I)


def _error_message(body: Any) -> str:
    """The human part of OpenStack's several error body shapes."""
    if not isinstance(body, dict):
        return ""
    for value in body.values():
        if isinstance(value, dict) and "message" in value:
            return str(value["message"])
    if "NeutronError" in body and isinstance(body["NeutronError"], dict):
        return str(body["NeutronError"].get("message", ""))
    if "message" in body:
        return str(body["message"])
    if "error" in body and isinstance(body["error"], dict):
        return str(body["error"].get("message", ""))
    return ""

"""OpenStack records (Nova, Glance, Neutron) as cloudnorm's typed state and models.

Pure: no I/O and no openstacksdk. :func:`server_state` and :func:`normalize_server` are
the offline entry point for a Nova server record as ``GET /servers/detail`` returns it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from cloudnorm import errors, images
from cloudnorm.drivers import records
from cloudnorm.drivers.records import parse_time
from cloudnorm.models import OWNER_KEY, Address, Flavor, Image, Location, Network, Server, Volume
from cloudnorm.networks import (
    NetworkFacts,
    NetworkHints,
    Router,
    Subnet,
    address_facts,
    best_address,
    choose_interface,
    classify_address,
)
from cloudnorm.state import Phase, ServerState, server_status

#: Nova's server statuses as phases. A status Nova adds later reads as ``error``: a
#: server in a state cloudnorm does not know is not one to wait for or log in to.
#: SOFT_DELETED is a deletion Nova has not carried out yet (it reclaims the server
#: later, and until then it may be restored): the server still holds its ports.
STATUS_PHASES: dict[str, Phase] = {
    "ACTIVE": "running", "BUILD": "pending", "REBUILD": "pending", "REBOOT": "running",
    "HARD_REBOOT": "running", "PASSWORD": "running", "RESIZE": "running",
    "VERIFY_RESIZE": "running", "REVERT_RESIZE": "running", "MIGRATING": "running",
    "SHUTOFF": "stopped", "SUSPENDED": "stopped", "PAUSED": "stopped", "SHELVED": "stopped",
    "SHELVED_OFFLOADED": "stopped", "RESCUE": "running", "DELETED": "terminated",
    "SOFT_DELETED": "deleting", "ERROR": "error", "UNKNOWN": "error",
}
#: Nova's task states that say more than the status beside them (an ACTIVE server being
#: powered off is stopping).
TASK_PHASES: dict[str, Phase] = {
    "powering-off": "stopping", "deleting": "deleting", "spawning": "pending",
    "scheduling": "pending", "networking": "pending", "block_device_mapping": "pending"}

_OWNER_MARKER = re.compile(re.escape(OWNER_KEY) + r"=([A-Za-z0-9_-]+)")
# Node keys are named cloudnorm-<owner>, the owner being 12 hex digits: a key a person
# named cloudnorm-something is not taken for one.
_NODE_KEY = re.compile(r"cloudnorm-([0-9a-f]{12})")

# Marks an address entry taken from Neutron because Nova's record did not show it yet.
_FROM_NEUTRON = "cloudnorm:from_neutron"
_FROM_NEUTRON_REASON = ("floating IP bound to the server's port in Neutron (Nova's record "
                        "does not list it yet)")



def owner_marker(text: str | None) -> str | None:
    """The owner named by a ``cloudnorm:owner=<owner>`` marker in a description."""
    found = _OWNER_MARKER.search(text or "")
    return found.group(1) if found else None


def key_owner(name: str) -> str | None:
    """The owner of a node key named ``cloudnorm-<owner>``; None for any other key."""
    match = _NODE_KEY.fullmatch(name)
    return match.group(1) if match else None


@records.guarded("image")
def normalize_image(raw: dict[str, Any], user_properties: tuple[str, ...] = ()) -> Image:
    """A Glance v2 image record as an :class:`Image`."""
    distro, version, arch = images.describe_image(raw.get("id", ""), raw.get("name") or "", raw)
    login_user = next((str(raw[p]) for p in user_properties if raw.get(p)), None)
    return Image(
        id=raw["id"], name=raw.get("name") or raw["id"], os_distro=distro, os_version=version,
        created=parse_time(raw.get("created_at")), min_ram=int(raw.get("min_ram") or 0),
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


# -- servers ----------------------------------------------------------------------------------
@records.guarded("server")
def server_state(record: Mapping[str, Any]) -> ServerState:
    """A Nova server record (``GET /servers/detail``, microversion 2.79 shape) as a
    :class:`ServerState`."""
    status = str(record.get("status", "UNKNOWN"))
    phase = STATUS_PHASES.get(status.upper(), "error")
    phase = TASK_PHASES.get(record.get("OS-EXT-STS:task_state") or "", phase)
    metadata = records.mapping(record.get("metadata") or None, "metadata")
    fault = None
    if phase == "error":
        message = records.mapping(record.get("fault") or None, "fault").get("message")
        fault = str(message) if message else None
    owner = metadata.get(OWNER_KEY)
    return ServerState(
        id=str(record["id"]), name=str(record.get("name") or ""), phase=phase,
        status=status, fault=fault, quota=fault is not None and "quota" in fault.lower(),
        owner=str(owner) if owner else None,
        tags={str(k): str(v) for k, v in metadata.items()}, raw=record)


def normalize_server(state: ServerState, location: Location, networks: Sequence[Network],
                     *, hints: NetworkHints | None = None) -> Server:
    """The :class:`Server` of a Nova server's state, its addresses classified against
    ``networks`` and the operator's ``hints`` (clouds.yaml, profile)."""
    return _server(state.raw, state, location, networks,
                   hints if hints is not None else NetworkHints())


@records.guarded("server")
def _server(raw: Mapping[str, Any], state: ServerState, location: Location,
            nets: Sequence[Network], hints: NetworkHints) -> Server:
    addresses: list[Address] = []
    for label, entries in (raw.get("addresses") or {}).items():
        for entry in entries:
            ip = entry.get("addr")
            if not ip:
                continue
            address = classify_address(
                ip, label, floating=entry.get("OS-EXT-IPS:type") == "floating",
                networks=nets, hints=hints)
            if entry.get(_FROM_NEUTRON):
                address = attrs.evolve(address, reason=_FROM_NEUTRON_REASON)
            addresses.append(address)
    for field in ("accessIPv4", "accessIPv6"):
        addresses = _with_access_address(addresses, raw.get(field), field)
    interface, _ = choose_interface(addresses)
    flavor = raw.get("flavor") or {}
    image = raw.get("image") or {}
    return Server(
        id=state.id, name=state.name, status=server_status(state.phase),
        location=_server_location(location.cloud, location.region,
                                  raw.get("OS-EXT-AZ:availability_zone") or None,
                                  raw.get("tenant_id") or location.project),
        image=(image.get("id") if isinstance(image, dict) else None) or None,
        flavor=flavor.get("original_name") or flavor.get("id"),
        addresses=tuple(addresses),
        public_v4=_best(addresses, True, 4), public_v6=_best(addresses, True, 6),
        private_v4=_best(addresses, False, 4),
        interface_ip=interface.ip if interface else None,
        key_name=raw.get("key_name"), tags=state.tags,
        created=parse_time(raw.get("created")), volumes=_volumes(raw), raw=raw)


def _volumes(raw: Mapping[str, Any]) -> tuple[Volume, ...]:
    """The Cinder volumes Nova lists as attached (``os-extended-volumes:volumes_attached``;
    no sizes or devices there). A server booted from a volume has no image, and its
    root volume is listed first."""
    attached = raw.get("os-extended-volumes:volumes_attached") or []
    from_volume = not raw.get("image")
    found = []
    for index, entry in enumerate(attached):
        if not isinstance(entry, Mapping) or not entry.get("id"):
            raise ValueError(f"os-extended-volumes:volumes_attached[{index}] has no id")
        keep = entry.get("delete_on_termination")
        found.append(Volume(id=str(entry["id"]), size=None, device=None,
                            root=from_volume and index == 0,
                            delete_on_termination=keep if isinstance(keep, bool) else None))
    return tuple(found)


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
    best = best_address(addresses, public, version)
    return best.ip if best is not None else None


# Nova's accessIPv4/accessIPv6 are where a cloud (or whoever booted the server) says the
# server is to be reached: openstacksdk's get_server_external_ipv4/ipv6 return them before
# anything else (openstack/cloud/meta.py). Whether the address is public still follows
# from what it is; that it is the one to use does not.
def _with_access_address(addresses: list[Address], value: Any, field: str) -> list[Address]:
    if value is None or value == "":
        return addresses
    version, routable = address_facts(value)
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


# -- floating IPs Nova does not show yet ------------------------------------------------------
def lacks_floating_ip(state: ServerState) -> bool:
    """An ACTIVE server whose Nova record lists no floating IP: Neutron may have bound
    one to its port already (Nova refreshes its network info cache from Neutron's
    events, a moment or minutes later)."""
    addresses = state.raw.get("addresses")
    listed = isinstance(addresses, dict) and any(
        isinstance(e, dict) and e.get("OS-EXT-IPS:type") == "floating"
        for entries in addresses.values() if isinstance(entries, list) for e in entries)
    return bool(state.id) and state.status.upper() == "ACTIVE" and not listed


def floating_ips_by_server(fips: list[dict[str, Any]], device_of: Mapping[str, Any],
                           server_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Neutron's floating IP records of each of ``server_ids``, given the server
    (device) each port belongs to."""
    by_server: dict[str, list[dict[str, Any]]] = {}
    for fip in fips:
        server = device_of.get(fip["port_id"])
        if server in server_ids:
            by_server.setdefault(server, []).append(fip)
    return by_server


def add_floating(raw: Mapping[str, Any], fips: list[dict[str, Any]]) -> dict[str, Any]:
    """A copy of ``raw`` with each floating IP listed beside the fixed address it maps
    to (under that address's network label); one whose fixed address Nova does not show
    is left out, as it cannot be told which network it belongs to."""
    nova = raw.get("addresses")
    if not isinstance(nova, dict) or not all(isinstance(v, list) for v in nova.values()):
        return dict(raw)  # malformed: the record guard names it when it is normalized
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


# -- networks -----------------------------------------------------------------------------------
def normalize_networks(nets: list[dict[str, Any]], subnets: list[dict[str, Any]],
                       routers: list[dict[str, Any]], ports: list[dict[str, Any]],
                       fips: list[dict[str, Any]]) -> tuple[list[NetworkFacts], list[Router]]:
    """Neutron's networks, subnets, routers, router interface ports and floating IPs
    (``floating_network_id`` only) as the facts networks are classified from."""
    by_net: dict[str, list[Subnet]] = {}
    for s in subnets:
        by_net.setdefault(s["network_id"], []).append(Subnet(
            id=s["id"], network_id=s["network_id"], cidr=s["cidr"],
            ip_version=int(s.get("ip_version", 4)),
            service_types=tuple(s.get("service_types") or ())))
    fip_nets = {f.get("floating_network_id") for f in fips}
    facts = [NetworkFacts(
        id=n["id"], name=n.get("name") or n["id"],
        router_external=bool(n.get("router:external")), shared=bool(n.get("shared")),
        subnets=tuple(by_net.get(n["id"], ())), has_floating_ips=n["id"] in fip_nets, raw=n)
        for n in nets]
    interfaces: dict[str, list[str]] = {}
    for p in ports:
        interfaces.setdefault(p["device_id"], []).append(p["network_id"])
    router_list = [Router(
        id=r["id"], name=r.get("name") or r["id"],
        external_network_id=(r.get("external_gateway_info") or {}).get("network_id"),
        internal_network_ids=tuple(interfaces.get(r["id"], ()))) for r in routers]
    return facts, router_list

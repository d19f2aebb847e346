"""GCE's records in cloudnorm's terms, with no I/O and no SDK.

Records are the REST API's JSON (camelCase keys, enums as names); the driver turns the
compute_v1 messages it receives into that shape first (:func:`.transport.as_dict`), so
that a recorded REST reply and a live answer read alike.

How GCE is made to look like the other clouds here:

- *Owner marker*: labels cannot hold ``:``, so :data:`~cloudnorm.models.OWNER_KEY`
  (``cloudnorm:owner``) is the label :data:`OWNER_LABEL` (``cloudnorm-owner``) on
  instances and their boot disks.
- *Tags*: ``create_server(tags=...)`` become metadata items of the instance (label values
  allow too few characters); cloudnorm's own (``cloudnorm:ssh``...) are written with
  ``--`` for ``:`` (:func:`metadata_key`) and read back under their own names.
- *Server state*: :func:`server_state` maps GCE's instance statuses to a
  :data:`~cloudnorm.state.Phase` with one table; the id of a server is the instance name,
  GCE's handle for an instance in its zone.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from cloudnorm import errors, images, networks
from cloudnorm.drivers import records
from cloudnorm.drivers.records import parse_time
from cloudnorm.models import OWNER_KEY, Address, Flavor, Image, Location, Network, Server, Volume
from cloudnorm.state import Phase, ServerState, server_status

#: The label that carries :data:`OWNER_KEY` (GCE label keys allow no ``:``).
OWNER_LABEL = OWNER_KEY.replace(":", "-")
#: How the names of what cloudnorm makes begin (firewall rules, node keys).
NAME_PREFIX = "cloudnorm-"
#: What GCE accepts as the name of an instance, a firewall rule or a disk.
NAME_PATTERN = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
_METADATA_KEY = re.compile(r"[a-zA-Z0-9_-]{1,128}")
#: Metadata items that configure the guest environment: GCE's settings, not tags.
GUEST_SETTINGS = ("ssh-keys", "sshKeys", "enable-guest-attributes")

#: GCE's instance statuses as phases. GCE calls a stopped instance TERMINATED; a status
#: GCE may add later is an error until cloudnorm knows it.
_PHASES: dict[str, Phase] = {
    "PROVISIONING": "pending", "STAGING": "pending", "REPAIRING": "pending",
    "RUNNING": "running", "STOPPING": "stopping", "SUSPENDING": "stopping",
    "STOPPED": "stopped", "SUSPENDED": "stopped", "TERMINATED": "stopped"}
#: A deleted instance stops first: once cloudnorm asked for the delete, these mean it is
#: on its way out, not merely stopped.
_DELETING = ("STOPPING", "TERMINATED")


# -- small helpers --------------------------------------------------------------------------

def last(link: Any) -> str:
    """The name at the end of a resource URL (full or partial)."""
    return str(link or "").rstrip("/").rsplit("/", 1)[-1]


def _project_of(link: Any) -> str | None:
    match = re.search(r"(?:^|/)projects/([^/]+)/", str(link or ""))
    return match.group(1) if match else None


# -- reading records ----------------------------------------------------------------------
# These readers raise KeyError/TypeError/ValueError on a field of the wrong shape; the
# normalizers call them inside records.guarded, which turns that into a ProviderError
# naming the record.
def text_field(value: Any, field: str) -> str:
    """An optional string field ('' when absent)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"{field} is {errors.describe(value)}, not text")
    return value


def _name(record: Any, field: str = "name") -> str:
    """A record's required name: what GCE identifies it by in its project (or zone)."""
    if not isinstance(record, dict):
        raise TypeError(f"the record is {errors.describe(record)}, not a mapping")
    value = record[field]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} is {errors.describe(value)}, not a name")
    return value


def _count(value: Any, field: str) -> int:
    """An optional non-negative whole number (0 when absent); GCE's JSON sends int64
    fields as strings, compute_v1 as ints."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{field} is {errors.describe(value)}, not a number")
    number = int(value)
    if number < 0:
        raise ValueError(f"{field} is {number}, a negative count")
    return number


def _metadata_items(record: dict[str, Any]) -> dict[str, str]:
    metadata = records.mapping(record.get("metadata"), "metadata")
    found: dict[str, str] = {}
    for index, item in enumerate(records.mappings(metadata.get("items"), "metadata.items")):
        key = item.get("key")
        if not isinstance(key, str) or not key:
            raise ValueError(f"metadata.items[{index}].key is {errors.describe(key)}")
        # An item whose value is empty comes without "value".
        found[key] = text_field(item.get("value"), f"metadata.items[{index}].value")
    return found


def _address(text: Any, version: int, field: str) -> tuple[str, bool]:
    """(address, globally routable?) of a field the API reference fills with one IPv4 or
    one IPv6 address. A number, a word, a CIDR, or an address of the other IP version
    raises ValueError: the record is not what GCE sends. An IPv4-mapped IPv6 address in an
    IPv4 field stands for the IPv4 address inside it, and is given as that."""
    try:
        found, routable = networks.address_facts(text)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None
    if found == version:
        return str(text), routable
    if version == 4:
        inner = ipaddress.IPv6Address(str(text).split("%", 1)[0]).ipv4_mapped
        if inner is not None:
            return str(inner), routable
    raise ValueError(f"{field} {errors.describe(text)} is an IPv{found} address, where GCE "
                     f"puts an IPv{version} one")


# -- metadata and keys ----------------------------------------------------------------------
def metadata_key(key: str) -> str:
    """The GCE metadata key for a tag: metadata keys allow no ``:``, so cloudnorm's own
    (``cloudnorm:ssh``, ``cloudnorm:host_key:ssh-ed25519``) are written with ``--``."""
    if key.startswith("cloudnorm:"):
        key = key.replace(":", "--")
    if not _METADATA_KEY.fullmatch(key) or key in GUEST_SETTINGS:
        raise errors.ConfigError(
            f"tag '{key}' cannot be a GCE metadata key: use 1 to 128 letters, digits, '-' "
            f"and '_' (and none of {', '.join(GUEST_SETTINGS)}, which configure the guest "
            "environment)")
    return key


def _tag_key(key: str) -> str:
    return key.replace("--", ":") if key.startswith("cloudnorm--") else key


def ssh_keys_line(user: str, public_key: str) -> str:
    """The ``ssh-keys`` metadata line for ``public_key``: ``user:TYPE BLOB user``."""
    parts = public_key.split()
    if len(parts) < 2:
        raise errors.ConfigError(f"'{public_key[:40]}' is not an OpenSSH public key")
    return f"{user}:{parts[0]} {parts[1]} {user}"


def fingerprint(public_key: str) -> str | None:
    """The ``SHA256:`` fingerprint of an OpenSSH public key (None when it is none)."""
    parts = public_key.split()
    try:
        blob = base64.b64decode(parts[1])
    except (IndexError, ValueError):
        return None
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


# -- images and machine types ---------------------------------------------------------------
@records.guarded("image", id_keys=("name", "id", "selfLink"))
def normalize_image(raw: dict[str, Any], entry: dict[str, str] | None = None,
                    source: str = "") -> Image:
    """An Images record as an :class:`Image`.

    ``entry`` is the profile's ``images:`` entry the image was found through (its family):
    it says which distribution and version the family holds. The id is the image's partial
    URL (``projects/P/global/images/NAME``), which an instance's boot disk accepts as is.
    """
    name = _name(raw)
    project = (_project_of(text_field(raw.get("selfLink"), "selfLink"))
               or (entry or {}).get("owner") or "")
    properties: dict[str, Any] = {}
    architecture = text_field(raw.get("architecture"), "architecture")
    if architecture:
        properties["architecture"] = architecture.lower()
    elif entry is not None:
        properties["architecture"] = entry.get("architecture", "x86_64")
    if entry is not None:
        properties.update(os_distro=entry["distro"], os_version=entry["version"])
    distro, version, arch = images.describe_image(name, name, properties)
    deprecation = text_field(records.mapping(raw.get("deprecated"), "deprecated").get("state"),
                             "deprecated.state") or "ACTIVE"
    status = text_field(raw.get("status"), "status") or "READY"
    return Image(
        id=f"projects/{project}/global/images/{name}" if project else name, name=name,
        os_distro=distro, os_version=version, created=parse_time(raw.get("creationTimestamp")),
        # The boot disk is sized at creation (at least diskSizeGb): no machine type holds it.
        min_ram=0, min_disk=0,
        status="active" if status == "READY" else status.lower(),
        visibility="public" if entry is not None else "private",
        hidden=deprecation != "ACTIVE", is_snapshot=False, architecture=arch,
        login_user=None, raw={**raw, "cloudnorm:source": source or "the project's own image"})


@records.guarded("machine type", id_keys=("name", "id"))
def _machine_type(raw: dict[str, Any]) -> Flavor:
    name = _name(raw)
    records.mapping(raw.get("deprecated"), "deprecated")
    return Flavor(id=name, name=name, ram=_count(raw.get("memoryMb"), "memoryMb"),
                  vcpus=_count(raw.get("guestCpus"), "guestCpus"), disk=0, is_public=True,
                  disabled=False, raw=raw)


def normalize_flavors(raw: list[dict[str, Any]], families: tuple[str, ...]) -> list[Flavor]:
    """MachineTypes records as flavors, cheapest first.

    The neutral chooser takes the smallest fitting size; on GCE the same size costs more in
    a dearer family, and a dedicated-core type more than a shared-core one of its family
    (``e2-highcpu-2`` against ``e2-small``, both 2 GiB and 2 vCPUs). A type is left to
    automatic choice only when no cheaper type has as much memory and as many vCPUs; the
    others are ``disabled`` with the reason in ``raw["cloudnorm:passed_over"]`` and can
    still be named. Deprecated types are disabled too.
    """
    def family(name: str) -> str:
        return name.split("-", 1)[0]

    def rank(flavor: Flavor) -> tuple[int, int]:
        fam = families.index(family(flavor.name)) if family(flavor.name) in families \
            else len(families)
        return fam, 0 if flavor.raw.get("isSharedCpu") else 1

    found = [_machine_type(r) for r in raw]
    found.sort(key=lambda f: (rank(f), f.ram, f.vcpus, f.name))
    result = []
    for flavor in found:
        state = str((flavor.raw.get("deprecated") or {}).get("state") or "ACTIVE")
        cheaper = next((o for o in found if rank(o) < rank(flavor)
                        and o.ram >= flavor.ram and o.vcpus >= flavor.vcpus), None)
        if state != "ACTIVE":
            flavor = attrs.evolve(flavor, disabled=True, raw={
                **flavor.raw, "cloudnorm:passed_over": f"GCE marks it {state.lower()}"})
        elif cheaper is not None:
            why = (f"the shared-core '{cheaper.name}'" if family(cheaper.name) ==
                   family(flavor.name) else
                   f"'{cheaper.name}' of the cheaper family '{family(cheaper.name)}'")
            flavor = attrs.evolve(flavor, disabled=True, raw={
                **flavor.raw, "cloudnorm:passed_over":
                f"{why} has as much memory and as many vCPUs"})
        result.append(flavor)
    return result


# -- instances ------------------------------------------------------------------------------
def _tags(instance: dict[str, Any]) -> dict[str, str]:
    tags = {_tag_key(k): v for k, v in _metadata_items(instance).items()
            if k not in GUEST_SETTINGS}
    for key, value in records.mapping(instance.get("labels"), "labels").items():
        tags[OWNER_KEY if key == OWNER_LABEL else key] = text_field(value, f"labels.{key}")
    return tags


@records.guarded("instance", id_keys=("name", "id"))
def server_tags(instance: dict[str, Any]) -> dict[str, str]:
    """Labels and metadata items of an instance, the owner label as ``cloudnorm:owner``;
    the guest environment's settings (``ssh-keys``, ``enable-guest-attributes``) are not
    tags."""
    return _tags(instance)


@records.guarded("instance", id_keys=("name", "id"))
def server_state(record: Mapping[str, Any], *, terminating: bool = False) -> ServerState:
    """An Instances record (the REST API's JSON, as ``instances.get`` answers) as a
    :class:`ServerState`; ``terminating`` says cloudnorm asked for its delete.

    Addresses are not read here (:func:`normalize_server` does): a record whose addresses
    are malformed still has a state to wait on.
    """
    name = _name(record)  # refuses what is no mapping
    instance = dict(record)
    status = text_field(instance.get("status"), "status") or "PROVISIONING"
    phase = _PHASES.get(status, "error")
    if terminating and status in _DELETING:
        phase = "deleting"
    message = text_field(instance.get("statusMessage"), "statusMessage")
    fault = (message or None) if phase == "error" else None
    tags = _tags(instance)
    owner = records.mapping(instance.get("labels"), "labels").get(OWNER_LABEL) or None
    return ServerState(id=name, name=name, phase=phase, status=status, fault=fault,
                       quota=fault is not None and "quota" in fault.lower(), owner=owner,
                       tags=tags, raw=instance)


def _nic_addresses(nic: dict[str, Any], index: int) -> list[Address]:
    """The addresses of one network interface, each classified with its reason."""
    where = f"networkInterfaces[{index}]"
    net = last(text_field(nic.get("network"), f"{where}.network")) or None
    subnet = last(text_field(nic.get("subnetwork"), f"{where}.subnetwork"))
    label = text_field(nic.get("name"), f"{where}.name") or f"nic{index}"
    found: list[Address] = []
    internal = nic.get("networkIP")
    internal_ip = None
    # compute_v1 leaves an empty string field out; the REST API may send "".
    if internal not in (None, ""):
        internal_ip, _ = _address(internal, 4, f"{where}.networkIP")
        found.append(Address(
            internal_ip, 4, net, False,
            f"internal address of {label} on network '{net}'"
            + (f" (subnet '{subnet}')" if subnet else "")
            + "; GCE never routes it from outside", "fixed"))
    for number, access in enumerate(records.mappings(nic.get("accessConfigs"),
                                                     f"{where}.accessConfigs")):
        field = f"{where}.accessConfigs[{number}]"
        nat = access.get("natIP")
        if nat in (None, ""):
            continue  # an ephemeral address not assigned yet, or a stopped instance's
        ip, routable = _address(nat, 4, f"{field}.natIP")
        config = (f"access config '{text_field(access.get('name'), f'{field}.name')}' "
                  f"({text_field(access.get('type'), f'{field}.type') or 'ONE_TO_ONE_NAT'})")
        found.append(Address(
            ip, 4, net, routable,
            f"external IPv4 of {config}: GCE NATs it to {internal_ip or 'the internal address'}"
            if routable else
            f"{config} names {ip}, a private-range address: nothing on the internet reaches "
            "it", "floating"))
    for number, access in enumerate(records.mappings(nic.get("ipv6AccessConfigs"),
                                                     f"{where}.ipv6AccessConfigs")):
        field = f"{where}.ipv6AccessConfigs[{number}]"
        external = access.get("externalIpv6")
        if external in (None, ""):
            continue
        ip, routable = _address(external, 6, f"{field}.externalIpv6")
        config = f"access config '{text_field(access.get('name'), f'{field}.name')}'"
        found.append(Address(
            ip, 6, net, routable,
            f"external IPv6 of {config} on network '{net}'" if routable else
            f"{config} names {ip}, which is not globally routable", "fixed"))
    internal6 = nic.get("ipv6Address")
    if internal6 not in (None, ""):
        ip, routable = _address(internal6, 6, f"{where}.ipv6Address")
        found.append(Address(
            ip, 6, net, routable,
            f"{'globally routable' if routable else 'internal'} IPv6 address on network "
            f"'{net}'", "fixed"))
    return found


def normalize_server(state: ServerState, location: Location,
                     networks: Sequence[Network]) -> Server:
    """The :class:`Server` of a :func:`server_state`, with classified addresses.

    Every address is read through :func:`cloudnorm.networks.address_facts`: a field that
    holds no IP address, or one of the wrong IP version, makes the record malformed (a
    :class:`~cloudnorm.errors.ProviderError`) instead of an address to connect to. Each
    address field of an instance says what it is (internal, or an access config's NAT), so
    ``networks`` adds nothing on GCE.
    """
    return _server(dict(state.raw), state, location)


@records.guarded("instance", id_keys=("name", "id"))
def _server(instance: dict[str, Any], state: ServerState, location: Location) -> Server:
    name = _name(instance)
    addresses: list[Address] = []
    for index, nic in enumerate(records.mappings(instance.get("networkInterfaces"),
                                                 "networkInterfaces")):
        addresses += _nic_addresses(nic, index)
    interface, _ = networks.choose_interface(addresses)
    zone = text_field(instance.get("zone"), "zone")
    machine_type = text_field(instance.get("machineType"), "machineType")
    self_link = text_field(instance.get("selfLink"), "selfLink")
    return Server(
        id=name, name=name, status=server_status(state.phase),
        location=Location(cloud=location.cloud, region=location.region,
                          zone=last(zone) or location.zone,
                          project=_project_of(self_link) or location.project),
        image=None, flavor=last(machine_type) or None,
        addresses=tuple(addresses),
        public_v4=next((a.ip for a in addresses if a.public and a.version == 4), None),
        public_v6=next((a.ip for a in addresses if a.public and a.version == 6), None),
        private_v4=next((a.ip for a in addresses if not a.public and a.version == 4), None),
        interface_ip=interface.ip if interface else None, key_name=None,
        tags=_tags(instance), created=parse_time(instance.get("creationTimestamp")),
        volumes=_volumes(instance), raw=instance)


def _volumes(instance: dict[str, Any]) -> tuple[Volume, ...]:
    """The instance's persistent disks, boot disk first, as its record lists them."""
    found = []
    for index, disk in enumerate(records.mappings(instance.get("disks"), "disks")):
        field = f"disks[{index}]"
        source = text_field(disk.get("source"), f"{field}.source")
        if not source:
            continue
        size = disk.get("diskSizeGb")
        keep = disk.get("autoDelete")
        found.append(Volume(
            id=last(source), size=int(size) if size not in (None, "") else None,
            device=text_field(disk.get("deviceName"), f"{field}.deviceName") or None,
            root=disk.get("boot") is True,
            delete_on_termination=keep if isinstance(keep, bool) else None))
    return tuple(sorted(found, key=lambda v: not v.root))


# -- other records, checked for what cloudnorm reads of them ----------------------------------
def _cidr(value: Any, version: int, field: str) -> str:
    text = text_field(value, field)
    if text and ipaddress.ip_network(text, strict=False).version != version:
        raise ValueError(f"{field} {errors.describe(text)} is not an IPv{version} range")
    return text


def _texts(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{field} is {errors.describe(value)}, not a list")
    return [text_field(item, f"{field}[{index}]") for index, item in enumerate(value)]


@records.guarded("network", id_keys=("name", "id", "selfLink"))
def network_record(raw: dict[str, Any]) -> dict[str, Any]:
    """A Networks record, checked for what cloudnorm reads of it."""
    _name(raw)
    _cidr(raw.get("IPv4Range"), 4, "IPv4Range")
    return raw


@records.guarded("subnetwork", id_keys=("name", "id", "selfLink"))
def subnetwork_record(raw: dict[str, Any]) -> dict[str, Any]:
    """A Subnetworks record, checked for what cloudnorm reads of it."""
    _name(raw)
    text_field(raw.get("network"), "network")
    _cidr(raw.get("ipCidrRange"), 4, "ipCidrRange")
    _cidr(raw.get("externalIpv6Prefix"), 6, "externalIpv6Prefix")
    return raw


@records.guarded("firewall rule", id_keys=("name", "id", "selfLink"))
def firewall_record(raw: dict[str, Any]) -> dict[str, Any]:
    """A Firewalls record, checked for what :func:`.network.ssh_verdict` reads of it."""
    _name(raw)
    for field in ("network", "direction", "description"):
        text_field(raw.get(field), field)
    if raw.get("priority") is not None and not 0 <= _count(raw["priority"], "priority") \
            <= 65535:
        raise ValueError(f"priority {raw['priority']} is outside 0-65535")
    for field in ("sourceRanges", "targetTags", "targetServiceAccounts"):
        _texts(raw.get(field), field)
    for field in ("allowed", "denied"):
        for index, entry in enumerate(records.mappings(raw.get(field), field)):
            text_field(entry.get("IPProtocol"), f"{field}[{index}].IPProtocol")
            _texts(entry.get("ports"), f"{field}[{index}].ports")
    return raw


@records.guarded("project", id_keys=("name", "id"))
def project_metadata(raw: dict[str, Any]) -> dict[str, str]:
    """The common instance metadata of a Projects record, as key -> value."""
    common = records.mapping(raw, "project").get("commonInstanceMetadata")
    return _metadata_items({"metadata": common})


@records.guarded("instance", id_keys=("name", "id"))
def instance_metadata(raw: dict[str, Any]) -> dict[str, str]:
    """The metadata items of an Instances record, as key -> value."""
    _name(raw)
    return _metadata_items(raw)

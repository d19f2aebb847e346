"""Google Compute Engine driver over google-cloud-compute (``compute_v1``, REST transport).

The ``cloudnorm:`` mapping of a cloud entry says where to go::

    clouds:
      work-gce:
        cloudnorm:
          provider: gce
          project: my-project            # default: the credentials' own project
          zone: europe-west1-b
          credentials_file: ~/sa.json    # a google-auth credentials file (service account
                                         # key, authorized user...); default: Application
                                         # Default Credentials
          network: my-vpc                # optional; default: 'default' when the project has it
          subnet: my-subnet              # optional: which subnet of a custom-mode network
          endpoint_url: http://127.0.0.1:8080  # optional: another compute v1 endpoint
          credentials: anonymous         # only with endpoint_url: send no credentials at all
                                         # (a local test endpoint)
          rate_limit: {reads: 20, writes: 2}   # requests per second (the defaults), see
                                               # cloudnorm.ratelimit

Every client is built with explicit credentials: the ones the entry names, or those
google-auth's Application Default Credentials resolve to, never the library's implicit
lookup behind cloudnorm's back.

How GCE is made to look like the other clouds:

- *Key pairs*: GCE has none. A key registered with :meth:`create_keypair` stays in this
  driver and goes into the ``ssh-keys`` metadata of the instances booted with it, as
  ``user:ssh-ed25519 AAAA... user``; the guest environment creates that user. The user is
  the one the neutral flow will log in as (the profile's user for the image's
  distribution). A project with ``enable-oslogin=TRUE`` ignores metadata keys: that is a
  :class:`~cloudnorm.errors.ConfigError` before anything is created.
- *Owner marker*: labels cannot hold ``:``, so :data:`~cloudnorm.models.OWNER_KEY`
  (``cloudnorm:owner``) is the label ``cloudnorm-owner`` on instances and their boot disks;
  firewall rules take no labels and carry ``cloudnorm:owner=<owner>`` in their description.
- *SSH access*: a firewall rule ``cloudnorm-<owner>`` lets TCP 22 in from anywhere to
  instances with the network tag of the same name -- unless a rule of the network already
  lets it in to every instance (``default-allow-ssh`` on the ``default`` network), which
  the returned resource's description names.
- *Tags*: ``create_server(tags=...)`` become metadata items of the instance (label values
  allow too few characters); cloudnorm's own (``cloudnorm:ssh``...) are written with
  ``--`` for ``:`` and read back under their own names.
- *Public address*: an ``ONE_TO_ONE_NAT`` access config at creation, on every instance.
- *Host keys*: instances are created with ``enable-guest-attributes=TRUE``, so that their
  guest environment (Google's guest agent, or cloud-init) publishes the host keys it makes
  in the guest attributes (``hostkeys/<type>``); :meth:`GceDriver.published_host_keys`
  reads them back with ``instances.getGuestAttributes`` (at most every 6 seconds per
  instance: GCE serves 10 such queries a minute). Images that publish none (guest
  attributes off, an image without the agent) leave the serial console to read.
- *Rate limit*: every HTTP request of every client (retries and further pages included)
  waits for its turn in the project's budget (:mod:`cloudnorm.ratelimit`): ``get``,
  ``list``, ``aggregated_list`` and operation ``wait`` calls are reads, the rest writes.
  Throttled answers (429, or 403 ``rateLimitExceeded``) are retried with backoff, as are
  5xx answers and lost connections: every write carries a ``requestId``, which GCE uses
  to carry a repeated request out once.
- *Operations*: writes return Operations; they are waited for with this driver's own
  ``ZoneOperationsClient``/``GlobalOperationsClient`` (same endpoint, same credentials).
  ``ExtendedOperation.result()`` is never used: it polls through a client of its own
  built for Google's endpoint.
- *Server records*: the neutral flow reads ``id`` (the instance name, GCE's handle for an
  instance in its zone), ``name``, ``status`` (Nova's words), ``metadata`` (labels and
  metadata items, owner label as ``cloudnorm:owner``) and ``fault``; GCE's own instance
  record is under ``instance``, in the REST API's JSON shape.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import functools
import hashlib
import importlib
import ipaddress
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import attrs

from cloudnorm import __version__, errors, images, networks, profiles, ratelimit, sshkeys
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

#: The label that carries :data:`OWNER_KEY` (GCE label keys allow no ``:``).
OWNER_LABEL = OWNER_KEY.replace(":", "-")
_SCOPES = ("https://www.googleapis.com/auth/compute",)
_CLIENTS = {"projects": "ProjectsClient", "images": "ImagesClient",
            "machine_types": "MachineTypesClient", "networks": "NetworksClient",
            "subnetworks": "SubnetworksClient", "firewalls": "FirewallsClient",
            "instances": "InstancesClient", "disks": "DisksClient",
            "zone_operations": "ZoneOperationsClient",
            "global_operations": "GlobalOperationsClient"}
_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
_METADATA_KEY = re.compile(r"[a-zA-Z0-9_-]{1,128}")
#: Metadata items that configure the guest environment: GCE's settings, not tags.
_GUEST_SETTINGS = ("ssh-keys", "sshKeys", "enable-guest-attributes")
_KEY_PREFIX = "cloudnorm-"
_TIMEOUT = 60.0
# The operations' wait call answers when the operation is done or after about two minutes.
_WAIT_TIMEOUT = 150.0
_OPERATION_LIMIT = 600.0
_RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"}
# compute_v1 methods that only read (each REST transport calls its interceptor's
# ``pre_<method>`` per HTTP attempt); an operation's wait is a read too.
_READ_CALLS = ("get", "list", "aggregated_list", "wait")
_CAPACITY_CODES = {"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
                   "RESOURCE_POOL_EXHAUSTED", "STOCKOUT"}
_ANYWHERE = "0.0.0.0/0"
_OWNER_MARKER = re.compile(re.escape(OWNER_KEY) + r"=([0-9a-z]+)")

# GCE instance states, in the words the provider-neutral flow waits for (Nova's).
_FLOW_STATUS = {"PROVISIONING": "BUILD", "STAGING": "BUILD", "REPAIRING": "BUILD",
                "RUNNING": "ACTIVE", "STOPPING": "SHUTOFF", "STOPPED": "SHUTOFF",
                "SUSPENDING": "SHUTOFF", "SUSPENDED": "SHUTOFF", "TERMINATED": "SHUTOFF"}
# ... and in cloudnorm's (EC2's). GCE calls a stopped instance TERMINATED.
_SERVER_STATUS = {"PROVISIONING": "pending", "STAGING": "pending", "REPAIRING": "pending",
                  "RUNNING": "running", "STOPPING": "stopping", "SUSPENDING": "stopping",
                  "STOPPED": "stopped", "SUSPENDED": "stopped", "TERMINATED": "stopped"}


# -- small helpers --------------------------------------------------------------------------
def _parse_time(value: Any) -> datetime.datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def _last(link: Any) -> str:
    """The name at the end of a resource URL (full or partial)."""
    return str(link or "").rstrip("/").rsplit("/", 1)[-1]


def _project_of(link: Any) -> str | None:
    match = re.search(r"(?:^|/)projects/([^/]+)/", str(link or ""))
    return match.group(1) if match else None


def _as_dict(message: Any) -> dict[str, Any]:
    """A compute_v1 message as the REST API's JSON (camelCase keys, enums as names)."""
    return type(message).to_dict(message, preserving_proto_field_name=False,  # type: ignore
                                 use_integers_for_enums=False)


# -- reading records ----------------------------------------------------------------------
# GCE's records are the REST API's JSON (compute_v1 messages are turned into it). These
# readers raise KeyError/TypeError/ValueError on a field of the wrong shape; the normalizers
# call them inside records.guarded, which turns that into a ProviderError naming the record.
def _text(value: Any, field: str) -> str:
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
        found[key] = _text(item.get("value"), f"metadata.items[{index}].value")
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


def metadata_key(key: str) -> str:
    """The GCE metadata key for a tag: metadata keys allow no ``:``, so cloudnorm's own
    (``cloudnorm:ssh``, ``cloudnorm:host_key:ssh-ed25519``) are written with ``--``."""
    if key.startswith("cloudnorm:"):
        key = key.replace(":", "--")
    if not _METADATA_KEY.fullmatch(key) or key in _GUEST_SETTINGS:
        raise errors.ConfigError(
            f"tag '{key}' cannot be a GCE metadata key: use 1 to 128 letters, digits, '-' "
            f"and '_' (and none of {', '.join(_GUEST_SETTINGS)}, which configure the guest "
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


def _fingerprint(public_key: str) -> str | None:
    parts = public_key.split()
    try:
        blob = base64.b64decode(parts[1])
    except (IndexError, ValueError):
        return None
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


# -- firewall rules ---------------------------------------------------------------------------
def _ports_include(ports: list[Any] | None, port: int) -> bool:
    if not ports:
        return True  # no ports: every port of the protocol
    for entry in ports:
        low, _, high = str(entry).partition("-")
        try:
            if int(low) <= port <= int(high or low):
                return True
        except ValueError:
            continue
    return False


def _matches_tcp(entries: list[dict[str, Any]] | None, port: int) -> bool:
    return any(str(e.get("IPProtocol", "")).lower() in ("tcp", "6", "all")
               and _ports_include(e.get("ports"), port) for e in entries or ())


def _applies_to(rule: dict[str, Any], tags: set[str] | frozenset[str]) -> bool:
    targets = rule.get("targetTags") or []
    if rule.get("targetServiceAccounts"):
        return False  # cloudnorm's instances run without a service account
    return not targets or bool(tags & set(targets))


def ssh_verdict(rules: list[dict[str, Any]], network: str,
                tags: set[str] | frozenset[str] = frozenset(), port: int = 22
                ) -> tuple[bool, dict[str, Any] | None, str]:
    """Whether ``network``'s firewall lets TCP ``port`` in from anywhere to an instance
    with ``tags``: (allowed, the deciding rule or None, why).

    GCE evaluates the enabled ingress rules that apply to the instance by priority (lower
    first, a deny before an allow of the same priority); when none matches, the implied
    rule denies. A rule counts as "from anywhere" only with source range 0.0.0.0/0.
    """
    matching = []
    for rule in rules:
        if _last(rule.get("network")) != network or rule.get("disabled"):
            continue
        if str(rule.get("direction") or "INGRESS") != "INGRESS":
            continue
        if _ANYWHERE not in (rule.get("sourceRanges") or []) or not _applies_to(rule, tags):
            continue
        if _matches_tcp(rule.get("denied"), port):
            matching.append((int(rule.get("priority", 1000)), 0, rule))
        elif _matches_tcp(rule.get("allowed"), port):
            matching.append((int(rule.get("priority", 1000)), 1, rule))
    if not matching:
        return False, None, (f"no firewall rule of network '{network}' lets TCP {port} in from "
                             "anywhere (the implied rule denies all ingress)")
    priority, kind, rule = min(matching, key=lambda m: (m[0], m[1]))
    target = ("to every instance" if not rule.get("targetTags")
              else f"to tag(s) {', '.join(rule['targetTags'])}")
    if kind == 0:
        return False, rule, (f"rule '{rule['name']}' (priority {priority}) of network "
                             f"'{network}' denies TCP {port} from anywhere {target}")
    return True, rule, (f"rule '{rule['name']}' (priority {priority}) of network '{network}' "
                        f"lets TCP {port} in from anywhere {target}")


# -- normalization ------------------------------------------------------------------------
@records.guarded("image", id_keys=("name", "id", "selfLink"))
def normalize_image(raw: dict[str, Any], entry: dict[str, str] | None = None,
                    source: str = "") -> Image:
    """An Images record as an :class:`Image`.

    ``entry`` is the profile's ``images:`` entry the image was found through (its family):
    it says which distribution and version the family holds. The id is the image's partial
    URL (``projects/P/global/images/NAME``), which an instance's boot disk accepts as is.
    """
    name = _name(raw)
    project = (_project_of(_text(raw.get("selfLink"), "selfLink"))
               or (entry or {}).get("owner") or "")
    properties: dict[str, Any] = {}
    architecture = _text(raw.get("architecture"), "architecture")
    if architecture:
        properties["architecture"] = architecture.lower()
    elif entry is not None:
        properties["architecture"] = entry.get("architecture", "x86_64")
    if entry is not None:
        properties.update(os_distro=entry["distro"], os_version=entry["version"])
    distro, version, arch = images.describe_image(name, name, properties)
    deprecation = _text(records.mapping(raw.get("deprecated"), "deprecated").get("state"),
                        "deprecated.state") or "ACTIVE"
    status = _text(raw.get("status"), "status") or "READY"
    return Image(
        id=f"projects/{project}/global/images/{name}" if project else name, name=name,
        os_distro=distro, os_version=version, created=_parse_time(raw.get("creationTimestamp")),
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


@records.guarded("instance", id_keys=("name", "id"))
def flow_view(instance: dict[str, Any], terminating: bool = False) -> dict[str, Any]:
    """An Instances record with the keys the provider-neutral flow reads (see the module
    docstring); GCE's record stays whole under ``instance``."""
    name = _name(instance)
    state = _text(instance.get("status"), "status") or "PROVISIONING"
    status = _FLOW_STATUS.get(state, "ERROR")
    if terminating and state in ("STOPPING", "TERMINATED"):
        status = "DELETING"
    message = _text(instance.get("statusMessage"), "statusMessage")
    return {"id": name, "name": name, "status": status, "metadata": _tags(instance),
            "fault": {"message": message} if message else {}, "instance": instance}


def _tags(instance: dict[str, Any]) -> dict[str, str]:
    tags = {_tag_key(k): v for k, v in _metadata_items(instance).items()
            if k not in _GUEST_SETTINGS}
    for key, value in records.mapping(instance.get("labels"), "labels").items():
        tags[OWNER_KEY if key == OWNER_LABEL else key] = _text(value, f"labels.{key}")
    return tags


@records.guarded("instance", id_keys=("name", "id"))
def server_tags(instance: dict[str, Any]) -> dict[str, str]:
    """Labels and metadata items of an instance, the owner label as ``cloudnorm:owner``;
    the guest environment's settings (``ssh-keys``, ``enable-guest-attributes``) are not
    tags."""
    return _tags(instance)


def _nic_addresses(nic: dict[str, Any], index: int) -> list[Address]:
    """The addresses of one network interface, each classified with its reason."""
    where = f"networkInterfaces[{index}]"
    net = _last(_text(nic.get("network"), f"{where}.network")) or None
    subnet = _last(_text(nic.get("subnetwork"), f"{where}.subnetwork"))
    label = _text(nic.get("name"), f"{where}.name") or f"nic{index}"
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
        config = (f"access config '{_text(access.get('name'), f'{field}.name')}' "
                  f"({_text(access.get('type'), f'{field}.type') or 'ONE_TO_ONE_NAT'})")
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
        config = f"access config '{_text(access.get('name'), f'{field}.name')}'"
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


@records.guarded("instance", id_keys=("name", "id"))
def normalize_server(raw: dict[str, Any], location: Location) -> Server:
    """A :func:`flow_view` record as a :class:`Server` with classified addresses.

    Every address is read through :func:`cloudnorm.networks.address_facts`: a field that
    holds no IP address, or one of the wrong IP version, makes the record malformed (a
    :class:`~cloudnorm.errors.ProviderError`) instead of an address to connect to.
    """
    instance = records.mapping(records.mapping(raw, "record").get("instance") or raw, "instance")
    name = _name(instance)
    addresses: list[Address] = []
    for index, nic in enumerate(records.mappings(instance.get("networkInterfaces"),
                                          "networkInterfaces")):
        addresses += _nic_addresses(nic, index)
    state = _text(instance.get("status"), "status") or "PROVISIONING"
    interface, _ = networks.choose_interface(addresses)
    zone = _text(instance.get("zone"), "zone")
    machine_type = _text(instance.get("machineType"), "machineType")
    self_link = _text(instance.get("selfLink"), "selfLink")
    return Server(
        id=name, name=name,
        status="terminated" if raw.get("status") == "DELETING"
        else _SERVER_STATUS.get(state, "error"),
        location=Location(cloud=location.cloud, region=location.region,
                          zone=_last(zone) or location.zone,
                          project=_project_of(self_link) or location.project),
        image=None, flavor=_last(machine_type) or None,
        addresses=tuple(addresses),
        public_v4=next((a.ip for a in addresses if a.public and a.version == 4), None),
        public_v6=next((a.ip for a in addresses if a.public and a.version == 6), None),
        private_v4=next((a.ip for a in addresses if not a.public and a.version == 4), None),
        interface_ip=interface.ip if interface else None, key_name=None,
        tags=_tags(instance), created=_parse_time(instance.get("creationTimestamp")),
        raw=raw)


def _cidr(value: Any, version: int, field: str) -> str:
    text = _text(value, field)
    if text and ipaddress.ip_network(text, strict=False).version != version:
        raise ValueError(f"{field} {errors.describe(text)} is not an IPv{version} range")
    return text


def _texts(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{field} is {errors.describe(value)}, not a list")
    return [_text(item, f"{field}[{index}]") for index, item in enumerate(value)]


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
    _text(raw.get("network"), "network")
    _cidr(raw.get("ipCidrRange"), 4, "ipCidrRange")
    _cidr(raw.get("externalIpv6Prefix"), 6, "externalIpv6Prefix")
    return raw


@records.guarded("firewall rule", id_keys=("name", "id", "selfLink"))
def firewall_record(raw: dict[str, Any]) -> dict[str, Any]:
    """A Firewalls record, checked for what :func:`ssh_verdict` reads of it."""
    _name(raw)
    for field in ("network", "direction", "description"):
        _text(raw.get(field), field)
    if raw.get("priority") is not None and not 0 <= _count(raw["priority"], "priority") \
            <= 65535:
        raise ValueError(f"priority {raw['priority']} is outside 0-65535")
    for field in ("sourceRanges", "targetTags", "targetServiceAccounts"):
        _texts(raw.get(field), field)
    for field in ("allowed", "denied"):
        for index, entry in enumerate(records.mappings(raw.get(field), field)):
            _text(entry.get("IPProtocol"), f"{field}[{index}].IPProtocol")
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


# -- host keys in guest attributes ------------------------------------------------------------
# Google's guest agent, on first boot, makes the host keys and PUTs each public key to
# guest-attributes/hostkeys/<type> (instance_setup.go, generateSSHKeys), value the base64
# blob only; cloud-init's GCE datasource does the same (publish_host_keys). Both only
# succeed where the metadata says enable-guest-attributes=TRUE. Windows images put RDP and
# WinRM certificate thumbprints in the same namespace: those are no SSH keys.
HOSTKEY_NAMESPACE = "hostkeys"
_KEY_TYPE = re.compile(r"(?:ssh|ecdsa|sk)-[a-z0-9@.-]+")


def host_key_line(key_type: str, value: str) -> str:
    """``"TYPE BASE64"`` for the guest attribute ``hostkeys/<key_type>``, checked as a key
    printed on a console is: the value must be one whole public key of that type.

    The value is the base64 blob (what the guest agent and cloud-init write), or
    ``"TYPE BASE64 [comment]"``; anything after the key on its first line (a comment, a
    second line) is ignored, as gcloud does. Raises ValueError for anything else.
    """
    if not _KEY_TYPE.fullmatch(key_type):
        raise ValueError(f"'{key_type}' is not an SSH key type")
    words = value.split()
    if len(words) >= 2 and words[0] == key_type:
        words = words[1:]
    if not words:
        raise ValueError("the value is empty")
    text = words[0]
    problem = sshkeys.key_problem(key_type, text)
    if problem:
        raise ValueError(f"'{text[:20]}...': {problem}")
    return f"{key_type} {text}"


@records.guarded("guest attributes", id_keys=("selfLink", "queryPath"))
def published_host_keys(reply: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The host keys in an ``instances.getGuestAttributes`` reply for ``hostkeys/``:
    (``"TYPE BASE64"`` lines, why each other entry was set aside).

    A reply of the wrong shape is malformed; an entry that is no whole SSH key of its
    type is set aside, never used (any process on the instance can write guest
    attributes, so their content is checked like console text is).
    """
    value = records.mapping(records.mapping(reply, "reply").get("queryValue"), "queryValue")
    keys: list[str] = []
    skipped: list[str] = []
    for index, item in enumerate(records.mappings(value.get("items"), "queryValue.items")):
        where = f"queryValue.items[{index}]"
        namespace = _text(item.get("namespace"), f"{where}.namespace")
        key = _text(item.get("key"), f"{where}.key")
        text = _text(item.get("value"), f"{where}.value")
        if namespace != HOSTKEY_NAMESPACE:
            skipped.append(f"{namespace}/{key}: not in namespace {HOSTKEY_NAMESPACE}/")
            continue
        try:
            line = host_key_line(key, text)
        except ValueError as exc:
            skipped.append(f"{namespace}/{key}: {exc}")
            continue
        if line not in keys:
            keys.append(line)
    return tuple(keys), tuple(skipped)


@attrs.frozen
class _SshAccess:
    """What :meth:`GceDriver.create_ssh_access` did for one owner."""

    network: str | None
    created: bool
    tag: str | None = None


def is_read_call(method: str) -> bool:
    """Whether the compute_v1 method ``method`` (``get_serial_port_output``, ``insert``...)
    only reads, for the rate limit."""
    return any(method == r or method.startswith(f"{r}_") for r in _READ_CALLS)


class _Throttle:
    """The interceptor of a compute_v1 REST transport: before each HTTP attempt (the
    transport calls ``pre_<method>`` for every one, so retries and further pages of a list
    count too), wait for a turn in ``limiter``. Everything else is the library's own
    interceptor's (a no-op)."""

    def __init__(self, limiter: ratelimit.Limiter, base: Any = None) -> None:
        self._limiter = limiter
        self._base = base

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._base is not None:
            inner = getattr(self._base, name)
        elif name.startswith("pre_"):
            def inner(request: Any, metadata: Any) -> tuple[Any, Any]:
                return request, metadata
        elif name.endswith("_with_metadata"):
            def inner(response: Any, metadata: Any) -> tuple[Any, Any]:
                return response, metadata
        elif name.startswith("post_"):
            def inner(response: Any) -> Any:
                return response
        else:
            raise AttributeError(name)
        if not name.startswith("pre_"):
            return inner
        write = not is_read_call(name.removeprefix("pre_"))

        def pre(request: Any, metadata: Any) -> Any:
            self._limiter.acquire(write)
            return inner(request, metadata)
        return pre


def _throttled_transport(client_class: Any, limiter: ratelimit.Limiter) -> Any:
    """A factory of ``client_class``'s REST transport whose requests spend ``limiter``."""
    transport = client_class.get_transport_class("rest")
    module = importlib.import_module(transport.__module__)
    base = getattr(module, transport.__name__.replace("Transport", "Interceptor"), None)
    return functools.partial(transport, interceptor=_Throttle(
        limiter, base() if base is not None else None))


class GceDriver(Driver):
    provider = "gce"

    def __init__(self, settings: Any, profile: Any) -> None:
        super().__init__(settings, profile)
        options = settings.options
        source = settings.source or "clouds.yaml"
        self._endpoint = str(options.get("endpoint_url") or "") or None
        mode = options.get("credentials")
        self._anonymous = False
        if mode is not None:
            if str(mode).lower() != "anonymous":
                raise errors.ConfigError(
                    f"cloud '{settings.name}' ({source}): cloudnorm: credentials: can only be "
                    f"'anonymous' (got '{mode}'); name a credentials file with "
                    "credentials_file:, or leave both out for Application Default Credentials",
                    cloud=settings.name)
            if not self._endpoint:
                raise errors.ConfigError(
                    f"cloud '{settings.name}' ({source}): credentials: anonymous sends no "
                    "credentials, which only a local endpoint accepts: set endpoint_url too",
                    cloud=settings.name)
            if options.get("credentials_file"):
                raise errors.ConfigError(
                    f"cloud '{settings.name}' ({source}) names both credentials: anonymous "
                    "and a credentials_file: keep one", cloud=settings.name)
            self._anonymous = True
        self._zone = str(options.get("zone") or "")
        if not self._zone:
            raise errors.ConfigError(
                f"cloud '{settings.name}' ({source}) names no zone: add zone: (e.g. "
                "us-central1-a) under cloudnorm:", cloud=settings.name)
        self._region = self._zone.rsplit("-", 1)[0]
        if settings.region and settings.region != self._region:
            raise errors.ConfigError(
                f"cloud '{settings.name}' ({source}): zone {self._zone} is not in region "
                f"{settings.region}", cloud=settings.name)
        self._project: str | None = str(options.get("project") or "") or None
        self._lock = threading.Lock()
        self._credentials: Any = None
        self._clients: dict[str, Any] = {}
        self._keys: dict[str, KeyPair] = {}
        self._key_times: dict[str, datetime.datetime] = {}
        self._ssh: dict[str, _SshAccess] = {}
        self._terminating: set[str] = set()
        self._net: tuple[list[networks.NetworkFacts], networks.NetworkHints] | None = None
        self._retry_initial = 1.0
        #: Seconds between two guest attribute reads of one instance: GCE serves at most
        #: 10 guest attribute queries per minute per instance.
        self.guest_attribute_interval = 6.0
        self._host_keys_asked: dict[str, float] = {}
        # GCE throttles per project: every zone and network of it draws on one budget.
        project_identity = "|".join(self.identity().split("|")[:4])
        self.limiter = ratelimit.limiter_for(project_identity, ratelimit.RateLimit.from_options(
            "gce", options.get("rate_limit"), settings.name))

    # -- plumbing -------------------------------------------------------------------------
    def _resolve_credentials(self) -> Any:
        """The credentials every client gets, and the project they belong to."""
        if self._credentials is not None:
            return self._credentials
        import google.auth
        from google.auth import exceptions as gauth

        name, source = self.settings.name, self.settings.source or "clouds.yaml"
        path = self.settings.options.get("credentials_file")
        project = None
        if self._anonymous:
            from google.auth.credentials import AnonymousCredentials

            credentials: Any = AnonymousCredentials()
        elif path:
            path = os.path.expanduser(str(path))
            if not os.path.exists(path):
                raise errors.ConfigError(
                    f"cloud '{name}' ({source}) names credentials_file {path}, which does not "
                    "exist", cloud=name)
            credentials, project = _credentials_from_file(name, path)
        else:
            try:
                credentials, project = google.auth.default(scopes=list(_SCOPES))
            except gauth.DefaultCredentialsError as exc:
                raise errors.AuthError(
                    f"cloud '{name}' names no credentials_file and Application Default "
                    f"Credentials found none ({exc}); run `gcloud auth application-default "
                    f"login`, or name a service account key with credentials_file: in {source}",
                    cloud=name) from exc
        if self._project is None:
            if not project:
                raise errors.ConfigError(
                    f"cloud '{name}' ({source}) names no project and its credentials belong "
                    "to none: add project: under cloudnorm:", cloud=name)
            self._project = str(project)
        self._credentials = credentials
        return credentials

    @property
    def project(self) -> str:
        if self._project is None:
            with self._lock:
                self._resolve_credentials()
        return str(self._project)

    def _client(self, kind: str) -> Any:
        with self._lock:
            if kind in self._clients:
                return self._clients[kind]
            from google.api_core.client_options import ClientOptions
            from google.api_core.gapic_v1.client_info import ClientInfo
            from google.cloud import compute_v1

            credentials = self._resolve_credentials()
            options = ClientOptions(api_endpoint=self._endpoint) if self._endpoint else None
            client_class = getattr(compute_v1, _CLIENTS[kind])
            # The one place every request passes: the transport's interceptor waits for
            # the project's rate limit before each HTTP attempt.
            client = client_class(
                transport=_throttled_transport(client_class, self.limiter),
                credentials=credentials, client_options=options,
                client_info=ClientInfo(user_agent=f"cloudnorm/{__version__}"))
            self._clients[kind] = client
            return client

    def _retry(self) -> Any:
        import requests
        from google.api_core import exceptions as gexc
        from google.api_core.retry import Retry

        def transient(exc: Exception) -> bool:
            # Throttling (403 rateLimitExceeded, 429), the server's own passing faults and
            # connections lost on the way; writes are safe to repeat: each carries a
            # requestId GCE deduplicates.
            if isinstance(exc, (gexc.TooManyRequests, gexc.ServiceUnavailable,
                                gexc.InternalServerError, gexc.BadGateway,
                                gexc.GatewayTimeout, requests.ConnectionError,
                                requests.exceptions.ChunkedEncodingError)):
                return True
            return isinstance(exc, gexc.Forbidden) and bool(_reasons(exc) & _RATE_REASONS)

        return Retry(predicate=transient, initial=self._retry_initial, maximum=16.0,
                     multiplier=2.0, timeout=60.0)

    @contextlib.contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """Turn google-api-core, google-auth and transport exceptions into cloudnorm's."""
        import requests
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as gauth
        from google.protobuf import json_format

        name = self.settings.name
        try:
            yield
        except gexc.RetryError as exc:
            cause = exc.cause
            if isinstance(cause, gexc.GoogleAPICallError):
                raise _api_error(name, what, cause, retried=True) from exc
            if isinstance(cause, requests.RequestException):
                raise self._unreachable(what, cause, retried=True) from exc
            raise errors.ProviderError(f"cloud '{name}' failed while {what}: {exc}",
                                       cloud=name) from exc
        except gexc.GoogleAPICallError as exc:
            raise _api_error(name, what, exc) from exc
        except gauth.RefreshError as exc:
            raise errors.AuthError(
                f"cloud '{name}': Google refused to issue an access token while {what} "
                f"({exc}); check the credentials (credentials_file, or `gcloud auth "
                "application-default login`)", cloud=name) from exc
        except gauth.TransportError as exc:
            raise errors.ServiceUnavailable(
                f"cannot reach Google's token service for cloud '{name}' while {what}: {exc}",
                cloud=name) from exc
        except requests.RequestException as exc:
            # Refused or lost connections, timeouts, a reply cut short
            # (ChunkedEncodingError): the API was not (fully) reached.
            raise self._unreachable(what, exc) from exc
        except json_format.ParseError as exc:
            raise errors.ProviderError(
                f"cloud '{name}': the Compute Engine API answered something that is not the "
                f"JSON it should be while {what}: {exc}", endpoint=self._endpoint,
                cloud=name) from exc

    def _unreachable(self, what: str, exc: Exception,
                     retried: bool = False) -> errors.CloudnormError:
        name = self.settings.name
        return errors.ServiceUnavailable(
            f"cannot reach the Compute Engine API for cloud '{name}' while {what}"
            f"{' (after retries with backoff)' if retried else ''}: {exc}"
            + (f"; check endpoint_url {self._endpoint}" if self._endpoint else ""),
            cloud=name)

    def _call(self, kind: str, method: str, what: str, **params: Any) -> Any:
        client = self._client(kind)
        timeout = _WAIT_TIMEOUT if method == "wait" else _TIMEOUT
        with self._translate(what):
            return getattr(client, method)(request=params, retry=self._retry(), timeout=timeout)

    def _list(self, kind: str, what: str, **params: Any) -> list[dict[str, Any]]:
        """Every record of a list call (the pager follows nextPageToken)."""
        client = self._client(kind)
        with self._translate(what):
            pager = client.list(request=params, retry=self._retry(), timeout=_TIMEOUT)
            return [_as_dict(item) for item in pager]

    def _wait(self, operation: Any, what: str) -> Any:
        """Wait (bounded) for an Operation with the operations client of its scope; raise
        its error. Returns the last Operation seen (not done after the bound)."""
        from google.cloud import compute_v1

        done = compute_v1.Operation.Status.DONE
        deadline = time.monotonic() + _OPERATION_LIMIT
        current = operation
        for _ in range(100):  # each wait answers within about two minutes
            if current.status == done or time.monotonic() >= deadline:
                break
            if current.zone:
                current = self._call("zone_operations", "wait", what, project=self.project,
                                     zone=_last(current.zone), operation=operation.name)
            else:
                current = self._call("global_operations", "wait", what,
                                     project=self.project, operation=operation.name)
        if current.status == done and current.error and current.error.errors:
            raise _operation_error(self.settings.name, what, _as_dict(current))
        return current

    def _instance(self, name: str) -> dict[str, Any] | None:
        try:
            found = self._call("instances", "get", f"reading instance {name}",
                               project=self.project, zone=self._zone, instance=name)
        except errors.NotFound:
            return None
        return _as_dict(found)

    def _view(self, instance: dict[str, Any]) -> dict[str, Any]:
        return flow_view(instance, instance.get("name") in self._terminating)

    # -- Driver: discovery ----------------------------------------------------------------
    def identity(self) -> str:
        options = self.settings.options
        who = ("anonymous" if self._anonymous else options.get("credentials_file")
               or "application default credentials")
        return "|".join(str(x) for x in ("gce", self._endpoint or "", who,
                                         options.get("project") or "", self._zone,
                                         options.get("network") or ""))

    def location(self) -> Location:
        return Location(cloud=self.settings.name, region=self._region, zone=self._zone,
                        project=self._project or self.settings.options.get("project"))

    def list_images(self) -> list[Image]:
        """The current image of each of the profile's families, and the project's own."""
        found: dict[str, Image] = {}
        for entry in self.profile.images:
            if not entry.get("family"):
                continue
            try:
                record = self._call("images", "get_from_family",
                                    f"reading image family {entry['owner']}/{entry['family']}",
                                    project=entry["owner"], family=entry["family"])
            except errors.NotFound:
                LOG.info("%s: image family %s/%s does not exist; skipped",
                         self.settings.name, entry["owner"], entry["family"])
                continue
            image = normalize_image(_as_dict(record), entry,
                                    f"family {entry['family']} of project {entry['owner']}")
            found[image.id] = image
        for record in self._list("images", "listing the project's images", project=self.project):
            image = normalize_image(record)
            found.setdefault(image.id, image)
        return list(found.values())

    def list_flavors(self) -> list[Flavor]:
        families = self.profile.instance_families
        params: dict[str, Any] = {}
        if families:
            # A regular expression over the whole name (GCE's eq filter, RE2 syntax).
            params["filter"] = f"name eq '({'|'.join(map(re.escape, families))})-.*'"
        raw = self._list("machine_types", f"listing the machine types of {self._zone}",
                         project=self.project, zone=self._zone, **params)
        return normalize_flavors(raw, families)

    def network_facts(self) -> tuple[list[networks.NetworkFacts], list[networks.Router]] | None:
        facts, _ = self._load_networks()
        # Inbound traffic reaches GCE instances through their access configs; Cloud Routers
        # only carry outbound NAT and VPN routes, so there is no router to report.
        return facts, []

    def network_hints(self) -> networks.NetworkHints:
        _, hints = self._net or self._load_networks()
        merged = hints.merged_over(networks.NetworkHints.from_entries(
            self.profile.networks, f"profile '{self.profile.name}'"))
        if self.settings.networks:
            merged = networks.NetworkHints.from_entries(
                self.settings.networks, self.settings.source or "clouds.yaml").merged_over(merged)
        return merged

    def _load_networks(self) -> tuple[list[networks.NetworkFacts], networks.NetworkHints]:
        nets = [network_record(n) for n in self._list("networks", "listing networks",
                                                      project=self.project)]
        subnets = [subnetwork_record(n) for n in self._list(
            "subnetworks", f"listing the subnets of {self._region}", project=self.project,
            region=self._region)]
        rules = self._firewalls()
        result = self._networks_from(nets, subnets, rules)
        with self._lock:
            self._net = result
        return result

    def _firewalls(self) -> list[dict[str, Any]]:
        return [firewall_record(r) for r in self._list("firewalls", "listing firewall rules",
                                                       project=self.project)]

    def _networks_from(self, nets: list[dict[str, Any]], subnets: list[dict[str, Any]],
                       rules: list[dict[str, Any]]
                       ) -> tuple[list[networks.NetworkFacts], networks.NetworkHints]:
        options = self.settings.options
        source = self.settings.source or "clouds.yaml"
        by_network: dict[str, list[dict[str, Any]]] = {}
        for subnet in subnets:
            by_network.setdefault(_last(subnet.get("network")), []).append(subnet)
        facts: list[networks.NetworkFacts] = []
        routes: dict[str, bool] = {}
        origins: dict[str, str] = {}
        statements: dict[str, str] = {}
        for net in sorted(nets, key=lambda n: n["name"]):
            name = net["name"]
            mine = sorted(by_network.get(name, []), key=lambda s: s["name"])
            cidrs = [networks.Subnet(id=s["name"], network_id=name, cidr=s["ipCidrRange"],
                                     ip_version=4) for s in mine if s.get("ipCidrRange")]
            cidrs += [networks.Subnet(id=f"{s['name']}-v6", network_id=name,
                                      cidr=s["externalIpv6Prefix"], ip_version=6)
                      for s in mine if s.get("externalIpv6Prefix")]
            if net.get("IPv4Range"):  # a legacy network: one range, no subnets
                mode = "legacy"
                cidrs.append(networks.Subnet(id=name, network_id=name, cidr=net["IPv4Range"],
                                             ip_version=4))
            else:
                mode = "auto" if net.get("autoCreateSubnetworks") else "custom"
            allowed, rule, why = ssh_verdict(rules, name)
            subnet_link = None
            if mode == "custom" and mine:
                wanted = options.get("subnet")
                pick = next((s for s in mine if s["name"] == wanted), None) if wanted else None
                if wanted and pick is None and options.get("network") == name:
                    raise errors.ConfigError(
                        f"cloud '{self.settings.name}' ({source}) names subnet '{wanted}', but "
                        f"network '{name}' has none such in {self._region}; its subnets there: "
                        + ", ".join(s["name"] for s in mine), cloud=self.settings.name)
                pick = pick or mine[0]
                subnet_link = f"projects/{self.project}/regions/{self._region}/subnetworks/" \
                              f"{pick['name']}"
            raw = {**net, "cloudnorm:mode": mode, "cloudnorm:subnetwork": subnet_link,
                   "cloudnorm:ssh_allowed": allowed, "cloudnorm:ssh": why,
                   "cloudnorm:ssh_rule": (rule or {}).get("name")}
            facts.append(networks.NetworkFacts(id=name, name=name, subnets=tuple(cidrs),
                                               raw=raw))
            if cidrs:
                routes[name] = True
                ssh = (why if allowed else
                       f"{why}: cloudnorm adds a rule for its own instances")
                statements[f"routes_externally:{name}"] = (
                    "every instance gets an external IPv4 from an ONE_TO_ONE_NAT access "
                    f"config; {ssh}")
        usable = [f for f in facts if f.subnets]
        default: str | None = None
        wanted = options.get("network")
        if wanted:
            if not any(f.name == wanted for f in facts):
                raise errors.ConfigError(
                    f"cloud '{self.settings.name}' ({source}) names network '{wanted}', but "
                    f"project {self.project} has none such; networks: "
                    + (", ".join(f.name for f in facts) or "none"), cloud=self.settings.name)
            default = wanted
            origins["default_interface"] = f"{source} (cloudnorm: network:)"
        elif any(f.name == "default" for f in usable):
            default = "default"
            statements["default_interface"] = "the project's 'default' network"
        elif len(usable) == 1:
            default = usable[0].name
            statements["default_interface"] = (f"the only network with a subnet in "
                                               f"{self._region}")
        hints = networks.NetworkHints(routes_externally=routes, default_interface=default,
                                      source="GCE", origins=origins, statements=statements)
        return facts, hints

    # -- Driver: servers ------------------------------------------------------------------
    def list_servers(self) -> list[dict[str, Any]]:
        return [self._view(i) for i in self._list(
            "instances", f"listing the instances of {self._zone}", project=self.project,
            zone=self._zone)]

    def get_server(self, name_or_id: str) -> list[dict[str, Any]]:
        if _NAME.fullmatch(name_or_id):
            found = self._instance(name_or_id)
            if found is not None:
                return [self._view(found)]
        if name_or_id.isdigit():  # GCE's numeric instance id
            return [self._view(i) for i in self._list(
                "instances", f"looking for instance id {name_or_id}", project=self.project,
                zone=self._zone, filter=f"id = {name_or_id}")]
        return []

    def normalize_server(self, raw: dict[str, Any], nets: list[Network]) -> Server:
        return normalize_server(raw, self.location())

    def poll_servers(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        if len(ids) == 1:  # one GET is cheaper than listing the zone
            (only,) = ids
            found = self._instance(only)
            return {only: self._view(found)} if found is not None else {}
        wanted = sorted(i for i in ids if _NAME.fullmatch(i))
        if not wanted:
            return {}
        # One list call for every pending server (names need no quoting: [a-z0-9-]).
        expression = " OR ".join(f'(name = "{name}")' for name in wanted)
        return {i["name"]: self._view(i) for i in self._list(
            "instances", "polling instances", project=self.project, zone=self._zone,
            filter=expression) if i["name"] in ids}

    def console_output(self, server_id: str) -> str:
        try:
            reply = self._call("instances", "get_serial_port_output",
                               f"reading the serial console of {server_id}",
                               project=self.project, zone=self._zone, instance=server_id,
                               port=1, start=0)
        except errors.NotFound:
            return ""
        except errors.ProviderError as exc:
            if exc.status == 400:  # resourceNotReady: the instance is not running yet
                return ""
            raise
        return str(reply.contents or "")

    def published_host_keys(self, server_id: str) -> tuple[str, ...]:
        """The host keys the instance's guest environment wrote to its guest attributes
        (``hostkeys/``), read with ``instances.getGuestAttributes``; () while none are
        there, where guest attributes are off, or when this was asked too recently."""
        now = time.monotonic()
        with self._lock:
            last = self._host_keys_asked.get(server_id)
            if last is not None and now - last < self.guest_attribute_interval:
                return ()
            self._host_keys_asked[server_id] = now
        what = f"reading the guest attributes of {server_id}"
        try:
            reply = self._call("instances", "get_guest_attributes", what,
                               project=self.project, zone=self._zone, instance=server_id,
                               query_path=f"{HOSTKEY_NAMESPACE}/")
        except errors.NotFound:
            return ()  # nothing under hostkeys/ (yet)
        except (errors.AuthError, errors.QuotaExceeded) as exc:
            # 403: guest attributes are off for the instance (or the org policy
            # compute.disableGuestAttributesAccess), or the credentials may not read them.
            LOG.info("%s: no host keys from guest attributes: %s", self.settings.name, exc)
            return ()
        except errors.ProviderError as exc:
            if exc.status in (400, 412):
                LOG.info("%s: no host keys from guest attributes: %s", self.settings.name,
                         exc)
                return ()
            raise
        keys, skipped = published_host_keys(_as_dict(reply))
        for why in skipped:
            LOG.warning("%s: instance %s: guest attribute %s", self.settings.name, server_id,
                        why)
        return keys

    def server_gone(self, server_id: str) -> bool:
        return self._instance(server_id) is None

    # -- Driver: key pairs ----------------------------------------------------------------
    def _check_metadata_keys_work(self) -> None:
        """Refuse a project that ignores metadata SSH keys (OS Login), naming the setting."""
        project = _as_dict(self._call("projects", "get", f"reading project {self.project}",
                                      project=self.project))
        items = project_metadata(project)
        if items.get("enable-oslogin", "").strip().lower() == "true":
            raise errors.ConfigError(
                f"project {self.project} has enable-oslogin=TRUE in its metadata (Compute "
                "Engine > Metadata): OS Login ignores the ssh-keys metadata cloudnorm logs in "
                "with. Set enable-oslogin to FALSE for the project, or use a project without "
                "OS Login", cloud=self.settings.name)

    def list_keypairs(self) -> list[KeyPair]:
        """The keys registered with this driver (GCE itself keeps none), which go into the
        ``ssh-keys`` metadata of instances booted with them."""
        with self._lock:
            return list(self._keys.values())

    def create_keypair(self, name: str, public_key: str) -> KeyPair:
        self._check_metadata_keys_work()
        ssh_keys_line("check", public_key)  # refuses what is not an OpenSSH public key
        keypair = KeyPair(name=name, public_key=public_key.strip(),
                          fingerprint=_fingerprint(public_key))
        with self._lock:
            self._keys[name] = keypair
            self._key_times[name] = datetime.datetime.now(datetime.timezone.utc)
        return keypair

    def delete_keypair(self, name: str) -> bool:
        with self._lock:
            self._key_times.pop(name, None)
            return self._keys.pop(name, None) is not None

    # -- Driver: provisioning -------------------------------------------------------------
    def supports_security_groups(self) -> bool:
        return True

    def _expected_network(self) -> str | None:
        """The network the neutral flow picks when the caller names none (it reads the
        same hints), or None when that takes the caller's choice."""
        facts, _ = self._net or self._load_networks()
        hints = self.network_hints()  # clouds.yaml and profile over the project's facts
        if hints.default_interface:
            return hints.default_interface
        usable = [f.name for f in facts if f.subnets]
        return usable[0] if len(usable) == 1 else None

    def create_ssh_access(self, owner: str) -> Created:
        """A rule letting TCP 22 in to this owner's tag, on the network the server will most
        likely go to -- none when a rule there already lets it in to every instance. Which
        network the caller picks is only known at :meth:`boot`, which fixes a wrong guess."""
        network = self._expected_network()
        name = f"{_KEY_PREFIX}{owner}"
        if network is None:
            # Several networks and none named: the rule is made once boot knows the network.
            with self._lock:
                self._ssh[owner] = _SshAccess(None, False)
            return Created("firewall", name, f"firewall rule {name}, made at boot on the "
                           "network the server goes to")
        return self._ensure_ssh_rule(owner, network)

    def _ensure_ssh_rule(self, owner: str, network: str) -> Created:
        name = tag = f"{_KEY_PREFIX}{owner}"
        rules = self._firewalls()
        allowed, rule, why = ssh_verdict(rules, network)
        if allowed:
            with self._lock:
                self._ssh[owner] = _SshAccess(network, False)
            return Created("firewall", name, f"no rule of cloudnorm's needed: {why}")
        # The new rule must win over any deny rule that would block it for the tag.
        denies = [int(r.get("priority", 1000)) for r in rules
                  if _last(r.get("network")) == network and not r.get("disabled")
                  and str(r.get("direction") or "INGRESS") == "INGRESS"
                  and _ANYWHERE in (r.get("sourceRanges") or [])
                  and _applies_to(r, {tag}) and _matches_tcp(r.get("denied"), 22)]
        priority = min([1000, *(p - 1 for p in denies)])
        if priority < 0:
            raise errors.NotReachable(
                f"{why}, at the highest priority there is: no rule cloudnorm adds could let "
                "SSH in. Change that rule, or use another network (network=...)",
                cloud=self.settings.name)
        body = {"name": name, "network": f"projects/{self.project}/global/networks/{network}",
                "description": f"{OWNER_KEY}={owner} ssh access",
                "direction": "INGRESS", "priority": priority,
                "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}],
                "sourceRanges": [_ANYWHERE], "targetTags": [tag]}
        from google.cloud import compute_v1

        operation = self._call(
            "firewalls", "insert_unary", f"creating firewall rule {name}",
            project=self.project, firewall_resource=compute_v1.Firewall.from_json(
                json.dumps(body)),
            request_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"cloudnorm/{self.project}/{name}/"
                                      f"{network}")))
        created = Created("firewall", name,
                          f"firewall rule {name} on network '{network}' lets TCP 22 in from "
                          f"anywhere to tag {tag} (priority {priority}); {why}")
        try:
            self._wait(operation, f"creating firewall rule {name}")
        except BaseException:
            self._delete_firewall(name)
            raise
        with self._lock:
            self._ssh[owner] = _SshAccess(network, True, tag)
        return created

    def _login_user(self, image: Image) -> str:
        """The user the neutral flow will log in as on ``image`` (it reads the same
        sources in the same order), whose key goes into the metadata."""
        if image.login_user:
            return image.login_user
        user, _ = self.profile.login_user_for(image.os_distro)
        if user:
            return user
        # An unknown distribution: the flow probes the usual users, this one first.
        return next(iter([*self.profile.login_users.values(),
                          *(d.login_user for d in profiles.distros().values())]))

    def boot(self, spec: BootSpec) -> Created:
        name = spec.name
        if not _NAME.fullmatch(name):
            raise errors.ConfigError(
                f"'{name}' cannot name a GCE instance: use 1 to 63 lowercase letters, digits "
                "and dashes, starting with a letter and not ending with a dash",
                cloud=self.settings.name)
        with self._lock:
            keypair = self._keys.get(spec.key_name)
        if keypair is None:
            raise errors.NotFound(
                f"no key pair '{spec.key_name}' was registered with this cloud object; GCE "
                "keeps none: register it with create_keypair first", cloud=self.settings.name)
        items = [{"key": "ssh-keys",
                  "value": ssh_keys_line(spec.login_user or self._login_user(spec.image),
                                         keypair.public_key)}]
        # The guest environment publishes the host keys it makes in guest attributes only
        # where they are on (they are off unless the instance or project says TRUE).
        items.append({"key": "enable-guest-attributes", "value": "TRUE"})
        try:
            items += [{"key": metadata_key(k), "value": str(v)} for k, v in spec.metadata.items()]
        except errors.ConfigError as exc:
            exc.cloud = self.settings.name
            raise
        labels = {OWNER_LABEL: spec.owner}
        nic: dict[str, Any] = {"accessConfigs": [{"name": "External NAT",
                                                  "type": "ONE_TO_ONE_NAT"}]}
        network = spec.network.name if spec.network is not None else None
        if spec.network is not None:
            nic["network"] = f"projects/{self.project}/global/networks/{network}"
            if spec.network.raw.get("cloudnorm:subnetwork"):
                nic["subnetwork"] = spec.network.raw["cloudnorm:subnetwork"]
        tags = []
        if spec.security_group is not None:
            access = self._ssh_for_network(spec.owner, network)
            if access.created and access.tag:
                tags.append(access.tag)
        body = {
            "name": name, "machineType": f"zones/{self._zone}/machineTypes/{spec.flavor.id}",
            "labels": labels, "metadata": {"items": items}, "tags": {"items": tags},
            "networkInterfaces": [nic],
            "disks": [{"boot": True, "autoDelete": True, "type": "PERSISTENT",
                       "initializeParams": {"sourceImage": spec.image.id, "labels": labels}}],
        }
        from google.cloud import compute_v1

        operation = self._call(
            "instances", "insert_unary", f"creating instance {name}", project=self.project,
            zone=self._zone, instance_resource=compute_v1.Instance.from_json(json.dumps(body)),
            # Idempotent: a retried insert cannot start a second instance.
            request_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"cloudnorm/{spec.owner}/{name}")))
        try:
            last = self._wait(operation, f"creating instance {name}")
        except BaseException:
            # The insert was accepted: whatever became of it must not stay behind unseen
            # (a failed insert leaves no instance, and this answers 404).
            with contextlib.suppress(errors.CloudnormError):
                self.delete(Created("server", name, name))
            raise
        if last.status != compute_v1.Operation.Status.DONE:
            LOG.warning("%s: instance %s not created after %.0f s; waiting for it as a server",
                        self.settings.name, name, _OPERATION_LIMIT)
        return Created("server", name, name)

    def _ssh_for_network(self, owner: str, network: str | None) -> _SshAccess:
        """The SSH access of ``owner``, moved to ``network`` if it was made for another."""
        with self._lock:
            access = self._ssh.get(owner)
        if access is None or network is None or access.network == network:
            return access or _SshAccess(None, False)
        if access.created:
            self._delete_firewall(f"{_KEY_PREFIX}{owner}")
        self._ensure_ssh_rule(owner, network)
        with self._lock:
            return self._ssh[owner]

    def attach_public_address(self, raw: dict[str, Any], attach: Network,
                              pools: list[Network], owner: str, port: Created | None = None
                              ) -> tuple[Created, Address, list[Decision]]:
        # The profile plans no floating IPs: every instance has its access config from boot.
        raise errors.NotReachable(
            f"GCE instances get their external address at creation (an ONE_TO_ONE_NAT access "
            f"config); instance {raw.get('id')} has none to add. Check that profile "
            f"'{self.profile.name}' keeps floating_ip_source: none", cloud=self.settings.name)

    def delete(self, resource: Created) -> None:
        if resource.kind == "server":
            with self._lock:
                self._terminating.add(resource.id)
                self._host_keys_asked.pop(resource.id, None)
            with contextlib.suppress(errors.NotFound):
                self._call("instances", "delete_unary", f"deleting instance {resource.id}",
                           project=self.project, zone=self._zone, instance=resource.id,
                           request_id=str(uuid.uuid4()))
        elif resource.kind == "firewall":
            owner = resource.id.removeprefix(_KEY_PREFIX)
            with self._lock:
                access = self._ssh.pop(owner, None)
            if access is not None and not access.created:
                return  # an existing rule let SSH in: there is nothing of cloudnorm's
            self._delete_firewall(resource.id)
        elif resource.kind == "disk":
            with contextlib.suppress(errors.NotFound):
                operation = self._call("disks", "delete_unary", f"deleting disk {resource.id}",
                                       project=self.project, zone=self._zone, disk=resource.id,
                                       request_id=str(uuid.uuid4()))
                self._wait(operation, f"deleting disk {resource.id}")
        elif resource.kind == "keypair":
            self.delete_keypair(resource.id)
        else:
            raise errors.ProviderError(f"cloudnorm cannot delete a {resource.kind} on GCE",
                                       cloud=self.settings.name)

    def _delete_firewall(self, name: str) -> None:
        with contextlib.suppress(errors.NotFound):
            operation = self._call("firewalls", "delete_unary", f"deleting firewall rule {name}",
                                   project=self.project, firewall=name,
                                   request_id=str(uuid.uuid4()))
            self._wait(operation, f"deleting firewall rule {name}")

    def set_server_metadata(self, server_id: str, items: dict[str, str]) -> None:
        """Add or replace metadata items of an instance (``cloudnorm:`` keys written with
        ``--``, see :func:`metadata_key`); the ``ssh-keys`` item is kept as it is."""
        wanted = {metadata_key(k): str(v) for k, v in items.items()}
        from google.cloud import compute_v1

        for attempt in range(3):
            instance = self._instance(server_id)
            if instance is None:
                raise errors.NotFound(f"no instance '{server_id}' in zone {self._zone}",
                                      cloud=self.settings.name)
            metadata = instance.get("metadata") or {}
            merged = {**instance_metadata(instance), **wanted}
            body = {"fingerprint": metadata.get("fingerprint", ""),
                    "items": [{"key": k, "value": v} for k, v in merged.items()]}
            try:
                operation = self._call(
                    "instances", "set_metadata_unary", f"setting metadata of {server_id}",
                    project=self.project, zone=self._zone, instance=server_id,
                    metadata_resource=compute_v1.Metadata.from_json(json.dumps(body)),
                    request_id=str(uuid.uuid4()))
            except errors.ProviderError as exc:
                # Someone else changed the metadata since it was read: read it again.
                if exc.status == 412 and attempt < 2:
                    continue
                raise
            self._wait(operation, f"setting metadata of {server_id}")
            return

    def owned_resources(self, owner: str | None) -> list[Created]:
        """The firewall rules, orphaned disks, instances and held node keys of ``owner``
        (of any owner when None), with their owner and creation time."""
        def marked(text: str | None) -> str | None:
            found = _OWNER_MARKER.search(text or "")
            return found.group(1) if found and owner in (None, found.group(1)) else None

        label = (f"labels.{OWNER_LABEL}:*" if owner is None
                 else f'labels.{OWNER_LABEL} = "{owner}"')
        found = [Created("firewall", r["name"], r.get("description", ""),
                         marked(r.get("description")) or "",
                         _parse_time(r.get("creationTimestamp")))
                 for r in self._firewalls() if marked(r.get("description"))]
        # Boot disks go with their instance (autoDelete); only a disk left on its own is
        # cloudnorm's to remove.
        found += [Created("disk", d["name"], d["name"], (d.get("labels") or {}).get(
            OWNER_LABEL, ""), _parse_time(d.get("creationTimestamp"))) for d in self._list(
            "disks", "listing owned disks", project=self.project, zone=self._zone,
            filter=label) if not d.get("users")]
        found += [Created("server", i["name"], i["name"], (i.get("labels") or {}).get(
            OWNER_LABEL, ""), _parse_time(i.get("creationTimestamp"))) for i in self._list(
            "instances", "listing owned instances", project=self.project, zone=self._zone,
            filter=label)]
        with self._lock:
            held = dict(self._key_times)
        for name, registered in held.items():
            key_owner = name.removeprefix(_KEY_PREFIX) if name.startswith(_KEY_PREFIX) else ""
            if key_owner and owner in (None, key_owner):
                found.append(Created("keypair", name, name, key_owner, registered))
        return found

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            with contextlib.suppress(Exception):
                client.transport.close()


def _credentials_from_file(cloud: str, path: str) -> tuple[Any, str | None]:
    """Credentials of a service account key or an authorized user file, each loaded by its
    own type's loader (a file of another type is refused, not trusted blindly)."""
    try:
        with open(path, encoding="utf-8") as stream:
            info = json.load(stream)
    except (OSError, ValueError) as exc:
        raise errors.ConfigError(f"cloud '{cloud}': cannot read credentials_file {path}: "
                                 f"{exc}", cloud=cloud) from exc
    kind = info.get("type") if isinstance(info, dict) else None
    try:
        if kind == "service_account":
            from google.oauth2 import service_account

            return (service_account.Credentials.from_service_account_info(
                info, scopes=list(_SCOPES)), info.get("project_id"))
        if kind == "authorized_user":
            from google.oauth2 import credentials as user_credentials

            return (user_credentials.Credentials.from_authorized_user_info(
                info, scopes=list(_SCOPES)), info.get("quota_project_id"))
    except (ValueError, KeyError) as exc:
        raise errors.ConfigError(f"cloud '{cloud}': {path} is not a usable {kind} file: "
                                 f"{exc}", cloud=cloud) from exc
    raise errors.ConfigError(
        f"cloud '{cloud}': credentials_file {path} is of type '{kind}'; cloudnorm reads "
        "service_account and authorized_user files. For other kinds (workload identity "
        "federation...), leave credentials_file out and point GOOGLE_APPLICATION_CREDENTIALS "
        "at the file", cloud=cloud)


# -- errors ---------------------------------------------------------------------------------
def _reasons(exc: Any) -> set[str]:
    return {str(e.get("reason")) for e in getattr(exc, "errors", None) or ()
            if isinstance(e, dict) and e.get("reason")}


def _google_message(exc: Any) -> str:
    for entry in getattr(exc, "errors", None) or ():
        if isinstance(entry, dict) and entry.get("message"):
            return str(entry["message"])
    message = str(getattr(exc, "message", "") or exc)
    # google-api-core prefixes "METHOD URL: "; the URL says nothing the caller needs.
    return re.sub(r"^[A-Z]+ \S+: ", "", message)


def _quota_resource(message: str) -> str:
    match = re.search(r"Quota '([^']+)'", message)
    return match.group(1) if match else "quota"


def _api_error(cloud: str, what: str, exc: Any, retried: bool = False) -> errors.CloudnormError:
    code = int(getattr(exc, "code", 0) or 0)
    reasons = _reasons(exc)
    message = _google_message(exc)
    text = f"cloud '{cloud}': GCE refused {what.removeprefix('calling ')} ({code}"
    text += f" {', '.join(sorted(reasons))}: {message})" if reasons else f": {message})"
    if code == 401:
        return errors.AuthError(f"{text}; check the credentials (credentials_file, or `gcloud "
                                "auth application-default login`)", cloud=cloud)
    if reasons & _RATE_REASONS or code == 429:
        return errors.QuotaExceeded(
            f"{text}{' after retries with backoff' if retried else ''}: the project's API "
            "request rate is exhausted; wait and retry", resource="API request rate",
            cloud=cloud)
    if "quotaExceeded" in reasons or re.search(r"Quota '[^']+' exceeded", message):
        return errors.QuotaExceeded(f"{text}; free resources or ask for a higher quota (IAM & "
                                    "Admin > Quotas)", resource=_quota_resource(message),
                                    cloud=cloud)
    if code == 403 and "accessNotConfigured" in reasons:
        return errors.ConfigError(f"{text}; enable the Compute Engine API for the project",
                                  cloud=cloud)
    if code == 403:
        return errors.AuthError(f"{text}; the credentials lack a permission this needs",
                                cloud=cloud)
    if code == 404:
        return errors.NotFound(text, cloud=cloud)
    if code == 503:
        return errors.ServiceUnavailable(text, status=code, endpoint=what, cloud=cloud)
    return errors.ProviderError(text, status=code, endpoint=what, cloud=cloud)


def _operation_error(cloud: str, what: str, operation: dict[str, Any]) -> errors.CloudnormError:
    found = (operation.get("error") or {}).get("errors") or [{}]
    codes = [str(e.get("code") or "") for e in found]
    message = "; ".join(str(e.get("message") or e.get("code") or "") for e in found)
    text = (f"cloud '{cloud}': GCE failed {what} (operation {operation.get('name')}: "
            f"{', '.join(c for c in codes if c)}: {message})")
    if any(c in _CAPACITY_CODES for c in codes):
        return errors.QuotaExceeded(
            f"{text}: the zone has no capacity for this right now; ask for another machine "
            "type (flavor=...), another zone (cloudnorm: zone:), or retry later",
            resource="capacity", cloud=cloud)
    if "QUOTA_EXCEEDED" in codes or re.search(r"Quota '[^']+' exceeded", message):
        return errors.QuotaExceeded(f"{text}; free resources or ask for a higher quota",
                                    resource=_quota_resource(message), cloud=cloud)
    if "RESOURCE_NOT_FOUND" in codes:
        return errors.NotFound(text, cloud=cloud)
    return errors.ProviderError(text, status=operation.get("httpErrorStatusCode") or codes[0],
                                endpoint=what, cloud=cloud)

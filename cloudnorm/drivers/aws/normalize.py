"""EC2's records as cloudnorm's typed state and models: no I/O, no SDK.

The records are botocore's parsed shape (DescribeInstances, DescribeImages,
DescribeInstanceTypes). :func:`server_state` and :func:`normalize_server` are the offline
entry point ``cloudnorm.describe_server("aws", record, ...)``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from cloudnorm import errors, images
from cloudnorm.drivers import records
from cloudnorm.drivers.records import parse_time
from cloudnorm.models import OWNER_KEY, Address, Flavor, Image, Location, Network, Server, Volume
from cloudnorm.networks import address_facts, choose_interface
from cloudnorm.state import Phase, ServerState, server_status

#: EC2's instance states as phases; a state EC2 may add later is an error until known.
STATE_PHASES: dict[str, Phase] = {"pending": "pending", "running": "running",
                                  "stopping": "stopping", "stopped": "stopped",
                                  "shutting-down": "deleting", "terminated": "terminated"}
#: StateReason codes of an instance that ended because someone asked (its user, or the
#: guest shutting itself down); any other code is EC2 ending it (capacity, a volume
#: limit...), which is a failed boot.
_USER_ENDED = ("Client.UserInitiatedShutdown", "Client.InstanceInitiatedShutdown")
_ENDING = ("shutting-down", "terminated")

# How a record of the wrong shape is read (EC2's fields, as botocore parses them). An
# identity (InstanceId, ImageId, SubnetId, InstanceType), an address, and anything that
# decides what cloudnorm answers (State, StateReason, DeviceIndex, Tags, Public) must have
# its documented shape, or the record is refused as malformed; so must every list or
# mapping on the way to them. A word shown to a person and deciding nothing (a zone, a
# key name, a message, a time) of the wrong type reads as absent.
_INSTANCE_IDS = ("InstanceId",)
_TAGGED_IDS = ("InstanceId", "ImageId", "VpcId", "SubnetId", "GroupId", "AllocationId",
               "KeyPairId", "KeyName", "RouteTableId", "InternetGatewayId")


def _identity(value: Any, field: str) -> str:
    if type(value) is not str or not value:
        raise ValueError(f"{field} is {errors.describe(value)}, not an identifier")
    return value


def _optional_identity(value: Any, field: str) -> str | None:
    return None if value is None or value == "" else _identity(value, field)


def _word(value: Any) -> str | None:
    return value if type(value) is str and value else None



def _read_tags(value: Any) -> dict[str, str]:
    # Tags name the server and mark what cloudnorm owns: a tag of the wrong shape is never
    # skipped (that could hide an owner mark). A Value left out is an empty value, which
    # EC2 allows and sends as <value/>.
    tags: dict[str, str] = {}
    for tag in records.mappings(value, "Tags"):
        key, text = tag.get("Key"), tag.get("Value")
        if type(key) is not str:
            raise ValueError(f"a tag's Key is {errors.describe(key)}, not text")
        if text is not None and type(text) is not str:
            raise ValueError(f"tag {key!r} has the Value {errors.describe(text)}, not text")
        tags[key] = text or ""
    return tags


@records.guarded("EC2 resource", id_keys=_TAGGED_IDS)
def tags(record: dict[str, Any]) -> dict[str, str]:
    """The tags of any EC2 record (VPC, subnet, address, group, key pair...)."""
    return _read_tags(records.mapping(record, "the record").get("Tags"))


# -- images and instance types ----------------------------------------------------------
@records.guarded("image", id_keys=("ImageId", "Name"))
def normalize_image(raw: dict[str, Any], entry: dict[str, str] | None = None,
                    source: str = "") -> Image:
    """A DescribeImages record as an :class:`Image`.

    ``entry`` is the profile's ``images:`` entry the image was found through: it says which
    distribution and version the publisher's series holds (names such as
    ``al2023-ami-2023.4.20240401.1-kernel-6.1-x86_64`` do not say it in a readable way).
    """
    image_id = _identity(records.mapping(raw, "the record").get("ImageId"), "ImageId")
    name = _word(raw.get("Name")) or image_id
    state = raw.get("State")
    if state is not None and type(state) is not str:
        raise ValueError(f"State is {errors.describe(state)}, not text")
    public = raw.get("Public")
    if public is not None and type(public) is not bool:
        raise ValueError(f"Public is {errors.describe(public)}, not true or false")
    properties: dict[str, Any] = {"architecture": _word(raw.get("Architecture"))}
    if entry is not None:
        properties.update(os_distro=entry["distro"], os_version=entry["version"])
    distro, version, arch = images.describe_image(image_id, name, properties)
    deprecated = parse_time(raw.get("DeprecationTime"))
    now = datetime.datetime.now(datetime.timezone.utc)
    state = state or "available"
    return Image(
        id=image_id, name=name, os_distro=distro, os_version=version,
        created=parse_time(raw.get("CreationDate")),
        # EBS-backed: the root volume is sized at launch, no flavor disk has to hold it.
        min_ram=0, min_disk=0,
        status="active" if state == "available" else state,
        visibility="public" if public else "private",
        hidden=deprecated is not None and deprecated <= now,
        is_snapshot=False, architecture=arch, login_user=None,
        raw={**raw, "cloudnorm:source": source or "owned by this account"})


def _count(value: Any, field: str) -> int:
    if value is None:
        return 0
    if type(value) is not int or value < 0:
        raise ValueError(f"{field} is {errors.describe(value)}, not a count")
    return value


@records.guarded("instance type", id_keys=("InstanceType",))
def _flavor(record: dict[str, Any]) -> Flavor:
    name = _identity(records.mapping(record, "the record").get("InstanceType"), "InstanceType")
    return Flavor(
        id=name, name=name,
        ram=_count(records.mapping(record.get("MemoryInfo"), "MemoryInfo").get("SizeInMiB"),
                   "MemoryInfo.SizeInMiB"),
        vcpus=_count(records.mapping(record.get("VCpuInfo"), "VCpuInfo").get("DefaultVCpus"),
                     "VCpuInfo.DefaultVCpus"),
        disk=0, is_public=True, disabled=False, raw=record)


def normalize_flavors(raw: list[dict[str, Any]], families: tuple[str, ...]) -> list[Flavor]:
    """DescribeInstanceTypes records as flavors, cheapest family first.

    The neutral chooser takes the smallest fitting size; on EC2 the same size costs more in
    a dearer family. So a type is left to automatic choice only when no earlier (cheaper)
    family of ``families`` has a type with as much memory and as many vCPUs; the others are
    marked ``disabled`` with the reason in ``raw["cloudnorm:passed_over"]`` and can still be
    named.
    """
    def family(name: str) -> str:
        return name.split(".", 1)[0]

    def rank(name: str) -> int:
        return families.index(family(name)) if family(name) in families else len(families)

    if not isinstance(raw, list):
        raise errors.ProviderError(f"the cloud sent {errors.describe(raw)} where a list of "
                                   "instance types belongs")
    found = [_flavor(record) for record in raw]
    found.sort(key=lambda f: (rank(f.name), f.ram, f.vcpus, f.name))
    result = []
    for flavor in found:
        cheaper = next((o for o in found if rank(o.name) < rank(flavor.name)
                        and o.ram >= flavor.ram and o.vcpus >= flavor.vcpus), None)
        if cheaper is not None:
            flavor = attrs.evolve(flavor, disabled=True, raw={
                **flavor.raw, "cloudnorm:passed_over":
                f"'{cheaper.name}' of the cheaper family '{family(cheaper.name)}' has as much "
                "memory and as many vCPUs"})
        result.append(flavor)
    return result


# -- servers ------------------------------------------------------------------------------
def _state_name(instance: dict[str, Any]) -> str:
    """The instance's state name; every DescribeInstances record has one."""
    state = instance.get("State")
    if not isinstance(state, dict):
        raise ValueError(f"State is {errors.describe(state)}, not a mapping")
    name = state.get("Name")
    if type(name) is not str or not name:
        raise ValueError(f"State.Name is {errors.describe(name)}, not a state name")
    return name


@records.guarded("instance", id_keys=_INSTANCE_IDS)
def server_state(record: Mapping[str, Any], *, terminating: bool = False,
                 account_id: str | None = None) -> ServerState:
    """One ``Instance`` of DescribeInstances as a :class:`ServerState`.

    An instance that EC2 ended without being asked to (capacity, a volume limit...) is in
    the ``error`` phase with EC2's reason, so a wait for it to boot ends at once;
    ``terminating`` says cloudnorm itself asked EC2 to end it. ``account_id`` is the
    reservation's OwnerId (DescribeInstances names the account per reservation, not per
    instance): it is added to ``raw`` when the instance does not name one.
    """
    instance = records.mapping(record, "the record")
    instance_id = _identity(instance.get("InstanceId"), "InstanceId")
    found = _read_tags(instance.get("Tags"))
    name = _state_name(instance)
    phase = STATE_PHASES.get(name, "error")
    reason = records.mapping(instance.get("StateReason"), "StateReason")
    code = reason.get("Code")
    if code is not None and type(code) is not str:
        raise ValueError(f"StateReason.Code is {errors.describe(code)}, not text")
    fault = None
    if name in _ENDING and not terminating and code not in _USER_ENDED:
        phase = "error"
        fault = (_word(reason.get("Message")) or code
                 or _word(instance.get("StateTransitionReason")) or "EC2 ended the instance")
    raw = dict(instance)
    if account_id:
        raw.setdefault("OwnerId", account_id)
    return ServerState(
        id=instance_id, name=found.get("Name", ""), phase=phase, status=name, fault=fault,
        quota=fault is not None and "quota" in fault.lower(), owner=found.get(OWNER_KEY),
        tags=found, raw=raw)


@records.guarded("reservation", id_keys=("ReservationId",))
def reservation_states(reservation: dict[str, Any],
                       terminating: set[str] | frozenset[str] = frozenset()
                       ) -> list[ServerState]:
    """The :func:`server_state` of each instance of a DescribeInstances reservation;
    ``terminating`` holds the ids cloudnorm itself asked EC2 to terminate."""
    account = _word(records.mapping(reservation, "the reservation").get("OwnerId"))
    return [server_state(instance, account_id=account,
                         terminating=_word(instance.get("InstanceId")) in terminating)
            for instance in records.mappings(reservation.get("Instances"), "Instances")]


def _address(value: Any, version: int, field: str) -> tuple[str, bool]:
    """(address, globally routable?) of an address field that must hold one."""
    try:
        found, routable = address_facts(value)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from exc
    if found != version:
        # An IPv6 address where EC2 puts IPv4 ones (or the reverse) is a record EC2 did
        # not send; reporting it in either family would be a guess.
        raise ValueError(f"{field} holds the IPv{found} address {value!r}, not an IPv{version} "
                         "address")
    return value, routable


def _optional_address(value: Any, version: int, field: str) -> str | None:
    # EC2 sends an empty element for an address it has not assigned yet.
    return None if value is None or value == "" else _address(value, version, field)[0]


def _device_index(nic: dict[str, Any]) -> int:
    index = records.mapping(nic.get("Attachment"), "Attachment").get("DeviceIndex")
    if index is None:
        return 0
    if type(index) is not int:
        raise ValueError(f"Attachment.DeviceIndex is {errors.describe(index)}, not a number")
    return index


def normalize_server(state: ServerState, location: Location, networks: Sequence[Network]
                     ) -> Server:
    """The :class:`Server` of a :func:`server_state`, its addresses classified against
    ``networks`` (the subnets, by id)."""
    return _server(dict(state.raw), state, location, networks)


@records.guarded("instance", id_keys=_INSTANCE_IDS)
def _server(raw: dict[str, Any], state: ServerState, location: Location,
            nets: Sequence[Network]) -> Server:
    by_subnet = {n.id: n for n in nets}
    addresses: list[Address] = []

    def add_public(value: Any, label: str | None, association: dict[str, Any] | None,
                   field: str) -> None:
        ip = _optional_address(value, 4, field)
        if ip is not None and all(a.ip != ip for a in addresses):
            addresses.append(_public_address(ip, label, association))

    def add_v6(value: Any, label: str | None, field: str) -> None:
        ip, routable = _address(value, 6, field)
        if all(a.ip != ip for a in addresses):
            where = f" in subnet {label}" if label else ""
            addresses.append(Address(
                ip, 6, label, routable,
                f"{'globally routable' if routable else 'private-range'} IPv6 address{where}",
                "fixed"))

    for nic in sorted(records.mappings(raw.get("NetworkInterfaces"), "NetworkInterfaces"),
                      key=_device_index):
        subnet_id = _optional_identity(nic.get("SubnetId"), "SubnetId")
        net = by_subnet.get(subnet_id or "")
        label = net.name if net else subnet_id
        cidr = f" ({', '.join(net.subnets)})" if net and net.subnets else ""
        primary = _optional_address(nic.get("PrivateIpAddress"), 4, "PrivateIpAddress")
        privates = records.mappings(nic.get("PrivateIpAddresses"), "PrivateIpAddresses")
        if not privates and primary is not None:
            privates = [{"PrivateIpAddress": primary}]
        for private in privates:
            # An entry is one private address: without it the entry says nothing true.
            ip, _ = _address(private.get("PrivateIpAddress"), 4, "PrivateIpAddress")
            if all(a.ip != ip for a in addresses):
                where = f" in subnet {label}{cidr}" if label else ""
                addresses.append(Address(
                    ip, 4, label, False,
                    f"private address{where}; AWS never routes it from outside", "fixed"))
            association = records.mapping(private.get("Association"), "Association")
            add_public(association.get("PublicIp"), label, association, "Association.PublicIp")
        association = records.mapping(nic.get("Association"), "Association")
        add_public(association.get("PublicIp"), label, association, "Association.PublicIp")
        for v6 in records.mappings(nic.get("Ipv6Addresses"), "Ipv6Addresses"):
            add_v6(v6.get("Ipv6Address"), label, "Ipv6Address")
    top_subnet = _optional_identity(raw.get("SubnetId"), "SubnetId")
    add_public(raw.get("PublicIpAddress"), top_subnet, None, "PublicIpAddress")
    top_private = _optional_address(raw.get("PrivateIpAddress"), 4, "PrivateIpAddress")
    if top_private is not None and all(a.ip != top_private for a in addresses):
        addresses.append(Address(top_private, 4, top_subnet, False,
                                 "private address of the instance", "fixed"))
    if raw.get("Ipv6Address") not in (None, ""):
        add_v6(raw["Ipv6Address"], top_subnet, "Ipv6Address")
    interface, _ = choose_interface(addresses)
    placement = records.mapping(raw.get("Placement"), "Placement")
    return Server(
        id=state.id, name=state.name, status=server_status(state.phase),
        location=Location(cloud=location.cloud, region=location.region,
                          zone=_word(placement.get("AvailabilityZone")),
                          project=_word(raw.get("OwnerId")) or location.project),
        image=_word(raw.get("ImageId")), flavor=_word(raw.get("InstanceType")),
        addresses=tuple(addresses),
        public_v4=next((a.ip for a in addresses if a.public and a.version == 4), None),
        public_v6=next((a.ip for a in addresses if a.public and a.version == 6), None),
        private_v4=next((a.ip for a in addresses if not a.public and a.version == 4), None),
        interface_ip=interface.ip if interface else None,
        key_name=_word(raw.get("KeyName")), tags=dict(state.tags),
        created=parse_time(raw.get("LaunchTime")), volumes=_volumes(raw), raw=raw)


def _volumes(raw: dict[str, Any]) -> tuple[Volume, ...]:
    """The instance's EBS volumes from its BlockDeviceMappings (the root is the one under
    RootDeviceName); EC2's instance record gives no sizes."""
    root = _word(raw.get("RootDeviceName"))
    found = []
    for mapping in records.mappings(raw.get("BlockDeviceMappings"), "BlockDeviceMappings"):
        ebs = records.mapping(mapping.get("Ebs"), "BlockDeviceMappings.Ebs")
        volume_id = _optional_identity(ebs.get("VolumeId"), "Ebs.VolumeId")
        if volume_id is None:
            continue
        device = _word(mapping.get("DeviceName"))
        keep = ebs.get("DeleteOnTermination")
        found.append(Volume(id=volume_id, size=None, device=device, root=device == root,
                            delete_on_termination=keep if isinstance(keep, bool) else None))
    return tuple(sorted(found, key=lambda v: (not v.root, v.device or "")))


def _public_address(ip: str, label: str | None, association: dict[str, Any] | None) -> Address:
    owner = _word((association or {}).get("IpOwnerId"))
    if owner == "amazon":
        how = "public IPv4 AWS assigned at launch"
    elif owner:
        how = f"public IPv4 of account {owner} (an Elastic IP)"
    else:
        how = "public IPv4 address of the instance"
    # EC2 never puts public IPv4 addresses on the NIC: the internet gateway translates.
    return Address(ip, 4, label, True, f"{how}, NATed to the private address by the "
                   "internet gateway", "floating")

"""Amazon EC2 driver over boto3.

botocore does the transport work: the credential chain (explicit keys, named profiles, the
environment, IAM Identity Center/SSO, instance roles), signing, retries in its ``standard``
mode (throttling such as ``RequestLimitExceeded`` and transient faults, with backoff and a
retry quota; ``max_attempts`` comes from ``AWS_MAX_ATTEMPTS`` or ``~/.aws/config``) and
pagination. This module turns EC2's answers into cloudnorm's models and its errors into
cloudnorm's errors; it makes no choice the provider-neutral core can make.

The ``cloudnorm:`` mapping of a cloud entry says where to go::

    clouds:
      work-aws:
        cloudnorm:
          provider: aws
          region: eu-central-1
          aws_profile: work        # a profile of ~/.aws/config; default: the usual chain
          vpc: vpc-0abc            # optional: only this VPC's subnets (id or Name tag)
          subnet: subnet-0def      # optional: the subnet servers go to (id or Name tag)
          ip: elastic              # optional: an Elastic IP per server (default: public)
"""

from __future__ import annotations

import contextlib
import datetime
import fnmatch
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import attrs
import boto3
from botocore import exceptions as bce
from botocore.config import Config
from botocore.parsers import ResponseParserError

from cloudnorm import __version__, errors, images, networks, ratelimit
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

#: The network Elastic IPs come from, as cloudnorm's flow sees it (there is one per region).
POOL_ID = "amazon"
POOL_NAME = "Amazon public IPv4 pool"
_KEY_PREFIX = "cloudnorm-"
_IP_MODES = ("public", "elastic")
_LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
# EC2 states, in the words the provider-neutral flow waits for (Nova's).
_FLOW_STATUS = {"pending": "BUILD", "running": "ACTIVE", "stopping": "SHUTOFF",
                "stopped": "SHUTOFF", "shutting-down": "DELETING", "terminated": "DELETED"}
_SERVER_STATUS = {"pending": "pending", "running": "running", "stopping": "stopping",
                  "stopped": "stopped", "shutting-down": "terminated",
                  "terminated": "terminated"}
_USER_ENDED = ("Client.UserInitiatedShutdown", "Client.InstanceInitiatedShutdown")
_FILTER_VALUES = 200  # EC2 accepts at most this many values per filter

# EC2 and STS operations that change nothing: they draw on the (larger) read budget.
_READ_PREFIXES = ("Describe", "Get", "List")
_AUTH_CODES = {"AuthFailure", "UnrecognizedClientException", "InvalidClientTokenId",
               "SignatureDoesNotMatch", "IncompleteSignature", "ExpiredToken",
               "ExpiredTokenException", "InvalidToken"}
_THROTTLE_CODES = {"RequestLimitExceeded", "Throttling", "ThrottlingException",
                   "TooManyRequestsException"}
_CAPACITY_CODES = {"InsufficientInstanceCapacity", "InsufficientHostCapacity",
                   "InsufficientReservedInstanceCapacity", "InsufficientCapacity",
                   "InsufficientAddressCapacity"}
_QUOTA_CODES = {"InstanceLimitExceeded": "instances", "VcpuLimitExceeded": "vCPUs",
                "AddressLimitExceeded": "Elastic IPs",
                "SecurityGroupLimitExceeded": "security groups",
                "RulesPerSecurityGroupLimitExceeded": "security group rules",
                "VolumeLimitExceeded": "EBS volume storage",
                "NetworkInterfaceLimitExceeded": "network interfaces",
                "InsufficientFreeAddressesInSubnet": "free addresses in the subnet",
                "ResourceLimitExceeded": "resources", "MaxIOPSLimitExceeded": "EBS IOPS"}


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


def _parse_time(value: Any) -> datetime.datetime | None:
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    # Only text: a number would read as a compact ISO date (20240101).
    if type(value) is not str or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


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
def _tags(record: dict[str, Any]) -> dict[str, str]:
    return _read_tags(records.mapping(record, "the record").get("Tags"))


def _owner_tags(owner: str, resource_type: str, **extra: str) -> list[dict[str, Any]]:
    tags = [{"Key": OWNER_KEY, "Value": owner}]
    tags += [{"Key": k, "Value": v} for k, v in extra.items()]
    return [{"ResourceType": resource_type, "Tags": tags}]


def _by_owner(owner: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{OWNER_KEY}", "Values": [owner]}]


# -- normalization ------------------------------------------------------------------------
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
    deprecated = _parse_time(raw.get("DeprecationTime"))
    now = datetime.datetime.now(datetime.timezone.utc)
    state = state or "available"
    return Image(
        id=image_id, name=name, os_distro=distro, os_version=version,
        created=_parse_time(raw.get("CreationDate")),
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


def _state(instance: dict[str, Any]) -> str:
    """The instance's state name; every DescribeInstances record has one."""
    state = instance.get("State")
    if not isinstance(state, dict):
        raise ValueError(f"State is {errors.describe(state)}, not a mapping")
    name = state.get("Name")
    if type(name) is not str or not name:
        raise ValueError(f"State.Name is {errors.describe(name)}, not a state name")
    return name


@records.guarded("instance", id_keys=_INSTANCE_IDS)
def flow_view(instance: dict[str, Any], owner_id: str | None = None,
              terminating: bool = False) -> dict[str, Any]:
    """A DescribeInstances record with the keys the provider-neutral flow reads.

    ``id``, ``name``, ``status`` (Nova's words: BUILD, ACTIVE, DELETED, ERROR...),
    ``metadata`` (the tags) and ``fault`` are added; everything else is EC2's own.
    An instance that EC2 ended without being asked to (capacity, a volume limit...)
    is in ERROR with EC2's reason, so a wait for it to boot ends at once.
    """
    instance_id = _identity(records.mapping(instance, "the record").get("InstanceId"), "InstanceId")
    tags = _read_tags(instance.get("Tags"))
    state = _state(instance)
    status = _FLOW_STATUS.get(state, "ERROR")
    reason = records.mapping(instance.get("StateReason"), "StateReason")
    code = reason.get("Code")
    if code is not None and type(code) is not str:
        raise ValueError(f"StateReason.Code is {errors.describe(code)}, not text")
    fault: dict[str, Any] = {}
    if state in ("shutting-down", "terminated") and not terminating \
            and code not in _USER_ENDED:
        status = "ERROR"
        fault = {"message": _word(reason.get("Message")) or code
                 or _word(instance.get("StateTransitionReason")) or "EC2 ended the instance"}
    view = dict(instance)
    view.update(id=instance_id, name=tags.get("Name", ""), status=status,
                metadata=tags, fault=fault)
    if owner_id:
        view.setdefault("OwnerId", owner_id)
    return view


@records.guarded("reservation", id_keys=("ReservationId",))
def reservation_views(reservation: dict[str, Any],
                      terminating: set[str] | frozenset[str] = frozenset()
                      ) -> list[dict[str, Any]]:
    """The :func:`flow_view` of each instance of a DescribeInstances reservation;
    ``terminating`` holds the ids cloudnorm itself asked EC2 to terminate."""
    owner = _word(records.mapping(reservation, "the reservation").get("OwnerId"))
    return [flow_view(instance, owner, _word(instance.get("InstanceId")) in terminating)
            for instance in records.mappings(reservation.get("Instances"), "Instances")]


def _address(value: Any, version: int, field: str) -> tuple[str, bool]:
    """(address, globally routable?) of an address field that must hold one."""
    try:
        found, routable = networks.address_facts(value)
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


@records.guarded("instance", id_keys=_INSTANCE_IDS)
def normalize_server(raw: dict[str, Any], location: Location, nets: list[Network]) -> Server:
    """A :func:`flow_view` record as a :class:`Server` with classified addresses."""
    instance_id = _identity(records.mapping(raw, "the record").get("InstanceId"), "InstanceId")
    tags = _read_tags(raw.get("Tags"))
    state = _state(raw)
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
    status = "error" if raw.get("status") == "ERROR" else _SERVER_STATUS.get(state, "error")
    interface, _ = networks.choose_interface(addresses)
    placement = records.mapping(raw.get("Placement"), "Placement")
    return Server(
        id=instance_id, name=tags.get("Name", ""), status=status,
        location=Location(cloud=location.cloud, region=location.region,
                          zone=_word(placement.get("AvailabilityZone")),
                          project=_word(raw.get("OwnerId")) or location.project),
        image=_word(raw.get("ImageId")), flavor=_word(raw.get("InstanceType")),
        addresses=tuple(addresses),
        public_v4=next((a.ip for a in addresses if a.public and a.version == 4), None),
        public_v6=next((a.ip for a in addresses if a.public and a.version == 6), None),
        private_v4=next((a.ip for a in addresses if not a.public and a.version == 4), None),
        interface_ip=interface.ip if interface else None,
        key_name=_word(raw.get("KeyName")), tags=tags,
        created=_parse_time(raw.get("LaunchTime")), raw=raw)


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


class AwsDriver(Driver):
    provider = "aws"

    def __init__(self, settings: Any, profile: Any) -> None:
        super().__init__(settings, profile)
        options = settings.options
        self._endpoint_url = options.get("endpoint_url") or None
        self._ip_mode = str(options.get("ip") or "public").lower()
        if self._ip_mode not in _IP_MODES:
            raise errors.ConfigError(
                f"cloud '{settings.name}': cloudnorm: ip: must be one of "
                f"{', '.join(_IP_MODES)}, not '{options.get('ip')}'", cloud=settings.name)
        if self._ip_mode == "elastic":
            # An Elastic IP per server, even on subnets that map a public address at
            # launch: the flow then plans one for every server (step 5).
            self.profile = attrs.evolve(profile, requires_floating_ip=True,
                                        floating_ip_source="aws")
        self._lock = threading.Lock()
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self._region: str | None = settings.region
        self._net: tuple[list[networks.NetworkFacts], list[networks.Router],
                         networks.NetworkHints] | None = None
        self._group_vpcs: dict[str, str] = {}
        self._replaced_groups: dict[str, str] = {}
        self._terminating: set[str] = set()
        self._console_latest: set[str] = set()
        self.limiter = ratelimit.limiter_for(self.identity(), ratelimit.RateLimit.from_options(
            "aws", options.get("rate_limit"), settings.name))

    # -- plumbing -------------------------------------------------------------------------
    def _client(self, service: str) -> Any:
        with self._lock:
            if service in self._clients:
                return self._clients[service]
            options = self.settings.options
            with self._translate(f"reading the AWS configuration for {service}"):
                if self._session is None:
                    kwargs: dict[str, Any] = {}
                    if options.get("aws_profile"):
                        kwargs["profile_name"] = str(options["aws_profile"])
                    for key in ("aws_access_key_id", "aws_secret_access_key",
                                "aws_session_token"):
                        if options.get(key):
                            kwargs[key] = str(options[key])
                    if self._region:
                        kwargs["region_name"] = self._region
                    self._session = boto3.session.Session(**kwargs)
                    self._region = self._session.region_name
                if not self._region:
                    raise errors.ConfigError(
                        f"cloud '{self.settings.name}' names no region: add region: under "
                        f"cloudnorm: in {self.settings.source or 'clouds.yaml'}, or set "
                        "AWS_REGION", cloud=self.settings.name)
                config = Config(retries={"mode": "standard"}, connect_timeout=10,
                                read_timeout=60, user_agent_extra=f"cloudnorm/{__version__}")
                client = self._session.client(service, endpoint_url=self._endpoint_url,
                                              config=config)
                # Per HTTP attempt, so that botocore's own retries spend the budget too.
                client.meta.events.register("before-send", self._throttle)
            self._clients[service] = client
            return client

    def _throttle(self, event_name: str = "", **_: Any) -> None:
        """botocore hook: wait for this account's turn. Describe/Get/List calls are reads."""
        operation = event_name.rsplit(".", 1)[-1]
        self.limiter.acquire(not operation.startswith(_READ_PREFIXES))

    @property
    def region(self) -> str:
        if not self._region:
            self._client("ec2")
        return str(self._region)

    @contextlib.contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        """Turn botocore's exceptions into cloudnorm errors naming what to fix."""
        name = self.settings.name
        source = self.settings.source or "clouds.yaml"
        try:
            yield
        except bce.ClientError as exc:
            raise _client_error(name, what, exc) from exc
        except (bce.ProfileNotFound, bce.InvalidConfigError, bce.NoRegionError) as exc:
            raise errors.ConfigError(f"cloud '{name}': {exc}; check aws_profile and region "
                                     f"under cloudnorm: in {source}", cloud=name) from exc
        except (bce.NoCredentialsError, bce.PartialCredentialsError) as exc:
            raise errors.AuthError(
                f"cloud '{name}' has no usable AWS credentials while {what} ({exc}): name a "
                f"profile with aws_profile: in {source}, or set AWS_PROFILE or "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY", cloud=name) from exc
        except (bce.SSOError, bce.CredentialRetrievalError, bce.TokenRetrievalError) as exc:
            raise errors.AuthError(
                f"cloud '{name}': AWS credentials could not be obtained while {what} ({exc});"
                " for an SSO profile run `aws sso login --profile NAME`", cloud=name) from exc
        except (bce.ConnectionError, bce.HTTPClientError) as exc:
            raise errors.ServiceUnavailable(
                f"cannot reach AWS for cloud '{name}' while {what}: {exc}; check the region"
                + (f" and endpoint_url {self._endpoint_url}" if self._endpoint_url else "")
                + " and the network", cloud=name) from exc
        except bce.BotoCoreError as exc:
            raise errors.ProviderError(f"cloud '{name}' failed while {what}: {exc}",
                                       cloud=name) from exc
        except ResponseParserError as exc:
            # Not a BotoCoreError: a reply cut short or garbled on the way (the parser
            # quotes the whole body; the start of it is enough).
            detail = str(exc)
            raise errors.ProviderError(
                f"cloud '{name}': AWS answered something that is not a reply of the API "
                f"while {what} (cut short or garbled on the way): "
                f"{detail[:300]}{'...' if len(detail) > 300 else ''}",
                endpoint=what.removeprefix("calling "), cloud=name) from exc

    def _call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        client = self._client(service)
        with self._translate(f"calling {service} {_op_name(operation)}"):
            return getattr(client, operation)(**params)  # type: ignore[no-any-return]

    def _pages(self, service: str, operation: str, key: str,
               **params: Any) -> list[dict[str, Any]]:
        """Every record of a paginated call (botocore's paginator follows NextToken)."""
        client = self._client(service)
        items: list[dict[str, Any]] = []
        with self._translate(f"calling {service} {_op_name(operation)}"):
            for page in client.get_paginator(operation).paginate(**params):
                items.extend(page.get(key) or ())
        return items

    def _instances(self, **params: Any) -> list[dict[str, Any]]:
        found = []
        for reservation in self._pages("ec2", "describe_instances", "Reservations", **params):
            found.extend(reservation_views(reservation, self._terminating))
        return found

    # -- Driver: discovery ----------------------------------------------------------------
    def identity(self) -> str:
        options = self.settings.options
        who = (options.get("aws_profile") or options.get("aws_access_key_id")
               or "default credentials")
        return "|".join(str(x) for x in ("aws", self._endpoint_url or "", who,
                                         self.settings.region or "", options.get("vpc") or ""))

    def location(self) -> Location:
        return Location(cloud=self.settings.name, region=self.region,
                        zone=self.settings.options.get("zone") or None)

    def list_images(self) -> list[Image]:
        """The profile's publishers' series, and the account's own images.

        Each ``images:`` entry of the profile is resolved through its public parameter
        (the publisher's "current" image) when the region has it, else by owner and name
        pattern; all pattern lookups share one DescribeImages call.
        """
        entries = list(self.profile.images)
        found: dict[str, Image] = {}
        by_parameter = {e["ssm_parameter"]: e for e in entries if e.get("ssm_parameter")}
        resolved = self._parameters(sorted(by_parameter))
        if resolved:
            records = {r["ImageId"]: r for r in self._pages(
                "ec2", "describe_images", "Images",
                Filters=[{"Name": "image-id", "Values": sorted(set(resolved.values()))}])}
            for parameter, image_id in sorted(resolved.items()):
                record = records.get(image_id)
                if record is None:
                    LOG.info("%s: public parameter %s names %s, which DescribeImages does not "
                             "return; using the name pattern", self.settings.name, parameter,
                             image_id)
                    continue
                entry = by_parameter[parameter]
                found[image_id] = normalize_image(record, entry, f"public parameter {parameter}")
                entries.remove(entry)
        if entries:
            matching = self._pages(
                "ec2", "describe_images", "Images", Owners=sorted({e["owner"] for e in entries}),
                Filters=[{"Name": "name", "Values": sorted({e["name"] for e in entries})},
                         {"Name": "state", "Values": ["available"]}])
            for record in matching:
                # One call serves every series: keep only each owner's own pattern.
                series = [e for e in entries if record.get("OwnerId") == e["owner"]
                          and fnmatch.fnmatchcase(record.get("Name") or "", e["name"])]
                if series:
                    entry = series[0]
                    found[record["ImageId"]] = normalize_image(
                        record, entry, f"owner {entry['owner']}, name {entry['name']}")
        for record in self._pages("ec2", "describe_images", "Images", Owners=["self"]):
            found.setdefault(record["ImageId"], normalize_image(record))
        return list(found.values())

    def _parameters(self, names: list[str]) -> dict[str, str]:
        """Public parameter name -> image id, for the parameters this region has."""
        values: dict[str, str] = {}
        for start in range(0, len(names), 10):  # GetParameters takes at most 10 names
            try:
                reply = self._call("ssm", "get_parameters", Names=names[start:start + 10])
            except errors.ProviderError as exc:
                # Lacking ssm:GetParameters is common in locked-down accounts, and
                # EC2-compatible endpoints may have no SSM: the name patterns find the
                # same series.
                if isinstance(exc, errors.ServiceUnavailable) or exc.status in (
                        "AccessDeniedException", "AccessDenied"):
                    LOG.info("%s: public parameters unreadable (%s); using name patterns",
                             self.settings.name, exc.status or exc.message)
                    return values
                raise
            values.update({p["Name"]: p["Value"] for p in reply.get("Parameters") or ()
                           if str(p.get("Value", "")).startswith("ami-")})
        return values

    def list_flavors(self) -> list[Flavor]:
        families = self.profile.instance_families
        params: dict[str, Any] = {}
        if families:
            params["Filters"] = [{"Name": "instance-type",
                                  "Values": [f"{family}.*" for family in families]}]
        return normalize_flavors(
            self._pages("ec2", "describe_instance_types", "InstanceTypes", **params), families)

    def network_facts(self) -> tuple[list[networks.NetworkFacts], list[networks.Router]] | None:
        facts, routers, _ = self._load_networks()
        return facts, routers

    def network_hints(self) -> networks.NetworkHints:
        _, _, hints = self._net or self._load_networks()
        profile_hints = networks.NetworkHints.from_entries(
            self.profile.networks, f"profile '{self.profile.name}'")
        merged = hints.merged_over(profile_hints)
        if self.settings.networks:
            merged = networks.NetworkHints.from_entries(
                self.settings.networks, self.settings.source or "clouds.yaml").merged_over(merged)
        return merged

    def _load_networks(self) -> tuple[list[networks.NetworkFacts], list[networks.Router],
                                      networks.NetworkHints]:
        vpcs = self._pages("ec2", "describe_vpcs", "Vpcs")
        subnets = self._pages("ec2", "describe_subnets", "Subnets")
        tables = self._pages("ec2", "describe_route_tables", "RouteTables")
        result = self._networks_from(vpcs, subnets, tables)
        with self._lock:
            self._net = result
        return result

    def _networks_from(self, vpcs: list[dict[str, Any]], subnets: list[dict[str, Any]],
                       tables: list[dict[str, Any]]
                       ) -> tuple[list[networks.NetworkFacts], list[networks.Router],
                                  networks.NetworkHints]:
        source = self.settings.source or "clouds.yaml"
        wanted_vpc = self.settings.options.get("vpc")
        if wanted_vpc:
            match = [v for v in vpcs if wanted_vpc in (v["VpcId"], _tags(v).get("Name"))]
            if not match:
                raise errors.ConfigError(
                    f"cloud '{self.settings.name}' ({source}) names vpc '{wanted_vpc}', but "
                    f"region {self.region} has none such; VPCs: "
                    + (", ".join(f"{v['VpcId']} ({_tags(v).get('Name', 'no name')})"
                                 for v in vpcs) or "none"), cloud=self.settings.name)
            vpcs = match[:1]
        vpc_ids = {v["VpcId"] for v in vpcs}
        default_vpcs = {v["VpcId"] for v in vpcs if v.get("IsDefault")}
        subnets = sorted((s for s in subnets if s.get("VpcId") in vpc_ids
                          and s.get("State", "available") == "available"),
                         key=lambda s: (s.get("AvailabilityZone", ""), s["SubnetId"]))
        main_tables = {t.get("VpcId"): t for t in tables
                       if any(a.get("Main") for a in t.get("Associations") or ())}
        explicit = {a["SubnetId"]: t for t in tables for a in t.get("Associations") or ()
                    if a.get("SubnetId")}

        facts: list[networks.NetworkFacts] = []
        gateways: dict[str, list[str]] = {}
        routes: dict[str, bool] = {}
        statements: dict[str, str] = {}
        for subnet in subnets:
            sid = subnet["SubnetId"]
            table = explicit.get(sid) or main_tables.get(subnet.get("VpcId"))
            igw = _internet_gateway(table)
            maps = bool(subnet.get("MapPublicIpOnLaunch"))
            cidrs = [networks.Subnet(id=sid, network_id=sid, cidr=subnet["CidrBlock"],
                                     ip_version=4)] if subnet.get("CidrBlock") else []
            cidrs += [networks.Subnet(id=f"{sid}-v6", network_id=sid,
                                      cidr=a["Ipv6CidrBlock"], ip_version=6)
                      for a in subnet.get("Ipv6CidrBlockAssociationSet") or ()
                      if a.get("Ipv6CidrBlock")]
            raw = {**subnet, "cloudnorm:internet_gateway": igw,
                   "cloudnorm:route_table": (table or {}).get("RouteTableId"),
                   "cloudnorm:default_vpc": subnet.get("VpcId") in default_vpcs}
            facts.append(networks.NetworkFacts(
                id=sid, name=_tags(subnet).get("Name") or sid, subnets=tuple(cidrs), raw=raw))
            if igw:
                gateways.setdefault(igw, []).append(sid)
                routes[sid] = True
                statements[f"routes_externally:{sid}"] = (
                    f"the subnet maps a public IPv4 at launch and routes 0.0.0.0/0 to {igw}"
                    if maps else f"the subnet routes 0.0.0.0/0 to {igw} but maps no public "
                    "IPv4 at launch: cloudnorm asks for one with AssociatePublicIpAddress")
            elif maps:
                routes[sid] = False
                statements[f"routes_externally:{sid}"] = (
                    "the subnet maps a public IPv4 at launch, but no route leads to an "
                    "internet gateway")
        routers = [networks.Router(id=igw, name=igw, external_network_id=POOL_ID,
                                   internal_network_ids=tuple(ids))
                   for igw, ids in sorted(gateways.items())]
        if self._ip_mode == "elastic":
            facts.append(networks.NetworkFacts(
                id=POOL_ID, name=POOL_NAME, router_external=True,
                subnets=(networks.Subnet(id=f"{POOL_ID}-v4", network_id=POOL_ID,
                                         cidr="0.0.0.0/0", ip_version=4),),
                raw={"cloudnorm:pool": "amazon"}))
            routes[POOL_ID] = True
            statements[f"routes_externally:{POOL_ID}"] = (
                "Elastic IPs are allocated from Amazon's public IPv4 pool")
        default, why = self._default_subnet(facts, gateways)
        if default:
            statements["default_interface"] = why
        hints = networks.NetworkHints(routes_externally=routes, default_interface=default,
                                      source="AWS", statements=statements)
        return facts, routers, hints

    def _default_subnet(self, facts: list[networks.NetworkFacts],
                        gateways: dict[str, list[str]]) -> tuple[str | None, str]:
        """The subnet servers go to unless the caller names one, and why."""
        options = self.settings.options
        subnets = [f for f in facts if f.id != POOL_ID]
        zone = options.get("zone")
        named = options.get("subnet")
        if named:
            match = [f for f in subnets if named in (f.id, f.name)]
            if not match:
                raise errors.ConfigError(
                    f"cloud '{self.settings.name}' ({self.settings.source or 'clouds.yaml'}) "
                    f"names subnet '{named}', but there is none such"
                    + (f" in VPC {options['vpc']}" if options.get("vpc") else "")
                    + f"; subnets: {', '.join(f.name for f in subnets) or 'none'}",
                    cloud=self.settings.name)
            return match[0].id, (f"{self.settings.source or 'clouds.yaml'} names it under "
                                 "cloudnorm: subnet:")

        def pick(candidates: list[networks.NetworkFacts]) -> networks.NetworkFacts:
            in_zone = [f for f in candidates if f.raw.get("AvailabilityZone") == zone]
            return (in_zone or candidates)[0]  # facts are sorted by zone, then id

        def where(chosen: networks.NetworkFacts) -> str:
            az = chosen.raw.get("AvailabilityZone")
            return (f"zone {az}, as cloudnorm: zone: asks" if zone and az == zone
                    else f"{az}, the first availability zone by name")

        defaults = [f for f in subnets if f.raw.get("cloudnorm:default_vpc")
                    and f.raw.get("DefaultForAz")]
        if defaults:
            chosen = pick(defaults)
            return chosen.id, (f"it is the default VPC {chosen.raw.get('VpcId')}'s subnet in "
                               f"{where(chosen)}")
        routed = [f for f in subnets if f.raw.get("cloudnorm:internet_gateway")]
        if len({f.raw.get("VpcId") for f in routed}) == 1:
            # Subnets that already map a public address are the VPC owner's public tier.
            routed.sort(key=lambda f: not f.raw.get("MapPublicIpOnLaunch"))
            mapped = [f for f in routed if f.raw.get("MapPublicIpOnLaunch")] or routed
            chosen = pick(mapped)
            vpc = chosen.raw.get("VpcId")
            scope = (f"cloudnorm: vpc: names VPC {vpc}" if options.get("vpc") else
                     f"there is no default VPC and VPC {vpc} is the only one routed to an "
                     "internet gateway")
            return chosen.id, (f"{scope}; this is its subnet routed to "
                               f"{chosen.raw.get('cloudnorm:internet_gateway')} in "
                               f"{where(chosen)}")
        # Several VPCs reach the internet: the flow asks the caller to pick one.
        return None, ""

    # -- Driver: servers ------------------------------------------------------------------
    def list_servers(self) -> list[dict[str, Any]]:
        return self._instances(Filters=[{"Name": "instance-state-name",
                                         "Values": _LIVE_STATES}])

    def get_server(self, name_or_id: str) -> list[dict[str, Any]]:
        if name_or_id.startswith("i-"):
            found = self._instances(Filters=[{"Name": "instance-id", "Values": [name_or_id]}])
            if found:
                return found
        return self._instances(Filters=[{"Name": "tag:Name", "Values": [name_or_id]},
                                        {"Name": "instance-state-name", "Values": _LIVE_STATES}])

    def normalize_server(self, raw: dict[str, Any], nets: list[Network]) -> Server:
        return normalize_server(raw, self.location(), nets)

    def poll_servers(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        ordered = sorted(ids)
        # A filter, unlike InstanceIds, does not fail on an id EC2 does not show yet
        # (eventual consistency right after RunInstances).
        for start in range(0, len(ordered), _FILTER_VALUES):
            for view in self._instances(Filters=[{
                    "Name": "instance-id", "Values": ordered[start:start + _FILTER_VALUES]}]):
                found[view["id"]] = view
        return found

    def console_output(self, server_id: str) -> str:
        # Latest=True reads the console as it is now (Nitro instances); older types refuse
        # it and only have the buffer EC2 captured after boot.
        latest = server_id not in self._console_latest
        try:
            reply = self._call("ec2", "get_console_output", InstanceId=server_id,
                               **({"Latest": True} if latest else {}))
        except errors.NotFound:
            return ""
        except errors.ProviderError as exc:
            if not latest or exc.status not in ("UnsupportedOperation",
                                                "InvalidParameterCombination",
                                                "InvalidParameterValue"):
                raise
            self._console_latest.add(server_id)
            reply = self._call("ec2", "get_console_output", InstanceId=server_id)
        # botocore has already decoded EC2's base64.
        return str(reply.get("Output") or "")

    def server_gone(self, server_id: str) -> bool:
        view = self.poll_servers({server_id}).get(server_id)
        return view is None or (view.get("State") or {}).get("Name") == "terminated"

    # -- Driver: key pairs ----------------------------------------------------------------
    def list_keypairs(self) -> list[KeyPair]:
        reply = self._call("ec2", "describe_key_pairs", IncludePublicKey=True)
        return [KeyPair(name=k["KeyName"], public_key=k.get("PublicKey", ""),
                        fingerprint=k.get("KeyFingerprint")) for k in reply.get("KeyPairs", [])]

    def create_keypair(self, name: str, public_key: str) -> KeyPair:
        params: dict[str, Any] = {"KeyName": name, "PublicKeyMaterial": public_key.encode()}
        if name.startswith(_KEY_PREFIX):  # cloudnorm's own node keys carry their owner
            params["TagSpecifications"] = _owner_tags(name[len(_KEY_PREFIX):], "key-pair")
        reply = self._call("ec2", "import_key_pair", **params)
        return KeyPair(name=reply.get("KeyName", name), public_key=public_key,
                       fingerprint=reply.get("KeyFingerprint"))

    def delete_keypair(self, name: str) -> bool:
        # DeleteKeyPair succeeds for a key that does not exist: ask first to say which.
        try:
            self._call("ec2", "describe_key_pairs", KeyNames=[name])
        except errors.NotFound:
            return False
        self._call("ec2", "delete_key_pair", KeyName=name)
        return True

    # -- Driver: provisioning -------------------------------------------------------------
    def supports_security_groups(self) -> bool:
        return True

    def create_ssh_access(self, owner: str) -> Created:
        return self._create_group(owner, self._group_vpc())

    def _group_vpc(self) -> str | None:
        """The VPC servers will most likely go to: the default subnet's."""
        facts, _, hints = self._net or self._load_networks()
        subnets = {f.id: f for f in facts if f.id != POOL_ID}
        if hints.default_interface in subnets:
            return str(subnets[hints.default_interface].raw.get("VpcId"))
        vpcs = sorted({str(f.raw.get("VpcId")) for f in subnets.values()})
        return vpcs[0] if vpcs else None

    def _create_group(self, owner: str, vpc_id: str | None) -> Created:
        name = f"cloudnorm-{owner}"
        params: dict[str, Any] = {
            "GroupName": name, "Description": f"{OWNER_KEY}={owner} ssh access",
            "TagSpecifications": _owner_tags(owner, "security-group", Name=name)}
        if vpc_id:
            params["VpcId"] = vpc_id
        group_id = self._call("ec2", "create_security_group", **params)["GroupId"]
        created = Created("security_group", group_id, name)
        try:
            self._call("ec2", "authorize_security_group_ingress", GroupId=group_id,
                       IpPermissions=[{
                           "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                           "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "ssh"}],
                           "Ipv6Ranges": [{"CidrIpv6": "::/0", "Description": "ssh"}]}])
        except errors.CloudnormError:
            self.delete(created)
            raise
        with self._lock:
            self._group_vpcs[group_id] = vpc_id or ""
        return created

    def boot(self, spec: BootSpec) -> Created:
        params: dict[str, Any] = {
            "ImageId": spec.image.id, "InstanceType": spec.flavor.id, "MinCount": 1,
            "MaxCount": 1, "KeyName": spec.key_name,
            # Idempotent: botocore's retries of this call cannot start a second server.
            "ClientToken": f"cloudnorm-{spec.owner}",
            "TagSpecifications": [
                {"ResourceType": kind, "Tags": [
                    {"Key": OWNER_KEY, "Value": spec.owner}, {"Key": "Name", "Value": spec.name},
                    *({"Key": k, "Value": v} for k, v in spec.metadata.items())]}
                for kind in ("instance", "volume")],
        }
        group = spec.security_group
        subnet = spec.network.raw if spec.network is not None else {}
        if group and subnet.get("VpcId"):
            group = self._group_in_vpc(group, str(subnet["VpcId"]), spec.owner)
        if spec.network is not None and spec.network.id != POOL_ID:
            nic: dict[str, Any] = {"DeviceIndex": 0, "SubnetId": spec.network.id,
                                   "DeleteOnTermination": True}
            if group:
                nic["Groups"] = [group]
            if self._ip_mode == "elastic":
                nic["AssociatePublicIpAddress"] = False  # the Elastic IP replaces it
            elif subnet.get("cloudnorm:internet_gateway"):
                nic["AssociatePublicIpAddress"] = True
            params["NetworkInterfaces"] = [nic]
        elif group:
            params["SecurityGroupIds"] = [group]
        reply = self._call("ec2", "run_instances", **params)
        instance = reply["Instances"][0]
        return Created("server", instance["InstanceId"], spec.name)

    def _group_in_vpc(self, group: str, vpc_id: str, owner: str) -> str:
        """``group``, or a like one in ``vpc_id`` when the server goes to another VPC.

        A security group belongs to one VPC and the group is made before the flow says
        which subnet the server goes to; a caller naming a subnet of another VPC gets a
        group there, and the first one (unused) goes away.
        """
        known = self._group_vpcs.get(group)
        if not known or known == vpc_id:
            return group
        replacement = self._create_group(owner, vpc_id).id
        with self._lock:
            self._replaced_groups[group] = replacement
        self._delete_group(group)
        return replacement

    def attach_public_address(self, raw: dict[str, Any], attach: Network,
                              pools: list[Network], owner: str, port: Created | None = None
                              ) -> tuple[Created, Address, list[Decision]]:
        igw = attach.raw.get("cloudnorm:internet_gateway")
        if not igw:
            raise errors.NotReachable(
                f"subnet '{attach.name}' has no route to an internet gateway: an Elastic IP "
                "on a server there could not be reached. Use a subnet whose route table sends "
                "0.0.0.0/0 to an internet gateway (network=...)", cloud=self.settings.name)
        try:
            allocation = self._call("ec2", "allocate_address", Domain="vpc",
                                    TagSpecifications=_owner_tags(owner, "elastic-ip"))
        except errors.QuotaExceeded as exc:
            exc.resource = "Elastic IPs"
            raise
        created = Created("floating_ip", allocation["AllocationId"], allocation["PublicIp"])
        try:
            self._call("ec2", "associate_address", AllocationId=allocation["AllocationId"],
                       InstanceId=raw["id"], AllowReassociation=False)
        except BaseException:
            self.delete(created)
            raise
        ip = allocation["PublicIp"]
        address = Address(ip, 4, attach.name, True,
                          f"Elastic IP {allocation['AllocationId']}, NATed to the private "
                          f"address by {igw}", "floating")
        note = Decision("public_address", ip, f"Elastic IP {allocation['AllocationId']} from "
                        f"{POOL_NAME} associated with {raw['id']}, as cloudnorm: ip: elastic "
                        "asks; it stays the server's address until the server is deleted")
        return created, address, [note]

    def delete(self, resource: Created) -> None:
        if resource.kind == "server":
            with self._lock:
                self._terminating.add(resource.id)
            with contextlib.suppress(errors.NotFound):
                self._call("ec2", "terminate_instances", InstanceIds=[resource.id])
        elif resource.kind == "keypair":
            self._call("ec2", "delete_key_pair", KeyName=resource.id)
        elif resource.kind == "security_group":
            with self._lock:
                replacement = self._replaced_groups.pop(resource.id, None)
            for group in filter(None, (replacement, resource.id)):
                self._delete_group(group)
        elif resource.kind == "floating_ip":
            self._release_address(resource.id)
        else:
            raise errors.ProviderError(f"cloudnorm cannot delete a {resource.kind} on AWS",
                                       cloud=self.settings.name)

    def _delete_group(self, group_id: str) -> None:
        # The group stays in use for a few seconds after its last instance ended while
        # EC2 detaches the network interface; botocore does not retry that.
        delay = 1.0
        for attempt in range(15):  # about a minute at most
            try:
                self._call("ec2", "delete_security_group", GroupId=group_id)
                return
            except errors.NotFound:
                return
            except errors.ProviderError as exc:
                if exc.status != "DependencyViolation" or attempt == 14:
                    raise
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)

    def _release_address(self, allocation_id: str) -> None:
        try:
            found = self._call("ec2", "describe_addresses", AllocationIds=[allocation_id])
        except errors.NotFound:
            return
        for address in found.get("Addresses") or ():
            if address.get("AssociationId"):
                with contextlib.suppress(errors.NotFound):
                    self._call("ec2", "disassociate_address",
                               AssociationId=address["AssociationId"])
        with contextlib.suppress(errors.NotFound):
            self._call("ec2", "release_address", AllocationId=allocation_id)

    def set_server_metadata(self, server_id: str, items: dict[str, str]) -> None:
        self._call("ec2", "create_tags", Resources=[server_id],
                   Tags=[{"Key": k, "Value": v} for k, v in items.items()])

    def owned_resources(self, owner: str | None) -> list[Created]:
        marker = (_by_owner(owner) if owner is not None
                  else [{"Name": "tag-key", "Values": [OWNER_KEY]}])

        def mark(record: dict[str, Any]) -> str:
            return _tags(record).get(OWNER_KEY, "")

        found = [Created("floating_ip", a["AllocationId"], a.get("PublicIp", ""), mark(a))
                 for a in self._call("ec2", "describe_addresses",
                                     Filters=marker).get("Addresses", [])]
        found += [Created("server", v["id"], v["name"], mark(v), _parse_time(v.get("LaunchTime")))
                  for v in self._instances(Filters=[
                      *marker, {"Name": "instance-state-name", "Values": _LIVE_STATES}])]
        found += [Created("security_group", g["GroupId"], g.get("GroupName", ""), mark(g))
                  for g in self._pages("ec2", "describe_security_groups", "SecurityGroups",
                                       Filters=marker)]
        found += [Created("keypair", k["KeyName"], k["KeyName"], mark(k),
                          _parse_time(k.get("CreateTime")))
                  for k in self._call("ec2", "describe_key_pairs",
                                      Filters=marker).get("KeyPairs", [])]
        return found

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            with contextlib.suppress(Exception):
                client.close()


def _internet_gateway(table: dict[str, Any] | None) -> str | None:
    """The internet gateway a route table sends IPv4 default traffic to, if any."""
    for route in (table or {}).get("Routes") or ():
        gateway = str(route.get("GatewayId") or "")
        if (route.get("DestinationCidrBlock") == "0.0.0.0/0" and gateway.startswith("igw-")
                and route.get("State", "active") == "active"):
            return gateway
    return None


def _op_name(operation: str) -> str:
    return "".join(part.capitalize() for part in operation.split("_"))


def _client_error(cloud: str, what: str, exc: Any) -> errors.CloudnormError:
    error = exc.response.get("Error") or {}
    meta = exc.response.get("ResponseMetadata") or {}
    code = str(error.get("Code") or "Unknown")
    message = str(error.get("Message") or "").strip()
    request_id = meta.get("RequestId") or None
    endpoint = what.removeprefix("calling ")
    text = f"cloud '{cloud}': AWS refused {endpoint} ({code}: {message})"
    if code in _AUTH_CODES:
        return errors.AuthError(
            f"{text}; check the credentials (aws_profile, AWS_PROFILE or the access keys), "
            "and that the region is enabled for the account; an expired SSO session needs "
            "`aws sso login`", cloud=cloud)
    if code in _THROTTLE_CODES:
        tries = int(meta.get("RetryAttempts") or 0) + 1
        return errors.QuotaExceeded(
            f"{text} after {tries} attempt(s) with backoff: the account's API request rate "
            "is exhausted; wait and retry, or allow more attempts (AWS_MAX_ATTEMPTS or "
            "max_attempts in ~/.aws/config)", resource="API request rate", cloud=cloud)
    if code in _CAPACITY_CODES:
        return errors.QuotaExceeded(
            f"{text}: AWS has no capacity for this request there right now; ask for another "
            "instance type (flavor=...), another zone (cloudnorm: zone: or network=...), or "
            "retry later", resource="capacity", cloud=cloud)
    if code in _QUOTA_CODES:
        return errors.QuotaExceeded(
            f"{text}; free some or ask AWS for a higher quota (Service Quotas console)",
            resource=_QUOTA_CODES[code], cloud=cloud)
    if code.endswith("NotFound") or code in ("InvalidInstanceID.Malformed",):
        return errors.NotFound(text, cloud=cloud)
    return errors.ProviderError(text, status=code, request_id=request_id, endpoint=endpoint,
                                cloud=cloud)

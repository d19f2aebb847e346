"""Amazon EC2 driver over boto3.

The verbs only: :mod:`.transport` makes the calls and translates their errors,
:mod:`.normalize` and :mod:`.network` read EC2's records, :mod:`.images` finds the
profile's image series; no choice the provider-neutral core can make is made here.

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
import threading
import time
from collections.abc import Sequence
from typing import Any

import attrs

from cloudnorm import errors, networks
from cloudnorm.drivers.aws import images, normalize
from cloudnorm.drivers.aws.network import POOL_ID, POOL_NAME, AccountNetworks, read_networks
from cloudnorm.drivers.aws.transport import Transport
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
from cloudnorm.profiles import Profile
from cloudnorm.settings import CloudSettings
from cloudnorm.state import Capabilities, ServerState
from cloudnorm.userdata import SizeLimit

_KEY_PREFIX = "cloudnorm-"
_IP_MODES = ("public", "elastic")
_LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
#: "User data is limited to 16 KB, in raw form, before it is base64-encoded" (EC2 user
#: guide, "Work with instance user data").
USER_DATA_LIMIT = SizeLimit(16384, "raw", "EC2's limit on UserData")
_FILTER_VALUES = 200  # EC2 accepts at most this many values per filter


def _owner_tags(owner: str, resource_type: str, **extra: str) -> list[dict[str, Any]]:
    tags = [{"Key": OWNER_KEY, "Value": owner}]
    tags += [{"Key": k, "Value": v} for k, v in extra.items()]
    return [{"ResourceType": resource_type, "Tags": tags}]


def _by_owner(owner: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{OWNER_KEY}", "Values": [owner]}]


class AwsDriver(Driver):
    provider = "aws"

    def __init__(self, settings: CloudSettings, profile: Profile) -> None:
        super().__init__(settings, profile)
        options = settings.options
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
        #: The account's networks as last read (subnets, gateways, what AWS says of them).
        self.account_networks: AccountNetworks | None = None
        self._group_vpcs: dict[str, str] = {}
        self._replaced_groups: dict[str, str] = {}
        self._terminating: set[str] = set()
        self._console_latest: set[str] = set()
        self.transport = Transport(settings, self.identity())
        self.limiter = self.transport.limiter

    @property
    def capabilities(self) -> Capabilities:
        # EC2 filters traffic by security group and tags servers after launch; interfaces
        # are made with the server, and Elastic IPs are whole addresses, never ports.
        return Capabilities(security_groups=True, server_metadata=True,
                            user_data_limit=USER_DATA_LIMIT, block_storage=True,
                            root_is_volume=True)

    @property
    def region(self) -> str:
        return self.transport.region

    def _instances(self, **params: Any) -> list[ServerState]:
        found = []
        for reservation in self.transport.pages("ec2", "describe_instances", "Reservations",
                                                **params):
            found.extend(normalize.reservation_states(reservation, self._terminating))
        return found

    # -- Driver: discovery ----------------------------------------------------------------
    def identity(self) -> str:
        options = self.settings.options
        who = (options.get("aws_profile") or options.get("aws_access_key_id")
               or "default credentials")
        return "|".join(str(x) for x in ("aws", options.get("endpoint_url") or "", who,
                                         self.settings.region or "", options.get("vpc") or ""))

    def location(self) -> Location:
        return Location(cloud=self.settings.name, region=self.region,
                        zone=self.settings.options.get("zone") or None)

    def list_images(self) -> list[Image]:
        return images.find_images(self.transport, self.profile.images, self.settings.name)

    def list_flavors(self) -> list[Flavor]:
        families = self.profile.instance_families
        params: dict[str, Any] = {}
        if families:
            params["Filters"] = [{"Name": "instance-type",
                                  "Values": [f"{family}.*" for family in families]}]
        return normalize.normalize_flavors(self.transport.pages(
            "ec2", "describe_instance_types", "InstanceTypes", **params), families)

    def network_facts(self) -> tuple[list[networks.NetworkFacts], list[networks.Router]] | None:
        facts, routers, _ = self._load_networks()
        return facts, routers

    def network_hints(self) -> networks.NetworkHints:
        _, _, hints = self.account_networks or self._load_networks()
        profile_hints = networks.NetworkHints.from_entries(
            self.profile.networks, f"profile '{self.profile.name}'")
        merged = hints.merged_over(profile_hints)
        if self.settings.networks:
            merged = networks.NetworkHints.from_entries(
                self.settings.networks, self.settings.source or "clouds.yaml").merged_over(merged)
        return merged

    def _load_networks(self) -> AccountNetworks:
        vpcs = self.transport.pages("ec2", "describe_vpcs", "Vpcs")
        subnets = self.transport.pages("ec2", "describe_subnets", "Subnets")
        tables = self.transport.pages("ec2", "describe_route_tables", "RouteTables")
        result = self.networks_from(vpcs, subnets, tables)
        with self._lock:
            self.account_networks = result
        return result

    def networks_from(self, vpcs: list[dict[str, Any]], subnets: list[dict[str, Any]],
                      tables: list[dict[str, Any]]) -> AccountNetworks:
        """DescribeVpcs, DescribeSubnets and DescribeRouteTables records as this cloud's
        configuration (``vpc``, ``subnet``, ``zone``, ``ip``) sees them."""
        return read_networks(vpcs, subnets, tables, settings=self.settings,
                             elastic=self._ip_mode == "elastic", region=self.region)

    # -- Driver: servers ------------------------------------------------------------------
    def list_servers(self) -> list[ServerState]:
        return self._instances(Filters=[{"Name": "instance-state-name",
                                         "Values": _LIVE_STATES}])

    def get_server(self, name_or_id: str) -> list[ServerState]:
        if name_or_id.startswith("i-"):
            # EC2 keeps describing a terminated instance for about an hour.
            found = self._instances(Filters=[{"Name": "instance-id", "Values": [name_or_id]},
                                             {"Name": "instance-state-name",
                                              "Values": _LIVE_STATES}])
            if found:
                return found
        return self._instances(Filters=[{"Name": "tag:Name", "Values": [name_or_id]},
                                        {"Name": "instance-state-name", "Values": _LIVE_STATES}])

    def normalize_server(self, state: ServerState, networks: list[Network]) -> Server:
        return normalize.normalize_server(state, self.location(), networks)

    def poll_servers(self, ids: set[str]) -> dict[str, ServerState]:
        found: dict[str, ServerState] = {}
        ordered = sorted(ids)
        # A filter, unlike InstanceIds, does not fail on an id EC2 does not show yet
        # (eventual consistency right after RunInstances).
        for start in range(0, len(ordered), _FILTER_VALUES):
            for state in self._instances(Filters=[{
                    "Name": "instance-id", "Values": ordered[start:start + _FILTER_VALUES]}]):
                found[state.id] = state
        return found

    def console_output(self, server_id: str) -> str:
        # Latest=True reads the console as it is now (Nitro instances); older types refuse
        # it and only have the buffer EC2 captured after boot.
        latest = server_id not in self._console_latest
        try:
            reply = self.transport.call("ec2", "get_console_output", InstanceId=server_id,
                                        **({"Latest": True} if latest else {}))
        except errors.NotFound:
            return ""
        except errors.ProviderError as exc:
            if not latest or exc.status not in ("UnsupportedOperation",
                                                "InvalidParameterCombination",
                                                "InvalidParameterValue"):
                raise
            self._console_latest.add(server_id)
            reply = self.transport.call("ec2", "get_console_output", InstanceId=server_id)
        # botocore has already decoded EC2's base64.
        return str(reply.get("Output") or "")

    # -- Driver: key pairs ----------------------------------------------------------------
    def list_keypairs(self) -> list[KeyPair]:
        reply = self.transport.call("ec2", "describe_key_pairs", IncludePublicKey=True)
        return [KeyPair(name=k["KeyName"], public_key=k.get("PublicKey", ""),
                        fingerprint=k.get("KeyFingerprint")) for k in reply.get("KeyPairs", [])]

    def create_keypair(self, name: str, public_key: str) -> KeyPair:
        params: dict[str, Any] = {"KeyName": name, "PublicKeyMaterial": public_key.encode()}
        if name.startswith(_KEY_PREFIX):  # cloudnorm's own node keys carry their owner
            params["TagSpecifications"] = _owner_tags(name[len(_KEY_PREFIX):], "key-pair")
        reply = self.transport.call("ec2", "import_key_pair", **params)
        return KeyPair(name=reply.get("KeyName", name), public_key=public_key,
                       fingerprint=reply.get("KeyFingerprint"))

    def delete_keypair(self, name: str) -> bool:
        # DeleteKeyPair succeeds for a key that does not exist: ask first to say which.
        try:
            self.transport.call("ec2", "describe_key_pairs", KeyNames=[name])
        except errors.NotFound:
            return False
        self.transport.call("ec2", "delete_key_pair", KeyName=name)
        return True

    # -- Driver: provisioning -------------------------------------------------------------
    def create_ssh_access(self, owner: str) -> Created:
        return self._create_group(owner, self._group_vpc())

    def _group_vpc(self) -> str | None:
        """The VPC servers will most likely go to: the default subnet's."""
        facts, _, hints = self.account_networks or self._load_networks()
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
        group_id = self.transport.call("ec2", "create_security_group", **params)["GroupId"]
        created = Created("security_group", group_id, name)
        try:
            self.transport.call("ec2", "authorize_security_group_ingress", GroupId=group_id,
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
        if spec.plain:
            return self._boot_plain(spec)
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
        groups = [*([group] if group else []),
                  *self._group_ids(spec.security_groups, subnet.get("VpcId"))]
        if spec.user_data is not None:
            params["UserData"] = spec.user_data  # botocore base64-encodes it
        mappings = block_device_mappings(spec)
        if mappings:
            params["BlockDeviceMappings"] = mappings
        if spec.availability_zone:
            params["Placement"] = {"AvailabilityZone": spec.availability_zone}
        on_subnet = spec.network is not None and spec.network.id != POOL_ID
        if on_subnet or not spec.public_address:
            nic: dict[str, Any] = {"DeviceIndex": 0, "DeleteOnTermination": True}
            if on_subnet:
                assert spec.network is not None
                nic["SubnetId"] = spec.network.id
            if groups:
                nic["Groups"] = groups
            if not spec.public_address or self._ip_mode == "elastic":
                # Private access, or the Elastic IP replaces it; explicit, since a
                # subnet's MapPublicIpOnLaunch would give one otherwise.
                nic["AssociatePublicIpAddress"] = False
            elif subnet.get("cloudnorm:internet_gateway"):
                nic["AssociatePublicIpAddress"] = True
            params["NetworkInterfaces"] = [nic]
        elif groups:
            params["SecurityGroupIds"] = groups
        reply = self.transport.call("ec2", "run_instances", **params)
        instance = reply["Instances"][0]
        return Created("server", instance["InstanceId"], spec.name)

    def _boot_plain(self, spec: BootSpec) -> Created:
        """RunInstances as EC2's own examples write it: image, type, key and subnet, with no
        public-address option and no security group (the VPC's default group applies)."""
        params: dict[str, Any] = {
            "ImageId": spec.image.id, "InstanceType": spec.flavor.id, "MinCount": 1,
            "MaxCount": 1, "KeyName": spec.key_name,
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [
                {"Key": OWNER_KEY, "Value": spec.owner}, {"Key": "Name", "Value": spec.name}]}]}
        if spec.network is not None and spec.network.raw.get("SubnetId"):
            params["SubnetId"] = spec.network.id
        reply = self.transport.call("ec2", "run_instances", **params)
        return Created("server", reply["Instances"][0]["InstanceId"], spec.name)

    def _group_ids(self, names: Sequence[str], vpc_id: Any) -> list[str]:
        """The ids of the caller's groups (``sg-`` ids, or names looked up in the
        server's VPC, since a name is unique only within one VPC)."""
        ids = [n for n in names if n.startswith("sg-")]
        wanted = [n for n in names if not n.startswith("sg-")]
        if not wanted:
            return ids
        filters = [{"Name": "group-name", "Values": wanted}]
        if vpc_id:
            filters.append({"Name": "vpc-id", "Values": [str(vpc_id)]})
        found: dict[str, list[str]] = {}
        for g in self.transport.pages("ec2", "describe_security_groups", "SecurityGroups",
                                      Filters=filters):
            found.setdefault(str(g.get("GroupName")), []).append(str(g.get("GroupId")))
        for name in wanted:
            matches = found.get(name, [])
            if not matches:
                raise errors.NotFound(f"no security group '{name}'"
                                      + (f" in {vpc_id}" if vpc_id else ""),
                                      cloud=self.settings.name)
            if len(matches) > 1:
                raise errors.Ambiguous(
                    f"{len(matches)} security groups are named '{name}'; use an id",
                    candidates=sorted(matches), cloud=self.settings.name)
            ids.append(matches[0])
        return ids

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

    def attach_public_address(self, state: ServerState, attach: Network,
                              pools: list[Network], owner: str, port: Created | None = None
                              ) -> tuple[Created, Address, list[Decision]]:
        igw = attach.raw.get("cloudnorm:internet_gateway")
        if not igw:
            raise errors.NotReachable(
                f"subnet '{attach.name}' has no route to an internet gateway: an Elastic IP "
                "on a server there could not be reached. Use a subnet whose route table sends "
                "0.0.0.0/0 to an internet gateway (network=...)", cloud=self.settings.name)
        try:
            allocation = self.transport.call("ec2", "allocate_address", Domain="vpc",
                                             TagSpecifications=_owner_tags(owner, "elastic-ip"))
        except errors.QuotaExceeded as exc:
            exc.resource = "Elastic IPs"
            raise
        created = Created("floating_ip", allocation["AllocationId"], allocation["PublicIp"])
        try:
            self.transport.call("ec2", "associate_address",
                                AllocationId=allocation["AllocationId"], InstanceId=state.id,
                                AllowReassociation=False)
        except BaseException:
            self.delete(created)
            raise
        ip = allocation["PublicIp"]
        address = Address(ip, 4, attach.name, True,
                          f"Elastic IP {allocation['AllocationId']}, NATed to the private "
                          f"address by {igw}", "floating")
        note = Decision("public_address", ip, f"Elastic IP {allocation['AllocationId']} from "
                        f"{POOL_NAME} associated with {state.id}, as cloudnorm: ip: elastic "
                        "asks; it stays the server's address until the server is deleted")
        return created, address, [note]

    def delete(self, resource: Created) -> None:
        if resource.kind == "server":
            with self._lock:
                self._terminating.add(resource.id)
            with contextlib.suppress(errors.NotFound):
                self.transport.call("ec2", "terminate_instances", InstanceIds=[resource.id])
        elif resource.kind == "keypair":
            self.transport.call("ec2", "delete_key_pair", KeyName=resource.id)
        elif resource.kind == "security_group":
            with self._lock:
                replacement = self._replaced_groups.pop(resource.id, None)
            for group in filter(None, (replacement, resource.id)):
                self._delete_group(group)
        elif resource.kind == "floating_ip":
            self._release_address(resource.id)
        elif resource.kind == "volume":
            with contextlib.suppress(errors.NotFound):
                self.transport.call("ec2", "delete_volume", VolumeId=resource.id)
        else:
            raise errors.ProviderError(f"cloudnorm cannot delete a {resource.kind} on AWS",
                                       cloud=self.settings.name)

    def _delete_group(self, group_id: str) -> None:
        # The group stays in use for a few seconds after its last instance ended while
        # EC2 detaches the network interface; botocore does not retry that.
        delay = 1.0
        for attempt in range(15):  # about a minute at most
            try:
                self.transport.call("ec2", "delete_security_group", GroupId=group_id)
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
            found = self.transport.call("ec2", "describe_addresses",
                                        AllocationIds=[allocation_id])
        except errors.NotFound:
            return
        for address in found.get("Addresses") or ():
            if address.get("AssociationId"):
                with contextlib.suppress(errors.NotFound):
                    self.transport.call("ec2", "disassociate_address",
                                        AssociationId=address["AssociationId"])
        with contextlib.suppress(errors.NotFound):
            self.transport.call("ec2", "release_address", AllocationId=allocation_id)

    def set_server_metadata(self, server_id: str, items: dict[str, str]) -> None:
        self.transport.call("ec2", "create_tags", Resources=[server_id],
                            Tags=[{"Key": k, "Value": v} for k, v in items.items()])

    def owned_resources(self, owner: str | None) -> list[Created]:
        marker = (_by_owner(owner) if owner is not None
                  else [{"Name": "tag-key", "Values": [OWNER_KEY]}])

        def mark(record: dict[str, Any]) -> str:
            return normalize.tags(record).get(OWNER_KEY, "")

        found = [Created("floating_ip", a["AllocationId"], a.get("PublicIp", ""), mark(a))
                 for a in self.transport.call("ec2", "describe_addresses",
                                              Filters=marker).get("Addresses", [])]
        found += [Created("server", s.id, s.name, s.owner or "",
                          normalize.parse_time(s.raw.get("LaunchTime")))
                  for s in self._instances(Filters=[
                      *marker, {"Name": "instance-state-name", "Values": _LIVE_STATES}])]
        found += [Created("security_group", g["GroupId"], g.get("GroupName", ""), mark(g))
                  for g in self.transport.pages("ec2", "describe_security_groups",
                                                "SecurityGroups", Filters=marker)]
        found += [Created("keypair", k["KeyName"], k["KeyName"], mark(k),
                          normalize.parse_time(k.get("CreateTime")))
                  for k in self.transport.call("ec2", "describe_key_pairs",
                                               Filters=marker).get("KeyPairs", [])]
        # Volumes attached to an instance go with it (DeleteOnTermination); one on its
        # own (detached by someone, or left by a launch that failed) is removed here.
        found += [Created("volume", v["VolumeId"], f"{v.get('Size')} GiB", mark(v),
                          normalize.parse_time(v.get("CreateTime")))
                  for v in self.transport.pages("ec2", "describe_volumes", "Volumes", Filters=[
                      *marker, {"Name": "status", "Values": ["available", "error"]}])]
        return found

    def close(self) -> None:
        self.transport.close()


#: Device names EC2 suggests for EBS data volumes on Linux: /dev/sdf to /dev/sdp (EC2
#: user guide, "Device names on Linux instances").
DATA_DEVICES = tuple(f"/dev/sd{letter}" for letter in "fghijklmnop")


def block_device_mappings(spec: BootSpec) -> list[dict[str, Any]]:
    """RunInstances' BlockDeviceMappings: the root volume resized where asked (under the
    image's root device name), and one new EBS volume per data volume; all deleted with
    the instance."""
    if len(spec.data_volumes) > len(DATA_DEVICES):
        raise errors.InvalidRequest(
            f"volumes: at most {len(DATA_DEVICES)} data volumes ({DATA_DEVICES[0]} to "
            f"{DATA_DEVICES[-1]})", field="volumes")
    mappings = []
    if spec.root_size:
        root = spec.image.raw.get("RootDeviceName") or "/dev/sda1"
        mappings.append({"DeviceName": root, "Ebs": {"VolumeSize": spec.root_size,
                                                     "DeleteOnTermination": True}})
    mappings += [{"DeviceName": device, "Ebs": {"VolumeSize": size, "VolumeType": "gp3",
                                                "DeleteOnTermination": True}}
                 for device, size in zip(DATA_DEVICES, spec.data_volumes, strict=False)]
    return mappings

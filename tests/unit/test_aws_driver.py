"""The EC2 driver (cloudnorm/drivers/aws/) against botocore's Stubber: no request leaves
the process (the endpoint is a closed port on 127.0.0.1 besides)."""

from __future__ import annotations

import base64
import datetime
import os
from typing import Any

import attrs
import botocore.loaders
import botocore.session
import pytest
from botocore.stub import ANY, Stubber

import cloudnorm
from cloudnorm import config, errors, networks, profiles
from cloudnorm.drivers import driver_class
from cloudnorm.drivers.aws import normalize
from cloudnorm.drivers.aws.driver import AwsDriver
from cloudnorm.drivers.aws.network import POOL_ID
from cloudnorm.drivers.aws.normalize import (
    normalize_flavors,
    normalize_image,
    normalize_server,
    server_state,
)
from cloudnorm.drivers.base import BootSpec, Created
from cloudnorm.models import OWNER_KEY, Flavor, Image, Location, Network
from cloudnorm.state import Capabilities, ServerState
from cloudnorm.userdata import SizeLimit

ENDPOINT = "http://127.0.0.1:9"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
CANONICAL = "099720109477"


@pytest.fixture(autouse=True)
def _no_aws_environment(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


@pytest.fixture(autouse=True)
def _shared_api_models(monkeypatch):
    """One botocore loader for the whole module: reading EC2's API model again for every
    driver would make these tests several times slower."""
    monkeypatch.setattr(botocore.session, "create_loader", lambda *a, **k: _LOADER)


_LOADER = botocore.loaders.create_loader()


def make_driver(region: str | None = "us-east-1", **options: Any) -> AwsDriver:
    settings = config.CloudSettings(
        name="aws-test", provider="aws", region=region, profile=None,
        options={"provider": "aws", "region": region, "endpoint_url": ENDPOINT,
                 **CREDENTIALS, **options},
        cache=config.CacheSettings())
    return AwsDriver(settings, profiles.load("aws"))


@pytest.fixture
def stubbed():
    """(driver, ec2 stubber, ssm stubber); every queued reply must be used."""
    made: list[Stubber] = []

    def make(**options: Any) -> tuple[AwsDriver, Stubber, Stubber]:
        drv = make_driver(**options)
        ec2, ssm = Stubber(drv.transport.client("ec2")), Stubber(drv.transport.client("ssm"))
        ec2.activate()
        ssm.activate()
        made.extend((ec2, ssm))
        return drv, ec2, ssm

    yield make
    for stub in made:
        stub.assert_no_pending_responses()


# -- AWS records ----------------------------------------------------------------------------
def ami(image_id: str, name: str, owner: str = CANONICAL, created: str = "2024-05-01T08:00:00.000Z",
        arch: str = "x86_64", **extra: Any) -> dict[str, Any]:
    return {"ImageId": image_id, "Name": name, "OwnerId": owner, "CreationDate": created,
            "Architecture": arch, "State": "available", "Public": True, **extra}


def vpc(vpc_id: str, default: bool = False, name: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"VpcId": vpc_id, "IsDefault": default, "CidrBlock": "10.0.0.0/16"}
    if name:
        record["Tags"] = [{"Key": "Name", "Value": name}]
    return record


def subnet(subnet_id: str, vpc_id: str, cidr: str, zone: str = "us-east-1a",
           maps: bool = False, default_for_az: bool = False, name: str | None = None
           ) -> dict[str, Any]:
    record: dict[str, Any] = {"SubnetId": subnet_id, "VpcId": vpc_id, "CidrBlock": cidr,
                              "AvailabilityZone": zone, "MapPublicIpOnLaunch": maps,
                              "DefaultForAz": default_for_az, "State": "available"}
    if name:
        record["Tags"] = [{"Key": "Name", "Value": name}]
    return record


def table(table_id: str, vpc_id: str, *, main: bool = False, subnets: tuple[str, ...] = (),
          igw: str | None = None, state: str = "active") -> dict[str, Any]:
    routes = [{"DestinationCidrBlock": "10.0.0.0/16", "GatewayId": "local", "State": "active"}]
    if igw:
        routes.append({"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": igw, "State": state})
    associations = [{"Main": True, "RouteTableId": table_id}] if main else []
    associations += [{"Main": False, "RouteTableId": table_id, "SubnetId": s} for s in subnets]
    return {"RouteTableId": table_id, "VpcId": vpc_id, "Routes": routes,
            "Associations": associations}


def instance(instance_id: str = "i-0123456789abcdef0", state: str = "running",
             **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "InstanceId": instance_id, "ImageId": "ami-1", "InstanceType": "t3a.small",
        "KeyName": "cloudnorm-abc", "State": {"Name": state, "Code": 16},
        "Placement": {"AvailabilityZone": "us-east-1a"}, "SubnetId": "subnet-a",
        "VpcId": "vpc-d", "PrivateIpAddress": "172.31.0.4",
        "LaunchTime": datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc),
        "Tags": [{"Key": "Name", "Value": "web-1"}, {"Key": OWNER_KEY, "Value": "abc"}],
        "NetworkInterfaces": [{
            "SubnetId": "subnet-a", "PrivateIpAddress": "172.31.0.4",
            "Attachment": {"DeviceIndex": 0},
            "PrivateIpAddresses": [{"PrivateIpAddress": "172.31.0.4", "Association": {
                "PublicIp": "198.51.100.7", "IpOwnerId": "amazon"}}],
            "Association": {"PublicIp": "198.51.100.7", "IpOwnerId": "amazon"}}],
        "PublicIpAddress": "198.51.100.7",
    }
    record.update(extra)
    return record


# -- configuration ----------------------------------------------------------------------------
def test_registry_and_connect_from_a_cloudnorm_only_entry(write_clouds):
    assert driver_class("aws") is AwsDriver
    path = write_clouds({"work": {"cloudnorm": {
        "provider": "aws", "region": "eu-central-1", "endpoint_url": ENDPOINT,
        "aws_profile": "work", "subnet": "web", "vpc": "main", "ip": "elastic"}}})
    cloud = cloudnorm.connect("work", config_files=[path])
    assert cloud.provider == "aws" and cloud.profile.name == "aws"
    # Elastic IPs are planned for every server (step 5)
    assert cloud.profile.requires_floating_ip is True
    assert cloud.profile.floating_ip_source == "aws"
    assert cloud.driver.identity() == "aws|http://127.0.0.1:9|work|eu-central-1|main"


def test_unknown_ip_mode_is_refused():
    with pytest.raises(errors.ConfigError, match="ip: must be one of public, elastic"):
        make_driver(ip="floating")


def test_missing_named_profile_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="aws_profile"):
        make_driver(aws_profile="nope").transport.client("ec2")


def test_no_region_anywhere_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="names no region"):
        make_driver(region=None).transport.client("ec2")


@pytest.mark.parametrize("exception, kind, words", [
    ("NoCredentialsError", errors.AuthError, "no usable AWS credentials"),
    ("SSOTokenLoadError", errors.AuthError, "aws sso login"),
    ("EndpointConnectionError", errors.ServiceUnavailable, "cannot reach AWS .* endpoint_url"),
    ("ReadTimeoutError", errors.ServiceUnavailable, "cannot reach AWS"),
])
def test_botocore_failures_become_cloudnorm_errors(monkeypatch, exception, kind, words):
    # Raised in place of the call: a client without credentials is never built here.
    import botocore.exceptions

    drv = make_driver()
    error = getattr(botocore.exceptions, exception)(
        endpoint_url=ENDPOINT, profile_name="work", error_msg="expired")

    def fail(**params: Any) -> Any:
        raise error

    monkeypatch.setattr(drv.transport.client("ec2"), "describe_key_pairs", fail)
    with pytest.raises(kind, match=words):
        drv.list_keypairs()


def test_the_aws_profile_data_is_validated(monkeypatch):
    real = profiles._read

    def read(name: str) -> dict[str, Any]:
        if name == "broken":
            return {"provider": "aws", "images": [{"distro": "ubuntu", "owner": "1",
                                                   "name": "x-*", "ssm": "/x"}]}
        if name == "unknown-distro":
            return {"provider": "aws", "images": [{"distro": "plan9", "version": "4",
                                                   "owner": "1", "name": "x-*"}]}
        return real(name)

    monkeypatch.setattr(profiles, "_read", read)
    profiles.load.cache_clear()
    try:
        with pytest.raises(errors.ConfigError, match="unknown key"):
            profiles.load("broken")
        with pytest.raises(errors.ConfigError, match="unknown distribution 'plan9'"):
            profiles.load("unknown-distro")
        aws = profiles.load("aws")
        assert aws.instance_families[:3] == ("t3a", "t3", "t2")
        assert {(i["distro"], i["version"]) for i in aws.images} >= {
            ("ubuntu", "22.04"), ("ubuntu", "24.04"), ("debian", "12"), ("amazon", "2023")}
    finally:
        profiles.load.cache_clear()


# -- images ---------------------------------------------------------------------------------
def test_normalize_image_takes_distribution_and_version_from_the_series():
    entry = {"distro": "amazon", "version": "2023", "owner": "137112412989",
             "name": "al2023-ami-2023.*-kernel-*-x86_64"}
    image = normalize_image(ami("ami-a", "al2023-ami-2023.4.20240401.1-kernel-6.1-x86_64",
                                owner="137112412989"), entry, "owner 137112412989")
    assert (image.os_distro, image.os_version, image.architecture) == ("amazon", "2023",
                                                                       "x86_64")
    assert image.min_disk == 0 and image.status == "active" and image.visibility == "public"
    assert image.created == datetime.datetime(2024, 5, 1, 8, tzinfo=datetime.timezone.utc)


def test_normalize_image_of_the_account_reads_the_name_and_hides_deprecated():
    own = normalize_image(ami("ami-b", "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-arm64-server-1",
                              owner="123456789012", arch="arm64", Public=False,
                              DeprecationTime="2020-01-01T00:00:00.000Z"))
    assert (own.os_distro, own.os_version, own.architecture) == ("ubuntu", "22.04", "aarch64")
    assert own.hidden and own.visibility == "private"
    assert own.raw["cloudnorm:source"] == "owned by this account"


UBUNTU_PARAM = "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id"
AL_PARAM = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"


def _all_parameters(drv: AwsDriver) -> list[str]:
    return sorted(e["ssm_parameter"] for e in drv.profile.images if e.get("ssm_parameter"))


def test_list_images_uses_parameters_then_patterns(stubbed):
    drv, ec2, ssm = stubbed()
    names = _all_parameters(drv)
    ssm.add_response("get_parameters", {
        "Parameters": [{"Name": UBUNTU_PARAM, "Value": "ami-jammy", "Type": "String"},
                       {"Name": AL_PARAM, "Value": "ami-gone", "Type": "String"}],
        "InvalidParameters": [n for n in names if n not in (UBUNTU_PARAM, AL_PARAM)]},
        {"Names": names})
    # The Amazon Linux parameter names an image DescribeImages does not return: that
    # series falls back to its pattern, like the ones without a parameter.
    ec2.add_response("describe_images", {"Images": [
        ami("ami-jammy", "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240501")]},
        {"Filters": [{"Name": "image-id", "Values": ["ami-gone", "ami-jammy"]}]})
    others = [e for e in drv.profile.images if (e["distro"], e["version"]) != ("ubuntu", "22.04")]
    ec2.add_response("describe_images", {"Images": [
        ami("ami-al", "al2023-ami-2023.4.20240513.0-kernel-6.1-x86_64", owner="137112412989"),
        ami("ami-deb", "debian-12-amd64-20240507-1740", owner="136693071363"),
        # Right name, wrong owner for the pattern: not the series cloudnorm trusts.
        ami("ami-fake", "debian-12-amd64-20991231-0000", owner=CANONICAL),
    ]}, {"Owners": sorted({e["owner"] for e in others}),
         "Filters": [{"Name": "name", "Values": sorted({e["name"] for e in others})},
                     {"Name": "state", "Values": ["available"]}]})
    ec2.add_response("describe_images", {"Images": []}, {"Owners": ["self"]})
    found = {i.id: i for i in drv.list_images()}
    assert set(found) == {"ami-jammy", "ami-al", "ami-deb"}
    assert found["ami-jammy"].raw["cloudnorm:source"] == f"public parameter {UBUNTU_PARAM}"
    assert (found["ami-al"].os_distro, found["ami-al"].os_version) == ("amazon", "2023")
    assert found["ami-deb"].raw["cloudnorm:source"].startswith("owner 136693071363")


def test_list_images_without_parameter_access_uses_patterns(stubbed):
    drv, ec2, ssm = stubbed()
    ssm.add_client_error("get_parameters", "AccessDeniedException", "not allowed")
    ec2.add_response("describe_images", {"Images": [
        ami("ami-j", "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240501")]},
        {"Owners": ANY, "Filters": ANY})
    ec2.add_response("describe_images", {"Images": []}, {"Owners": ["self"]})
    (image,) = drv.list_images()
    assert (image.id, image.os_version) == ("ami-j", "22.04")


# -- flavors --------------------------------------------------------------------------------
def instance_type(name: str, mib: int, vcpus: int) -> dict[str, Any]:
    return {"InstanceType": name, "MemoryInfo": {"SizeInMiB": mib},
            "VCpuInfo": {"DefaultVCpus": vcpus}}


def test_flavors_of_dearer_families_are_left_to_naming():
    found = {f.name: f for f in normalize_flavors([
        instance_type("t2.small", 2048, 1), instance_type("t3a.small", 2048, 2),
        instance_type("t3.small", 2048, 2), instance_type("m6a.large", 8192, 2),
        instance_type("m6a.4xlarge", 65536, 16), instance_type("t3a.large", 8192, 2),
        instance_type("c5.large", 4096, 2)], ("t3a", "t3", "t2", "m6a"))}
    usable = sorted(n for n, f in found.items() if not f.disabled)
    assert usable == ["m6a.4xlarge", "t3a.large", "t3a.small"]
    assert found["t2.small"].raw["cloudnorm:passed_over"].startswith("'t3a.small' of the "
                                                                     "cheaper family 't3a'")
    assert found["c5.large"].disabled  # not a listed family: behind every listed one
    assert found["t3a.small"].disk == 0  # EBS only: no flavor disk limits the image


def test_list_flavors_asks_for_the_profile_families_only(stubbed):
    drv, ec2, _ = stubbed()
    ec2.add_response("describe_instance_types", {"InstanceTypes": [
        instance_type("t3a.small", 2048, 2)]}, {"Filters": [{
            "Name": "instance-type",
            "Values": [f"{f}.*" for f in drv.profile.instance_families]}]})
    assert [f.name for f in drv.list_flavors()] == ["t3a.small"]


# -- networks -------------------------------------------------------------------------------
def account(drv: AwsDriver) -> Any:
    return drv.networks_from(
        [vpc("vpc-d", default=True), vpc("vpc-c", name="custom")],
        [subnet("subnet-b", "vpc-d", "172.31.16.0/20", zone="us-east-1b", maps=True,
                default_for_az=True),
         subnet("subnet-a", "vpc-d", "172.31.0.0/20", zone="us-east-1a", maps=True,
                default_for_az=True),
         subnet("subnet-pub", "vpc-c", "10.20.1.0/24", name="custom-public"),
         subnet("subnet-priv", "vpc-c", "10.20.2.0/24", name="custom-private"),
         subnet("subnet-odd", "vpc-c", "10.20.3.0/24", name="maps-no-route", maps=True)],
        [table("rtb-d", "vpc-d", main=True, igw="igw-d"),
         table("rtb-main", "vpc-c", main=True),
         table("rtb-pub", "vpc-c", subnets=("subnet-pub",), igw="igw-c"),
         table("rtb-dead", "vpc-c", subnets=("subnet-odd",), igw="igw-old", state="blackhole")])


def classified(drv: AwsDriver) -> tuple[dict[str, Network], Any, networks.NetworkHints]:
    facts, routers, hints = account(drv)
    nets = networks.classify_networks(facts, routers, hints)
    return {n.name: n for n in nets}, routers, hints


def test_subnets_are_classified_with_aws_reasons():
    nets, routers, hints = classified(make_driver())
    assert nets["subnet-a"].public
    assert nets["subnet-a"].reason == ("the subnet maps a public IPv4 at launch and routes "
                                       "0.0.0.0/0 to igw-d")
    assert nets["custom-public"].public
    assert "maps no public IPv4 at launch" in nets["custom-public"].reason
    assert "AssociatePublicIpAddress" in nets["custom-public"].reason
    assert not nets["custom-private"].public
    assert nets["custom-private"].reason == ("subnet 10.20.2.0/24 is a private range; no "
                                            "router leads outside")
    # A subnet that maps public addresses no route can reach is not public.
    assert not nets["maps-no-route"].public
    assert "no route leads to an internet gateway" in nets["maps-no-route"].reason
    assert POOL_ID not in {n.id for n in nets.values()}  # no Elastic IPs unless asked
    assert {r.id: r.internal_network_ids for r in routers} == {
        "igw-c": ("subnet-pub",), "igw-d": ("subnet-a", "subnet-b")}


def test_default_subnet_is_the_default_vpcs_first_zone():
    nets, routers, hints = classified(make_driver())
    net, decision = networks.choose_attach_network(list(nets.values()), routers, hints)
    assert net.id == "subnet-a"
    assert "default VPC vpc-d's subnet in us-east-1a, the first availability zone" in (
        decision.reason)


def test_default_subnets_are_marked_default_for_their_zone():
    # EC2 marks the default VPC's subnet per zone with DefaultForAz (DescribeSubnets): a
    # RunInstances that names no subnet lands there.
    facts, _, _ = account(make_driver())
    assert {f.id for f in facts if f.default_for_zone} == {"subnet-a", "subnet-b"}


def test_default_subnet_follows_the_configured_zone_then_subnet():
    _, _, hints = account(make_driver(zone="us-east-1b"))
    assert hints.default_interface == "subnet-b"
    assert "as cloudnorm: zone: asks" in hints.explain("default_interface", "")
    _, _, hints = account(make_driver(subnet="custom-private"))
    assert hints.default_interface == "subnet-priv"
    with pytest.raises(errors.ConfigError, match="names subnet 'nope'"):
        account(make_driver(subnet="nope"))


def test_a_named_vpc_scopes_the_subnets():
    facts, _, hints = account(make_driver(vpc="custom"))
    assert {f.name for f in facts} == {"custom-public", "custom-private", "maps-no-route"}
    assert hints.default_interface == "subnet-pub"
    assert hints.explain("default_interface", "").startswith("cloudnorm: vpc: names VPC vpc-c")
    with pytest.raises(errors.ConfigError, match="names vpc 'other'"):
        account(make_driver(vpc="other"))


def test_without_a_default_vpc_several_routed_vpcs_are_for_the_caller_to_pick():
    drv = make_driver()
    facts, routers, hints = drv.networks_from(
        [vpc("vpc-1"), vpc("vpc-2")],
        [subnet("subnet-1", "vpc-1", "10.1.0.0/24"), subnet("subnet-2", "vpc-2", "10.2.0.0/24")],
        [table("rtb-1", "vpc-1", main=True, igw="igw-1"),
         table("rtb-2", "vpc-2", main=True, igw="igw-2")])
    assert hints.default_interface is None
    nets = networks.classify_networks(facts, routers, hints)
    with pytest.raises(errors.Ambiguous, match="subnet-1, subnet-2"):
        networks.choose_attach_network(nets, routers, hints)


def test_elastic_mode_adds_the_pool_the_flow_plans_addresses_from():
    drv = make_driver(ip="elastic")
    nets, routers, hints = classified(drv)
    pool = nets["Amazon public IPv4 pool"]
    assert pool.external and pool.usable and not pool.attachable
    plan = networks.plan_public_address(
        nets["subnet-a"], list(nets.values()), routers, hints,
        requires_floating_ip=drv.profile.requires_floating_ip,
        floating_ip_source=drv.profile.floating_ip_source, profile_name="aws")
    assert plan.floating_ip and plan.pools[0].id == POOL_ID
    assert "router 'igw-d' links 'subnet-a'" in plan.decision.reason


# -- servers --------------------------------------------------------------------------------
def test_server_state_speaks_in_phases():
    assert server_state(instance(state="pending")).phase == "pending"
    running = server_state(instance(), account_id="123456789012")
    assert (running.id, running.name, running.phase, running.status) == (
        "i-0123456789abcdef0", "web-1", "running", "running")
    assert running.tags[OWNER_KEY] == "abc" and running.owner == "abc"
    assert running.raw["OwnerId"] == "123456789012"
    assert (running.fault, running.quota) == (None, False)
    ended = instance(state="terminated", StateReason={
        "Code": "Server.InsufficientInstanceCapacity",
        "Message": "Server.InsufficientInstanceCapacity: Insufficient capacity."})
    failed = server_state(ended)
    assert (failed.phase, failed.status) == ("error", "terminated")
    assert "Insufficient capacity" in failed.fault and not failed.quota
    assert server_state(ended, terminating=True).phase == "terminated"
    assert server_state(ended, terminating=True).fault is None
    asked = instance(state="terminated", StateReason={"Code": "Client.UserInitiatedShutdown"})
    assert server_state(asked).phase == "terminated"
    assert server_state(instance(state="shutting-down"), terminating=True).phase == "deleting"
    assert server_state(instance(state="stopping")).phase == "stopping"
    assert server_state(instance(state="stopped")).phase == "stopped"
    # A state EC2 may add later is not mistaken for a known one.
    assert server_state(instance(state="hibernating")).phase == "error"


def test_a_fault_naming_a_quota_says_so():
    state = server_state(instance(state="terminated", StateReason={
        "Code": "Server.InternalError", "Message": "Client.VcpuLimitExceeded: vCPU quota"}))
    assert state.phase == "error" and state.quota


def test_an_instance_naming_its_account_keeps_it():
    record = instance(OwnerId="111122223333")
    assert server_state(record, account_id="123456789012").raw["OwnerId"] == "111122223333"
    assert "OwnerId" not in server_state(instance()).raw


def test_normalize_server_classifies_its_addresses():
    net = Network(id="subnet-a", name="web-tier", public=True, reason="x",
                  subnets=("172.31.0.0/20",))
    record = instance()
    record["NetworkInterfaces"][0]["Ipv6Addresses"] = [{"Ipv6Address": "2600:1f18::5"}]
    state = server_state(record, account_id="123456789012")
    server = normalize_server(state, Location(cloud="aws-test", region="us-east-1"), [net])
    by_ip = {a.ip: a for a in server.addresses}
    assert not by_ip["172.31.0.4"].public and by_ip["172.31.0.4"].network == "web-tier"
    assert "172.31.0.0/20" in by_ip["172.31.0.4"].reason
    public = by_ip["198.51.100.7"]
    assert public.public and public.kind == "floating"
    assert public.reason.startswith("public IPv4 AWS assigned at launch")
    assert by_ip["2600:1f18::5"].public and by_ip["2600:1f18::5"].version == 6
    assert (server.public_v4, server.private_v4, server.interface_ip) == (
        "198.51.100.7", "172.31.0.4", "198.51.100.7")
    assert (server.status, server.flavor, server.location.zone, server.location.project) == (
        "running", "t3a.small", "us-east-1a", "123456789012")
    assert (server.id, server.name, server.tags) == (state.id, "web-1", state.tags)
    elastic = instance()
    elastic["NetworkInterfaces"][0]["Association"]["IpOwnerId"] = "123456789012"
    del elastic["NetworkInterfaces"][0]["PrivateIpAddresses"][0]["Association"]
    addr = normalize_server(server_state(elastic), Location(cloud="c"), []).addresses
    assert any("an Elastic IP" in a.reason for a in addr)


# -- malformed instance records ----------------------------------------------------------
# Each case breaks one field of an otherwise well-formed record (the shape of the EC2 API
# Reference's DescribeInstances Example 2, which tests/unit/corpus/aws holds); the record
# must be refused with a ProviderError that names it, never a bare KeyError/TypeError, and
# never turned into an address.
def _nic(record: dict[str, Any]) -> dict[str, Any]:
    return record["NetworkInterfaces"][0]


MALFORMED: dict[str, Any] = {
    "no InstanceId": lambda r: r.pop("InstanceId"),
    "State a word": lambda r: r.update(State="running"),
    "State without Name": lambda r: r.update(State={"Code": 16}),
    "State.Name a list": lambda r: r.update(State={"Name": ["running"]}),
    "Tags a mapping": lambda r: r.update(Tags={"Name": "web-1"}),
    "Tags a word": lambda r: r.update(Tags="Name=web-1"),
    "tag not a mapping": lambda r: r.update(Tags=[["Name", "web-1"]]),
    "tag without Key": lambda r: r.update(Tags=[{"Value": "web-1"}]),
    "tag Value a number": lambda r: r.update(Tags=[{"Key": "Name", "Value": 7}]),
}

# StateReason decides whether EC2 ended the instance unasked: server_state reads it.
MALFORMED_REASONS: dict[str, Any] = {
    "StateReason a word": lambda r: r.update(StateReason="Server.InternalError"),
    "StateReason.Code a number": lambda r: r.update(StateReason={"Code": 500}),
}

MALFORMED_ADDRESSES: dict[str, Any] = {
    "NetworkInterfaces a mapping": lambda r: r.update(NetworkInterfaces={"eni-1": _nic(r)}),
    "NIC not a mapping": lambda r: r.update(NetworkInterfaces=["eni-1"]),
    "PrivateIpAddresses entry without its address": lambda r: _nic(r).update(
        PrivateIpAddresses=[{"Primary": True}]),
    "PrivateIpAddresses a mapping": lambda r: _nic(r).update(
        PrivateIpAddresses={"PrivateIpAddress": "172.31.0.4"}),
    "PrivateIpAddress an integer": lambda r: _nic(r)["PrivateIpAddresses"][0].update(
        PrivateIpAddress=2887712772),
    "PrivateIpAddress garbage": lambda r: r.update(PrivateIpAddress="garbage"),
    "NIC PrivateIpAddress not-an-ip": lambda r: _nic(r).update(PrivateIpAddress="not-an-ip"),
    "PrivateIpAddress a CIDR": lambda r: r.update(PrivateIpAddress="172.31.0.4/20"),
    "PrivateIpAddress IPv6": lambda r: r.update(PrivateIpAddress="2600:1f18::5"),
    "Association a list": lambda r: _nic(r).update(Association=[{"PublicIp": "198.51.100.7"}]),
    "PublicIp an integer": lambda r: _nic(r)["Association"].update(PublicIp=3325256711),
    "PublicIp not-an-ip": lambda r: _nic(r)["Association"].update(PublicIp="not-an-ip"),
    "PublicIp IPv6": lambda r: _nic(r)["Association"].update(PublicIp="2600:1f18::7"),
    "PublicIpAddress IPv6": lambda r: r.update(PublicIpAddress="2600:1f18::7"),
    "PublicIpAddress garbage": lambda r: r.update(PublicIpAddress="garbage"),
    "Ipv6Address invalid": lambda r: _nic(r).update(Ipv6Addresses=[{"Ipv6Address": "2600::1::5"}]),
    "Ipv6Address IPv4": lambda r: _nic(r).update(Ipv6Addresses=[{"Ipv6Address": "10.0.0.5"}]),
    "Ipv6Address a number": lambda r: _nic(r).update(Ipv6Addresses=[{"Ipv6Address": 1}]),
    "Ipv6Addresses entry without its address": lambda r: _nic(r).update(
        Ipv6Addresses=[{"IsPrimaryIpv6": True}]),
    "instance Ipv6Address garbage": lambda r: r.update(Ipv6Address="garbage"),
    "DeviceIndex a word": lambda r: _nic(r).update(Attachment={"DeviceIndex": "zero"}),
    "SubnetId a list": lambda r: _nic(r).update(SubnetId=["subnet-a"]),
}


def _broken(case: Any) -> dict[str, Any]:
    record = instance()
    case(record)
    return record


@pytest.mark.parametrize("case", [*MALFORMED.values(), *MALFORMED_REASONS.values()],
                         ids=[*MALFORMED, *MALFORMED_REASONS])
def test_server_state_refuses_a_malformed_record_naming_it(case):
    record = _broken(case)
    with pytest.raises(errors.ProviderError, match=r"malformed instance record") as caught:
        server_state(record)
    if "InstanceId" in record:
        assert "'i-0123456789abcdef0'" in str(caught.value)


@pytest.mark.parametrize("case", [*MALFORMED.values(), *MALFORMED_ADDRESSES.values()],
                         ids=[*MALFORMED, *MALFORMED_ADDRESSES])
def test_normalize_server_refuses_a_malformed_record_naming_it(case):
    record = _broken(case)
    with pytest.raises(errors.ProviderError, match=r"malformed instance record") as caught:
        normalize_server(server_state(record), Location(cloud="c"), [])
    if "InstanceId" in record:
        assert "'i-0123456789abcdef0'" in str(caught.value)


@pytest.mark.parametrize("case", MALFORMED_ADDRESSES.values(), ids=MALFORMED_ADDRESSES)
def test_server_state_reads_no_address_and_normalize_server_refuses_it(case):
    # The flow waits on the phase; only describing the server reads the addresses.
    state = server_state(_broken(case))
    assert state.phase == "running"
    with pytest.raises(errors.ProviderError,
                       match=r"malformed instance record \('i-0123456789abcdef0'\)"):
        normalize_server(state, Location(cloud="c"), [])


def test_a_malformed_record_is_refused_when_the_driver_lists_it(monkeypatch):
    drv = make_driver()
    good, bad = instance("i-1"), instance("i-2", Tags={"Name": "x"})
    monkeypatch.setattr(drv.transport, "pages", lambda *a, **k: [{"OwnerId": "1", "Instances": [
        good, bad]}])
    with pytest.raises(errors.ProviderError, match=r"malformed instance record \('i-2'\)"):
        drv.list_servers()
    monkeypatch.setattr(drv.transport, "pages", lambda *a, **k: [{"Instances": {"i-1": good}}])
    with pytest.raises(errors.ProviderError, match="malformed reservation record"):
        drv.poll_servers({"i-1"})
    monkeypatch.setattr(drv.transport, "pages", lambda *a, **k: [{"Instances": [["i-1"]]}])
    with pytest.raises(errors.ProviderError, match="malformed reservation record"):
        drv.poll_servers({"i-1"})


def test_empty_address_elements_read_as_not_assigned():
    # EC2's XML says <ipAddress/> for an address not assigned yet: botocore makes it "".
    record = instance(PublicIpAddress="", PrivateIpAddress="")
    del record["NetworkInterfaces"][0]["Association"]
    del record["NetworkInterfaces"][0]["PrivateIpAddresses"][0]["Association"]
    server = normalize_server(server_state(record), Location(cloud="c"), [])
    assert (server.public_v4, server.private_v4, server.interface_ip) == (
        None, "172.31.0.4", "172.31.0.4")


def test_ipv4_mapped_ipv6_addresses_route_as_the_ipv4_inside():
    record = instance()
    _nic(record)["Ipv6Addresses"] = [{"Ipv6Address": "::ffff:10.0.0.5"}]
    server = normalize_server(server_state(record), Location(cloud="c"), [])
    mapped = next(a for a in server.addresses if a.ip == "::ffff:10.0.0.5")
    assert (mapped.version, mapped.public) == (6, False)
    assert server.public_v6 is None
    record = instance(PublicIpAddress=None)
    _nic(record).pop("Association")
    _nic(record)["PrivateIpAddresses"][0].pop("Association")
    _nic(record)["Ipv6Addresses"] = [{"Ipv6Address": "::ffff:10.0.0.5"},
                                     {"Ipv6Address": "2600:1f18::5"}]
    server = normalize_server(server_state(record), Location(cloud="c"), [])
    assert (server.public_v6, server.interface_ip) == ("2600:1f18::5", "2600:1f18::5")


def test_instance_ipv6_address_outside_the_nics_is_classified():
    record = instance(Ipv6Address="2600:1f18::9")
    server = normalize_server(server_state(record), Location(cloud="c"), [])
    assert server.public_v6 == "2600:1f18::9"
    assert normalize_server(server_state(instance(Ipv6Address="fd00::9")), Location(cloud="c"),
                            []).public_v6 is None


def test_a_tag_without_value_is_an_empty_value():
    state = server_state(instance(Tags=[{"Key": "Name", "Value": "web-1"}, {"Key": "notebook"}]))
    assert state.tags == {"Name": "web-1", "notebook": ""}


def test_words_of_the_wrong_type_read_as_absent():
    record = instance(KeyName=["k"], ImageId=7, InstanceType={"t": 1}, OwnerId=5,
                      Placement={"AvailabilityZone": 3}, LaunchTime=20240101,
                      StateTransitionReason=9)
    server = normalize_server(server_state(record), Location(cloud="c", project="p"), [])
    assert (server.key_name, server.image, server.flavor, server.location.zone,
            server.location.project, server.created) == (None, None, None, None, "p", None)
    assert server.public_v4 == "198.51.100.7"
    ended = server_state(instance(state="terminated", StateReason={"Message": 5},
                                  StateTransitionReason=["x"]))
    assert ended.fault == "EC2 ended the instance"


def test_tags_of_other_records_are_read_the_same_way():
    with pytest.raises(errors.ProviderError, match=r"malformed EC2 resource record \('vpc-1'\)"):
        normalize.tags({"VpcId": "vpc-1", "Tags": [{"Key": "Name", "Value": None}, "x"]})
    assert normalize.tags({"AllocationId": "eipalloc-1", "Tags": None}) == {}


@pytest.mark.parametrize(("extra", "words"), [
    ({"ImageId": None}, "ImageId"), ({"ImageId": 5}, "ImageId"),
    ({"Public": "false"}, "Public"), ({"State": 1}, "State"),
])
def test_normalize_image_refuses_a_malformed_record(extra, words):
    with pytest.raises(errors.ProviderError, match=rf"malformed image record.*{words}"):
        normalize_image(ami("ami-a", "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-1",
                            **extra))


def test_normalize_image_reads_an_odd_name_as_absent():
    image = normalize_image(ami("ami-a", "x", Name=["ubuntu"], Architecture=64,
                                CreationDate=20240101))
    assert (image.name, image.architecture, image.created) == ("ami-a", None, None)


def test_normalize_flavors_refuses_a_malformed_instance_type():
    with pytest.raises(errors.ProviderError, match=r"instance type record \('t3.small'\)"):
        normalize_flavors([instance_type("t3.micro", 1024, 2),
                           {"InstanceType": "t3.small", "MemoryInfo": {"SizeInMiB": "2 GiB"}}],
                          ("t3",))


def test_poll_servers_uses_a_filter_and_marks_own_terminations(stubbed):
    drv, ec2, _ = stubbed()
    ec2.add_response("terminate_instances", {"TerminatingInstances": []},
                     {"InstanceIds": ["i-1"]})
    ec2.add_response("describe_instances", {"Reservations": [{"OwnerId": "1", "Instances": [
        instance("i-1", state="terminated",
                 StateReason={"Code": "Server.InternalError", "Message": "x"})]}]},
        {"Filters": [{"Name": "instance-id", "Values": ["i-1", "i-2"]}]})
    drv.delete(Created("server", "i-1"))
    found = drv.poll_servers({"i-1", "i-2"})
    assert set(found) == {"i-1"} and found["i-1"].phase == "terminated"
    assert found["i-1"].fault is None and found["i-1"].raw["OwnerId"] == "1"


def test_get_server_by_name_skips_terminated(stubbed):
    drv, ec2, _ = stubbed()
    ec2.add_response("describe_instances", {"Reservations": [{"Instances": [instance()]}]},
                     {"Filters": [{"Name": "tag:Name", "Values": ["web-1"]},
                                  {"Name": "instance-state-name", "Values": ANY}]})
    assert [s.id for s in drv.get_server("web-1")] == ["i-0123456789abcdef0"]


def test_console_output_falls_back_when_latest_is_unsupported(stubbed):
    drv, ec2, _ = stubbed()
    ec2.add_client_error("get_console_output", "UnsupportedOperation",
                         "Latest is not supported for this instance type")
    # EC2 sends the console base64-encoded; botocore decodes it.
    ec2.add_response("get_console_output", {"InstanceId": "i-1", "Output": base64.b64encode(
        b"boot text").decode()}, {"InstanceId": "i-1"})
    ec2.add_response("get_console_output", {"InstanceId": "i-1"}, {"InstanceId": "i-1"})
    assert drv.console_output("i-1") == "boot text"
    assert drv.console_output("i-1") == ""  # remembered: no second refused call
    ec2.add_client_error("get_console_output", "InvalidInstanceID.NotFound", "not yet")
    assert drv.console_output("i-2") == ""


# -- key pairs ------------------------------------------------------------------------------
def test_keypairs_carry_their_owner_and_deleting_a_missing_one_says_so(stubbed):
    drv, ec2, _ = stubbed()
    ec2.add_response("import_key_pair", {"KeyName": "cloudnorm-abc", "KeyFingerprint": "fp"}, {
        "KeyName": "cloudnorm-abc", "PublicKeyMaterial": b"ssh-ed25519 AAAA x",
        "TagSpecifications": [{"ResourceType": "key-pair",
                               "Tags": [{"Key": OWNER_KEY, "Value": "abc"}]}]})
    ec2.add_response("import_key_pair", {"KeyName": "mine"},
                     {"KeyName": "mine", "PublicKeyMaterial": b"ssh-ed25519 AAAA y"})
    assert drv.create_keypair("cloudnorm-abc", "ssh-ed25519 AAAA x").fingerprint == "fp"
    drv.create_keypair("mine", "ssh-ed25519 AAAA y")
    ec2.add_client_error("describe_key_pairs", "InvalidKeyPair.NotFound", "no such key")
    assert drv.delete_keypair("gone") is False
    ec2.add_response("describe_key_pairs", {"KeyPairs": [{"KeyName": "mine"}]},
                     {"KeyNames": ["mine"]})
    ec2.add_response("delete_key_pair", {}, {"KeyName": "mine"})
    assert drv.delete_keypair("mine") is True


# -- provisioning ---------------------------------------------------------------------------
def spec(network: Network | None, group: str | None = "sg-1", owner: str = "abc") -> BootSpec:
    image = Image(id="ami-1", name="jammy")
    flavor = Flavor(id="t3a.small", name="t3a.small", ram=2048, vcpus=2)
    return BootSpec(name="web-1", image=image, flavor=flavor, network=network,
                    key_name=f"cloudnorm-{owner}", owner=owner, security_group=group,
                    metadata={"team": "qa"})


def subnet_network(subnet_id: str, vpc_id: str, igw: str | None) -> Network:
    return Network(id=subnet_id, name=subnet_id, public=bool(igw), reason="x",
                   raw={"SubnetId": subnet_id, "VpcId": vpc_id,
                        "cloudnorm:internet_gateway": igw})


def run_params(nic: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    tags = [{"Key": OWNER_KEY, "Value": "abc"}, {"Key": "Name", "Value": "web-1"},
            {"Key": "team", "Value": "qa"}]
    params = {"ImageId": "ami-1", "InstanceType": "t3a.small", "MinCount": 1, "MaxCount": 1,
              "KeyName": "cloudnorm-abc", "ClientToken": "cloudnorm-abc",
              "TagSpecifications": [{"ResourceType": "instance", "Tags": tags},
                                    {"ResourceType": "volume", "Tags": tags}], **extra}
    if nic is not None:
        params["NetworkInterfaces"] = [nic]
    return params


def launched(instance_id: str = "i-new") -> dict[str, Any]:
    return {"Instances": [{"InstanceId": instance_id}]}


RUNNING = ServerState(id="i-1", name="web-1", phase="running", status="running")


@pytest.mark.parametrize("igw, mode, expect", [
    ("igw-1", "public", True),   # routed: ask for a public address at launch
    (None, "public", None),      # not routed: an address would be useless
    ("igw-1", "elastic", False),  # the Elastic IP comes in step 5
])
def test_boot_asks_for_a_public_address_as_the_subnet_needs(stubbed, igw, mode, expect):
    drv, ec2, _ = stubbed(ip=mode)
    nic: dict[str, Any] = {"DeviceIndex": 0, "SubnetId": "subnet-1",
                           "DeleteOnTermination": True, "Groups": ["sg-1"]}
    if expect is not None:
        nic["AssociatePublicIpAddress"] = expect
    ec2.add_response("run_instances", launched(), run_params(nic))
    assert drv.boot(spec(subnet_network("subnet-1", "vpc-1", igw))) == Created(
        "server", "i-new", "web-1")


@pytest.mark.parametrize("mode", ["public", "elastic"])
def test_private_access_asks_for_no_public_address(stubbed, mode):
    # RunInstances: AssociatePublicIpAddress=false overrides the subnet's
    # MapPublicIpOnLaunch (EC2 API reference, InstanceNetworkInterfaceSpecification).
    drv, ec2, _ = stubbed(ip=mode)
    nic = {"DeviceIndex": 0, "SubnetId": "subnet-1", "DeleteOnTermination": True,
           "Groups": ["sg-1"], "AssociatePublicIpAddress": False}
    ec2.add_response("run_instances", launched(), run_params(nic))
    drv.boot(attrs.evolve(spec(subnet_network("subnet-1", "vpc-1", "igw-1")),
                          public_address=False))
    nic = {"DeviceIndex": 0, "DeleteOnTermination": True, "Groups": ["sg-1"],
           "AssociatePublicIpAddress": False}
    ec2.add_response("run_instances", launched(), run_params(nic))
    drv.boot(attrs.evolve(spec(None), public_address=False))
    ec2.assert_no_pending_responses()


def test_boot_sizes_the_root_volume_and_adds_data_volumes(stubbed):
    # RunInstances BlockDeviceMappings: the root under the image's RootDeviceName,
    # data volumes on /dev/sdf onwards, each DeleteOnTermination (EC2 API reference,
    # BlockDeviceMapping and EbsBlockDevice; EC2 user guide, device names on Linux).
    drv, ec2, _ = stubbed()
    image = Image(id="ami-1", name="jammy", raw={"RootDeviceName": "/dev/xvda"})
    ec2.add_response("run_instances", launched(), run_params(SecurityGroupIds=["sg-1"],
        BlockDeviceMappings=[
            {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 30,
                                                "DeleteOnTermination": True}},
            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 1, "VolumeType": "gp3",
                                               "DeleteOnTermination": True}},
            {"DeviceName": "/dev/sdg", "Ebs": {"VolumeSize": 2, "VolumeType": "gp3",
                                               "DeleteOnTermination": True}}]))
    drv.boot(attrs.evolve(spec(None), image=image, root_size=30, data_volumes=(1, 2)))
    ec2.assert_no_pending_responses()
    with pytest.raises(errors.InvalidRequest, match="at most 11 data volumes"):
        drv.boot(attrs.evolve(spec(None), data_volumes=(1,) * 12))


def test_instance_volumes_are_read_from_its_block_device_mappings():
    from cloudnorm.drivers.aws.normalize import normalize_server, server_state

    record = {"InstanceId": "i-1", "State": {"Name": "running"}, "RootDeviceName": "/dev/sda1",
              "BlockDeviceMappings": [
                  {"DeviceName": "/dev/sdf", "Ebs": {"VolumeId": "vol-data",
                                                     "DeleteOnTermination": True}},
                  {"DeviceName": "/dev/sda1", "Ebs": {"VolumeId": "vol-root",
                                                      "DeleteOnTermination": True}}]}
    server = normalize_server(server_state(record), Location(cloud="c"), [])
    assert [(v.id, v.device, v.root, v.size) for v in server.volumes] == [
        ("vol-root", "/dev/sda1", True, None), ("vol-data", "/dev/sdf", False, None)]


def test_boot_without_a_network_uses_group_ids(stubbed):
    drv, ec2, _ = stubbed()
    ec2.add_response("run_instances", launched(), run_params(SecurityGroupIds=["sg-1"]))
    drv.boot(spec(None))


@pytest.mark.parametrize("mode", ["public", "elastic"])
def test_plain_boot_is_ec2s_own_example(stubbed, mode):
    # No client token, public-address option, group, volume tags or metadata: what the
    # conformance check measures the raw cloud by.
    drv, ec2, _ = stubbed(ip=mode)
    plain = attrs.evolve(spec(subnet_network("subnet-1", "vpc-1", "igw-1")), plain=True)
    ec2.add_response("run_instances", launched(), {
        "ImageId": "ami-1", "InstanceType": "t3a.small", "MinCount": 1, "MaxCount": 1,
        "KeyName": "cloudnorm-abc", "SubnetId": "subnet-1",
        "TagSpecifications": [{"ResourceType": "instance", "Tags": [
            {"Key": OWNER_KEY, "Value": "abc"}, {"Key": "Name", "Value": "web-1"}]}]})
    assert drv.boot(plain) == Created("server", "i-new", "web-1")
    ec2.add_response("run_instances", launched("i-2"), {
        "ImageId": "ami-1", "InstanceType": "t3a.small", "MinCount": 1, "MaxCount": 1,
        "KeyName": "cloudnorm-abc", "TagSpecifications": ANY})
    assert drv.boot(attrs.evolve(plain, network=None)).id == "i-2"


def test_capabilities_say_what_ec2_offers():
    assert make_driver().capabilities == Capabilities(
        security_groups=True, server_metadata=True, prebuilt_ports=False,
        port_forwarding=False, published_host_keys=False,
        user_data_limit=SizeLimit(16384, "raw", "EC2's limit on UserData"),
        block_storage=True, root_is_volume=True)
    with pytest.raises(TypeError, match="prebuilt_ports"):
        make_driver().make_port(subnet_network("s", "v", None), "abc")


def test_security_group_follows_the_server_to_another_vpc(stubbed, monkeypatch):
    drv, ec2, _ = stubbed()
    monkeypatch.setattr("cloudnorm.drivers.aws.driver.time.sleep", lambda s: None)
    drv.account_networks = account(drv)
    ec2.add_response("create_security_group", {"GroupId": "sg-d"}, {
        "GroupName": "cloudnorm-abc", "Description": f"{OWNER_KEY}=abc ssh access",
        "VpcId": "vpc-d", "TagSpecifications": ANY})
    ec2.add_response("authorize_security_group_ingress", {"Return": True}, {
        "GroupId": "sg-d", "IpPermissions": [{
            "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
            "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "ssh"}],
            "Ipv6Ranges": [{"CidrIpv6": "::/0", "Description": "ssh"}]}]})
    first = drv.create_ssh_access("abc")
    assert first == Created("security_group", "sg-d", "cloudnorm-abc")
    # The caller named a subnet of the custom VPC: a group there replaces the first.
    ec2.add_response("create_security_group", {"GroupId": "sg-c"},
                     {"GroupName": "cloudnorm-abc", "Description": ANY, "VpcId": "vpc-c",
                      "TagSpecifications": ANY})
    ec2.add_response("authorize_security_group_ingress", {}, {"GroupId": "sg-c",
                                                               "IpPermissions": ANY})
    ec2.add_client_error("delete_security_group", "DependencyViolation", "still in use")
    ec2.add_response("delete_security_group", {}, {"GroupId": "sg-d"})
    nic = {"DeviceIndex": 0, "SubnetId": "subnet-pub", "DeleteOnTermination": True,
           "Groups": ["sg-c"], "AssociatePublicIpAddress": True}
    ec2.add_response("run_instances", launched(), run_params(nic))
    drv.boot(spec(subnet_network("subnet-pub", "vpc-c", "igw-c"), group="sg-d"))
    # Removing the ledger's group removes the one the server really uses.
    ec2.add_response("delete_security_group", {}, {"GroupId": "sg-c"})
    ec2.add_client_error("delete_security_group", "InvalidGroup.NotFound", "gone")
    drv.delete(first)


def test_elastic_ip_is_released_when_association_fails(stubbed):
    drv, ec2, _ = stubbed(ip="elastic")
    attach = subnet_network("subnet-1", "vpc-1", "igw-1")
    ec2.add_response("allocate_address", {"AllocationId": "eipalloc-1",
                                          "PublicIp": "198.51.100.200"}, {
        "Domain": "vpc", "TagSpecifications": [{"ResourceType": "elastic-ip", "Tags": [
            {"Key": OWNER_KEY, "Value": "abc"}]}]})
    ec2.add_client_error("associate_address", "InvalidInstanceID", "not running")
    ec2.add_response("describe_addresses", {"Addresses": [{"AllocationId": "eipalloc-1"}]},
                     {"AllocationIds": ["eipalloc-1"]})
    ec2.add_response("release_address", {}, {"AllocationId": "eipalloc-1"})
    with pytest.raises(errors.ProviderError, match="InvalidInstanceID"):
        drv.attach_public_address(RUNNING, attach, [], "abc")


def test_elastic_ip_attached_and_explained(stubbed):
    drv, ec2, _ = stubbed(ip="elastic")
    attach = subnet_network("subnet-1", "vpc-1", "igw-1")
    ec2.add_response("allocate_address", {"AllocationId": "eipalloc-1",
                                          "PublicIp": "198.51.100.200"}, None)
    ec2.add_response("associate_address", {"AssociationId": "eipassoc-1"}, {
        "AllocationId": "eipalloc-1", "InstanceId": "i-1", "AllowReassociation": False})
    created, address, (note,) = drv.attach_public_address(RUNNING, attach, [], "abc")
    assert created == Created("floating_ip", "eipalloc-1", "198.51.100.200")
    assert address.public and address.kind == "floating" and "igw-1" in address.reason
    assert "cloudnorm: ip: elastic" in note.reason


def test_elastic_ip_refused_on_a_subnet_without_internet_route(stubbed):
    drv, _, _ = stubbed(ip="elastic")
    with pytest.raises(errors.NotReachable, match="no route to an internet gateway"):
        drv.attach_public_address(RUNNING, subnet_network("s", "v", None), [], "abc")


def test_delete_elastic_ip_disassociates_first(stubbed):
    drv, ec2, _ = stubbed()
    ec2.add_response("describe_addresses", {"Addresses": [
        {"AllocationId": "eipalloc-1", "AssociationId": "eipassoc-1"}]},
        {"AllocationIds": ["eipalloc-1"]})
    ec2.add_response("disassociate_address", {}, {"AssociationId": "eipassoc-1"})
    ec2.add_response("release_address", {}, {"AllocationId": "eipalloc-1"})
    drv.delete(Created("floating_ip", "eipalloc-1"))
    ec2.add_client_error("describe_addresses", "InvalidAllocationID.NotFound", "gone")
    drv.delete(Created("floating_ip", "eipalloc-2"))  # already gone: not an error


def test_owned_resources_are_found_by_tag(stubbed):
    drv, ec2, _ = stubbed()
    by_tag = [{"Name": f"tag:{OWNER_KEY}", "Values": ["abc"]}]
    ec2.add_response("describe_addresses", {"Addresses": [
        {"AllocationId": "eipalloc-1", "PublicIp": "198.51.100.200"}]}, {"Filters": by_tag})
    ec2.add_response("describe_instances", {"Reservations": [{"Instances": [instance("i-1")]}]},
                     {"Filters": [*by_tag, {"Name": "instance-state-name", "Values": ANY}]})
    ec2.add_response("describe_security_groups", {"SecurityGroups": [
        {"GroupId": "sg-1", "GroupName": "cloudnorm-abc"}]}, {"Filters": by_tag})
    ec2.add_response("describe_key_pairs", {"KeyPairs": [{"KeyName": "cloudnorm-abc"}]},
                     {"Filters": by_tag})
    # Only a volume on its own: an attached one goes with its instance.
    ec2.add_response("describe_volumes", {"Volumes": [{"VolumeId": "vol-1", "Size": 2}]},
                     {"Filters": [*by_tag, {"Name": "status", "Values": ["available", "error"]}]})
    assert [(c.kind, c.id) for c in drv.owned_resources("abc")] == [
        ("floating_ip", "eipalloc-1"), ("server", "i-1"), ("security_group", "sg-1"),
        ("keypair", "cloudnorm-abc"), ("volume", "vol-1")]


# -- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("code, kind, check", [
    ("AuthFailure", errors.AuthError, "check the credentials"),
    ("UnrecognizedClientException", errors.AuthError, "aws sso login"),
    ("InvalidClientTokenId", errors.AuthError, "aws_profile"),
    ("InstanceLimitExceeded", errors.QuotaExceeded, "instances"),
    ("VcpuLimitExceeded", errors.QuotaExceeded, "vCPUs"),
    ("InsufficientInstanceCapacity", errors.QuotaExceeded, "capacity"),
    ("RequestLimitExceeded", errors.QuotaExceeded, "API request rate"),
    ("InvalidAMIID.NotFound", errors.NotFound, "InvalidAMIID.NotFound"),
    ("InvalidParameterValue", errors.ProviderError, "InvalidParameterValue"),
])
def test_aws_errors_become_cloudnorm_errors(stubbed, code, kind, check):
    drv, ec2, _ = stubbed()
    ec2.add_client_error("run_instances", code, "the message", http_status_code=400,
                         response_meta={"RequestId": "req-42"})
    with pytest.raises(kind) as info:
        drv.boot(spec(None))
    error = info.value
    assert type(error) is kind and "RunInstances" in str(error) and "the message" in str(error)
    assert check in (str(error) + getattr(error, "resource", ""))
    if kind is errors.ProviderError:
        assert (error.status, error.request_id, error.endpoint) == (
            code, "req-42", "ec2 RunInstances")


def test_clients_retry_the_standard_way():
    client = make_driver().transport.client("ec2")
    assert client.meta.config.retries["mode"] == "standard"
    assert client.meta.endpoint_url == ENDPOINT


def test_boot_passes_user_data_zone_and_the_callers_groups(stubbed):
    # RunInstances: UserData (botocore base64-encodes it), Placement.AvailabilityZone,
    # and group ids; a group name is looked up in the subnet's VPC (EC2 API reference,
    # RunInstances and DescribeSecurityGroups).
    drv, ec2, _ = stubbed()
    ec2.add_response("describe_security_groups", {"SecurityGroups": [
        {"GroupName": "web", "GroupId": "sg-web", "VpcId": "vpc-1"}]}, {"Filters": [
            {"Name": "group-name", "Values": ["web"]}, {"Name": "vpc-id", "Values": ["vpc-1"]}]})
    nic = {"DeviceIndex": 0, "SubnetId": "subnet-1", "DeleteOnTermination": True,
           "Groups": ["sg-1", "sg-db", "sg-web"], "AssociatePublicIpAddress": True}
    ec2.add_response("run_instances", launched(), run_params(
        nic, UserData=ANY, Placement={"AvailabilityZone": "us-east-1b"}))
    drv.boot(attrs.evolve(spec(subnet_network("subnet-1", "vpc-1", "igw-1")),
                          user_data=b"#!/bin/sh\ntrue\n", availability_zone="us-east-1b",
                          security_groups=("sg-db", "web")))
    ec2.assert_no_pending_responses()


def test_an_unknown_group_name_is_not_found_before_launch(stubbed):
    drv, ec2, _ = stubbed()
    ec2.add_response("describe_security_groups", {"SecurityGroups": []}, {"Filters": [
        {"Name": "group-name", "Values": ["nope"]}, {"Name": "vpc-id", "Values": ["vpc-1"]}]})
    with pytest.raises(errors.NotFound, match="no security group 'nope' in vpc-1"):
        drv.boot(attrs.evolve(spec(subnet_network("subnet-1", "vpc-1", "igw-1")),
                              security_groups=("nope",)))

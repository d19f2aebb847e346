"""What is EC2's own, against the local EC2 (moto's server on 127.0.0.1, see
cloudnorm/testing/aws.py) through the real boto3 client over HTTP.

The scenarios every cloud must pass -- create, strict root login, passwords refused,
delete, nothing left; a fault at each step; throttling and capacity refusals; discovery
decisions and their cost -- run on the local EC2's clouds in the contract suite
(tests/functional/contract/, the clouds in tests/functional/sandbox_clouds.py). Here: the
publishers' accounts images come from, the default VPC's classification, what EC2 itself
refuses, and the sandbox's own seeding.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

import cloudnorm
from cloudnorm import errors
from cloudnorm.testing.aws import REGION
from cloudnorm.testing.dataplane import in_private_netns

pytestmark = [pytest.mark.functional, pytest.mark.filterwarnings("ignore:Support for InfluxDB"),
              pytest.mark.usefixtures("isolated_cloud_environment")]

PROJECT = Path(__file__).resolve().parents[2]
CANONICAL, DEBIAN, AMAZON = "099720109477", "136693071363", "137112412989"
UBUNTU_22_04_PARAMETER = (
    "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id")


IN_PRIVATE_NETNS = in_private_netns()


# -- fixtures -------------------------------------------------------------------------------
# The local EC2 itself is the run's one (tests/functional/conftest.py: aws_sandbox).
@pytest.fixture
def connect(aws_clouds_yaml):
    opened: list[cloudnorm.Cloud] = []

    def _connect(name: str = "sandbox-aws", **overrides: Any) -> cloudnorm.Cloud:
        cloud = cloudnorm.connect(name, config_files=[str(aws_clouds_yaml)], **overrides)
        opened.append(cloud)
        return cloud

    yield _connect
    for cloud in opened:
        cloud.close()


@pytest.fixture
def sandbox(aws_sandbox):
    return aws_sandbox


@pytest.fixture
def clean(sandbox):
    """Each scenario starts and must end without anything cloudnorm created."""
    assert sandbox.leftovers() == []
    yield
    assert sandbox.leftovers() == []


# -- discovery --------------------------------------------------------------------------------
def test_images_come_from_their_publishers_accounts(connect):
    # A look-alike of another account must never win: each OS from its publisher's.
    cloud = connect()
    assert cloud.find_image("ubuntu-22.04").raw["OwnerId"] == CANONICAL
    assert cloud.find_image("debian-12").raw["OwnerId"] == DEBIAN
    assert cloud.find_image("amazon").raw["OwnerId"] == AMAZON


def test_list_images_holds_only_the_profile_series(connect):
    names = {i.name for i in connect().list_images()}
    # Not the look-alike from another account, nor the arm64 or minimal builds, nor the
    # jammy build the public parameter does not name.
    assert names == {
        "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240501",
        "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20240423",
        "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20240606",
        "debian-12-amd64-20240102-1614", "debian-12-amd64-20240507-1740",
        "debian-11-amd64-20240507-1740",
        "al2023-ami-2023.4.20240513.0-kernel-6.1-x86_64",
    }


def test_networks_of_the_default_vpc_region(connect, sandbox):
    cloud = connect()
    nets = {n.id: n for n in cloud.list_networks()}
    layout = sandbox.layout[REGION]
    public = nets[layout["custom-public"]]
    private = nets[layout["custom-private"]]
    defaults = [n for n in nets.values() if n.raw.get("VpcId") == layout["default_vpc"]]
    assert len(defaults) == 6
    for net in defaults:
        assert net.public and "subnet maps a public IPv4 at launch" in net.reason
        assert layout["default_igw"] in net.reason
    assert public.public and "AssociatePublicIpAddress" in public.reason
    assert "maps no public IPv4 at launch" in public.reason
    assert not private.public
    assert private.reason == "subnet 10.20.2.0/24 is a private range; no router leads outside"
    decision = cloud.choose_network()
    chosen = nets[cloud.default_network().id]
    assert chosen.raw["AvailabilityZone"] == "us-east-1a"
    assert chosen.raw["VpcId"] == layout["default_vpc"]
    assert "default VPC" in decision.reason and "first availability zone" in decision.reason


def test_private_subnet_is_refused_before_booting(connect, aws_recorder, clean):
    cloud = connect()
    since = time.time()
    with pytest.raises(errors.NotReachable, match="would be unreachable"):
        cloud.create_server("hidden", network="custom-private", wait=False)
    assert aws_recorder.requests(since=since)  # it asked the cloud ...
    assert "RunInstances" not in aws_recorder.requests(since=since)  # ... and booted nothing


# -- SSH: the contract's scenarios on the local EC2 -------------------------------------------
@pytest.mark.skipif(IN_PRIVATE_NETNS, reason="the scenarios run directly in this namespace")
def test_aws_ssh_in_private_netns() -> None:
    """Outside a private network namespace, the contract's SSH scenarios cannot reach the
    data plane: run the local EC2's share of the contract in a fresh namespace."""
    from cloudnorm.testing.dataplane import ensure_openssh, run_in_private_netns

    ensure_openssh()  # installing needs the network, which the namespace does not have
    argv = [sys.executable, "-m", "pytest", str(PROJECT / "tests/functional/contract"), "-q",
            "-rA", "-s", "-k", "aws", "-p", "no:cacheprovider"]
    assert run_in_private_netns(argv, timeout=540, cwd=PROJECT) == 0


# -- the sandbox itself ------------------------------------------------------------------------
@pytest.mark.parametrize("params, code", [
    ({"ImageId": "ami-12345678"}, "InvalidAMIID.NotFound"),
    ({"InstanceType": "t3a.bogus"}, "InvalidInstanceType.NotFound"),
    ({"KeyName": "no-such-key"}, "InvalidKeyPair.NotFound"),
])
def test_sandbox_refuses_what_ec2_refuses(sandbox, clean, params, code):
    from botocore.exceptions import ClientError

    request = {"ImageId": "ami-0ab2204000000002", "InstanceType": "t3a.small", "MinCount": 1,
               "MaxCount": 1, **params}
    with pytest.raises(ClientError) as info:
        sandbox.client("ec2").run_instances(**request)
    assert info.value.response["Error"]["Code"] == code


def test_sandbox_reset_seeds_the_account_again(sandbox, clean):
    before = dict(sandbox.layout[REGION])
    ec2 = sandbox.client("ec2")
    ec2.create_key_pair(KeyName="left-behind")
    sandbox.reset()
    assert ec2.describe_key_pairs()["KeyPairs"] == []
    after = sandbox.layout[REGION]
    assert set(after) == set(before) and after["cloudnorm-custom"] != before["cloudnorm-custom"]
    default_routes = ec2.describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [after["default_vpc"]]}])["RouteTables"][0]["Routes"]
    assert {"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": after["default_igw"]} in [
        {k: r.get(k) for k in ("DestinationCidrBlock", "GatewayId")} for r in default_routes]
    assert sandbox.client("ssm").get_parameter(Name=UBUNTU_22_04_PARAMETER)["Parameter"][
        "Value"] == "ami-0ab2204000000002"


# -- what automation passes to create_server ----------------------------------------------------
def test_zone_and_extra_groups_reach_ec2_and_ssh_stays_open(connect, sandbox, clean):
    """A group named by the caller is looked up in the server's VPC (a name is unique
    only there) and goes on next to cloudnorm's; the zone is EC2's Placement."""
    ec2 = sandbox.client("ec2", REGION)
    subnet_id = sandbox.layout[REGION]["custom-public"]
    subnet = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]
    extra = ec2.create_security_group(GroupName="cn-extra-web", Description="test",
                                      VpcId=subnet["VpcId"])["GroupId"]
    cloud = connect()
    server = None
    try:
        server = cloud.create_server("cn-zone-groups", wait=False, network=subnet_id,
                                     availability_zone=subnet["AvailabilityZone"],
                                     security_groups=["cn-extra-web"])
        instance = ec2.describe_instances(InstanceIds=[server.id])["Reservations"][0][
            "Instances"][0]
        assert instance["Placement"]["AvailabilityZone"] == subnet["AvailabilityZone"]
        groups = {g["GroupId"] for g in instance["NetworkInterfaces"][0]["Groups"]}
        assert extra in groups
        names = {g["GroupName"] for g in ec2.describe_security_groups(
            GroupIds=sorted(groups))["SecurityGroups"]}
        assert any(name.startswith("cloudnorm-") for name in names)  # SSH still let in
    finally:
        if server is not None:
            assert cloud.delete_server(server.id) is True
        ec2.delete_security_group(GroupId=extra)

"""cloudnorm on EC2, against the local EC2 (moto's server on 127.0.0.1, see
cloudnorm/testing/aws.py) through the real boto3 client over HTTP.

Discovery, boot, faults and rollback run in this namespace and never connect to an
address the cloud hands out. The SSH scenarios need the SSH data plane, which lives in
a private network namespace: when the session is not in one,
``test_aws_ssh_in_private_netns`` re-runs them in a fresh namespace.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

import cloudnorm
from cloudnorm import errors, keys
from cloudnorm.models import OWNER_KEY
from cloudnorm.testing.aws import (
    CUSTOM_VPC,
    NO_DEFAULT_VPC_REGION,
    REGION,
    MotoSandbox,
)
from cloudnorm.testing.dataplane import in_private_netns
from cloudnorm.testing.dataplane.client import key_login, password_login

pytestmark = [pytest.mark.functional, pytest.mark.filterwarnings("ignore:Support for InfluxDB"),
              pytest.mark.usefixtures("isolated_cloud_environment")]

PROJECT = Path(__file__).resolve().parents[2]
CANONICAL, DEBIAN, AMAZON = "099720109477", "136693071363", "137112412989"
UBUNTU_22_04_PARAMETER = (
    "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id")


IN_PRIVATE_NETNS = in_private_netns()
inside = pytest.mark.skipif(
    not IN_PRIVATE_NETNS,
    reason="needs a private network namespace; test_aws_ssh_in_private_netns runs it in one")


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with MotoSandbox(tmp_path_factory.mktemp("aws-sandbox")) as running:
        yield running


@pytest.fixture(scope="module")
def clouds_yaml(sandbox):
    return sandbox.write_clouds_yaml()


@pytest.fixture
def connect(clouds_yaml):
    opened: list[cloudnorm.Cloud] = []

    def _connect(name: str = "sandbox-aws", **overrides: Any) -> cloudnorm.Cloud:
        cloud = cloudnorm.connect(name, config_files=[str(clouds_yaml)], **overrides)
        opened.append(cloud)
        return cloud

    yield _connect
    for cloud in opened:
        cloud.close()


class Requests:
    """Every HTTP request a cloud's boto3 clients send (retries included), by operation."""

    def __init__(self, cloud: cloudnorm.Cloud) -> None:
        self.sent: list[str] = []
        for service in ("ec2", "ssm"):
            cloud.driver.transport.client(service).meta.events.register(
                "request-created", self._record)

    def _record(self, request: Any, operation_name: str, **kwargs: Any) -> None:
        self.sent.append(operation_name)

    def count(self, operation: str | None = None) -> int:
        return len(self.sent) if operation is None else self.sent.count(operation)


@pytest.fixture
def clean(sandbox):
    """Each scenario starts and must end without anything cloudnorm created."""
    assert sandbox.leftovers() == []
    yield
    assert sandbox.leftovers() == []


# -- discovery --------------------------------------------------------------------------------
def test_find_image_ubuntu_2204_comes_from_the_public_parameter(connect):
    cloud = connect()
    image = cloud.find_image("ubuntu-22.04")
    assert image.id == "ami-0ab2204000000002"
    assert image.name == "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240501"
    assert (image.os_distro, image.os_version, image.architecture) == ("ubuntu", "22.04",
                                                                       "x86_64")
    assert image.raw["OwnerId"] == CANONICAL
    assert image.raw["cloudnorm:source"].startswith(
        "public parameter /aws/service/canonical/ubuntu/server/22.04/")


def test_images_without_a_parameter_come_from_owner_and_pattern(connect):
    cloud = connect()
    debian = cloud.find_image("debian-12")
    assert (debian.id, debian.os_distro, debian.os_version) == (
        "ami-0de1200000000002", "debian", "12")  # the newer of the two by CreationDate
    assert debian.raw["OwnerId"] == DEBIAN
    noble = cloud.find_image("ubuntu-24.04")
    assert noble.name.endswith("-20240606")
    assert cloud.find_image("ubuntu").id == noble.id  # newest version when none is asked
    amazon = cloud.find_image("amazon")
    assert (amazon.id, amazon.os_version, amazon.raw["OwnerId"]) == (
        "ami-0a12023000000002", "2023", AMAZON)
    assert cloud.login_user(debian)[0] == "admin"
    assert cloud.login_user(amazon)[0] == "ec2-user"
    assert cloud.login_user(noble)[0] == "ubuntu"


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


def test_find_flavor_is_the_cheapest_fitting_type(connect):
    cloud = connect()
    flavor, decision = cloud.choose_flavor(min_ram=2048)
    assert (flavor.name, flavor.ram, flavor.vcpus) == ("t3a.small", 2048, 2)
    assert "t3a.small" in decision.reason
    by_name = {f.name: f for f in cloud.list_flavors()}
    assert by_name["t2.small"].disabled and by_name["t3.small"].disabled
    assert "cheaper family 't3a'" in by_name["t2.small"].raw["cloudnorm:passed_over"]
    assert cloud.find_flavor(min_ram=65536).name == "m6a.4xlarge"
    assert cloud.find_flavor(min_ram=1024, min_vcpus=4).name == "t3a.xlarge"


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


def test_networks_of_a_custom_vpc(connect, sandbox):
    cloud = connect("sandbox-aws-custom")
    nets = {n.name: n for n in cloud.list_networks()}
    assert set(nets) == {s["name"] for s in CUSTOM_VPC["subnets"]}
    assert cloud.default_network().name == "custom-public"
    assert "cloudnorm: vpc: names VPC" in cloud.choose_network().reason


def test_networks_without_a_default_vpc(connect, sandbox):
    cloud = connect("sandbox-aws-nodefault")
    nets = {n.name: n for n in cloud.list_networks()}
    assert set(nets) == {"only-public", "only-private"}
    assert nets["only-public"].public and not nets["only-private"].public
    assert cloud.default_network().name == "only-public"
    assert "there is no default VPC" in cloud.choose_network().reason


def test_discovery_request_counts_and_cache(connect):
    cloud = connect()
    log = Requests(cloud)
    cloud.list_images()
    assert log.sent == ["GetParameters", "DescribeImages", "DescribeImages", "DescribeImages"]
    cloud.list_flavors()
    cloud.list_networks()
    assert log.sent[4:] == ["DescribeInstanceTypes", "DescribeVpcs", "DescribeSubnets",
                            "DescribeRouteTables"]
    cloud.find_image("ubuntu-22.04"), cloud.find_flavor(min_ram=2048), cloud.choose_network()
    assert log.count() == 8  # all from the cache


def test_unreachable_endpoint_is_service_unavailable(connect):
    cloud = connect(cloudnorm={"endpoint_url": "http://127.0.0.1:9"})
    with pytest.raises(errors.ServiceUnavailable, match="cannot reach AWS"):
        cloud.list_flavors()


# -- boot, faults, rollback -----------------------------------------------------------------
def test_boot_tags_everything_and_delete_removes_it(connect, sandbox, clean):
    cloud = connect()
    log = Requests(cloud)
    started = time.monotonic()
    server = cloud.create_server("boot-only", network=sandbox.layout[REGION]["custom-public"],
                                 wait=False, tags={"team": "qa"})
    ec2 = sandbox.client("ec2")
    instance = ec2.describe_instances(InstanceIds=[server.id])["Reservations"][0][
        "Instances"][0]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    owner = tags[OWNER_KEY]
    assert tags["Name"] == "boot-only" and tags["team"] == "qa"
    assert instance["ClientToken"] == f"cloudnorm-{owner}"
    # The subnet maps no public address: cloudnorm asked for one on the interface.
    assert instance["PublicIpAddress"].startswith("198.51.100.")
    group = instance["NetworkInterfaces"][0]["Groups"][0]["GroupId"]
    described = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]
    # A group of the server's VPC, not the default VPC's that was made first.
    assert described["VpcId"] == sandbox.layout[REGION]["cloudnorm-custom"]
    assert {t["Key"]: t["Value"] for t in described["Tags"]}[OWNER_KEY] == owner
    assert any(p["FromPort"] == 22 and {"CidrIp": "0.0.0.0/0", "Description": "ssh"}
               in p["IpRanges"] for p in described["IpPermissions"])
    keypair = ec2.describe_key_pairs(KeyNames=[f"cloudnorm-{owner}"])["KeyPairs"][0]
    assert {t["Key"]: t["Value"] for t in keypair["Tags"]}[OWNER_KEY] == owner
    booted = log.count()
    assert cloud.delete_server(server.id) is True
    print(f"\nboot without waiting: {booted} requests, delete: {log.count() - booted}, "
          f"{time.monotonic() - started:.2f} s")


def test_request_limit_is_retried_by_botocore(connect, sandbox, clean):
    cloud = connect()
    log = Requests(cloud)
    with sandbox.inject_error("run_instances", "RequestLimitExceeded",
                              "Request limit exceeded.", times=2) as calls:
        server = cloud.create_server("throttled", wait=False)
    assert calls == {"calls": 3, "failed": 2}
    assert log.count("RunInstances") == 3
    cloud.delete_server(server.id)


def test_request_limit_exhausted_is_typed_and_rolled_back(connect, sandbox, clean):
    cloud = connect()
    with sandbox.inject_error("run_instances", "RequestLimitExceeded",
                              "Request limit exceeded.") as calls:
        with pytest.raises(errors.QuotaExceeded) as info:
            cloud.create_server("throttled", wait=False)
    assert info.value.resource == "API request rate"
    assert "after 3 attempt(s)" in str(info.value)
    assert calls["calls"] == 3


def test_insufficient_capacity_is_typed_and_rolled_back(connect, sandbox, clean):
    cloud = connect()
    with sandbox.inject_error(
            "run_instances", "InsufficientInstanceCapacity",
            "We currently do not have sufficient t3a.small capacity in the Availability Zone "
            "you requested (us-east-1a).") as calls:
        with pytest.raises(errors.QuotaExceeded) as info:
            cloud.create_server("no-room", wait=False)
    assert info.value.resource == "capacity"
    assert "InsufficientInstanceCapacity" in str(info.value)
    assert calls["calls"] == 1  # not a transient fault: botocore does not retry it


def test_private_subnet_is_refused_before_booting(connect, sandbox, clean):
    cloud = connect()
    log = Requests(cloud)
    with pytest.raises(errors.NotReachable, match="would be unreachable"):
        cloud.create_server("hidden", network="custom-private", wait=False)
    assert log.count("RunInstances") == 0


# -- SSH: create, log in, delete --------------------------------------------------------------
@pytest.mark.skipif(IN_PRIVATE_NETNS, reason="the scenarios run directly in this namespace")
def test_aws_ssh_in_private_netns() -> None:
    from cloudnorm.testing.dataplane import ensure_openssh, run_in_private_netns

    ensure_openssh()  # installing needs the network, which the namespace does not have
    argv = [sys.executable, "-m", "pytest", __file__, "-q", "-rA", "-s", "-k", "ssh_",
            "-p", "no:cacheprovider", "--noconftest",
            "-p", "cloudnorm.testing.pytest_plugin"]
    assert run_in_private_netns(argv, timeout=540, cwd=PROJECT) == 0


@pytest.fixture(scope="module")
def dataplane(sandbox, tmp_path_factory):
    from cloudnorm.testing.aws_dataplane import AwsDataPlaneSync
    from cloudnorm.testing.dataplane import Fleet

    with Fleet(tmp_path_factory.mktemp("aws-fleet")) as fleet:
        sync = AwsDataPlaneSync(sandbox, fleet).start()
        try:
            yield fleet
        finally:
            sync.stop()
            assert sync.errors == []


def _create_login_delete(cloud: cloudnorm.Cloud, sandbox: MotoSandbox, fleet: Any,
                         tmp_path: Path, **create: Any) -> Any:
    operator = keys.generate("operator")
    key_file = tmp_path / "operator"
    key_file.write_text(operator.private_key)
    key_file.chmod(0o600)
    log = Requests(cloud)
    steps: list[Any] = []
    started = time.monotonic()
    server = cloud.create_server("web", authorized_keys=[operator.public_key],
                                 timeout=120, on_step=steps.append, **create)
    created = time.monotonic() - started
    requests = log.count()
    try:
        assert server.ssh_user and server.host_keys and server.interface_ip
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text("".join(f"{server.interface_ip} {k}\n"
                                       for k in server.host_keys))
        root = key_login(server.interface_ip, "root", key_file, known_hosts, "-o",
                         "BatchMode=yes", command="id -u")
        assert (root.returncode, root.stdout.strip()) == (0, "0"), root.stderr
        refused = password_login(server.interface_ip, server.ssh_user, known_hosts, tmp_path)
        assert refused.returncode != 0 and "Permission denied" in refused.stderr
        assert server.public_v4 == server.interface_ip
    finally:
        before_delete = log.count()
        deleted_at = time.monotonic()
        assert cloud.delete_server(server) is True
        deleted = time.monotonic() - deleted_at
    assert sandbox.leftovers() == []
    deadline = time.monotonic() + 10
    while fleet.get(server.id) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fleet.get(server.id) is None  # the node went with the instance
    print(f"\n{cloud.name} {create or ''}: create {created:.2f} s / {requests} requests "
          f"({', '.join(log.sent[:requests])}); delete {deleted:.2f} s / "
          f"{log.count() - before_delete} requests")
    return server


@inside
def test_ssh_default_vpc(connect, sandbox, dataplane, tmp_path, clean):
    server = _create_login_delete(connect(), sandbox, dataplane, tmp_path)
    assert server.ssh_user == "ubuntu"
    decisions = {d.step: d for d in server.decisions}
    assert "subnet maps a public IPv4 at launch" in decisions["public_address"].reason
    assert "assigned at launch" in next(a.reason for a in server.addresses if a.public)


@inside
def test_ssh_custom_vpc_without_public_mapping(connect, sandbox, dataplane, tmp_path, clean):
    server = _create_login_delete(connect(), sandbox, dataplane, tmp_path,
                                  network="custom-public", image="debian-12")
    assert server.ssh_user == "admin"
    decisions = {d.step: d for d in server.decisions}
    assert "AssociatePublicIpAddress" in decisions["public_address"].reason


@inside
def test_ssh_elastic_ip(connect, sandbox, dataplane, tmp_path, clean):
    server = _create_login_delete(connect("sandbox-aws-eip"), sandbox, dataplane, tmp_path,
                                  image="amazon")
    assert server.ssh_user == "ec2-user"
    assert server.interface_ip.startswith("198.51.100.")
    assert int(server.interface_ip.rsplit(".", 1)[1]) >= 128  # the Elastic IP range
    assert "Elastic IP" in {d.step: d for d in server.decisions}["public_address"].reason


@inside
def test_ssh_region_without_default_vpc(connect, sandbox, dataplane, tmp_path, clean):
    server = _create_login_delete(connect("sandbox-aws-nodefault"), sandbox, dataplane,
                                  tmp_path)
    assert server.location.region == NO_DEFAULT_VPC_REGION


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


@inside
@pytest.mark.parametrize("name, expect", [
    ("sandbox-aws", "public IPv4 AWS assigned at launch"),
    ("sandbox-aws-eip", "Elastic IP eipalloc-"),
])
def test_ssh_answers_but_no_host_keys_rolls_back(connect, sandbox, dataplane, clean, name,
                                                 expect):
    # sshd answers, but the console never shows host keys: the flow reaches step 6 and
    # must give up (it will not log in to a server it cannot identify), removing
    # everything -- the Elastic IP too.
    cloud = connect(name)
    steps: list[Any] = []
    with dataplane.options(print_host_keys=False), \
            pytest.raises(errors.Timeout, match="never printed its SSH host keys"):
        cloud.create_server("no-keys", timeout=20, on_step=steps.append)
    done = next(s for s in steps if s.step == "public_address" and s.status == "done")
    assert done.detail.startswith("198.51.100.") and expect in done.detail

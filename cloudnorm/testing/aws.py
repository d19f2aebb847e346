"""A local EC2 for tests: moto's server on 127.0.0.1, shaped like a real account.

moto implements the EC2, SSM and STS APIs; what it lacks for cloudnorm's purposes is
filled in here, in the same process (moto keeps its state in module-level backends):

- an image catalogue modelled on the real publishers (``aws_data/images.yaml``) instead of
  moto's default one, where every image has the same creation date and no Debian or
  current Ubuntu exists, and the publishers' public parameters for some of them;
- the validation real EC2 does (unknown image, instance type or key pair is refused);
- the default VPC's internet gateway and default route, which moto leaves out, and a
  custom VPC whose subnets map no public address (one routed to an internet gateway,
  one private); a second region without a default VPC;
- public addresses from the documentation range 198.51.100.0/24 (launch addresses from
  the first quarter, Elastic IPs from the upper half; the local GCE has the second
  quarter) instead of moto's 54.214.x.y and 127.x.y.z,
  so a test can never reach a real host and the SSH data plane can answer on them inside
  a private network namespace;
- a per-instance console (``set_console``) for the data plane's cloud-init output;
- fault injection (``inject_error``) for errors only real EC2 produces.

One sandbox per process: moto's backends are process-wide.

``python -m cloudnorm.testing.aws [--workdir DIR] -- COMMAND`` runs COMMAND with
``OS_CLIENT_CONFIG_FILE`` pointing at the sandbox's clouds.yaml; :func:`run` does the
same from Python, and :meth:`MotoSandbox.clouds` gives the entries to merge into another
clouds.yaml.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)

ACCOUNT = "123456789012"  # moto's account
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"
NO_DEFAULT_VPC_REGION = "us-west-2"
CLOUD = "sandbox-aws"
LAUNCH_ADDRESSES = ipaddress.IPv4Network("198.51.100.0/26")
ELASTIC_ADDRESSES = ipaddress.IPv4Network("198.51.100.128/25")
_VALIDATION = ("MOTO_ENABLE_AMI_VALIDATION", "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION",
               "MOTO_ENABLE_KEYPAIR_VALIDATION")
_SETTINGS = {"MOTO_ENABLE_AMI_VALIDATION": "ENABLE_AMI_VALIDATION",
             "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "EC2_ENABLE_INSTANCE_TYPE_VALIDATION",
             "MOTO_ENABLE_KEYPAIR_VALIDATION": "ENABLE_KEYPAIR_VALIDATION"}

# The networks of the sandbox's regions (besides us-east-1's default VPC).
CUSTOM_VPC = {"name": "cloudnorm-custom", "cidr": "10.20.0.0/16", "subnets": [
    {"name": "custom-public", "cidr": "10.20.1.0/24", "zone": "b", "internet": True},
    {"name": "custom-private", "cidr": "10.20.2.0/24", "zone": "b", "internet": False}]}
ONLY_VPC = {"name": "cloudnorm-only", "cidr": "10.30.0.0/16", "subnets": [
    {"name": "only-public", "cidr": "10.30.1.0/24", "zone": "a", "internet": True},
    {"name": "only-private", "cidr": "10.30.2.0/24", "zone": "a", "internet": False}]}


def catalogue() -> dict[str, Any]:
    """The sandbox's images (with ``login_user``) and public parameters."""
    import yaml

    text = resources.files("cloudnorm.testing").joinpath("aws_data/images.yaml").read_text(
        encoding="utf-8")
    data = yaml.safe_load(text)
    defaults = data.get("defaults") or {}
    return {"images": [{**defaults, **image} for image in data["images"]],
            "parameters": dict(data.get("parameters") or {})}


class _AddressPool:
    """Hands out addresses of one range, skipping those still in use."""

    def __init__(self, network: ipaddress.IPv4Network) -> None:
        self._hosts = [str(h) for h in network.hosts()]
        self._next = 0
        self._lock = threading.Lock()

    def take(self, in_use: set[str]) -> str:
        with self._lock:
            for _ in range(len(self._hosts)):
                candidate = self._hosts[self._next % len(self._hosts)]
                self._next += 1
                if candidate not in in_use:
                    return candidate
        raise RuntimeError("the sandbox's public address range is exhausted")


#: GiB of an instance's root volume: the size of the sandbox AMIs' root snapshot (what moto
#: gives a root volume it makes itself).
ROOT_VOLUME_GIB = 8


class MotoSandbox:
    """moto's EC2/SSM server on 127.0.0.1 with the account shape described above.

    ``clouds()`` are clouds.yaml entries: ``sandbox-aws`` (us-east-1, default VPC),
    ``sandbox-aws-custom`` (us-east-1, the custom VPC only), ``sandbox-aws-eip``
    (us-east-1, Elastic IPs) and ``sandbox-aws-nodefault`` (us-west-2, no default VPC).
    ``layout[region]`` holds the ids of what was seeded there.
    """

    regions = (REGION, NO_DEFAULT_VPC_REGION)

    def __init__(self, workdir: Path | str | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="cloudnorm-aws-")).absolute()
        self.catalogue = catalogue()
        self.layout: dict[str, dict[str, str]] = {}
        self.endpoint_url = ""
        self._server: Any = None
        self._undo: list[Any] = []
        self._consoles: dict[str, str] = {}
        self._launch_pool = _AddressPool(LAUNCH_ADDRESSES)
        self._elastic_pool = _AddressPool(ELASTIC_ADDRESSES)
        self._login_users = {i["ami_id"]: i["login_user"] for i in self.catalogue["images"]}

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> MotoSandbox:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._patch_moto()
            from moto.server import ThreadedMotoServer

            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._server.start()
            host, port = self._server.get_host_and_port()
            self.endpoint_url = f"http://{host}:{port}"
            self.reset()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.stop()
            self._server = None
        while self._undo:
            with contextlib.suppress(Exception):
                self._undo.pop()()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> MotoSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every resource (moto's ``/moto-api/reset``), then seed the account again."""
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST",
                                         data=b"")
        with urllib.request.urlopen(request, timeout=30) as reply:
            reply.read()
        self._consoles.clear()
        self.layout = {region: {} for region in self.regions}
        self._seed()

    # -- clouds.yaml ----------------------------------------------------------------------
    def clouds(self) -> dict[str, dict[str, Any]]:
        """clouds.yaml entries for the sandbox (credentials are moto's dummies)."""
        def entry(region: str, **extra: Any) -> dict[str, Any]:
            return {"cloudnorm": {"provider": "aws", "region": region,
                                  "endpoint_url": self.endpoint_url, **CREDENTIALS, **extra}}
        return {
            CLOUD: entry(REGION),
            f"{CLOUD}-custom": entry(REGION, vpc=CUSTOM_VPC["name"]),
            f"{CLOUD}-eip": entry(REGION, ip="elastic"),
            f"{CLOUD}-nodefault": entry(NO_DEFAULT_VPC_REGION),
        }

    def write_clouds_yaml(self, path: Path | str | None = None) -> Path:
        """Write the sandbox's clouds to ``path`` (default: in the workdir); the clouds of
        an existing file there (another sandbox's) are kept."""
        import yaml

        target = Path(path or self.workdir / "clouds.yaml")
        document: dict[str, Any] = {}
        if target.exists():
            document = yaml.safe_load(target.read_text(encoding="utf-8")) or {}
        document["clouds"] = {**(document.get("clouds") or {}), **self.clouds()}
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(document, handle, sort_keys=False)
        return target

    # -- access for tests and the data plane ---------------------------------------------
    def client(self, service: str, region: str = REGION) -> Any:
        """A boto3 client of the sandbox (never of a real account: explicit dummy keys)."""
        import boto3

        return boto3.client(service, region_name=region, endpoint_url=self.endpoint_url,
                            **CREDENTIALS)

    def ec2_backend(self, region: str = REGION) -> Any:
        from moto.backends import get_backend

        return get_backend("ec2")[ACCOUNT][region]

    def login_user(self, image_id: str) -> str | None:
        """The user the catalogue's image lets in (None for an image not in it)."""
        return self._login_users.get(image_id)

    def leftovers(self) -> list[str]:
        """What is left in the sandbox account, as boto3 lists it (not as cloudnorm does):
        any instance not terminated, any address or key pair (the sandbox seeds none, so
        one whose tagging reply was lost counts too), and cloudnorm's security groups and
        volumes."""
        from cloudnorm.models import OWNER_KEY

        def owned(record: dict[str, Any]) -> bool:
            return any(t["Key"] == OWNER_KEY for t in record.get("Tags") or ())

        found = []
        for region in self.regions:
            ec2 = self.client("ec2", region)
            for reservation in ec2.describe_instances()["Reservations"]:
                for instance in reservation["Instances"]:
                    if instance["State"]["Name"] != "terminated":
                        found.append(f"instance {instance['InstanceId']} "
                                     f"({instance['State']['Name']})")
            found += [f"address {a['PublicIp']}" for a in
                      ec2.describe_addresses()["Addresses"]]
            found += [f"key pair {k['KeyName']}" for k in ec2.describe_key_pairs()["KeyPairs"]]
            found += [f"security group {g['GroupId']}" for g in
                      ec2.describe_security_groups()["SecurityGroups"]
                      if owned(g) or g["GroupName"].startswith("cloudnorm-")]
            found += [f"volume {v['VolumeId']} ({v['State']})"
                      for v in ec2.describe_volumes()["Volumes"] if owned(v)]
        return found

    def set_console(self, instance_id: str, text: str | None) -> None:
        """What GetConsoleOutput returns for the instance (None: moto's canned boot text)."""
        if text is None:
            self._consoles.pop(instance_id, None)
        else:
            self._consoles[instance_id] = text

    @contextlib.contextmanager
    def inject_error(self, method: str, code: str, message: str = "injected by the sandbox",
                     times: int | None = None) -> Iterator[dict[str, int]]:
        """Make the EC2 backend's ``method`` (e.g. ``run_instances``) fail with an EC2
        error ``code``: the first ``times`` calls, or every call when ``times`` is None.

        Yields counters: ``calls`` (how often the method was called) and ``failed``.
        """
        from moto.ec2.exceptions import EC2ClientError

        cls = type(self.ec2_backend())
        had_own = method in cls.__dict__
        original = getattr(cls, method)
        counts = {"calls": 0, "failed": 0}

        def failing(backend: Any, *args: Any, **kwargs: Any) -> Any:
            counts["calls"] += 1
            if times is None or counts["failed"] < times:
                counts["failed"] += 1
                raise EC2ClientError(code, message)
            return original(backend, *args, **kwargs)

        setattr(cls, method, failing)
        try:
            yield counts
        finally:
            if had_own:
                setattr(cls, method, original)
            else:
                delattr(cls, method)

    # -- moto adjustments -----------------------------------------------------------------
    def _patch_moto(self) -> None:
        import moto.ec2.models.amis as amis
        import moto.ec2.models.elastic_ip_addresses as eips
        import moto.ec2.models.elastic_network_interfaces as enis
        import moto.settings as settings
        from moto.core.utils import utcnow
        from moto.ec2.responses.general import General
        from moto.ec2.utils import Base64EncodedString

        # moto reads MOTO_AMIS_PATH and the validation switches when first imported, which
        # may have happened before this sandbox started: set both the environment (for
        # anything that reads it later) and the values moto already took from it.
        path = self.workdir / "amis.json"
        path.write_text(json.dumps([{k: v for k, v in image.items() if k != "login_user"}
                                    for image in self.catalogue["images"]]))
        self._set_env("MOTO_AMIS_PATH", str(path))
        for variable, attribute in _SETTINGS.items():
            self._set_env(variable, "true")
            self._set_attr(settings, attribute, True)
        self._set_attr(amis, "AMIS", json.loads(path.read_text()))

        sandbox = self
        self._set_attr(enis, "random_public_ip",
                       lambda: sandbox._launch_pool.take(sandbox._addresses_in_use()))
        self._set_attr(eips, "random_ip",
                       lambda: sandbox._elastic_pool.take(sandbox._addresses_in_use()))

        # EC2 says who owns a public address: "amazon" for one assigned at launch, the
        # account for an Elastic IP; moto says the account for both.
        association = enis.NetworkInterface.association

        def owned_association(eni: Any) -> dict[str, Any]:
            found = association.fget(eni)  # type: ignore[attr-defined]
            if found and not found.get("allocationId"):
                found["ipOwnerId"] = "amazon"
            return found  # type: ignore[no-any-return]

        self._set_attr(enis.NetworkInterface, "association", property(owned_association))

        canned = General.get_console_output

        def get_console_output(response: Any) -> Any:
            from moto.core.responses import ActionResult

            instance_id = response._get_param("InstanceId")
            text = sandbox._consoles.get(instance_id)
            if text is None:
                return canned(response)
            instance = response.ec2_backend.get_instance(instance_id)
            return ActionResult({"InstanceId": instance.id, "Timestamp": utcnow(),
                                 "Output": Base64EncodedString.from_raw_string(text)})

        self._set_attr(General, "get_console_output", get_console_output)

        # EC2 always makes an instance's root volume from its AMI, and BlockDeviceMappings
        # only add to (or resize) the AMI's own mappings; moto makes the root volume only
        # when no mappings are given, so an instance launched with data volumes would
        # have none.
        from moto.ec2.models.instances import InstanceBackend

        run_instances = InstanceBackend.run_instances

        def with_root_volume(backend: Any, image_id: str, *args: Any, **kwargs: Any) -> Any:
            mappings = kwargs.get("block_device_mappings")
            if mappings:
                root = backend.describe_images(ami_ids=[image_id])[0].root_device_name
                if all(m.get("DeviceName") != root for m in mappings):
                    kwargs["block_device_mappings"] = [
                        {"DeviceName": root, "Ebs": {"VolumeSize": ROOT_VOLUME_GIB,
                                                     "DeleteOnTermination": True}},
                        *mappings]
            return run_instances(backend, image_id, *args, **kwargs)

        self._set_attr(InstanceBackend, "run_instances", with_root_volume)

    def _set_env(self, name: str, value: str) -> None:
        previous = os.environ.get(name)
        os.environ[name] = value

        def undo() -> None:
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous
        self._undo.append(undo)

    def _set_attr(self, owner: Any, name: str, value: Any) -> None:
        had = name in vars(owner)
        previous = vars(owner).get(name)
        setattr(owner, name, value)
        self._undo.append(lambda: setattr(owner, name, previous) if had
                          else delattr(owner, name))

    def _addresses_in_use(self) -> set[str]:
        from moto.backends import get_backend

        used: set[str] = set()
        for backend in get_backend("ec2")[ACCOUNT].values():
            # moto's request threads may be adding to these while they are read.
            used.update(a.public_ip for a in list(backend.addresses) if a.public_ip)
            used.update(str(eni.public_ip) for eni in list(backend.enis.values())
                        if getattr(eni, "public_ip", None))
        return used

    # -- seeding --------------------------------------------------------------------------
    def _seed(self) -> None:
        self._seed_parameters()
        east = self.client("ec2", REGION)
        default = east.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])
        vpc_id = default["Vpcs"][0]["VpcId"]
        # A real default VPC reaches the internet: moto's has no gateway and no route.
        igw = east.create_internet_gateway(TagSpecifications=[{
            "ResourceType": "internet-gateway",
            "Tags": [{"Key": "Name", "Value": "default-igw"}]}])["InternetGateway"]
        east.attach_internet_gateway(InternetGatewayId=igw["InternetGatewayId"], VpcId=vpc_id)
        main = east.describe_route_tables(Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "association.main",
                                                     "Values": ["true"]}])["RouteTables"][0]
        east.create_route(RouteTableId=main["RouteTableId"], DestinationCidrBlock="0.0.0.0/0",
                          GatewayId=igw["InternetGatewayId"])
        self.layout[REGION].update(default_vpc=vpc_id,
                                   default_igw=igw["InternetGatewayId"])
        self._seed_vpc(east, REGION, CUSTOM_VPC)

        west = self.client("ec2", NO_DEFAULT_VPC_REGION)
        for vpc in west.describe_vpcs(Filters=[{"Name": "is-default",
                                                "Values": ["true"]}])["Vpcs"]:
            for subnet in west.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [
                    vpc["VpcId"]]}])["Subnets"]:
                west.delete_subnet(SubnetId=subnet["SubnetId"])
            west.delete_vpc(VpcId=vpc["VpcId"])
        self._seed_vpc(west, NO_DEFAULT_VPC_REGION, ONLY_VPC)

    def _seed_vpc(self, ec2: Any, region: str, shape: dict[str, Any]) -> None:
        def named(kind: str, name: str) -> list[dict[str, Any]]:
            return [{"ResourceType": kind, "Tags": [{"Key": "Name", "Value": name}]}]

        vpc = ec2.create_vpc(CidrBlock=shape["cidr"],
                             TagSpecifications=named("vpc", shape["name"]))["Vpc"]["VpcId"]
        igw = ec2.create_internet_gateway(TagSpecifications=named(
            "internet-gateway", f"{shape['name']}-igw"))["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        table = ec2.create_route_table(VpcId=vpc, TagSpecifications=named(
            "route-table", f"{shape['name']}-public"))["RouteTable"]["RouteTableId"]
        ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        ids = {f"{shape['name']}": vpc, f"{shape['name']}-igw": igw}
        for subnet in shape["subnets"]:
            sid = ec2.create_subnet(
                VpcId=vpc, CidrBlock=subnet["cidr"], AvailabilityZone=region + subnet["zone"],
                TagSpecifications=named("subnet", subnet["name"]))["Subnet"]["SubnetId"]
            if subnet["internet"]:
                ec2.associate_route_table(RouteTableId=table, SubnetId=sid)
            # moto makes the first subnet of a zone its default, mapping public addresses;
            # on EC2 only the default VPC's subnets are.
            ec2.modify_subnet_attribute(SubnetId=sid, MapPublicIpOnLaunch={"Value": False})
            self.ec2_backend(region).get_subnet(sid).default_for_az = False
            ids[subnet["name"]] = sid
        self.layout[region].update(ids)

    def _seed_parameters(self) -> None:
        """The publishers' public parameters (``/aws/...`` names are AWS's own: no API
        call may create them, so they go straight into moto's store)."""
        from moto.backends import get_backend
        from moto.core.utils import utcnow
        from moto.ssm.models import Parameter

        for region in self.regions:
            store = get_backend("ssm")[ACCOUNT][region]._parameters
            # moto would otherwise add its own Amazon Linux parameters, naming images
            # this catalogue does not have.
            store.latest_amis_loaded = True
            for name, value in self.catalogue["parameters"].items():
                store[name].append(Parameter(  # type: ignore[abstract]
                    account_id=ACCOUNT, name=name, value=value, parameter_type="String",
                    description=None, allowed_pattern=None, keyid=None,
                    last_modified_date=utcnow(), version=1, data_type="aws:ec2:image"))


def run(command: list[str], workdir: Path | None = None) -> int:
    """Start a sandbox, run ``command`` against it, stop it; returns the command's status.

    The command's environment has ``OS_CLIENT_CONFIG_FILE`` and
    ``CLOUDNORM_SANDBOX_CLOUDS_YAML`` naming the sandbox's clouds.yaml, and
    ``AWS_EC2_METADATA_DISABLED`` so that nothing falls back to the instance metadata
    service for credentials.
    """
    with MotoSandbox(workdir) as sandbox:
        path = sandbox.write_clouds_yaml()
        env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(path),
                   CLOUDNORM_SANDBOX_CLOUDS_YAML=str(path), AWS_EC2_METADATA_DISABLED="true")
        try:
            return subprocess.call(command, env=env)
        except OSError as error:
            print(f"error: cannot run {command[0]}: {error}", file=sys.stderr)
            return 127


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cloudnorm.testing.aws",
        description="Run COMMAND against a local EC2 (moto on 127.0.0.1).")
    parser.add_argument("--workdir", type=Path, help="where state goes (default: temporary)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="command to run, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    return run(command, args.workdir)


if __name__ == "__main__":
    sys.exit(main())

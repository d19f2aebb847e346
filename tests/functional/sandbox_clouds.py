"""The sandbox clouds the contract suite (``tests/functional/contract/``) runs on.

Every cloud cloudnorm supports must pass the same scenarios: create a server, log in as
root with strict host key checking, see passwords refused, delete it, find nothing left;
fail typed and clean at each step; reach the discovery decisions the cloud's data calls
for. What differs from one cloud to the next is said here, once per cloud, as a
:class:`SandboxCloud`: how to connect, how to list what is left (through the provider's
own API, never through cloudnorm's bookkeeping), how to make a step fail the way that
cloud fails, and what discovery must conclude (the OpenStack profiles' ``expect:``
sections; the local EC2's and Compute Engine's seeded accounts).

Which scenarios a cloud takes part in follows from its ``expect`` keys: a test runs on
every cloud that states what the test checks (:func:`clouds_with`).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.client
import http.server
import ipaddress
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

import cloudnorm
from cloudnorm.models import OWNER_KEY
from cloudnorm.testing import profile_data
from cloudnorm.testing.dataplane.client import key_login
from cloudnorm.testing.dataplane.node import DEFAULT_PASSWORD

# -- what every cloud is checked with ---------------------------------------------------------
#: A network's reason cites what the cloud or the configuration said, never its name.
OPENSTACK_FACT = re.compile(r"\d+\.\d+\.\d+\.\d+/\d+|[0-9a-f:]+::/\d+|router:external"
                            r"|routes_externally|no subnet|floating IPs")


def known_hosts_file(path: Path, server: cloudnorm.Server) -> Path:
    """The server's verified host keys as OpenSSH reads them: the test trusts nothing else."""
    host = (server.interface_ip if server.ssh_port == 22
            else f"[{server.interface_ip}]:{server.ssh_port}")
    path.write_text("".join(f"{host} {key}\n" for key in server.host_keys))
    return path


def ssh_as(server: cloudnorm.Server, user: str, key: Path, known_hosts: Path,
           command: str = "id -un") -> subprocess.CompletedProcess[str]:
    """The system ssh client, key only, strict host key checking, the server's port."""
    return key_login(server.interface_ip, user, key, known_hosts, "-p", str(server.ssh_port),
                     "-o", "BatchMode=yes", command=command)


def password_attempt(server: cloudnorm.Server, known_hosts: Path,
                     workdir: Path) -> subprocess.CompletedProcess[str]:
    """Offer the nodes' default password for the login user, and nothing else."""
    askpass = workdir / "askpass"
    askpass.write_text(f"#!/bin/sh\nprintf '%s\\n' '{DEFAULT_PASSWORD}'\n")
    askpass.chmod(0o700)
    argv = ["ssh", "-F", "/dev/null", "-p", str(server.ssh_port),
            "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "ConnectTimeout=10",
            "-o", "PreferredAuthentications=password,keyboard-interactive",
            "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1",
            f"{server.ssh_user}@{server.interface_ip}", "id -un"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL,
                          env={"PATH": os.environ["PATH"], "HOME": "/nonexistent",
                               "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"})


def check_strict_logins(server: cloudnorm.Server, key: Path, tmp_path: Path) -> None:
    """What create_server promises a person: the operator key logs in as root and as the
    login user against the host keys cloudnorm verified, and the server itself refuses
    passwords (it offers public keys only, not merely an unused password prompt)."""
    known_hosts = known_hosts_file(tmp_path / "known_hosts", server)
    root = ssh_as(server, "root", key, known_hosts, command="id -un; id -u")
    assert (root.returncode, root.stdout.split()) == (0, ["root", "0"]), root.stderr
    login = ssh_as(server, server.ssh_user, key, known_hosts)
    assert (login.returncode, login.stdout.strip()) == (0, server.ssh_user), login.stderr
    refused = password_attempt(server, known_hosts, tmp_path)
    assert refused.returncode == 255, (refused.stdout, refused.stderr)
    assert "Permission denied (publickey)" in refused.stderr, refused.stderr


def wait_node_gone(fleet: Any, node_id: str, seconds: float = 10.0) -> None:
    """The data plane's node of a deleted server goes with it."""
    deadline = time.monotonic() + seconds
    while fleet.get(node_id) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fleet.get(node_id) is None, f"node {node_id} outlived its server"


# -- a pass-through that writes down what the local EC2's clients ask ------------------------
class RequestRecorder:
    """An HTTP pass-through on 127.0.0.1 in front of one endpoint that records each
    request it relays (retries each count): when, which operation, which user agent.

    The local EC2 logs nothing itself, and what the data plane and the tests' own boto3
    clients ask must not count: clouds that talk through the recorder are the ones
    measured. Operations are named as AWS names them (``Action=`` of the query API,
    ``X-Amz-Target`` of the JSON ones).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.endpoint_url = ""
        self._lock = threading.Lock()
        self._log: list[tuple[float, str, str]] = []
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RequestRecorder:
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder._note(self.command, self.path, self.headers, body)
                conn = http.client.HTTPConnection(recorder.upstream.hostname or "127.0.0.1",
                                                  recorder.upstream.port, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("connection", "keep-alive", "content-length")}
                    if body:
                        headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    reply = conn.getresponse()
                    data = reply.read()
                    kept = [(k, v) for k, v in reply.getheaders() if k.lower() not in (
                        "connection", "keep-alive", "transfer-encoding", "content-length")]
                    status = reply.status
                finally:
                    conn.close()
                self.send_response(status)
                for key, value in kept:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True,
                                        name="aws-request-recorder")
        self._thread.start()
        self.endpoint_url = f"http://127.0.0.1:{server.server_address[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _note(self, method: str, path: str, headers: Any, body: bytes) -> None:
        target = headers.get("X-Amz-Target") or ""
        if target:
            operation = target.rsplit(".", 1)[-1]
        else:
            action = parse_qs(body.decode("utf-8", "replace")).get("Action")
            operation = action[0] if action else f"{method} {urlsplit(path).path}"
        with self._lock:
            self._log.append((time.time(), operation, headers.get("User-Agent") or ""))

    def requests(self, since: float | None = None, agent: str = "cloudnorm/") -> list[str]:
        with self._lock:
            return [op for t, op, ua in self._log
                    if (since is None or t >= since) and agent in ua]

    def clouds_yaml(self, clouds: dict[str, dict[str, Any]], path: Path) -> Path:
        """A clouds.yaml of ``clouds`` whose endpoint is this recorder."""
        import yaml

        routed = {name: {**entry, "cloudnorm": {**entry["cloudnorm"],
                                                 "endpoint_url": self.endpoint_url}}
                  for name, entry in clouds.items()}
        path.write_text(yaml.safe_dump({"clouds": routed}, sort_keys=False))
        path.chmod(0o600)
        return path


# -- one cloud ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SandboxCloud:
    """One cloud of the sandboxes and what the contract expects of it.

    ``id`` names it in test ids, ``cloud`` is its clouds.yaml entry, ``expect`` holds
    what each scenario checks (a scenario runs where its key is present). The fields
    after ``expect`` are set when a test binds the cloud to its running sandbox.
    """

    id: str
    cloud: str
    expect: dict[str, Any]
    sandbox: Any = None
    clouds_yaml: Path | None = None
    recorder: RequestRecorder | None = None
    opened: list[cloudnorm.Cloud] = dataclasses.field(default_factory=list)

    provider: ClassVar[str] = ""
    #: What a reason of a network classification cites (a fact of the cloud's).
    fact: ClassVar[re.Pattern[str]] = OPENSTACK_FACT

    def __str__(self) -> str:
        return self.id

    def bind(self, sandbox: Any, clouds_yaml: Path,
             recorder: RequestRecorder | None = None) -> SandboxCloud:
        return dataclasses.replace(self, sandbox=sandbox, clouds_yaml=clouds_yaml,
                                   recorder=recorder, opened=[])

    def connect(self, **overrides: Any) -> cloudnorm.Cloud:
        cloud = cloudnorm.connect(self.cloud, config_files=[str(self.clouds_yaml)], **overrides)
        self.opened.append(cloud)
        return cloud

    def close(self) -> None:
        for cloud in self.opened:
            cloud.close()

    @staticmethod
    def mark() -> float:
        """A point in time to count requests from (the logs have sub-second times)."""
        mark = time.time()
        time.sleep(0.05)
        return mark

    # -- what each provider says its own way ------------------------------------------------
    def leftovers(self) -> list[str]:
        """Everything of cloudnorm's the account still holds, seen through the provider's
        own API; the contract servers are all named ``cn-...``."""
        raise NotImplementedError

    def marked(self, owner: str) -> set[str]:
        """The kinds of resource that carry ``owner``'s marker, seen the provider's way."""
        raise NotImplementedError

    def requests(self, since: float) -> list[str]:
        """The API requests cloudnorm sent to this cloud since ``since``, in order."""
        raise NotImplementedError

    def node_id(self, server: cloudnorm.Server) -> str:
        """Which data plane node answers for ``server``."""
        return server.id

    def boot_arguments(self) -> dict[str, Any]:
        return dict(self.expect["boot"].get("create") or {})

    def check_boot(self, server: cloudnorm.Server, owner: str) -> None:
        """What the provider's own API shows of a server booted without waiting."""

    def user_data(self, server: cloudnorm.Server) -> bytes | None:
        """The user data the cloud holds for ``server``, read the provider's own way."""
        raise NotImplementedError

    def public_addresses(self, server_id: str) -> list[str]:
        """Every public address the provider's own API shows on the server (floating IP,
        public IP at launch, Elastic IP, access config); [] while it has none."""
        raise NotImplementedError

    def volume_sizes(self, server: cloudnorm.Server) -> list[int]:
        """GiB of every volume attached to the server, as the provider's own API shows
        them, sorted."""
        raise NotImplementedError

    @contextlib.contextmanager
    def public_address_refused(self) -> Iterator[str]:
        """Make step 5 fail as this cloud refuses a public address; yields the quota's
        resource name the typed error must carry."""
        raise NotImplementedError
        yield ""

    @contextlib.contextmanager
    def refusal(self, name: str) -> Iterator[Any]:
        """Make the cloud refuse a boot the way ``name`` says; yields what counts the
        attempts (or None)."""
        raise NotImplementedError
        yield None

    @contextlib.contextmanager
    def throttled_boots(self, times: int) -> Iterator[Any]:
        """The cloud throttles the next ``times`` boot requests; yields (calls, failed)."""
        raise NotImplementedError
        yield None


class OpenStackCloud(SandboxCloud):
    provider = "openstack"

    @property
    def profile(self) -> str:
        return self.cloud.removeprefix("sandbox-")

    def leftovers(self) -> list[str]:
        from cloudnorm.testing.openstack.leftovers import leftovers

        return leftovers(self.sandbox, self.profile, servers_named="cn-")

    def marked(self, owner: str) -> set[str]:
        from cloudnorm.testing.openstack.leftovers import leftovers

        kinds = ("server", "key pair", "port forwarding", "port", "floating IP",
                 "security group", "volume")
        return {next(k for k in kinds if line.startswith(k + " "))
                for line in leftovers(self.sandbox, self.profile, owner=owner)}

    def user_data(self, server: cloudnorm.Server) -> bytes | None:
        # Nova shows a server's user_data to an admin, from microversion 2.3 on
        # (compute API reference, "Show Server Details": OS-EXT-SRV-ATTR:user_data).
        admin = self.sandbox.connect_admin()
        try:
            reply = admin.compute.get(f"/servers/{server.id}", microversion="2.3")
            reply.raise_for_status()
            value = reply.json()["server"].get("OS-EXT-SRV-ATTR:user_data")
        finally:
            admin.close()
        return None if value is None else base64.b64decode(value)

    def public_addresses(self, server_id: str) -> list[str]:
        # Neutron's own view: floating IPs on the server's ports, and fixed IPs on
        # subnets the sandbox routes (a provider network's).
        from cloudnorm.testing.openstack.dataplane_sync import _routed

        admin = self.sandbox.connect_admin()
        try:
            ports = list(admin.network.ports(device_id=server_id))
            found = [ip.floating_ip_address for port in ports
                     for ip in admin.network.ips(port_id=port.id)]
            found += [fixed["ip_address"] for port in ports for fixed in port.fixed_ips
                      if _routed(admin.network.get_subnet(fixed["subnet_id"]).cidr)]
        finally:
            admin.close()
        return found

    def volume_sizes(self, server: cloudnorm.Server) -> list[int]:
        # Cinder's own view: the volumes whose attachments name the server.
        admin = self.sandbox.connect_admin()
        try:
            return sorted(v.size for v in admin.block_storage.volumes(all_projects=True)
                          if any(a.get("server_id") == server.id for a in v.attachments))
        finally:
            admin.close()

    def requests(self, since: float) -> list[str]:
        # Everything done in the profile's project; where cloudnorm boots servers, Nova's
        # own calls to Glance and Neutron count too.
        time.sleep(0.3)  # the services log a request after answering it
        return [f"{r['service']} {r['method']} {r['path']}"
                for r in self.sandbox.requests(since=since, project=self.cloud)]

    @contextlib.contextmanager
    def public_address_refused(self) -> Iterator[str]:
        # Real: Neutron's floating IP quota of the project is zero.
        from cloudnorm.testing.openstack.quotas import no_floating_ips

        with no_floating_ips(self.sandbox, self.cloud):
            yield "floating IP"


class AwsCloud(SandboxCloud):
    provider = "aws"
    fact = re.compile(r"\d+\.\d+\.\d+\.\d+/\d+|igw-[0-9a-f]+|Elastic IP")

    def leftovers(self) -> list[str]:
        return self.sandbox.leftovers()

    def marked(self, owner: str) -> set[str]:
        from cloudnorm.testing.aws import REGION

        def mine(record: dict[str, Any]) -> bool:
            return {t["Key"]: t["Value"] for t in record.get("Tags") or ()}.get(
                OWNER_KEY) == owner

        ec2 = self.sandbox.client("ec2", REGION)
        kinds = set()
        if any(mine(i) and i["State"]["Name"] != "terminated"
               for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]):
            kinds.add("instance")
        if any(mine(g) for g in ec2.describe_security_groups()["SecurityGroups"]):
            kinds.add("security group")
        if any(mine(k) for k in ec2.describe_key_pairs()["KeyPairs"]):
            kinds.add("key pair")
        if any(mine(a) for a in ec2.describe_addresses()["Addresses"]):
            kinds.add("address")
        if any(mine(v) for v in ec2.describe_volumes()["Volumes"]):
            kinds.add("volume")
        return kinds

    def volume_sizes(self, server: cloudnorm.Server) -> list[int]:
        ec2 = self.sandbox.client("ec2", self.region)
        return sorted(v["Size"] for v in ec2.describe_volumes(Filters=[
            {"Name": "attachment.instance-id", "Values": [server.id]}])["Volumes"])

    def user_data(self, server: cloudnorm.Server) -> bytes | None:
        reply = self.sandbox.client("ec2").describe_instance_attribute(
            InstanceId=server.id, Attribute="userData")
        value = (reply.get("UserData") or {}).get("Value")
        return None if value is None else base64.b64decode(value)

    @property
    def region(self) -> str:
        from cloudnorm.testing.aws import REGION

        return str(self.expect.get("lifecycle", {}).get("region") or REGION)

    def public_addresses(self, server_id: str) -> list[str]:
        ec2 = self.sandbox.client("ec2", self.region)
        found = [i.get("PublicIpAddress") for r in ec2.describe_instances(
            InstanceIds=[server_id])["Reservations"] for i in r["Instances"]]
        found += [a["PublicIp"] for a in ec2.describe_addresses(
            Filters=[{"Name": "instance-id", "Values": [server_id]}])["Addresses"]]
        return sorted({a for a in found if a})

    def requests(self, since: float) -> list[str]:
        assert self.recorder is not None, "AWS clouds are measured through the recorder"
        return self.recorder.requests(since=since)

    def boot_arguments(self) -> dict[str, Any]:
        from cloudnorm.testing.aws import REGION

        # A subnet of the custom VPC, named by id: its group must be made in that VPC.
        return {"network": self.sandbox.layout[REGION]["custom-public"]}

    def check_boot(self, server: cloudnorm.Server, owner: str) -> None:
        from cloudnorm.testing.aws import REGION

        ec2 = self.sandbox.client("ec2")
        instance = ec2.describe_instances(InstanceIds=[server.id])["Reservations"][0][
            "Instances"][0]
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags[OWNER_KEY] == owner
        assert tags["Name"] == server.name and tags["team"] == "qa"
        assert instance["ClientToken"] == f"cloudnorm-{owner}"
        # The subnet maps no public address: cloudnorm asked for one on the interface.
        assert instance["PublicIpAddress"].startswith("198.51.100.")
        group = instance["NetworkInterfaces"][0]["Groups"][0]["GroupId"]
        described = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]
        # A group of the server's VPC, not the default VPC's that was made first.
        assert described["VpcId"] == self.sandbox.layout[REGION]["cloudnorm-custom"]
        assert {t["Key"]: t["Value"] for t in described["Tags"]}[OWNER_KEY] == owner
        assert any(p["FromPort"] == 22 and {"CidrIp": "0.0.0.0/0", "Description": "ssh"}
                   in p["IpRanges"] for p in described["IpPermissions"])
        keypair = ec2.describe_key_pairs(KeyNames=[f"cloudnorm-{owner}"])["KeyPairs"][0]
        assert {t["Key"]: t["Value"] for t in keypair["Tags"]}[OWNER_KEY] == owner

    @contextlib.contextmanager
    def public_address_refused(self) -> Iterator[str]:
        # Real: EC2 refuses to allocate an Elastic IP past the account's limit.
        with self.sandbox.inject_error("allocate_address", "AddressLimitExceeded",
                                       "The maximum number of addresses has been reached."):
            yield "Elastic IPs"

    @contextlib.contextmanager
    def refusal(self, name: str) -> Iterator[Any]:
        code, message = self.expect["refusals"][name]["fault"]
        with self.sandbox.inject_error("run_instances", code, message) as calls:
            yield lambda: calls["calls"]

    @contextlib.contextmanager
    def throttled_boots(self, times: int) -> Iterator[Any]:
        with self.sandbox.inject_error("run_instances", "RequestLimitExceeded",
                                       "Request limit exceeded.", times=times) as calls:
            yield lambda: (calls["calls"], calls["failed"])


class GceCloud(SandboxCloud):
    provider = "gce"
    fact = re.compile(r"ONE_TO_ONE_NAT|firewall rule|rule '[^']+'|\d+\.\d+\.\d+\.\d+/\d+")
    #: GCE label keys allow no ':', so the owner marker is a label of this name.
    label = OWNER_KEY.replace(":", "-")

    def _project_leftovers(self, project: str) -> list[str]:
        from cloudnorm.testing.gce import ZONE

        label = f"labels.{self.label}:*"
        found = [f"instance {i.name}" for i in self.sandbox.client("InstancesClient").list(
            request={"project": project, "zone": ZONE, "filter": label})]
        found += [f"disk {d.name}" for d in self.sandbox.client("DisksClient").list(
            request={"project": project, "zone": ZONE, "filter": label})]
        found += [f"firewall rule {r.name}" for r in self.sandbox.client(
            "FirewallsClient").list(project=project)
            if r.name.startswith("cloudnorm-") or OWNER_KEY in r.description]
        return found

    def leftovers(self) -> list[str]:
        return [line for project in self.sandbox.projects
                for line in self._project_leftovers(project)]

    def marked(self, owner: str) -> set[str]:
        from cloudnorm.testing.gce import PROJECT, ZONE

        label = f'labels.{self.label} = "{owner}"'
        kinds = set()
        if list(self.sandbox.client("InstancesClient").list(
                request={"project": PROJECT, "zone": ZONE, "filter": label})):
            kinds.add("instance")
        if list(self.sandbox.client("DisksClient").list(
                request={"project": PROJECT, "zone": ZONE, "filter": label})):
            kinds.add("disk")
        if any(f"{OWNER_KEY}={owner}" in r.description
               for r in self.sandbox.client("FirewallsClient").list(project=PROJECT)):
            kinds.add("firewall rule")
        return kinds

    def requests(self, since: float) -> list[str]:
        time.sleep(0.05)  # the endpoint logs a request after answering it
        # cloudnorm's own clients name themselves; the data plane's and the test's do not.
        return [f"{r['method']} {r['path'].split('/compute/v1/projects/')[-1]}"
                for r in self.sandbox.requests(since=since) if "cloudnorm/" in r["user_agent"]]

    def node_id(self, server: cloudnorm.Server) -> str:
        return str(server.raw["id"])  # the instance's number, not its name

    def user_data(self, server: cloudnorm.Server) -> bytes | None:
        from cloudnorm.testing.gce import PROJECT, ZONE

        instance = self.sandbox.client("InstancesClient").get(project=PROJECT, zone=ZONE,
                                                              instance=server.name)
        items = {i.key: i.value for i in instance.metadata.items}
        if "user-data" not in items:
            return None
        if items.get("user-data-encoding") == "base64":
            return base64.b64decode(items["user-data"])
        return items["user-data"].encode("utf-8")

    def volume_sizes(self, server: cloudnorm.Server) -> list[int]:
        from cloudnorm.testing.gce import PROJECT, ZONE

        instance = self.sandbox.client("InstancesClient").get(project=PROJECT, zone=ZONE,
                                                              instance=server.name)
        disks = self.sandbox.client("DisksClient")
        return sorted(int(disks.get(project=PROJECT, zone=ZONE,
                                    disk=d.source.rsplit("/", 1)[-1]).size_gb)
                      for d in instance.disks)

    def public_addresses(self, server_id: str) -> list[str]:
        from cloudnorm.testing.gce import PROJECT, ZONE

        found = [i for i in self.sandbox.client("InstancesClient").list(
            project=PROJECT, zone=ZONE) if str(i.id) == server_id or i.name == server_id]
        return [a.nat_i_p or "(an access config)" for i in found
                for nic in i.network_interfaces for a in nic.access_configs]

    def check_boot(self, server: cloudnorm.Server, owner: str) -> None:
        from cloudnorm.testing.gce import CUSTOM_NETWORK, PROJECT, ZONE

        instance = self.sandbox.client("InstancesClient").get(project=PROJECT, zone=ZONE,
                                                              instance=server.name)
        assert instance.labels[self.label] == owner
        assert server.tags == {OWNER_KEY: owner, "team": "qa"}
        assert list(instance.tags.items) == [f"cloudnorm-{owner}"]
        metadata = {i.key: i.value for i in instance.metadata.items}
        assert metadata["team"] == "qa"
        user, _, key = metadata["ssh-keys"].partition(":")
        assert user == "debian" and key.startswith("ssh-ed25519 AAAA") and key.endswith(" debian")
        nic = instance.network_interfaces[0]
        assert nic.subnetwork.endswith("/regions/us-central1/subnetworks/custom-subnet")
        assert nic.access_configs[0].type_ == "ONE_TO_ONE_NAT"
        assert nic.access_configs[0].nat_i_p.startswith("198.51.100.")
        assert server.public_v4 == nic.access_configs[0].nat_i_p
        disk = self.sandbox.client("DisksClient").get(project=PROJECT, zone=ZONE,
                                                      disk=server.name)
        assert disk.labels[self.label] == owner
        rule = self.sandbox.client("FirewallsClient").get(project=PROJECT,
                                                          firewall=f"cloudnorm-{owner}")
        assert rule.description == f"{OWNER_KEY}={owner} ssh access"
        assert list(rule.target_tags) == [f"cloudnorm-{owner}"] and rule.network.endswith(
            f"/networks/{CUSTOM_NETWORK}")
        assert [(a.I_p_protocol, list(a.ports)) for a in rule.allowed] == [("tcp", ["22"])]
        ssh = {d.step: d for d in server.decisions}["ssh_access"]
        assert f"cloudnorm-{owner} on network '{CUSTOM_NETWORK}'" in ssh.choice
        # the key never reached the project's metadata
        project = self.sandbox.client("ProjectsClient").get(project=PROJECT)
        assert "ssh-keys" not in {i.key for i in project.common_instance_metadata.items}

    @contextlib.contextmanager
    def refusal(self, name: str) -> Iterator[Any]:
        kind, code, message = self.expect["refusals"][name]["fault"]
        if kind == "answer":  # the insert request itself is refused
            with self.sandbox.inject("POST", r"/instances$", 403, code, message) as fault:
                yield lambda: fault.calls
        else:  # the insert is accepted and its operation ends in the error
            with self.sandbox.failing_inserts(code, message):
                yield None

    @contextlib.contextmanager
    def throttled_boots(self, times: int) -> Iterator[Any]:
        with self.sandbox.inject("POST", r"/instances$", 403, "rateLimitExceeded",
                                 "Rate Limit Exceeded", times=times) as fault:
            yield lambda: (fault.calls, fault.failed)


# -- the clouds --------------------------------------------------------------------------------
def _openstack(profile: str) -> OpenStackCloud:
    expect = profile_data.load(profile)["expect"]
    contract: dict[str, Any] = {
        "image": expect["image"],
        "flavor": expect["flavor"],
        "networks": expect["networks"],
        "default_network": expect["default_network"],
        "floating_ip_network": expect["floating_ip_network"],
        "lifecycle": {
            "create": {"image": "ubuntu-22.04", "min_ram": 2048},
            "timeout": 240,
            "ssh_user": "ubuntu",
            "image_choice": expect["image"]["name"],
            "interface_ip_version": expect["interface_ip_version"],
            "floating_ip": bool(expect["floating_ip_network"]),
            "ssh_port_not_22": bool(expect.get("ssh_port_not_22")),
        },
    }
    if profile == "fip-required":  # the profile where every kind of resource gets created
        contract.update({
            "faults": {"login_timeout": 16},
            "public_address_fault": True,
            "no_host_keys": {"timeout": 16, "detail_prefix": "203.0.113.",
                             "detail_has": "floating IP"},
            "boot": {"marks": {"server", "key pair", "security group"}},
            "discovery": {"image_request": "/images"},
            "keypair_request": "os-keypairs",
            "unreachable": {"overrides": {"auth": {"auth_url": "http://127.0.0.1:9/v3"}},
                            "match": "127.0.0.1:9"},
        })
    if profile == "direct-public":
        contract["host_key_mismatch"] = True
    if profile in ("fip-required", "config-drive-only"):
        # Through the metadata service, and through a config drive only.
        contract["user_data_runs"] = True
    if profile == "boot-from-volume":
        contract["volumes"] = {"root": expect["root_volume_gb"]}
    if profile in ("fip-required", "direct-public", "port-forward", "no-neutron"):
        # One of each way in: a floating IP, a provider network, a forwarded port, and
        # no network service at all.
        contract["private_access"] = True
    return OpenStackCloud(id=f"openstack-{profile}", cloud=f"sandbox-{profile}",
                          expect=contract)


AWS_IMAGE = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240501"

CLOUDS: list[SandboxCloud] = [
    *(_openstack(profile) for profile in profile_data.available()),
    AwsCloud("aws", "sandbox-aws", {
        "private_access": True,
        "image": {"os": "ubuntu-22.04", "name": AWS_IMAGE, "id": "ami-0ab2204000000002",
                  "architecture": "x86_64",
                  "source_prefix": "public parameter /aws/service/canonical/ubuntu/server/22.04/"},
        "images": [
            # the newer of the two by CreationDate
            {"os": "debian-12", "id": "ami-0de1200000000002", "os_distro": "debian",
             "os_version": "12", "login_user": "admin"},
            {"os": "ubuntu-24.04", "name_endswith": "-20240606", "login_user": "ubuntu"},
            {"os": "ubuntu", "same_as": "ubuntu-24.04"},  # newest version when none is asked
            {"os": "amazon", "id": "ami-0a12023000000002", "os_version": "2023",
             "login_user": "ec2-user"},
        ],
        "flavor": {"min_ram": 2048, "name": "t3a.small", "ram": 2048, "vcpus": 2,
                   "passed_over": {"t2.small": "cheaper family 't3a'"},
                   "disabled": ["t3.small"],
                   "fits": [({"min_ram": 65536}, "m6a.4xlarge"),
                            ({"min_ram": 1024, "min_vcpus": 4}, "t3a.xlarge")]},
        "discovery": {
            "first": ["GetParameters", "DescribeImages", "DescribeImages", "DescribeImages",
                      "DescribeInstanceTypes", "DescribeVpcs", "DescribeSubnets",
                      "DescribeRouteTables"],
            "image_request": "DescribeImages"},
        "keypair_request": "DescribeKeyPairs",
        "unreachable": {"overrides": {"cloudnorm": {"endpoint_url": "http://127.0.0.1:9"}},
                        "match": "cannot reach AWS"},
        "lifecycle": {
            "ssh_user": "ubuntu", "image_choice": AWS_IMAGE, "public_v4_is_interface": True,
            "interface_in": "198.51.100.0/24",
            "decisions": [("public_address", "reason", "in",
                           "subnet maps a public IPv4 at launch")],
            "public_address_reason": "assigned at launch"},
        "no_host_keys": {"timeout": 10, "detail_prefix": "198.51.100.",
                         "detail_has": "public IPv4 AWS assigned at launch"},
        "host_key_mismatch": True,
        "user_data_runs": True,
        "volumes": {"root": 8},  # the sandbox AMIs' root snapshot size
        "boot": {"marks": {"instance", "security group", "key pair", "volume"}},
        "refusals": {
            "request-limit-exhausted": {
                "fault": ("RequestLimitExceeded", "Request limit exceeded."),
                "resource": "API request rate", "says": "after 3 attempt(s)", "calls": 3},
            "insufficient-capacity": {
                "fault": ("InsufficientInstanceCapacity",
                          "We currently do not have sufficient t3a.small capacity in the "
                          "Availability Zone you requested (us-east-1a)."),
                # not a transient fault: botocore does not retry it
                "resource": "capacity", "says": "InsufficientInstanceCapacity", "calls": 1},
        },
        "retried": {"boot_request": "RunInstances"},
    }),
    AwsCloud("aws-custom-vpc-subnet", "sandbox-aws", {
        "lifecycle": {
            "create": {"network": "custom-public", "image": "debian-12"},
            "ssh_user": "admin", "public_v4_is_interface": True,
            "interface_in": "198.51.100.0/24",
            "decisions": [("public_address", "reason", "in", "AssociatePublicIpAddress")]},
    }),
    AwsCloud("aws-eip", "sandbox-aws-eip", {
        "private_access": True,
        "floating_ip_network": "Amazon public IPv4 pool",
        "lifecycle": {
            "create": {"image": "amazon"},
            "ssh_user": "ec2-user", "public_v4_is_interface": True,
            "interface_in": "198.51.100.128/25",  # the Elastic IP range
            "decisions": [("public_address", "reason", "in", "Elastic IP")]},
        "no_host_keys": {"timeout": 10, "detail_prefix": "198.51.100.",
                         "detail_has": "Elastic IP eipalloc-"},
        "faults": {"login_timeout": 9},
        "public_address_fault": True,
    }),
    AwsCloud("aws-nodefault", "sandbox-aws-nodefault", {
        "networks": {"only-public": {"public": True}, "only-private": {"public": False}},
        "default_network": "only-public",
        "choose_network_reason": ["there is no default VPC"],
        "lifecycle": {"ssh_user": "ubuntu", "public_v4_is_interface": True,
                      "interface_in": "198.51.100.0/24", "region": "us-west-2"},
    }),
    AwsCloud("aws-custom", "sandbox-aws-custom", {
        "networks": {
            "custom-public": {"public": True, "reason": [
                "AssociatePublicIpAddress", "maps no public IPv4 at launch"]},
            "custom-private": {"public": False, "reason_is":
                               "subnet 10.20.2.0/24 is a private range; no router leads outside"},
        },
        "default_network": "custom-public",
        "choose_network_reason": ["cloudnorm: vpc: names VPC"],
    }),
    GceCloud("gce", "sandbox-gce", {
        "private_access": True,
        "image": {"os": "ubuntu-22.04", "name": "ubuntu-2204-jammy-v20240501",
                  "id": "projects/ubuntu-os-cloud/global/images/ubuntu-2204-jammy-v20240501",
                  "architecture": "x86_64",
                  "source": "family ubuntu-2204-lts of project ubuntu-os-cloud"},
        "images": [{"os": "debian-12", "name": "debian-12-bookworm-v20240415"},
                   {"os": "ubuntu", "os_version": "24.04"}],
        "flavor": {"min_ram": 2048, "name": "e2-small", "ram": 2048, "vcpus": 2,
                   "fits": [({"min_ram": 8192}, "e2-standard-2")],
                   "absent": ["c3-standard-4"],  # not one of the profile's families
                   "passed_over": {"e2-highcpu-2": "shared-core 'e2-small'"},
                   "disabled": ["n2-standard-2"]},
        "networks": {
            "default": {"public": True, "subnets": ("10.128.0.0/20",),
                        "reason": ["default-allow-ssh", "ONE_TO_ONE_NAT"]},
            "custom-vpc": {"public": True, "reason": ["cloudnorm adds a rule"]},
        },
        "default_network": "default",
        "choose_network_reason": ["'default' network"],
        "discovery": {
            "first": [
                "GET ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64",
                "GET ubuntu-os-cloud/global/images/family/ubuntu-2204-lts",
                "GET ubuntu-os-cloud/global/images/family/ubuntu-2004-lts",
                "GET debian-cloud/global/images/family/debian-12",
                "GET debian-cloud/global/images/family/debian-11",
                "GET cloudnorm-sandbox/global/images",
                "GET cloudnorm-sandbox/zones/us-central1-a/machineTypes",
                "GET cloudnorm-sandbox/global/networks",
                "GET cloudnorm-sandbox/regions/us-central1/subnetworks",
                "GET cloudnorm-sandbox/global/firewalls"],
            "image_request": "/images"},
        "unreachable": {"overrides": {"cloudnorm": {"endpoint_url": "http://127.0.0.1:9"}},
                        "match": "cannot reach the Compute Engine API"},
        "lifecycle": {
            "create": {"min_ram": 2048},
            "ssh_user": "ubuntu", "flavor_choice": "e2-small",
            "image_choice": "ubuntu-2204-jammy-v20240501",
            "public_v4_is_interface": True, "interface_in": "198.51.100.0/24",
            "decisions": [("ssh_access", "choice", "in", "default-allow-ssh"),
                          ("login_user", "choice", "==", "ubuntu")]},
        "host_key_mismatch": True,
        "user_data_runs": True,
        "volumes": {"root": 10},  # the image's diskSizeGb
        "retried": {"boot_request": "POST cloudnorm-sandbox/zones/us-central1-a/instances"},
    }),
    GceCloud("gce-custom", "sandbox-gce-custom", {
        "networks": {
            "default": {"public": True, "subnets": ("10.128.0.0/20",),
                        "reason": ["default-allow-ssh", "ONE_TO_ONE_NAT"]},
            "custom-vpc": {"public": True, "reason": ["cloudnorm adds a rule"]},
        },
        "default_network": "custom-vpc",
        "choose_network_reason": ["cloudnorm: network:"],
        "lifecycle": {
            "create": {"image": "debian-12"},
            "ssh_user": "debian", "public_v4_is_interface": True,
            "interface_in": "198.51.100.0/24",
            "decisions": [("ssh_access", "choice", "startswith",
                           "firewall rule cloudnorm-{owner} on network 'custom-vpc'"),
                          ("network", "choice", "==", "custom-vpc")]},
        "no_host_keys": {"timeout": 10, "detail_prefix": "198.51.100.",
                         "detail_has": "ONE_TO_ONE_NAT"},
        "faults": {"login_timeout": 9},
        "boot": {"create": {"image": "debian-12"},
                 "marks": {"instance", "disk", "firewall rule"}},
        "refusals": {
            "quota": {"fault": ("answer", "quotaExceeded",
                                "Quota 'CPUS' exceeded.  Limit: 24.0 in region us-central1."),
                      # not a transient fault: no retry
                      "resource": "CPUS", "says": "CPUS", "calls": 1},
            "zone-capacity": {"fault": (
                "operation", "ZONE_RESOURCE_POOL_EXHAUSTED",
                "The zone 'projects/cloudnorm-sandbox/zones/us-central1-a' does not have "
                "enough resources available to fulfill the request."),
                "resource": "capacity", "says": "no capacity", "calls": None},
        },
    }),
]


def clouds_with(*keys: str) -> list[Any]:
    """``pytest.param`` of every cloud whose expectations hold all of ``keys``."""
    return [pytest.param(cloud, id=cloud.id) for cloud in CLOUDS
            if all(key in cloud.expect for key in keys)]


def refusals() -> list[Any]:
    """(cloud, refusal name) of every boot refusal a cloud knows how to make."""
    return [pytest.param(cloud, name, id=f"{cloud.id}-{name}") for cloud in CLOUDS
            for name in cloud.expect.get("refusals", {})]


def check_decision(value: str, op: str, text: str) -> None:
    if op == "==":
        assert value == text
    elif op == "in":
        assert text in value, value
    elif op == "startswith":
        assert value.startswith(text), value
    else:
        raise ValueError(op)


def in_network(address: str, network: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(network)


def processes_mentioning(text: str) -> list[int]:
    """Processes (other than this one) whose command line holds ``text``: what a stopped
    sandbox must not leave running."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry.name))
    return found

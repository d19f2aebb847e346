"""What is Compute Engine's own, against the local compute v1 endpoint (GceSandbox on
127.0.0.1) through the real google-cloud-compute clients over HTTP.

The scenarios every cloud must pass -- create, strict root login, passwords refused,
delete, nothing left; a fault at each step; throttling, quota and capacity refusals;
discovery decisions and their cost -- run on the local Compute Engine's clouds in the
contract suite (tests/functional/contract/, the clouds in tests/functional/sandbox_clouds.py).
Here: projects, firewall rules, OS Login, instance names, and host keys published in guest
attributes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sandbox_clouds import check_strict_logins

import cloudnorm
from cloudnorm import errors, keys
from cloudnorm.drivers.gce.normalize import OWNER_LABEL
from cloudnorm.models import OWNER_KEY
from cloudnorm.testing.dataplane import in_private_netns
from cloudnorm.testing.gce import CUSTOM_NETWORK, OSLOGIN_PROJECT, PROJECT, ZONE, GceSandbox

pytestmark = [pytest.mark.functional, pytest.mark.filterwarnings("ignore:Support for InfluxDB"),
              pytest.mark.usefixtures("isolated_cloud_environment")]
PROJECT_DIR = Path(__file__).resolve().parents[2]


IN_PRIVATE_NETNS = in_private_netns()
inside = pytest.mark.skipif(
    not IN_PRIVATE_NETNS,
    reason="needs a private network namespace; test_gce_ssh_in_private_netns runs it in one")


# -- fixtures -------------------------------------------------------------------------------
# The local Compute Engine and its data plane are the run's (tests/functional/conftest.py).
@pytest.fixture
def sandbox(gce_sandbox):
    return gce_sandbox


@pytest.fixture
def connect(gce_clouds_yaml):
    opened: list[cloudnorm.Cloud] = []

    def _connect(name: str = "sandbox-gce", **overrides: Any) -> cloudnorm.Cloud:
        cloud = cloudnorm.connect(name, config_files=[str(gce_clouds_yaml)], **overrides)
        opened.append(cloud)
        return cloud

    yield _connect
    for cloud in opened:
        cloud.close()


def leftovers(sandbox: GceSandbox, project: str = PROJECT) -> list[str]:
    """Everything of cloudnorm's that still exists, seen through compute_v1 clients."""
    label = f"labels.{OWNER_LABEL}:*"
    found = [f"instance {i.name}" for i in sandbox.client("InstancesClient").list(
        request={"project": project, "zone": ZONE, "filter": label})]
    found += [f"disk {d.name}" for d in sandbox.client("DisksClient").list(
        request={"project": project, "zone": ZONE, "filter": label})]
    found += [f"firewall rule {r.name}" for r in sandbox.client("FirewallsClient").list(
        project=project) if r.name.startswith("cloudnorm-") or OWNER_KEY in r.description]
    return found


@pytest.fixture
def clean(sandbox):
    yield
    assert leftovers(sandbox) == []
    assert leftovers(sandbox, OSLOGIN_PROJECT) == []


class Requests:
    """The requests cloudnorm sent to the sandbox since the object was made (retries
    included: each is a request of its own)."""

    def __init__(self, sandbox: GceSandbox) -> None:
        self._sandbox = sandbox
        self.since = time.time()

    def sent(self) -> list[str]:
        time.sleep(0.05)  # the endpoint logs a request after answering it
        # cloudnorm's own clients name themselves; the test's checks do not count.
        return [f"{r['method']} {r['path'].split('/compute/v1/projects/')[-1]}"
                for r in self._sandbox.requests(since=self.since)
                if "cloudnorm/" in r["user_agent"]]


# -- projects -------------------------------------------------------------------------------
def test_unknown_project_is_not_found(connect):
    cloud = connect(cloudnorm={"project": "no-such-project"})
    with pytest.raises(errors.NotFound, match="no-such-project"):
        cloud.list_networks()


# -- firewall rules, OS Login, names ---------------------------------------------------------
def test_default_network_needs_no_rule_of_cloudnorms(connect, sandbox, clean):
    cloud = connect()
    server = cloud.create_server("no-rule", wait=False)
    ssh = {d.step: d for d in server.decisions}["ssh_access"]
    assert ssh.choice.startswith("no rule of cloudnorm's needed: rule 'default-allow-ssh'")
    instance = sandbox.client("InstancesClient").get(project=PROJECT, zone=ZONE,
                                                     instance="no-rule")
    assert list(instance.tags.items) == []
    assert cloud.delete_server(server) is True


def test_a_network_named_at_create_gets_the_rule(connect, sandbox, clean):
    # The rule is planned for the default network (which needs none); naming another
    # network at create moves it there.
    cloud = connect()
    server = cloud.create_server("moved", wait=False, network=CUSTOM_NETWORK)
    owner = server.tags[OWNER_KEY]
    rule = sandbox.client("FirewallsClient").get(project=PROJECT, firewall=f"cloudnorm-{owner}")
    assert rule.network.endswith(f"/networks/{CUSTOM_NETWORK}")
    assert cloud.delete_server(server) is True


def test_oslogin_project_is_refused_before_anything_is_created(connect, sandbox, clean):
    cloud = connect("sandbox-gce-oslogin")
    log = Requests(sandbox)
    with pytest.raises(errors.ConfigError, match="enable-oslogin=TRUE") as info:
        cloud.create_server("refused", timeout=30)
    assert OSLOGIN_PROJECT in str(info.value)
    assert log.sent() == [f"GET {OSLOGIN_PROJECT}"]
    assert leftovers(sandbox, OSLOGIN_PROJECT) == []


def test_invalid_name_is_refused_and_rolled_back(connect, sandbox, clean):
    cloud = connect("sandbox-gce-custom")
    log = Requests(sandbox)
    with pytest.raises(errors.ConfigError, match="cannot name a GCE instance"):
        cloud.create_server("Web_1", wait=False)
    assert not [r for r in log.sent() if r.startswith("POST") and r.endswith("/instances")]


# -- SSH: host keys from guest attributes -----------------------------------------------------
@pytest.mark.skipif(IN_PRIVATE_NETNS, reason="the scenarios run directly in this namespace")
def test_gce_ssh_in_private_netns() -> None:
    """Outside a private network namespace, the SSH scenarios cannot reach the data plane:
    run this file's and the contract's on the local Compute Engine in a fresh namespace."""
    import os

    from cloudnorm.testing.dataplane import ensure_openssh, run_in_private_netns

    if os.geteuid() != 0:
        pytest.skip("the SSH data plane needs root")
    ensure_openssh()  # installing needs the network, which the namespace does not have
    argv = [sys.executable, "-m", "pytest", __file__,
            str(PROJECT_DIR / "tests/functional/contract"), "-q", "-rA", "-s",
            "-k", "(ssh_ and not contract) or (gce and contract)", "-p", "no:cacheprovider"]
    assert run_in_private_netns(argv, timeout=540, cwd=PROJECT_DIR) == 0


@inside
def test_ssh_host_keys_from_guest_attributes(connect, sandbox, gce_dataplane, tmp_path, clean):
    # The Debian images run Google's guest agent and no cloud-init: the serial port shows
    # no host key; the agent writes them to the guest attributes (hostkeys/<type>).
    cloud = connect()
    operator = keys.generate("operator")
    key_file = tmp_path / "operator"
    key_file.write_text(operator.private_key)
    key_file.chmod(0o600)
    server = cloud.create_server("web", image="debian-12", timeout=120,
                                 authorized_keys=[operator.public_key])
    try:
        instance = server.raw
        items = {i["key"]: i["value"] for i in instance["metadata"]["items"]}
        assert items["enable-guest-attributes"] == "TRUE"
        console = cloud.driver.console_output(server.id)  # public: cloud.driver
        assert "google_guest_agent" in console and "SSH HOST KEY" not in console
        node = gce_dataplane.get(instance["id"])
        on_node = {" ".join(k.split()[:2]) for k in node.host_keys.keys}
        reply = sandbox.client("InstancesClient").get_guest_attributes(request={
            "project": PROJECT, "zone": ZONE, "instance": server.id, "query_path": "hostkeys/"})
        published = {f"{e.key} {e.value}" for e in reply.query_value.items}
        # logs in with StrictHostKeyChecking=yes against server.host_keys
        check_strict_logins(server, key_file, tmp_path)
    finally:
        assert cloud.delete_server(server) is True
    assert server.ssh_user == "debian"
    assert set(server.host_keys) == on_node == published
    decision = {d.step: d for d in server.decisions}["host_keys"]
    assert decision.choice == f"{len(on_node)} published"
    assert "guest attributes" in decision.reason


@inside
def test_ssh_guest_attributes_refused_and_no_console_keys_rolls_back(connect, sandbox,
                                                                     gce_dataplane, clean):
    # The API refuses to read the guest attributes (403, as for an instance whose guest
    # attributes are off) and the Debian console shows no key: sshd answers, but nothing
    # tells whom it is; the flow gives up and removes what it made.
    cloud = connect()
    with sandbox.inject("GET", r"/getGuestAttributes$", 403, "forbidden",
                        "Guest attributes are disabled for this instance.") as fault, \
            pytest.raises(errors.Timeout, match="on the console nor published them"):
        cloud.create_server("ga-refused", image="debian-12", timeout=14)
    assert fault.failed >= 1


# -- what automation passes to create_server ----------------------------------------------------
def test_zone_and_extra_tags_reach_gce_and_ssh_stays_open(connect, sandbox, clean):
    """On GCE a "security group" is a network tag firewall rules target: the caller's
    tags go on next to cloudnorm's. A cloud is bound to its zone: another one is
    refused before anything is created."""
    cloud = connect("sandbox-gce-custom")
    server = cloud.create_server("cn-zone-tags", wait=False, availability_zone=ZONE,
                                 security_groups=["web", "db"])
    try:
        instance = sandbox.client("InstancesClient").get(project=PROJECT, zone=ZONE,
                                                         instance=server.name)
        tags = list(instance.tags.items)
        assert tags[1:] == ["web", "db"] and tags[0].startswith("cloudnorm-")
    finally:
        assert cloud.delete_server(server.id) is True
    with pytest.raises(errors.InvalidRequest, match=f"boots in zone {ZONE}") as info:
        cloud.create_server("cn-other-zone", wait=False, availability_zone="asia-east1-a")
    assert info.value.field == "availability_zone"

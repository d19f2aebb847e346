"""cloudnorm on Compute Engine, against the local compute v1 endpoint (GceSandbox on
127.0.0.1) through the real google-cloud-compute clients over HTTP.

Discovery, boot, faults and rollback run in any namespace and never connect to an
address the cloud hands out. The SSH scenarios need the SSH data plane, which lives in a
private network namespace: when the session is not in one,
``test_gce_ssh_in_private_netns`` re-runs them in a fresh namespace.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import cloudnorm
from cloudnorm import errors, hostkeys, keys, provision
from cloudnorm.drivers.gce.normalize import OWNER_LABEL
from cloudnorm.models import OWNER_KEY
from cloudnorm.testing.dataplane import in_private_netns
from cloudnorm.testing.dataplane.client import key_login, password_login
from cloudnorm.testing.gce import CUSTOM_NETWORK, OSLOGIN_PROJECT, PROJECT, ZONE, GceSandbox

pytestmark = [pytest.mark.functional, pytest.mark.filterwarnings("ignore:Support for InfluxDB"),
              pytest.mark.usefixtures("isolated_cloud_environment")]
PROJECT_DIR = Path(__file__).resolve().parents[2]


IN_PRIVATE_NETNS = in_private_netns()
inside = pytest.mark.skipif(
    not IN_PRIVATE_NETNS,
    reason="needs a private network namespace; test_gce_ssh_in_private_netns runs it in one")


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with GceSandbox(tmp_path_factory.mktemp("gce-sandbox")) as running:
        yield running


@pytest.fixture(scope="module")
def clouds_yaml(sandbox):
    return sandbox.write_clouds_yaml()


@pytest.fixture
def connect(clouds_yaml):
    opened: list[cloudnorm.Cloud] = []

    def _connect(name: str = "sandbox-gce", **overrides: Any) -> cloudnorm.Cloud:
        cloud = cloudnorm.connect(name, config_files=[str(clouds_yaml)], **overrides)
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


# -- discovery ------------------------------------------------------------------------------
def test_find_image_is_the_family_current_image(connect):
    cloud = connect()
    image = cloud.find_image("ubuntu-22.04")
    assert image.name == "ubuntu-2204-jammy-v20240501"
    assert image.id == "projects/ubuntu-os-cloud/global/images/ubuntu-2204-jammy-v20240501"
    assert image.architecture == "x86_64" and not image.hidden
    assert image.raw["cloudnorm:source"] == "family ubuntu-2204-lts of project ubuntu-os-cloud"
    assert cloud.find_image("debian-12").name == "debian-12-bookworm-v20240415"
    assert cloud.find_image("ubuntu").os_version == "24.04"


def test_find_flavor_is_the_cheapest_fit(connect):
    cloud = connect()
    flavor, decision = cloud.choose_flavor(min_ram=2048)
    assert flavor.name == "e2-small" and (flavor.ram, flavor.vcpus) == (2048, 2)
    assert cloud.find_flavor(min_ram=8192).name == "e2-standard-2"
    by_name = {f.name: f for f in cloud.list_flavors()}
    assert "c3-standard-4" not in by_name  # not one of the profile's families
    assert by_name["e2-highcpu-2"].disabled
    assert "shared-core 'e2-small'" in by_name["e2-highcpu-2"].raw["cloudnorm:passed_over"]
    assert by_name["n2-standard-2"].disabled


def test_networks_are_classified_with_firewall_reasons(connect):
    cloud = connect()
    nets = {n.name: n for n in cloud.list_networks()}
    assert set(nets) == {"default", CUSTOM_NETWORK}
    assert nets["default"].public and nets["default"].subnets == ("10.128.0.0/20",)
    assert "default-allow-ssh" in nets["default"].reason
    assert "ONE_TO_ONE_NAT" in nets["default"].reason
    assert "cloudnorm adds a rule" in nets[CUSTOM_NETWORK].reason
    assert cloud.default_network().name == "default"
    assert "'default' network" in cloud.choose_network().reason
    custom = connect("sandbox-gce-custom")
    assert custom.default_network().name == CUSTOM_NETWORK
    assert "cloudnorm: network:" in custom.choose_network().reason


def test_discovery_request_counts_and_cache(connect, sandbox):
    cloud = connect()
    log = Requests(sandbox)
    cloud.list_images(), cloud.list_flavors(), cloud.list_networks()
    sent = log.sent()
    assert sent == [
        "GET ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64",
        "GET ubuntu-os-cloud/global/images/family/ubuntu-2204-lts",
        "GET ubuntu-os-cloud/global/images/family/ubuntu-2004-lts",
        "GET debian-cloud/global/images/family/debian-12",
        "GET debian-cloud/global/images/family/debian-11",
        f"GET {PROJECT}/global/images",
        f"GET {PROJECT}/zones/{ZONE}/machineTypes",
        f"GET {PROJECT}/global/networks",
        f"GET {PROJECT}/regions/us-central1/subnetworks",
        f"GET {PROJECT}/global/firewalls"]
    cloud.find_image("ubuntu-22.04"), cloud.find_flavor(min_ram=2048), cloud.choose_network()
    assert len(log.sent()) == len(sent)  # all from the cache


def test_unreachable_endpoint_is_service_unavailable(connect):
    cloud = connect(cloudnorm={"endpoint_url": "http://127.0.0.1:9"})
    with pytest.raises(errors.ServiceUnavailable, match="cannot reach the Compute Engine API"):
        cloud.list_flavors()


def test_unknown_project_is_not_found(connect):
    cloud = connect(cloudnorm={"project": "no-such-project"})
    with pytest.raises(errors.NotFound, match="no-such-project"):
        cloud.list_networks()


# -- boot, faults, rollback -----------------------------------------------------------------
def test_boot_labels_everything_and_delete_removes_it(connect, sandbox, clean):
    cloud = connect("sandbox-gce-custom")
    log = Requests(sandbox)
    started = time.monotonic()
    server = cloud.create_server("boot-only", wait=False, tags={"team": "qa"},
                                 image="debian-12")
    booted = len(log.sent())
    instance = sandbox.client("InstancesClient").get(project=PROJECT, zone=ZONE,
                                                     instance="boot-only")
    owner = instance.labels[OWNER_LABEL]
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
    disk = sandbox.client("DisksClient").get(project=PROJECT, zone=ZONE, disk="boot-only")
    assert disk.labels[OWNER_LABEL] == owner
    rule = sandbox.client("FirewallsClient").get(project=PROJECT, firewall=f"cloudnorm-{owner}")
    assert rule.description == f"{OWNER_KEY}={owner} ssh access"
    assert list(rule.target_tags) == [f"cloudnorm-{owner}"] and rule.network.endswith(
        f"/networks/{CUSTOM_NETWORK}")
    assert [(a.I_p_protocol, list(a.ports)) for a in rule.allowed] == [("tcp", ["22"])]
    ssh = {d.step: d for d in server.decisions}["ssh_access"]
    assert f"cloudnorm-{owner} on network '{CUSTOM_NETWORK}'" in ssh.choice
    # the key never reached the project's metadata
    project = sandbox.client("ProjectsClient").get(project=PROJECT)
    assert "ssh-keys" not in {i.key for i in project.common_instance_metadata.items}
    assert cloud.delete_server(server.id) is True
    print(f"\nboot without waiting: {booted} requests, delete: {len(log.sent()) - booted}, "
          f"{time.monotonic() - started:.2f} s")
    assert cloud.delete_server(server.id) is False


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


def test_rate_limit_is_retried(connect, sandbox, clean):
    cloud = connect()
    cloud.driver.transport.retry_initial = 0.05
    with sandbox.inject("POST", r"/instances$", 403, "rateLimitExceeded",
                        "Rate Limit Exceeded", times=2) as fault:
        server = cloud.create_server("throttled", wait=False)
    assert (fault.calls, fault.failed) == (3, 2)
    assert cloud.delete_server(server) is True


def test_quota_is_typed_and_rolled_back(connect, sandbox, clean):
    cloud = connect("sandbox-gce-custom")
    with sandbox.inject("POST", r"/instances$", 403, "quotaExceeded",
                        "Quota 'CPUS' exceeded.  Limit: 24.0 in region us-central1.") as fault:
        with pytest.raises(errors.QuotaExceeded) as info:
            cloud.create_server("no-room", wait=False)
    assert info.value.resource == "CPUS"
    assert fault.calls == 1  # not a transient fault: no retry


def test_zone_out_of_capacity_is_typed_and_rolled_back(connect, sandbox, clean):
    cloud = connect("sandbox-gce-custom")
    with sandbox.failing_inserts(
            "ZONE_RESOURCE_POOL_EXHAUSTED",
            "The zone 'projects/cloudnorm-sandbox/zones/us-central1-a' does not have enough "
            "resources available to fulfill the request."):
        with pytest.raises(errors.QuotaExceeded, match="no capacity") as info:
            cloud.create_server("stockout", wait=False)
    assert info.value.resource == "capacity"


def test_invalid_name_is_refused_and_rolled_back(connect, sandbox, clean):
    cloud = connect("sandbox-gce-custom")
    log = Requests(sandbox)
    with pytest.raises(errors.ConfigError, match="cannot name a GCE instance"):
        cloud.create_server("Web_1", wait=False)
    assert not [r for r in log.sent() if r.startswith("POST") and r.endswith("/instances")]


# -- SSH: create, log in, delete --------------------------------------------------------------
@pytest.mark.skipif(IN_PRIVATE_NETNS, reason="the scenarios run directly in this namespace")
def test_gce_ssh_in_private_netns() -> None:
    from cloudnorm.testing.dataplane import ensure_openssh, run_in_private_netns

    if os.geteuid() != 0:
        pytest.skip("the SSH data plane needs root")
    ensure_openssh()  # installing needs the network, which the namespace does not have
    argv = [sys.executable, "-m", "pytest", __file__, "-q", "-rA", "-s", "-k", "ssh_",
            "-p", "no:cacheprovider"]
    assert run_in_private_netns(argv, timeout=540, cwd=PROJECT_DIR) == 0


@pytest.fixture(scope="module")
def dataplane(sandbox, tmp_path_factory):
    from cloudnorm.testing.dataplane import Fleet

    with Fleet(tmp_path_factory.mktemp("gce-fleet")) as fleet:
        sync = sandbox.dataplane(fleet).start()
        try:
            yield fleet
        finally:
            sync.stop()
            assert sync.errors == []


def _create_login_delete(cloud: cloudnorm.Cloud, sandbox: GceSandbox, fleet: Any,
                         tmp_path: Path, check: Any = None, **create: Any) -> Any:
    operator = keys.generate("operator")
    key_file = tmp_path / "operator"
    key_file.write_text(operator.private_key)
    key_file.chmod(0o600)
    log = Requests(sandbox)
    steps: list[provision.StepEvent] = []
    started = time.monotonic()
    server = cloud.create_server("web", authorized_keys=[operator.public_key], timeout=120,
                                 on_step=steps.append, **create)
    created = time.monotonic() - started
    sent = log.sent()
    owner = server.tags[OWNER_KEY]
    try:
        assert [e.step for e in steps if e.status == "done"] == list(provision.STEPS)
        assert server.status == "running"
        assert server.ssh_user and server.host_keys and server.interface_ip
        assert server.interface_ip == server.public_v4
        assert server.interface_ip.startswith("198.51.100.")
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text("".join(line + "\n" for line in hostkeys.known_hosts_lines(
            server.host_keys, server.interface_ip, server.ssh_port)))
        root = key_login(server.interface_ip, "root", key_file, known_hosts, "-o", "BatchMode=yes")
        assert (root.returncode, root.stdout.strip()) == (0, "root"), root.stderr
        login = key_login(server.interface_ip, server.ssh_user, key_file, known_hosts,
                     "-o", "BatchMode=yes")
        assert login.stdout.strip() == server.ssh_user, login.stderr
        refused = password_login(server.interface_ip, server.ssh_user, known_hosts, tmp_path)
        assert refused.returncode != 0 and "Permission denied" in refused.stderr
        assert all(k.name != f"cloudnorm-{owner}" for k in cloud.list_keypairs())
        # the login is stored on the instance: any later caller gets it back
        # (a key too long for a metadata value is stored as its fingerprint only)
        again = cloud.get_server("web")
        assert (again.ssh_user, again.interface_ip) == (server.ssh_user, server.interface_ip)
        assert again.host_keys and set(again.host_keys) <= set(server.host_keys)
        if check is not None:
            check(server)
    finally:
        before_delete = len(log.sent())
        deleted_at = time.monotonic()
        assert cloud.delete_server(server) is True
        deleted = time.monotonic() - deleted_at
    assert leftovers(sandbox) == []
    deadline = time.monotonic() + 10
    instance_id = server.raw["id"]
    while fleet.get(instance_id) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fleet.get(instance_id) is None  # the node went with the instance
    timeline = ", ".join(f"{e.step} {e.elapsed:.2f}" for e in steps if e.status == "done")
    print(f"\n{cloud.name} {create or ''}: create {created:.2f} s / {len(sent)} requests "
          f"(steps done at: {timeline}); delete {deleted:.2f} s / "
          f"{len(log.sent()) - before_delete} requests\n  create: " + "\n  create: ".join(sent)
          + "\n  delete: " + "\n  delete: ".join(log.sent()[before_delete:]))
    return server


@inside
def test_ssh_default_network(connect, sandbox, dataplane, tmp_path, clean):
    server = _create_login_delete(connect(), sandbox, dataplane, tmp_path, min_ram=2048)
    assert server.ssh_user == "ubuntu" and server.flavor == "e2-small"
    decisions = {d.step: d for d in server.decisions}
    assert "default-allow-ssh" in decisions["ssh_access"].choice
    assert decisions["login_user"].choice == "ubuntu"


@inside
def test_ssh_custom_network_without_a_22_rule(connect, sandbox, dataplane, tmp_path, clean):
    server = _create_login_delete(connect("sandbox-gce-custom"), sandbox, dataplane, tmp_path,
                                  image="debian-12")
    assert server.ssh_user == "debian"
    owner = server.tags[OWNER_KEY]
    decisions = {d.step: d for d in server.decisions}
    assert decisions["ssh_access"].choice.startswith(f"firewall rule cloudnorm-{owner} on "
                                                     f"network '{CUSTOM_NETWORK}'")
    assert decisions["network"].choice == CUSTOM_NETWORK


@inside
def test_ssh_answers_but_no_host_keys_rolls_back(connect, sandbox, dataplane, clean):
    # sshd answers, but the serial console never shows host keys: the flow reaches step 6
    # and must give up, removing the instance and the rule.
    cloud = connect("sandbox-gce-custom")
    steps: list[Any] = []
    with dataplane.options(print_host_keys=False), \
            pytest.raises(errors.Timeout, match="never printed its SSH host keys"):
        cloud.create_server("no-keys", timeout=20, on_step=steps.append)
    done = next(s for s in steps if s.step == "public_address" and s.status == "done")
    assert done.detail.startswith("198.51.100.") and "ONE_TO_ONE_NAT" in done.detail


@inside
def test_ssh_host_keys_from_guest_attributes(connect, sandbox, dataplane, tmp_path, clean):
    # The Debian images run Google's guest agent and no cloud-init: the serial port shows
    # no host key; the agent writes them to the guest attributes (hostkeys/<type>).
    cloud = connect()
    seen: dict[str, Any] = {}

    def check(server: Any) -> None:
        instance = server.raw
        items = {i["key"]: i["value"] for i in instance["metadata"]["items"]}
        assert items["enable-guest-attributes"] == "TRUE"
        console = cloud.driver.console_output(server.id)
        assert "google_guest_agent" in console and "SSH HOST KEY" not in console
        node = dataplane.get(instance["id"])
        seen["node"] = {" ".join(k.split()[:2]) for k in node.host_keys.keys}
        reply = sandbox.client("InstancesClient").get_guest_attributes(request={
            "project": PROJECT, "zone": ZONE, "instance": server.id, "query_path": "hostkeys/"})
        seen["published"] = {f"{e.key} {e.value}" for e in reply.query_value.items}

    # _create_login_delete logs in with StrictHostKeyChecking=yes against server.host_keys
    server = _create_login_delete(cloud, sandbox, dataplane, tmp_path, check=check,
                                  image="debian-12")
    assert server.ssh_user == "debian"
    assert set(server.host_keys) == seen["node"] == seen["published"]
    decision = {d.step: d for d in server.decisions}["host_keys"]
    assert decision.choice == f"{len(seen['node'])} published"
    assert "guest attributes" in decision.reason


@inside
def test_ssh_guest_attributes_refused_and_no_console_keys_rolls_back(connect, sandbox,
                                                                     dataplane, clean):
    # The API refuses to read the guest attributes (403, as for an instance whose guest
    # attributes are off) and the Debian console shows no key: sshd answers, but nothing
    # tells whom it is; the flow gives up and removes what it made.
    cloud = connect()
    with sandbox.inject("GET", r"/getGuestAttributes$", 403, "forbidden",
                        "Guest attributes are disabled for this instance.") as fault, \
            pytest.raises(errors.Timeout, match="on the console nor published them"):
        cloud.create_server("ga-refused", image="debian-12", timeout=25)
    assert fault.failed >= 1

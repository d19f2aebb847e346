"""The ``cloudnorm`` command, run as a person runs it (a subprocess), against the sandbox.

Runs inside the suite's private network namespace: the OpenStack sandbox and its SSH
data plane (session fixtures), a local EC2 with its own data plane (this module's), and,
for ``sandbox`` and ``demo``, sandboxes the command starts itself in namespaces nested
in this one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sandbox_clouds import processes_mentioning

import cloudnorm
from cloudnorm.cli import sandbox_control as cli_sandbox
from cloudnorm.cli.render import conformance_markdown, conformance_text
from cloudnorm.drivers.base import Created
from cloudnorm.models import OWNER_KEY
from cloudnorm.state import gone

pytestmark = pytest.mark.functional

COMMAND = Path(sys.executable).with_name("cloudnorm")


def run_cli(*args: str, env: dict[str, str], timeout: float = 300,
            check: int | None = 0) -> subprocess.CompletedProcess[str]:
    argv = [str(COMMAND)] if COMMAND.exists() else [sys.executable, "-m", "cloudnorm.cli"]
    proc = subprocess.run([*argv, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if check is not None:
        assert proc.returncode == check, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def clean_environment(home: Path, **extra: str) -> dict[str, str]:
    """The caller's cloud settings must not leak in; HOME is the test's own."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OS_", "AWS_", "CLOUDNORM_"))}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), AWS_EC2_METADATA_DISABLED="true", NO_COLOR="1", **extra)
    return env


@pytest.fixture
def operator_key(tmp_path):
    path = tmp_path / "operator"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "operator", "-f",
                    str(path)], check=True)
    return path


@pytest.fixture
def os_env(openstack_sandbox, openstack_dataplane, tmp_path):
    return clean_environment(tmp_path / "home",
                             OS_CLIENT_CONFIG_FILE=str(openstack_sandbox.clouds_yaml),
                             CLOUDNORM_CACHE_DIR=str(tmp_path / "cache"))


def connect(env, name):
    return cloudnorm.connect(name, config_files=[env["OS_CLIENT_CONFIG_FILE"]])


def ssh_options(key):
    return ["-i", str(key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]


# -- inspect ----------------------------------------------------------------------------------
def test_inspect_reports_quirks_images_by_os_and_flavors(os_env):
    fip, forward = json.loads(run_cli("inspect", "sandbox-fip-required",
                                      "sandbox-port-forward", "--json", env=os_env).stdout)
    assert fip["quirks"]["public_access"]["method"] == "floating_ip"
    assert fip["quirks"]["profile"] == "openstack" and fip["quirks"]["security_groups"]
    assert forward["quirks"]["public_access"]["method"] == "port_forwarding"
    assert {"ubuntu-22.04", "ubuntu-24.04", "debian-12"} <= set(fip["images"])
    assert fip["images"]["ubuntu-22.04"]["choice"] == "Ubuntu 22.04 LTS (Jammy Jellyfish)"
    assert fip["images"]["debian-12"]["login_user"] == "debian"
    assert fip["flavor"]["choice"] == "m1.small"
    assert [f["name"] for f in fip["flavors"]][:2] == ["m1.tiny", "m1.small"]
    assert {n["name"]: n["external"] for n in fip["networks"]} == {"public": True,
                                                                 "private": False}
    text = run_cli("inspect", "sandbox-no-neutron", env=os_env).stdout
    assert "public access: assigned by the cloud" in text
    assert "network service: no; security groups: no" in text
    # The sandbox's clouds.yaml keeps nothing between processes; a user's may.
    assert "next process: discovery not kept (dogpile.cache.memory: this process only); " \
        "token not kept" in text
    assert fip["next_process"]["cache_kept"] is False


def test_inspect_of_an_unknown_cloud_exits_1(os_env):
    proc = run_cli("inspect", "no-such-cloud", env=os_env, check=1)
    assert "no-such-cloud" in proc.stdout


# -- conformance ------------------------------------------------------------------------------
def test_conformance_fip_required_closes_the_public_address_gap(os_env):
    proc = run_cli("conformance", "sandbox-fip-required", "--json", env=os_env)
    (report,) = json.loads(proc.stdout)
    steps = {s["step"]: s for s in report["steps"]}
    assert report["ok"] and report["leftovers"] == [] and report["error"] == ""
    assert [s["cloudnorm"] for s in report["steps"]] == ["YES"] * 8
    five = steps["public_address"]
    assert (five["raw"], five["cloudnorm"]) == ("NO", "YES")
    assert five["raw_detail"].startswith("no public address after boot")
    assert "10.0.1." in five["raw_detail"]
    assert "floating IP from 'public'" in five["gap"]
    assert steps["node_key"]["raw"] == "YES"
    assert steps["bootstrap"]["raw"] == "NO"
    assert steps["login"]["raw"] == "PARTIAL"  # keys on the console, no login user property
    # progress went to stderr while the steps ran
    assert "[5/8] public address" in proc.stderr
    assert connect(os_env, "sandbox-fip-required").driver.owned_resources(None) == []


def test_conformance_direct_public_has_a_public_address_raw(os_env):
    # One run (a create and a plain boot); its JSON rendered both ways the CLI renders.
    proc = run_cli("conformance", "sandbox-direct-public", "--json", env=os_env)
    (report,) = json.loads(proc.stdout)
    rows = {line.split(" | ")[0].strip("| "): line
            for line in conformance_markdown([report]).splitlines() if line.startswith("| ")}
    assert rows["5 public address"].startswith(
        "| 5 public address | **YES**: public address after boot: 203.0.113.")
    through, gap = rows["5 public address"].split(" | ")[2:4]
    assert through.startswith("**YES**: 203.0.113.") and gap == "- |"
    # images named without os_* properties: only the name says which OS they hold
    assert "**PARTIAL**: image 'ubuntu-22.04-x86_64': only its name" in rows["3 choice"]
    text = conformance_text(report)
    assert "conforms through cloudnorm" in text
    assert "5 public address  YES: public address after boot" in text


def test_conformance_boot_from_volume_plain_boot_refused_cloudnorm_boots(os_env):
    # Zero-disk flavors only: Nova refuses the plain boot (403), create_server boots
    # from a volume made from the image. One create.
    cloud = "sandbox-boot-from-volume"
    proc = run_cli("conformance", cloud, "--json", env=os_env)
    (report,) = json.loads(proc.stdout)
    steps = {s["step"]: s for s in report["steps"]}
    assert report["ok"] and report["leftovers"] == [] and report["error"] == ""
    assert [s["cloudnorm"] for s in report["steps"]] == ["YES"] * 8
    boot = steps["boot"]
    assert (boot["raw"], boot["cloudnorm"]) == ("NO", "YES")
    assert boot["raw_detail"].startswith("flavor 's3.medium.2' has disk 0 (no local disk)")
    assert "answered 403" in boot["raw_detail"]
    assert "Only volume-backed servers are allowed for flavors with zero disk" \
        in boot["raw_detail"]
    assert "booted from an 8 GiB volume: flavor 's3.medium.2' has disk 0" \
        in boot["cloudnorm_detail"]
    assert boot["gap"].startswith("booted from an 8 GiB volume")
    for later in ("public_address", "login"):
        assert steps[later]["raw"] == "n/a"
        assert steps[later]["raw_detail"].startswith(
            "not measured: the plain boot was refused (")
    assert steps["remove_key"]["raw"] == "PARTIAL"  # the raw key pair was deleted
    assert connect(os_env, cloud).driver.owned_resources(None) == []


# -- create / list / show / ssh / delete ------------------------------------------------------
def test_create_list_show_ssh_delete(os_env, operator_key):
    cloud = "sandbox-port-forward"
    created = json.loads(run_cli("create", "cli-web", "-c", cloud, "--authorized-key",
                                 f"{operator_key}.pub", "--json", env=os_env).stdout)
    try:
        assert created["ssh_port"] != 22 and created["ssh_user"] == "ubuntu"
        listed = json.loads(run_cli("list", "-c", cloud, "--json", env=os_env).stdout)
        mine = [s for s in listed if s["name"] == "cli-web"]
        assert len(mine) == 1
        # what list and show give back comes from the server itself, not from the create
        assert (mine[0]["interface_ip"], mine[0]["ssh_port"]) == (created["interface_ip"],
                                                                 created["ssh_port"])
        shown = json.loads(run_cli("show", "cli-web", "-c", cloud, "--json",
                                   env=os_env).stdout)
        assert shown["host_keys"] and set(shown["host_keys"]) <= set(created["host_keys"])
        assert "ubuntu@203.0.113.243:" in run_cli("list", "-c", cloud, env=os_env).stdout

        login = run_cli("ssh", "cli-web", "-c", cloud, *ssh_options(operator_key), "--",
                        "id", "-un", env=os_env)
        assert login.stdout.strip() == "ubuntu"
        root = run_cli("ssh", "cli-web", "-c", cloud, "-l", "root",
                       *ssh_options(operator_key), "--", "id", "-un", env=os_env)
        assert root.stdout.strip() == "root"
        printed = run_cli("ssh", "cli-web", "-c", cloud, "--print", env=os_env).stdout
        assert f"-p {created['ssh_port']} -l ubuntu" in printed
        assert "StrictHostKeyChecking=yes" in printed

        # a server presenting other host keys than the verified ones is refused
        other = operator_key.parent / "other_host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                       check=True)
        lying = other.with_suffix(".pub").read_text().split()[1]
        with connect(os_env, cloud) as sdk:
            sdk.driver.set_server_metadata(created["id"], {
                "cloudnorm:host_key:ssh-ed25519": lying,
                "cloudnorm:host_key:ecdsa-sha2-nistp256": lying,
                "cloudnorm:host_key:ssh-rsa": "SHA256:" + "A" * 43})
        refused = run_cli("ssh", "cli-web", "-c", cloud, *ssh_options(operator_key), "--",
                          "true", env=os_env, check=255)
        assert "Host key verification failed" in refused.stderr
    finally:
        deleted = run_cli("delete", "cli-web", "-c", cloud, env=os_env)
    assert "deleted cli-web" in deleted.stderr
    again = run_cli("delete", "cli-web", "-c", cloud, env=os_env, check=1)
    assert "no server cli-web" in again.stderr
    run_cli("show", "cli-web", "-c", cloud, env=os_env, check=1)


def test_create_without_a_key_is_a_usage_error(os_env):
    proc = run_cli("create", "x", "-c", "sandbox-direct-public", env=os_env, check=2)
    assert "--authorized-key" in proc.stderr


# -- cleanup ----------------------------------------------------------------------------------
def test_cleanup_removes_only_what_belongs_to_gone_servers(os_env, operator_key):
    name = "sandbox-fip-required"
    public_key = Path(f"{operator_key}.pub").read_text()
    run_cli("create", "cli-keep", "-c", name, "--authorized-key", f"{operator_key}.pub",
            env=os_env)
    with connect(os_env, name) as cloud:
        try:
            leaky = cloud.create_server("cli-leaky", authorized_keys=[public_key],
                                        timeout=240)
            # the server goes with another tool: its floating IP, port and group stay behind
            cloud.driver.delete(Created("server", leaky.id))
            cloud.watcher.wait(leaky.id, gone,
                                time.monotonic() + 60)
            cloud.create_keypair("cloudnorm-0123456789ab", public_key)  # a lost node key
            cloud.create_keypair("cloudnorm-laptop", public_key)  # a person's own key
            leaky_owner = leaky.tags[OWNER_KEY]

            young = json.loads(run_cli("cleanup", name, "--dry-run", "--json",
                                       env=os_env).stdout)
            assert young["leftovers"] == []  # everything is younger than an hour
            dry = json.loads(run_cli("cleanup", name, "--dry-run", "--older-than", "0",
                                     "--json", env=os_env).stdout)
            found = {f["owner"]: sorted(r["kind"] for r in f["resources"])
                     for f in dry["leftovers"]}
            assert found == {leaky_owner: ["floating_ip", "port", "security_group"],
                             "0123456789ab": ["keypair"]}
            assert any(r.owner == leaky_owner for r in cloud.driver.owned_resources(None))

            removed = run_cli("cleanup", name, "--older-than", "0", env=os_env)
            assert "removed from sandbox-fip-required:" in removed.stdout
            left = cloud.driver.owned_resources(None)
            assert {r.owner for r in left} == {cloud.get_server("cli-keep").tags[OWNER_KEY]}
            assert {k.name for k in cloud.list_keypairs()} >= {"cloudnorm-laptop"}
            assert "cloudnorm-0123456789ab" not in {k.name for k in cloud.list_keypairs()}
            assert "nothing left behind" in run_cli("cleanup", name, "--older-than", "0",
                                                    env=os_env).stdout
        finally:
            cloud.delete_keypair("cloudnorm-laptop")
            run_cli("delete", "cli-keep", "-c", name, env=os_env)
        assert cloud.driver.owned_resources(None) == []


def test_cleanup_after_a_port_forwarded_server_went(os_env, operator_key):
    name = "sandbox-port-forward"
    with connect(os_env, name) as cloud:
        leaky = cloud.create_server("cli-leaky-pf", authorized_keys=[
            Path(f"{operator_key}.pub").read_text()], timeout=240)
        owner = leaky.tags[OWNER_KEY]
        cloud.driver.delete(Created("server", leaky.id))
        cloud.watcher.wait(leaky.id, gone,
                            time.monotonic() + 60)
        left = {r.kind for r in cloud.driver.owned_resources(None) if r.owner == owner}
        assert "security_group" in left and left <= {"security_group", "port_forwarding"}
        report = json.loads(run_cli("cleanup", name, "--older-than", "0", "--json",
                                    env=os_env).stdout)
        assert [sorted(r["kind"] for r in f["resources"]) for f in report["leftovers"]] == [
            sorted(left)]
        assert report["failed"] == []
        assert cloud.driver.owned_resources(None) == []


# -- the local EC2 ----------------------------------------------------------------------------
@pytest.fixture
def aws_env(aws_sandbox, aws_dataplane, tmp_path):
    """The local EC2 (the run's one: moto's account is process-wide) with its data plane."""
    return clean_environment(tmp_path / "home",
                             OS_CLIENT_CONFIG_FILE=str(aws_sandbox.write_clouds_yaml(
                                 tmp_path / "clouds.yaml")),
                             CLOUDNORM_CACHE_DIR=str(tmp_path / "cache"))


def aws_leftovers(sandbox) -> list[str]:
    ec2 = sandbox.client("ec2")
    tagged = [f"instance {i['InstanceId']}" for r in ec2.describe_instances()["Reservations"]
              for i in r["Instances"] if i["State"]["Name"] != "terminated"
              and any(t["Key"] == OWNER_KEY for t in i.get("Tags") or ())]
    tagged += [f"address {a['PublicIp']}" for a in ec2.describe_addresses()["Addresses"]]
    tagged += [f"group {g['GroupName']}" for g in ec2.describe_security_groups()[
        "SecurityGroups"] if g["GroupName"].startswith("cloudnorm-")]
    tagged += [f"key {k['KeyName']}" for k in ec2.describe_key_pairs()["KeyPairs"]]
    return tagged


def test_aws_create_ssh_delete(aws_sandbox, aws_env, operator_key):
    created = json.loads(run_cli("create", "cli-aws", "-c", "sandbox-aws", "--authorized-key",
                                 f"{operator_key}.pub", "--json", env=aws_env).stdout)
    try:
        assert created["interface_ip"].startswith("198.51.100.")
        assert created["tags"]["cloudnorm:ssh"] == f"ubuntu@{created['interface_ip']}:22"
        login = run_cli("ssh", "cli-aws", "-c", "sandbox-aws", *ssh_options(operator_key),
                        "--", "id", "-un", env=aws_env)
        assert login.stdout.strip() == "ubuntu"
        assert "cli-aws" in run_cli("list", "-c", "sandbox-aws", env=aws_env).stdout
    finally:
        run_cli("delete", "cli-aws", "-c", "sandbox-aws", env=aws_env)
    assert aws_leftovers(aws_sandbox) == []


def test_aws_cleanup_releases_elastic_ips_of_terminated_instances(aws_sandbox, aws_env,
                                                                  operator_key):
    public_key = Path(f"{operator_key}.pub").read_text()
    with connect(aws_env, "sandbox-aws-eip") as cloud:
        leaky = cloud.create_server("cli-leaky", authorized_keys=[public_key], timeout=120)
        cloud.driver.delete(Created("server", leaky.id))
    assert any(a.startswith("address ") for a in aws_leftovers(aws_sandbox))
    dry = json.loads(run_cli("cleanup", "sandbox-aws-eip", "--older-than", "0", "--dry-run",
                             "--json", env=aws_env).stdout)
    assert [sorted(r["kind"] for r in f["resources"]) for f in dry["leftovers"]] == [
        ["floating_ip", "security_group"]]
    run_cli("cleanup", "sandbox-aws-eip", "--older-than", "0", env=aws_env)
    assert aws_leftovers(aws_sandbox) == []


# -- sandbox and demo: the command starts sandboxes of its own --------------------------------
def own_sandbox_env(tmp_path: Path) -> dict[str, str]:
    # The services' cached installation is found through the real HOME / cache dir.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OS_", "AWS_", "CLOUDNORM_SANDBOX"))}
    env["NO_COLOR"] = "1"
    return env


needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nsenter"),
                                reason="the sandbox's SSH data plane needs root and nsenter")


@needs_root
def test_sandbox_up_status_down(tmp_path):
    env = own_sandbox_env(tmp_path)
    state = tmp_path / "sandbox-state"
    options = ("--state-dir", str(state))
    try:
        up = run_cli("sandbox", "up", "--profile", "direct-public", *options, env=env,
                     timeout=600)
        assert "sandbox running" in up.stdout
        assert "export OS_CLIENT_CONFIG_FILE=" in up.stdout and "nsenter --net=" in up.stdout
        assert "[cloudnorm sandbox]" not in up.stdout  # its progress goes to stderr
        again = run_cli("sandbox", "up", *options, env=env)
        assert "a sandbox already runs" in again.stdout
        info = json.loads(run_cli("sandbox", "status", *options, "--json", env=env).stdout)
        assert info["running"] and info["dataplane"] and info["netns_differs"]
        assert info["clouds"] == ["sandbox-direct-public"]
        inside = subprocess.run(
            ["nsenter", f"--net=/proc/{info['pid_in_sandbox']}/ns/net", str(COMMAND),
             "inspect", "sandbox-direct-public", "--json"],
            env=dict(env, OS_CLIENT_CONFIG_FILE=info["clouds_yaml"]), capture_output=True,
            text=True, timeout=120)
        assert inside.returncode == 0, inside.stderr
        assert json.loads(inside.stdout)[0]["default_network"]["choice"] == "public"
        services = json.loads((Path(info["clouds_yaml"]).parent / "sandbox.json")
                              .read_text())["pids"]
        assert len(services) == 6  # five services (no Cinder here) and PostgreSQL
        assert processes_mentioning(str(state))
    finally:
        down = run_cli("sandbox", "down", *options, env=env, timeout=300)
    assert down.stdout.strip() == "sandbox stopped"
    assert "no sandbox running" in run_cli("sandbox", "status", *options, env=env).stdout
    running = [p for p in (info["pid"], info["runner_pid"], info["pid_in_sandbox"],
                           *services) if cli_sandbox.alive(p)]
    assert running == []
    assert processes_mentioning(str(state)) == []
    assert run_cli("sandbox", "down", *options, env=env).stdout.strip() == \
        "no sandbox was running"


@needs_root
def test_demo_on_two_clouds(tmp_path):
    started = time.monotonic()
    proc = run_cli("demo", "--cloud", "sandbox-fip-required", "--cloud", "sandbox-aws",
                   env=own_sandbox_env(tmp_path), timeout=600)
    out = proc.stdout
    assert "cloud sandbox-fip-required (openstack, profile openstack, public access): conforms" \
        in out
    assert "cloud sandbox-aws (aws, profile aws, public access): conforms" in out
    assert "5 public address  NO: no public address after boot" in out
    assert out.count("note: system ssh ubuntu@") == 2
    assert "2 clouds measured" in out and "every one conforms through cloudnorm" in out
    print(f"\ndemo on two clouds: {time.monotonic() - started:.0f}s")

"""The Ansible collection end to end: ``ansible-playbook`` creates a server on an
OpenStack cloud and on AWS with ``cloudnorm.cloud.server``, the same user data on both
(cloud-init writes a file and runs a command there), reaches both through the
``cloudnorm.cloud.servers`` inventory over real SSH with host key checking on, runs again
without changes, and removes them.

Needs the SSH data planes, hence root and a private network namespace (scripts/test runs
the suite in one): the sandboxes' public addresses answer SSH there and nowhere else.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cloudnorm
from cloudnorm.testing.dataplane import NotInPrivateNetns, require_private_netns

pytestmark = [pytest.mark.functional, pytest.mark.filterwarnings("ignore:Support for InfluxDB")]

PROJECT = Path(__file__).resolve().parents[2]
EXAMPLE = PROJECT / "ansible_collections" / "cloudnorm" / "cloud" / "examples" / "two_clouds"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
ANSIBLE_INVENTORY = Path(sys.executable).with_name("ansible-inventory")
CLOUDS = ("sandbox-fip-required", "sandbox-aws")
HOSTS = tuple(f"web-{cloud}" for cloud in CLOUDS)


def _in_private_netns() -> bool:
    try:
        require_private_netns()
    except NotInPrivateNetns:
        return False
    return True


pytestmark.append(pytest.mark.skipif(
    not _in_private_netns(),
    reason="needs the SSH data planes: run in a private network namespace as root "
           "(scripts/test does)"))
pytestmark.append(pytest.mark.skipif(not ANSIBLE_PLAYBOOK.exists(),
                                     reason="ansible-core is not installed (scripts/setup-env)"))


@pytest.fixture
def workdir(tmp_path, openstack_sandbox, openstack_dataplane, aws_sandbox, aws_dataplane):
    """The example playbook and inventory, with a clouds.yaml naming both sandboxes'
    clouds and an operator key pair."""
    work = tmp_path / "play"
    shutil.copytree(EXAMPLE, work)
    clouds_yaml = work / "clouds.yaml"
    clouds_yaml.write_text(Path(openstack_sandbox.clouds_yaml).read_text())
    aws_sandbox.write_clouds_yaml(clouds_yaml)
    key = work / "operator"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "operator",
                    "-f", str(key)], check=True)
    home = tmp_path / "home"
    home.mkdir()
    # Short: ssh's control sockets live here and a socket path has a length limit.
    control = Path(os.environ.get("TMPDIR", "/tmp")) / f"cn-cp-{os.getpid()}"
    control.mkdir(exist_ok=True)
    yield work
    shutil.rmtree(control, ignore_errors=True)


def ansible_env(work: Path) -> dict[str, str]:
    """Nothing of the person's own Ansible, AWS or OpenStack settings leaks in."""
    return {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(work.parent / "home"),
        "LANG": "C.UTF-8",
        "OS_CLIENT_CONFIG_FILE": str(work / "clouds.yaml"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(work / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials"),
        "NO_GCE_CHECK": "true", "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
        "ANSIBLE_CONFIG": str(work / "no-ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(PROJECT),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": f"{os.environ.get('TMPDIR', '/tmp')}/cn-cp-{os.getpid()}",
        # No ssh master may outlive the run (the nodes stop when the test ends).
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=no",
        "ANSIBLE_PIPELINING": "true",
        "ANSIBLE_TIMEOUT": "20",
    }


RECAP_LINE = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$")


def playbook(work: Path, *extra: str) -> tuple[dict[str, dict[str, int]], float]:
    """Run site.yml; its PLAY RECAP (host -> ok, changed, unreachable, failed...) and how
    long it took."""
    started = time.monotonic()
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "cloudnorm.yml", "site.yml",
         "-e", f"operator_key={work / 'operator'}", *extra],
        cwd=work, env=ansible_env(work), capture_output=True, text=True, timeout=900,
        stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    recap = proc.stdout[proc.stdout.rindex("PLAY RECAP"):].splitlines()[1:]
    stats = {}
    for line in recap:
        match = RECAP_LINE.match(line.strip())
        if match:
            stats[match.group(1)] = {k: int(v) for k, v in
                                     (pair.split("=") for pair in match.group(2).split())}
    return stats, elapsed


def trusted_or_not(value: dict) -> object:
    """ansible-inventory marks what an inventory plugin says as not to be templated
    (``{"__ansible_unsafe": ...}``); the value is what matters here."""
    return value["__ansible_unsafe"] if set(value) == {"__ansible_unsafe"} else value


def remove_leftovers(work: Path) -> None:
    """Whatever a failed run left behind goes, straight through the library."""
    for cloud_name in CLOUDS:
        with cloudnorm.connect(cloud_name, config_files=[str(work / "clouds.yaml")]) as cloud:
            for server in cloud.list_servers():
                if server.name in HOSTS:
                    cloud.delete_server(server)


def test_playbook_creates_reaches_and_removes_servers_on_two_clouds(workdir):
    timings = {}
    try:
        first, timings["create + reach"] = playbook(workdir)
        # Both servers created (plus known_hosts written), both reached over SSH: ping,
        # id and the check that id names the login user all passed there, and so did
        # cloud-init's wait and the check that the user data wrote its file and ran.
        assert first["localhost"]["changed"] == 2  # the servers, the known_hosts lines
        for host in HOSTS:
            assert (first[host]["ok"], first[host]["unreachable"], first[host]["failed"]) == (
                6, 0, 0), first
        servers = {}
        for cloud_name, host in zip(CLOUDS, HOSTS, strict=True):
            with cloudnorm.connect(cloud_name,
                                   config_files=[str(workdir / "clouds.yaml")]) as cloud:
                servers[host] = cloud.get_server(host)
        # Only host keys cloudnorm verified were trusted: the ones create_server returned,
        # of which the cloud keeps those that fit in its metadata.
        trusted = set((workdir / "known_hosts").read_text().splitlines())
        kept = {f"{s.interface_ip} {key}" if s.ssh_port == 22 else
                f"[{s.interface_ip}]:{s.ssh_port} {key}"
                for s in servers.values() for key in s.host_keys}
        assert kept and kept <= trusted
        assert {line.split()[0].strip("[]").split("]:")[0] for line in trusted} == {
            s.interface_ip for s in servers.values()}
        assert all(s.ssh_user == "ubuntu" and s.tags.get("role") == "web"
                   for s in servers.values())

        inventory = subprocess.run(
            [str(ANSIBLE_INVENTORY), "-i", "cloudnorm.yml", "--list"], cwd=workdir,
            env=ansible_env(workdir), capture_output=True, text=True, timeout=120)
        assert inventory.returncode == 0, inventory.stderr
        listed = json.loads(inventory.stdout, object_hook=trusted_or_not)
        hostvars = listed["_meta"]["hostvars"]
        for cloud_name, host in zip(CLOUDS, HOSTS, strict=True):
            group = "cloud_" + cloud_name.replace("-", "_")
            assert listed[group]["hosts"] == [host]
            assert hostvars[host]["ansible_user"] == "ubuntu"
            assert hostvars[host]["ansible_host"] == hostvars[host]["cloudnorm_server"][
                "interface_ip"]
            assert "StrictHostKeyChecking=yes" in hostvars[host]["ansible_ssh_common_args"]
        assert sorted(listed["tag_role_web"]["hosts"]) == sorted(HOSTS)
        assert sorted(listed["os_ubuntu_22_04"]["hosts"]) == sorted(HOSTS)
        assert any(g.startswith("region_") and HOSTS[1] in listed[g].get("hosts", [])
                   for g in listed)

        again, timings["re-run"] = playbook(workdir)
        assert {h: s["changed"] for h, s in again.items()} == {
            "localhost": 0, HOSTS[0]: 0, HOSTS[1]: 0}, again

        removed, timings["remove"] = playbook(workdir, "-e", "server_state=absent")
        assert removed["localhost"]["changed"] == 1  # the one server task
        for cloud_name in CLOUDS:
            with cloudnorm.connect(cloud_name,
                                   config_files=[str(workdir / "clouds.yaml")]) as cloud:
                assert [s.name for s in cloud.list_servers() if s.name in HOSTS] == []

        removed_again, timings["remove again"] = playbook(workdir, "-e", "server_state=absent")
        assert removed_again["localhost"]["changed"] == 0
    finally:
        print("\nansible-playbook: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
        remove_leftovers(workdir)

"""create_server on every OpenStack profile, proven by real SSH logins.

Runs inside a private network namespace (the suite's runner creates it): the
sandbox's services listen on its 127.0.0.1, and a real OpenStack sshd per
server answers on the address that profile makes reachable.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time

import pytest

import cloudnorm
from cloudnorm import errors, hostkeys, provision
from cloudnorm.testing import profile_data
from cloudnorm.testing.openstack.leftovers import leftovers

pytestmark = pytest.mark.functional
PROFILES = profile_data.available()


@pytest.fixture
def dataplane(openstack_dataplane):
    return openstack_dataplane


@pytest.fixture(scope="module")
def operator_key(tmp_path_factory):
    path = tmp_path_factory.mktemp("operator") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "operator",
                    "-f", str(path)], check=True)
    return path, path.with_suffix(".pub").read_text().strip()


def connect(sandbox, profile):
    return cloudnorm.connect(f"sandbox-{profile}", config_files=[str(sandbox.clouds_yaml)])


def system_ssh(address, port, key, known_hosts, *extra, user="root", command="id -un"):
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(key), "-p", str(port),
         "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes", *extra,
         f"{user}@{address}", command],
        capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("profile", PROFILES)
def test_create_login_harden_delete(profile, openstack_sandbox, dataplane, operator_key,
                                    tmp_path):
    expect = profile_data.load(profile)["expect"]
    key_path, operator_pub = operator_key
    events: list[provision.StepEvent] = []
    cloud = connect(openstack_sandbox, profile)
    started, mark = time.monotonic(), time.time()
    server = cloud.create_server(f"cn-{profile}", image="ubuntu-22.04", min_ram=2048,
                                 authorized_keys=[operator_pub], on_step=events.append,
                                 timeout=240)
    elapsed = time.monotonic() - started
    owner = server.tags["cloudnorm:owner"]
    time.sleep(0.3)  # the services log a request after answering it
    # Nova's own calls to Neutron and Glance carry the user's project too; count ours.
    made = [r for r in openstack_sandbox.requests(since=mark, project=f"sandbox-{profile}")
            if "cloudnorm" in (r.get("user_agent") or "")]
    try:
        by_service = {svc: sum(r["service"] == svc for r in made)
                      for svc in sorted({r["service"] for r in made})}
        print(f"\n{profile}: create_server took {elapsed:.1f}s and {len(made)} API requests "
              f"(cold cache): {by_service}")
        assert server.status == "running"
        assert server.ssh_user == "ubuntu"
        assert server.interface_ip
        assert ipaddress.ip_address(server.interface_ip).version == \
            expect["interface_ip_version"]
        assert server.host_keys
        done = [e.step for e in events if e.status == "done"]
        assert done == list(provision.STEPS), [(e.step, e.status, e.detail) for e in events]
        chosen = {d.step: d for d in server.decisions}
        assert chosen["image"].choice == expect["image"]["name"]
        assert {"flavor", "public_address", "interface", "login_user", "host_keys",
                "bootstrap"} <= set(chosen)
        if expect["floating_ip_network"]:
            assert server.public_v4 and any(
                a.kind == "floating" and a.ip == server.interface_ip for a in server.addresses)

        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text("".join(
            line + "\n" for line in hostkeys.known_hosts_lines(
                server.host_keys, server.interface_ip, server.ssh_port)))
        if expect.get("ssh_port_not_22"):
            assert server.ssh_port != 22
        login = system_ssh(server.interface_ip, server.ssh_port, key_path, known_hosts)
        assert login.returncode == 0, login.stderr
        assert login.stdout.strip() == "root"
        # the operator key works for the login user too
        login = system_ssh(server.interface_ip, server.ssh_port, key_path, known_hosts,
                           user=server.ssh_user)
        assert login.stdout.strip() == "ubuntu", login.stderr
        # passwords are refused by the server itself, not merely unused
        refused = system_ssh(server.interface_ip, server.ssh_port, key_path, known_hosts,
                             "-o", "PubkeyAuthentication=no",
                             "-o", "PreferredAuthentications=password,keyboard-interactive")
        assert refused.returncode == 255
        assert "Permission denied (publickey)" in refused.stderr
        # the node key is gone from the cloud
        assert all(k.name != f"cloudnorm-{owner}" for k in cloud.list_keypairs())
    finally:
        assert cloud.delete_server(server) is True
    assert leftovers(openstack_sandbox, profile, owner=owner) == []
    # deleting again is a no-op
    assert cloud.delete_server(server.id) is False
    cloud.close()


def test_host_key_mismatch_is_fatal_and_cleaned_up(openstack_sandbox, dataplane):
    cloud = connect(openstack_sandbox, "direct-public")
    real_ensure = dataplane.ensure

    def lying_ensure(node_id, *args, **kwargs):
        kwargs["console_lies"] = True
        return real_ensure(node_id, *args, **kwargs)

    dataplane.ensure = lying_ensure
    owner_seen = []
    try:
        started = time.monotonic()
        with pytest.raises(errors.HostKeyMismatch):
            cloud.create_server("cn-liar", min_ram=2048, timeout=120,
                                on_step=lambda e: owner_seen.append(e))
        assert time.monotonic() - started < 60  # fatal: no waiting for the timeout
    finally:
        dataplane.ensure = real_ensure
    assert leftovers(openstack_sandbox, "direct-public", servers_named="cn-liar") == []
    cloud.close()


@pytest.mark.parametrize("printed", [True, False], ids=["console-table", "no-table"])
def test_unknown_login_user_comes_from_the_console_or_a_probe(openstack_sandbox, dataplane,
                                                              printed):
    """An image nobody knows the user of: cloud-init's authorized keys table on the
    console names it; without the table (no_ssh_fingerprints) the probe finds it."""
    profile = "fip-required"
    sdk = openstack_sandbox.connect(profile)
    image = sdk.image.create_image(name=f"appliance-{printed}", data=b"\0" * 512,
                                   disk_format="raw", container_format="bare",
                                   visibility="private")
    dataplane.node_options["print_authorized_keys"] = printed
    cloud = connect(openstack_sandbox, profile)
    try:
        server = cloud.create_server(f"cn-appliance-{printed}", image=image.id, min_ram=2048,
                                     timeout=240)
        try:
            assert server.ssh_user == "cloud-user"  # the data plane's user for such images
            why = {d.step: d for d in server.decisions}["login_user"].reason
            if printed:
                assert "console lists the node key" in why, why
            else:
                assert "probing" in why, why
        finally:
            assert cloud.delete_server(server)
    finally:
        dataplane.node_options.pop("print_authorized_keys", None)
        cloud.close()
        sdk.image.delete_image(image)
        sdk.close()

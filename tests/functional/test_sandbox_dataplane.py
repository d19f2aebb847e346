"""The sandbox's SSH data plane plays the config-drive-only and port-forward clouds.

Servers are booted with openstacksdk directly, as the profile's user, and reached with the
system's ssh client: what a person would do on such a cloud, without cloudnorm in between.
Runs inside a private network namespace (``unshare -n``), where the addresses the cloud
hands out exist on the loopback link and nothing else does.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

openstack = pytest.importorskip("openstack")

pytestmark = pytest.mark.functional

BOOT_TIMEOUT = 60
DELETE_TIMEOUT = 60
# How long the data plane may take to follow the cloud: start a node, move an address.
FOLLOW_TIMEOUT = 30
KEYS_BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
KEYS_END = "-----END SSH HOST KEY KEYS-----"


@pytest.fixture(scope="module")
def login_key(tmp_path_factory):
    path = tmp_path_factory.mktemp("login") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sandbox-dataplane",
                    "-f", str(path)], check=True, timeout=30)
    return path


@pytest.fixture
def cleanup() -> Iterator[Callable[[Callable[[], object]], None]]:
    """Register undo steps; they run last-registered first, every one even if one fails."""
    steps: list[Callable[[], object]] = []
    yield steps.append
    errors = []
    for step in reversed(steps):
        try:
            step()
        except Exception as exc:  # the rest must still be undone
            errors.append(exc)
    if errors:
        raise errors[0]


def _project(sandbox, profile, cleanup, login_key, name):
    """The profile's connection, with a key pair and a group that opens TCP 22."""
    if profile not in sandbox.profile_names:
        pytest.skip(f"the running sandbox has no profile {profile}")
    conn = sandbox.connect(profile)
    cleanup(conn.close)
    keypair = conn.compute.create_keypair(
        name=name, public_key=login_key.with_suffix(".pub").read_text().strip())
    cleanup(lambda: conn.compute.delete_keypair(keypair))
    # Every profile's default group drops port 22, as on most real clouds.
    group = conn.network.create_security_group(name=name, description="ssh from anywhere")
    cleanup(lambda: conn.network.delete_security_group(group))
    conn.network.create_security_group_rule(
        security_group_id=group.id, direction="ingress", ethertype="IPv4", protocol="tcp",
        port_range_min=22, port_range_max=22, remote_ip_prefix="0.0.0.0/0")
    return conn, keypair, group


def _create(conn, cleanup, name, expect, keypair, group, **extra):
    """Ask for a server on the profile's default network; it is deleted on cleanup."""
    server = conn.compute.create_server(
        name=name, image_id=expect["image"]["id"], flavor_id=expect["flavor"]["id"],
        networks=[{"uuid": expect["default_network_id"]}], key_name=keypair.name,
        security_groups=[{"name": group.name}], **extra)

    def delete():
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=DELETE_TIMEOUT, interval=0.5)

    # Registered before waiting: a server that never becomes ACTIVE is removed all the same.
    cleanup(delete)
    return server


def _active(conn, server):
    return conn.compute.wait_for_server(server, status="ACTIVE", wait=BOOT_TIMEOUT,
                                        interval=0.5)


def _wait_listening(address: str, port: int) -> None:
    deadline = time.monotonic() + FOLLOW_TIMEOUT
    while True:
        try:
            with socket.create_connection((address, port), timeout=2):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing answers on {address} port {port}: {exc}") from exc
        time.sleep(0.2)


def _wait_closed(address: str, port: int) -> None:
    deadline = time.monotonic() + FOLLOW_TIMEOUT
    while True:
        try:
            with socket.create_connection((address, port), timeout=2):
                pass
        except OSError:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{address} port {port} still answers")
        time.sleep(0.2)


def _known_hosts(conn, server, address, port, path):
    """known_hosts for the server, from the host keys cloud-init printed on its console."""
    deadline = time.monotonic() + FOLLOW_TIMEOUT
    while True:
        output = conn.compute.get_server_console_output(server)["output"]
        if KEYS_BEGIN in output and KEYS_END in output:
            break
        assert time.monotonic() < deadline, f"no host keys on the console: {output[-500:]!r}"
        time.sleep(0.3)
    block = output.split(KEYS_BEGIN, 1)[1].split(KEYS_END, 1)[0]
    host = address if port == 22 else f"[{address}]:{port}"
    path.write_text("".join(f"{host} {line.strip()}\n" for line in block.splitlines()
                            if line.strip()))
    return path


def _ssh(address, port, key, known_hosts, user="ubuntu"):
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(key), "-p", str(port),
         "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes",
         f"{user}@{address}", "id -un"],
        capture_output=True, text=True, timeout=30)


def _address(server, network):
    return next(entry["addr"] for entry in server.addresses[network] if entry["version"] == 4)


def test_config_drive_only_key_arrives_only_on_a_config_drive(
        openstack_sandbox, openstack_dataplane, login_key, cleanup, tmp_path):
    conn, keypair, group = _project(openstack_sandbox, "config-drive-only", cleanup, login_key,
                                    "dataplane-config-drive")
    expect = openstack_sandbox.profile("config-drive-only")["expect"]
    network = expect["default_network"]
    # One after the other: the sandbox's Neutron keeps its data in SQLite, where two
    # servers' ports created at once can fail with "database is locked".
    plain = _active(conn, _create(conn, cleanup, "dataplane-no-drive", expect, keypair, group))
    drive = _active(conn, _create(conn, cleanup, "dataplane-with-drive", expect, keypair, group,
                                  config_drive=True))

    assert str(drive.has_config_drive).lower() == "true"
    assert not plain.has_config_drive

    # Without a config drive nothing brought the key in: sshd answers and refuses it.
    plain_address = _address(plain, network)
    _wait_listening(plain_address, 22)
    refused = _ssh(plain_address, 22, login_key,
                   _known_hosts(conn, plain, plain_address, 22, tmp_path / "plain_hosts"))
    assert refused.returncode == 255, refused
    assert "Permission denied (publickey" in refused.stderr

    drive_address = _address(drive, network)
    _wait_listening(drive_address, 22)
    login = _ssh(drive_address, 22, login_key,
                 _known_hosts(conn, drive, drive_address, 22, tmp_path / "drive_hosts"))
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == "ubuntu"


def test_port_forward_reaches_port_22_through_the_shared_floating_ip(
        openstack_sandbox, openstack_dataplane, login_key, cleanup, tmp_path):
    conn, keypair, group = _project(openstack_sandbox, "port-forward", cleanup, login_key,
                                    "dataplane-port-forward")
    state = openstack_sandbox.profile("port-forward")
    expect = state["expect"]
    shared = expect["shared_floating_ip"]
    fip_id = state["floating_ips"][shared]
    server = _active(conn, _create(conn, cleanup, "dataplane-forwarded", expect, keypair,
                                   group))
    (port,) = conn.network.ports(device_id=server.id)

    forwarding = conn.network.create_port_forwarding(
        floatingip_id=fip_id, internal_port_id=port.id,
        internal_ip_address=port.fixed_ips[0]["ip_address"], internal_port=22,
        external_port=2222, protocol="tcp", description="ssh to dataplane-forwarded")
    with contextlib.ExitStack() as undo:
        undo.callback(conn.network.delete_port_forwarding, forwarding, fip_id,
                      ignore_missing=True)
        _wait_listening(shared, 2222)
        known_hosts = _known_hosts(conn, server, shared, 2222, tmp_path / "known_hosts")
        login = _ssh(shared, 2222, login_key, known_hosts)
        assert login.returncode == 0, login.stderr
        assert login.stdout.strip() == "ubuntu"
        # Only the forwarded port leads in; port 22 of the shared address is no one's.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((shared, 22), timeout=2).close()

        conn.network.delete_port_forwarding(forwarding, fip_id)
    # Without the forwarding nothing leads to the server: the address is gone.
    _wait_closed(shared, 2222)
    gone = _ssh(shared, 2222, login_key, known_hosts)
    assert gone.returncode == 255
    assert any(reason in gone.stderr for reason in (
        "Connection refused", "Network is unreachable", "No route to host")), gone.stderr

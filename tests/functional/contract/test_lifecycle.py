"""Create, log in, delete, nothing left: on every sandbox cloud, proven by real SSH logins.

The issue's first scenario: create_server runs its eight steps; the operator key logs in
as root with strict host key checking against the keys cloudnorm verified; the server
refuses passwords itself; delete_server removes the server and everything made for it,
and a second delete has nothing to do. Each cloud states what its network variant must
decide (``lifecycle`` in sandbox_clouds.py, the profiles' ``expect:`` for OpenStack).

The SSH data plane lives in a private network namespace (scripts/test runs the suite in
one): a real sshd per server answers on the address the cloud makes reachable.
"""

from __future__ import annotations

import collections
import ipaddress
import time

import pytest
from sandbox_clouds import (
    check_decision,
    check_strict_logins,
    clouds_with,
    in_network,
    wait_node_gone,
)

from cloudnorm.models import OWNER_KEY
from cloudnorm.provision import STEPS

pytestmark = [pytest.mark.functional,
              pytest.mark.filterwarnings("ignore:Support for InfluxDB")]


@pytest.mark.parametrize("sandbox_cloud", clouds_with("lifecycle"), indirect=True)
def test_ssh_create_login_harden_delete(sandbox_cloud, sandbox_fleet, operator_key, tmp_path):
    want = sandbox_cloud.expect["lifecycle"]
    key_path, operator_pub = operator_key
    assert sandbox_cloud.leftovers() == []
    cloud = sandbox_cloud.connect()
    steps: list = []
    mark = sandbox_cloud.mark()
    started = time.monotonic()
    server = cloud.create_server(f"cn-{sandbox_cloud.id}", authorized_keys=[operator_pub],
                                 on_step=steps.append, timeout=want.get("timeout", 120),
                                 **want.get("create", {}))
    created = time.monotonic() - started
    sent = sandbox_cloud.requests(since=mark)
    owner = server.tags[OWNER_KEY]
    try:
        print(f"\n{sandbox_cloud}: create_server took {created:.1f}s and {len(sent)} API "
              f"requests (cold cache): {dict(collections.Counter(sent).most_common(8))}; "
              "steps done at: " + ", ".join(f"{e.step} {e.elapsed:.2f}" for e in steps
                                             if e.status == "done"))
        assert [e.step for e in steps if e.status == "done"] == list(STEPS), [
            (e.step, e.status, e.detail) for e in steps]
        assert server.status == "running"
        assert server.ssh_user == want["ssh_user"]
        assert server.interface_ip and server.host_keys
        assert ipaddress.ip_address(server.interface_ip).version == \
            want.get("interface_ip_version", 4)
        chosen = {d.step: d for d in server.decisions}
        assert {"image", "flavor", "public_address", "interface", "login_user", "host_keys",
                "bootstrap"} <= set(chosen)
        if "image_choice" in want:
            assert chosen["image"].choice == want["image_choice"]
        if "flavor_choice" in want:
            assert server.flavor == want["flavor_choice"]
        for step, field, op, text in want.get("decisions", ()):
            check_decision(getattr(chosen[step], field), op, text.format(owner=owner))
        if want.get("floating_ip"):
            assert server.public_v4 and any(
                a.kind == "floating" and a.ip == server.interface_ip for a in server.addresses)
        if want.get("public_v4_is_interface"):
            assert server.public_v4 == server.interface_ip
        if "interface_in" in want:
            assert in_network(server.interface_ip, want["interface_in"]), server.interface_ip
        if "public_address_reason" in want:
            assert want["public_address_reason"] in next(
                a.reason for a in server.addresses if a.public)
        if "region" in want:
            assert server.location.region == want["region"]
        if want.get("ssh_port_not_22"):
            assert server.ssh_port != 22

        check_strict_logins(server, key_path, tmp_path)
        # the node key is gone from the cloud
        assert all(k.name != f"cloudnorm-{owner}" for k in cloud.list_keypairs())
        # the login is stored on the server: any later caller gets it back (a key too
        # long for a metadata value is stored as its fingerprint only)
        again = cloud.get_server(server.id)
        assert (again.ssh_user, again.interface_ip, again.ssh_port) == (
            server.ssh_user, server.interface_ip, server.ssh_port)
        assert again.host_keys and set(again.host_keys) <= set(server.host_keys)
    finally:
        mark = sandbox_cloud.mark()
        deleted_at = time.monotonic()
        assert cloud.delete_server(server) is True
        print(f"{sandbox_cloud}: delete_server took {time.monotonic() - deleted_at:.1f}s "
              f"and {len(sandbox_cloud.requests(since=mark))} API requests")
    assert sandbox_cloud.leftovers() == []
    wait_node_gone(sandbox_fleet, sandbox_cloud.node_id(server))
    # deleting again is a no-op
    assert cloud.delete_server(server.id) is False


@pytest.mark.parametrize("sandbox_cloud", clouds_with("boot"), indirect=True)
def test_boot_marks_everything_and_delete_removes_it(sandbox_cloud):
    """Without waiting for the boot: every resource made carries the create's owner
    marker (which is how delete and `cloudnorm cleanup` find them), and delete removes
    them all."""
    assert sandbox_cloud.leftovers() == []
    cloud = sandbox_cloud.connect()
    mark = sandbox_cloud.mark()
    started = time.monotonic()
    server = cloud.create_server("cn-boot-only", wait=False, tags={"team": "qa"},
                                 **sandbox_cloud.boot_arguments())
    booted = len(sandbox_cloud.requests(since=mark))
    owner = server.tags[OWNER_KEY]
    assert server.tags.get("team") == "qa"
    assert sandbox_cloud.marked(owner) == sandbox_cloud.expect["boot"]["marks"]
    sandbox_cloud.check_boot(server, owner)
    assert cloud.delete_server(server.id) is True
    print(f"\n{sandbox_cloud}: boot without waiting: {booted} requests, delete: "
          f"{len(sandbox_cloud.requests(since=mark)) - booted}, "
          f"{time.monotonic() - started:.2f} s")
    assert sandbox_cloud.leftovers() == []
    assert sandbox_cloud.marked(owner) == set()
    assert cloud.delete_server(server.id) is False

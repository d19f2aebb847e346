"""Private access on a sandbox cloud of each way to a public address (floating IP, port
forwarding, provider network, EC2 launch address and Elastic IP, GCE access config): no
public address is made at any point, the server is reached on its private address, and
everything else -- host keys, hardening, key removal, cleanup -- is what it is with
public access.

The data plane plays a machine inside the cloud: servers on the network the test sits
in (``Fleet.inside_networks``) answer on their private addresses. Whether a public
address exists is asked of the provider's own API at every step of the create, not of
cloudnorm.
"""

from __future__ import annotations

import pytest
from sandbox_clouds import check_strict_logins, clouds_with, wait_node_gone

from cloudnorm.models import OWNER_KEY
from cloudnorm.provision import STEPS

pytestmark = [pytest.mark.functional,
              pytest.mark.filterwarnings("ignore:Support for InfluxDB")]


def _inside(cloud, named: str | None) -> tuple[str, ...]:
    """The network the server goes on (``named``, else the default), by id and name;
    every network where the cloud has no network service to say which."""
    if not cloud.has_network_service:
        return ("*",)
    network = (next(n for n in cloud.list_networks() if named in (n.id, n.name)) if named
               else cloud.default_network())
    return (network.id, network.name)


@pytest.mark.parametrize("sandbox_cloud", clouds_with("private_access"), indirect=True)
def test_private_access_makes_no_public_address(sandbox_cloud, sandbox_fleet, operator_key,
                                                tmp_path):
    want = sandbox_cloud.expect["lifecycle"]
    key_path, operator_pub = operator_key
    assert sandbox_cloud.leftovers() == []
    cloud = sandbox_cloud.connect()
    created: list[str] = []
    seen: dict[str, list[str]] = {}

    def watch(event) -> None:
        # After the boot request, look at the server through the provider's own API at
        # every step boundary: no public address may ever appear.
        if event.step == "boot" and event.status == "done" and not created:
            created.append(event.detail.split()[1])
        if created:
            seen[f"{event.step} {event.status}"] = sandbox_cloud.public_addresses(created[0])

    steps: list = []
    create = want.get("create", {})
    with sandbox_fleet.inside_networks(*_inside(cloud, create.get("network"))):
        server = cloud.create_server(
            f"cn-private-{sandbox_cloud.id}", authorized_keys=[operator_pub], public=False,
            on_step=lambda e: (steps.append(e), watch(e)), timeout=want.get("timeout", 120),
            **create)
        try:
            assert [e.step for e in steps if e.status == "done"] == list(STEPS)
            chosen = {d.step: d for d in server.decisions}
            assert chosen["public_address"].choice == "none (private access)"
            assert "public=False" in chosen["public_address"].reason
            assert server.ssh_port == 22
            assert not any(a.kind == "floating" for a in server.addresses)
            own = {a.ip for a in server.addresses if a.kind == "fixed"}
            assert server.interface_ip in own
            if any(not a.public for a in server.addresses):
                address = next(a for a in server.addresses if a.ip == server.interface_ip)
                assert not address.public and "private access" in chosen["interface"].reason
            routed = sandbox_cloud.public_addresses(server.id)
            # Only a provider network's own address may be public; nothing was made.
            assert set(routed) <= own, routed
            assert all(set(found) <= own for found in seen.values()), seen
            assert seen, "the provider was never asked"
            check_strict_logins(server, key_path, tmp_path)
        finally:
            owner = server.tags[OWNER_KEY]
            assert cloud.delete_server(server.id) is True
    wait_node_gone(sandbox_fleet, sandbox_cloud.node_id(server))
    assert sandbox_cloud.marked(owner) == set()
    assert sandbox_cloud.leftovers() == []


@pytest.mark.parametrize("sandbox_cloud", clouds_with("boot"), indirect=True)
def test_configured_private_access_needs_no_argument(sandbox_cloud):
    # The cloudnorm: section says it (clouds.yaml private: true reads the same: test_config).
    cloud = sandbox_cloud.connect(cloudnorm={"access": "private"})
    assert cloud.settings.access == "private"
    server = cloud.create_server("cn-private-config", wait=False,
                                 **sandbox_cloud.boot_arguments())
    try:
        chosen = {d.step: d for d in server.decisions}
        assert chosen["public_address"].choice == "none (private access)"
        assert "cloudnorm: access: private" in chosen["public_address"].reason
        assert sandbox_cloud.public_addresses(server.id) == []
    finally:
        assert cloud.delete_server(server.id) is True
    assert sandbox_cloud.leftovers() == []

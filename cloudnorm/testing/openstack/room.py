"""Room in a sandbox project for many servers at once: quotas and floating IPs.

Nova's default quotas allow 10 instances, 20 cores and 50 GiB of RAM a project; Neutron's
10 security groups, 100 rules, 50 floating IPs and 50 ports; and the fip-required
profile's public subnet is a /27 (about 28 floating IPs). A fleet of fifty needs more of
each, as a real project that runs fleets is given.
"""

from __future__ import annotations

from typing import Any

#: A second subnet for a profile's external network (TEST-NET-3, as the profiles' own).
EXTRA_FLOATING_SUBNET = {"name": "public-v4-extra", "cidr": "203.0.113.128/25"}


def make_room(stack: Any, profile: str, servers: int) -> None:
    """Quotas and floating IPs in ``profile``'s project for ``servers`` at once.

    A server takes at most 1 instance, 1 core, 2 GiB (m1.small), 1 port, 1 floating IP,
    1 key pair and 1 security group with 4 rules (cloudnorm's own group: IPv4 and IPv6
    egress and port 22); the quotas leave ten times that, for what other work in the
    project holds. The external network gets :data:`EXTRA_FLOATING_SUBNET`: Neutron
    allocates a floating IP from any subnet of the network with room, and clients see
    one pool, as on clouds whose public network grew.
    """
    state = stack.profile(profile)
    room = 10 * servers
    admin = stack.connect_admin()
    try:
        project = state["project_id"]
        admin.set_compute_quotas(project, instances=room, cores=2 * room, ram=4096 * room,
                                 key_pairs=2 * room)
        admin.network.update_quota(admin.network.get_quota(project),
                                   security_groups=room, security_group_rules=10 * room,
                                   floating_ips=room, ports=4 * room)
        network = admin.network.get_network(floating_ip_network_id(state))
        if not any(s.cidr == EXTRA_FLOATING_SUBNET["cidr"]
                   for s in admin.network.subnets(network_id=network.id)):
            admin.network.create_subnet(
                network_id=network.id, name=EXTRA_FLOATING_SUBNET["name"],
                cidr=EXTRA_FLOATING_SUBNET["cidr"], ip_version=4, is_dhcp_enabled=False,
                gateway_ip=None)
    finally:
        admin.close()


def floating_ip_network_id(state: dict[str, Any]) -> str:
    """The id of a seeded profile's external network (the seed records it by name)."""
    name = state["expect"].get("floating_ip_network") or "public"
    return str((state.get("networks") or {}).get(name)
               or state["expect"]["networks"][name]["id"])

"""Public/private classification of networks and addresses (cloudnorm.networks).

One scenario per OpenStack quirk profile of shared/quirks.md, built from the
facts a driver would gather; plus the choice of attach / floating networks,
address classification and the SSH interface choice.
"""

from __future__ import annotations

import pytest

from cloudnorm import errors, profiles
from cloudnorm.models import Address
from cloudnorm.networks import (
    NetworkHints,
    Router,
    choose_attach_network,
    choose_floating_network,
    choose_interface,
    classify_address,
    classify_network,
    classify_networks,
    is_global,
)

from .conftest import by_name, net_facts

NO_HINTS = NetworkHints()


# -- is_global --------------------------------------------------------------------------------
@pytest.mark.parametrize("cidr, expected", [
    ("10.0.0.0/24", False),
    ("10.20.30.40", False),
    ("172.16.5.0/24", False),
    ("192.168.1.10", False),
    ("100.64.1.1", False),           # carrier-grade NAT
    ("169.254.169.254", False),      # link-local / metadata
    ("fd00:1234::/64", False),       # unique local
    ("fe80::1", False),
    ("203.0.113.0/27", True),        # documentation ranges model public addresses
    ("198.51.100.7", True),
    ("2001:db8:4::/64", True),
    ("8.8.8.8", True),
    ("2a00:1450::/32", True),
])
def test_is_global(cidr, expected):
    assert is_global(cidr) is expected


# -- fip-required -----------------------------------------------------------------------------
@pytest.fixture
def fip_required():
    ext = net_facts("public", "172.24.4.0/24", external=True)
    tenant = net_facts("tenant-net", "10.0.0.0/24")
    router = Router(id="r1", name="router1", external_network_id=ext.id,
                    internal_network_ids=(tenant.id,))
    return [ext, tenant], [router]


def test_fip_required_external_network_is_the_floating_pool(fip_required):
    facts, routers = fip_required
    nets = by_name(classify_networks(facts, routers, NO_HINTS))
    ext = nets["public"]
    assert (ext.public, ext.external, ext.usable) == (True, True, True)
    assert "router:external" in ext.reason and "172.24.4.0/24" in ext.reason


def test_fip_required_tenant_network_is_private_behind_router(fip_required):
    facts, routers = fip_required
    tenant = by_name(classify_networks(facts, routers, NO_HINTS))["tenant-net"]
    assert (tenant.public, tenant.external, tenant.usable) == (False, False, True)
    assert "10.0.0.0/24" in tenant.reason
    assert "router 'router1'" in tenant.reason and "floating IPs possible" in tenant.reason
    assert tenant.ip_versions == (4,)


def test_fip_required_attaches_tenant_and_floats_from_external(fip_required):
    facts, routers = fip_required
    nets = classify_networks(facts, routers, NO_HINTS)
    attach, decision = choose_attach_network(nets, routers, NO_HINTS)
    assert attach.name == "tenant-net"
    assert decision.step == "network" and decision.choice == "tenant-net"
    assert "behind a router" in decision.reason
    pool, fip_decision = choose_floating_network(attach, nets, routers, NO_HINTS)
    assert pool.name == "public"
    assert fip_decision.step == "floating_network"
    assert "router 'router1'" in fip_decision.reason


def test_floating_network_found_through_router_among_several_pools():
    ext_a = net_facts("ext-a", "198.51.100.0/24", external=True)
    ext_b = net_facts("ext-b", "203.0.113.0/24", external=True)
    tenant = net_facts("tenant", "10.1.0.0/24")
    routers = [Router("r", "edge", ext_b.id, (tenant.id,))]
    nets = classify_networks([ext_a, ext_b, tenant], routers, NO_HINTS)
    attach = by_name(nets)["tenant"]
    pool, decision = choose_floating_network(attach, nets, routers, NO_HINTS)
    assert pool.name == "ext-b"
    assert "router 'edge' links 'tenant'" in decision.reason


def test_private_network_without_router_says_so():
    net = classify_network(net_facts("isolated", "192.168.10.0/24"), [], NO_HINTS)
    assert net.public is False and net.usable is True
    assert "192.168.10.0/24" in net.reason and "no router leads outside" in net.reason


def test_network_without_subnet_is_unusable():
    net = classify_network(net_facts("empty"), [], NO_HINTS)
    assert net.usable is False and net.public is False
    assert "no subnet" in net.reason


def test_network_with_existing_floating_ips_is_external():
    net = classify_network(net_facts("fip-pool", "10.9.0.0/24", has_floating_ips=True),
                           [], NO_HINTS)
    assert net.public is True and net.external is True
    assert "floating IPs already exist" in net.reason


# -- direct-public ----------------------------------------------------------------------------
def test_direct_public_provider_network_is_public_and_chosen():
    provider = net_facts("provider-net", "203.0.113.0/27", "2001:db8:1::/64", shared=True)
    nets = classify_networks([provider], [], NO_HINTS)
    net = nets[0]
    assert (net.public, net.external, net.usable) == (True, False, True)
    assert "203.0.113.0/27" in net.reason and "globally routable" in net.reason
    assert net.ip_versions == (4, 6)
    attach, decision = choose_attach_network(nets, [], NO_HINTS)
    assert attach.name == "provider-net"
    assert "directly public" in decision.reason
    with pytest.raises(errors.NotFound, match="provider-net"):
        choose_floating_network(attach, nets, [], NO_HINTS)


def test_direct_public_beats_private_behind_router():
    ext = net_facts("ext", "198.51.100.0/24", external=True)
    tenant = net_facts("tenant", "10.0.0.0/24")
    provider = net_facts("provider", "203.0.113.0/27")
    routers = [Router("r", "r", ext.id, (tenant.id,))]
    nets = classify_networks([ext, tenant, provider], routers, NO_HINTS)
    assert choose_attach_network(nets, routers, NO_HINTS)[0].name == "provider"


def test_shared_external_provider_network_can_be_attached():
    shared_ext = net_facts("shared-public", "203.0.113.0/24", external=True, shared=True)
    nets = classify_networks([shared_ext], [], NO_HINTS)
    assert choose_attach_network(nets, [], NO_HINTS)[0].name == "shared-public"


# -- misnamed ---------------------------------------------------------------------------------
@pytest.fixture
def misnamed():
    private = net_facts("private", "198.51.100.0/26")            # routable, despite its name
    external = net_facts("external", external=True)              # router:external, no subnet
    public = net_facts("public", "10.10.0.0/16")                  # private, despite its name
    return classify_networks([private, external, public], [], NO_HINTS)


def test_misnamed_private_with_global_cidr_is_public(misnamed):
    net = by_name(misnamed)["private"]
    assert net.public is True and net.usable is True
    assert "198.51.100.0/26" in net.reason


def test_misnamed_external_without_subnet_is_unusable(misnamed):
    net = by_name(misnamed)["external"]
    assert (net.public, net.external, net.usable) == (False, False, False)
    assert "router:external" in net.reason and "no subnet" in net.reason


def test_misnamed_public_with_private_cidr_is_private(misnamed):
    net = by_name(misnamed)["public"]
    assert net.public is False
    assert "10.10.0.0/16" in net.reason and "private range" in net.reason


def test_misnamed_attach_and_floating_choice_ignore_names(misnamed):
    attach, _ = choose_attach_network(misnamed, [], NO_HINTS)
    assert attach.name == "private"
    with pytest.raises(errors.NotFound, match="no external network"):
        choose_floating_network(attach, misnamed, [], NO_HINTS)


# -- ipv6-public ------------------------------------------------------------------------------
@pytest.fixture
def ipv6_public():
    gateway = net_facts("public", "172.24.4.0/24", "2001:db8:ffff::/64", external=True,
                        service_types=("network:router_gateway",))
    dual = net_facts("dualstack", "10.0.0.0/24", "2001:db8:4::/64")
    routers = [Router("r6", "nat-only", gateway.id, (dual.id,))]
    return classify_networks([gateway, dual], routers, NO_HINTS), routers


def test_ipv6_public_network_is_public_with_ipv6_reason(ipv6_public):
    nets, _ = ipv6_public
    dual = by_name(nets)["dualstack"]
    assert dual.public is True and dual.usable is True and dual.external is False
    assert "IPv6 subnet 2001:db8:4::/64 is globally routable" in dual.reason
    assert "10.0.0.0/24 is private" in dual.reason
    # the gateway network gives no floating IPs: the router is outbound NAT only
    assert "outbound NAT only" in dual.reason


def test_router_gateway_only_subnet_is_unusable(ipv6_public):
    nets, _ = ipv6_public
    gateway = by_name(nets)["public"]
    assert (gateway.public, gateway.external, gateway.usable) == (False, False, False)
    assert "network:router_gateway" in gateway.reason


def test_ipv6_public_attach_choice_says_ipv6(ipv6_public):
    nets, routers = ipv6_public
    attach, decision = choose_attach_network(nets, routers, NO_HINTS)
    assert attach.name == "dualstack"
    assert "IPv6 subnet 2001:db8:4::/64 is globally routable" in decision.reason
    with pytest.raises(errors.NotFound):
        choose_floating_network(attach, nets, routers, NO_HINTS)


def test_subnet_service_types_including_floatingip_keep_the_pool():
    ext = net_facts("ext", "203.0.113.0/24", external=True,
                    service_types=("network:floatingip", "network:router_gateway"))
    net = classify_network(ext, [], NO_HINTS)
    assert net.external is True and net.usable is True


# -- multi-external (limestone) ---------------------------------------------------------------
LIMESTONE_PUBLIC = "Public Internet"
LIMESTONE_DDOS = "DDoS Protected"
LIMESTONE_FLOAT = "Private Network (Floating Public)"
LIMESTONE_10 = "Private Network (10.0.0.0/8 only)"


@pytest.fixture
def limestone_facts():
    public = net_facts(LIMESTONE_PUBLIC, "216.245.200.0/24", external=True)
    ddos = net_facts(LIMESTONE_DDOS, "198.51.100.0/24", external=True)
    floating = net_facts(LIMESTONE_FLOAT, "10.4.0.0/16")
    only10 = net_facts(LIMESTONE_10, "10.5.0.0/16")
    routers = [Router("r", "edge", public.id, (floating.id,))]
    return [public, ddos, floating, only10], routers


@pytest.fixture
def limestone_hints():
    profile = profiles.load("limestone")
    return NetworkHints.from_entries(profile.networks, f"profile '{profile.name}'")


def test_limestone_profile_hints(limestone_hints):
    assert limestone_hints.default_interface == LIMESTONE_FLOAT
    assert limestone_hints.nat_source == LIMESTONE_PUBLIC
    assert limestone_hints.nat_destination == LIMESTONE_FLOAT
    assert limestone_hints.routes_externally[LIMESTONE_DDOS] is True
    assert limestone_hints.routes_externally[LIMESTONE_10] is False


def test_limestone_hints_are_honoured(limestone_facts, limestone_hints):
    facts, routers = limestone_facts
    nets = classify_networks(facts, routers, limestone_hints)
    ddos = by_name(nets)[LIMESTONE_DDOS]
    assert ddos.public is True
    assert ddos.reason == "profile 'limestone' says routes_externally: true"
    only10 = by_name(nets)[LIMESTONE_10]
    assert only10.public is False and "routes_externally: false" in only10.reason

    attach, decision = choose_attach_network(nets, routers, limestone_hints)
    assert attach.name == LIMESTONE_FLOAT
    assert decision.reason == "profile 'limestone' names it default_interface"
    pool, fip_decision = choose_floating_network(attach, nets, routers, limestone_hints)
    assert pool.name == LIMESTONE_PUBLIC
    assert "nat_source" in fip_decision.reason


def test_clouds_yaml_hints_override_the_profile(limestone_facts, limestone_hints):
    facts, routers = limestone_facts
    own = NetworkHints.from_entries(
        [{"name": LIMESTONE_10, "routes_externally": False, "default_interface": True},
         {"name": LIMESTONE_DDOS, "routes_externally": True, "nat_source": True}],
        "/etc/openstack/clouds.yaml")
    hints = own.merged_over(limestone_hints)
    nets = classify_networks(facts, routers, hints)
    attach, decision = choose_attach_network(nets, routers, hints)
    assert attach.name == LIMESTONE_10
    assert "/etc/openstack/clouds.yaml names it default_interface" == decision.reason
    pool, fip_decision = choose_floating_network(attach, nets, routers, hints)
    assert pool.name == LIMESTONE_DDOS
    assert "clouds.yaml names it nat_source" in fip_decision.reason
    # a profile fact not overridden stays
    assert hints.routes_externally[LIMESTONE_PUBLIC] is True


def test_merged_hints_credit_the_profile_for_what_the_profile_said(limestone_facts,
                                                                  limestone_hints):
    """clouds.yaml adds one fact; default_interface and Public Internet's routing still come
    from the profile, and the reasons (the audit trail) must say so."""
    facts, routers = limestone_facts
    own = NetworkHints.from_entries(
        [{"name": LIMESTONE_DDOS, "routes_externally": True}], "/etc/openstack/clouds.yaml")
    hints = own.merged_over(limestone_hints)
    nets = classify_networks(facts, routers, hints)
    assert "profile 'limestone'" in by_name(nets)[LIMESTONE_PUBLIC].reason
    assert "clouds.yaml" in by_name(nets)[LIMESTONE_DDOS].reason
    _, decision = choose_attach_network(nets, routers, hints)
    assert decision.reason == "profile 'limestone' names it default_interface"


def test_multi_external_without_hints_router_connected_private_wins(limestone_facts):
    facts, routers = limestone_facts
    nets = classify_networks(facts, routers, NO_HINTS)
    attach, decision = choose_attach_network(nets, routers, NO_HINTS)
    assert attach.name == LIMESTONE_FLOAT
    assert "behind a router to an external network" in decision.reason
    pool, fip_decision = choose_floating_network(attach, nets, routers, NO_HINTS)
    assert pool.name == LIMESTONE_PUBLIC
    assert "router 'edge'" in fip_decision.reason


def test_several_pools_and_no_router_is_ambiguous(limestone_facts):
    facts, _ = limestone_facts
    nets = classify_networks(facts, [], NO_HINTS)
    attach = by_name(nets)[LIMESTONE_10]
    with pytest.raises(errors.Ambiguous, match="nat_source") as info:
        choose_floating_network(attach, nets, [], NO_HINTS)
    assert info.value.candidates == [LIMESTONE_DDOS, LIMESTONE_PUBLIC]


# -- ambiguity and configuration errors -------------------------------------------------------
def test_two_equally_good_networks_are_ambiguous():
    ext = net_facts("ext", "203.0.113.0/24", external=True)
    a = net_facts("net-b", "10.0.1.0/24")
    b = net_facts("net-a", "10.0.2.0/24")
    routers = [Router("r1", "r1", ext.id, (a.id,)), Router("r2", "r2", ext.id, (b.id,))]
    nets = classify_networks([ext, a, b], routers, NO_HINTS)
    with pytest.raises(errors.Ambiguous) as info:
        choose_attach_network(nets, routers, NO_HINTS)
    assert info.value.candidates == ["net-a", "net-b"]
    assert "default_interface" in str(info.value)


def test_default_interface_naming_a_missing_network_is_a_config_error():
    nets = classify_networks([net_facts("tenant", "10.0.0.0/24")], [], NO_HINTS)
    hints = NetworkHints(default_interface="no-such-net", source="/home/a/clouds.yaml")
    with pytest.raises(errors.ConfigError) as info:
        choose_attach_network(nets, [], hints)
    text = str(info.value)
    assert "/home/a/clouds.yaml" in text and "no-such-net" in text
    assert "default_interface" in text and "tenant" in text


def test_nat_source_naming_a_missing_network_is_a_config_error():
    nets = classify_networks([net_facts("tenant", "10.0.0.0/24")], [], NO_HINTS)
    hints = NetworkHints(nat_source="gone", source="clouds.yaml")
    with pytest.raises(errors.ConfigError, match="'gone' as nat_source"):
        choose_floating_network(nets[0], nets, [], hints)


def test_default_interface_by_id():
    facts = [net_facts("a", "10.0.0.0/24", id="uuid-a"), net_facts("b", "10.0.1.0/24")]
    nets = classify_networks(facts, [], NO_HINTS)
    hints = NetworkHints(default_interface="uuid-a")
    assert choose_attach_network(nets, [], hints)[0].name == "a"


def test_no_attachable_network_lists_each_reason():
    facts = [net_facts("ext", "203.0.113.0/24", external=True), net_facts("empty")]
    nets = classify_networks(facts, [], NO_HINTS)
    with pytest.raises(errors.NotFound) as info:
        choose_attach_network(nets, [], NO_HINTS)
    assert "'empty': it has no subnet" in str(info.value)
    assert "default_interface" in str(info.value)


def test_hint_public_network_reason_does_not_claim_ipv6():
    """A network clouds.yaml declares routed, with only a private IPv4 subnet, is attached
    for that declaration -- the decision must not invent an IPv6 subnet."""
    facts = [net_facts("routed", "192.168.50.0/24")]
    hints = NetworkHints(routes_externally={"routed": True}, source="clouds.yaml")
    nets = classify_networks(facts, [], hints)
    attach, decision = choose_attach_network(nets, [], hints)
    assert attach.name == "routed"
    assert "routes_externally: true" in decision.reason
    assert "IPv6" not in decision.reason


# -- NetworkHints -----------------------------------------------------------------------------
def test_hints_from_openstack_config_entries():
    # openstack.config normalizes each entry with every key present
    entries = [
        {"name": "v6net", "routes_externally": False, "routes_ipv4_externally": False,
         "routes_ipv6_externally": True, "nat_source": False, "nat_destination": False,
         "default_interface": True},
        {"name": "ext", "routes_externally": True, "routes_ipv4_externally": True,
         "routes_ipv6_externally": True, "nat_source": True, "nat_destination": False,
         "default_interface": False},
    ]
    hints = NetworkHints.from_entries(entries, "clouds.yaml")
    assert hints.default_interface == "v6net" and hints.nat_source == "ext"
    assert hints.routes("v6net", "id-1", 6) is True
    assert hints.routes("v6net", "id-1", 4) is False
    assert hints.routes("v6net", "id-1") is False
    assert hints.routes("ext", "id-2", 4) is True
    assert hints.routes("unknown", "id-3") is None


def test_hints_keep_a_per_family_setting_without_routes_externally():
    """Profile entries are not normalized by openstack.config: an entry that only says
    routes_ipv4_externally must still be honoured."""
    hints = NetworkHints.from_entries(
        [{"name": "v4-routed", "routes_ipv4_externally": True}], "profile 'x'")
    assert hints.routes("v4-routed", "id", 4) is True


def test_hints_entry_without_name_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="clouds.yaml"):
        NetworkHints.from_entries([{"routes_externally": True}], "clouds.yaml")


def test_hints_match_by_network_id():
    hints = NetworkHints(routes_externally={"uuid-9": True})
    assert hints.routes("whatever-name", "uuid-9") is True


# -- addresses --------------------------------------------------------------------------------
@pytest.mark.parametrize("ip, network, public, words", [
    ("10.0.0.5", "tenant", False, "private-range address on network 'tenant'"),
    ("192.168.0.9", None, False, "private-range address"),
    ("203.0.113.20", "provider", True, "globally routable address on network 'provider'"),
    ("2001:db8:4::5", "dualstack", True, "globally routable address on network 'dualstack'"),
    ("fd12:3456::5", "ula", False, "private-range address on network 'ula'"),
])
def test_classify_fixed_address_by_range(ip, network, public, words):
    addr = classify_address(ip, network, floating=False)
    assert addr.public is public and addr.kind == "fixed"
    assert addr.reason == words
    assert addr.version == (6 if ":" in ip else 4)


@pytest.mark.parametrize("ip", ["172.24.4.10", "203.0.113.10"])
def test_floating_ip_is_public(ip):
    addr = classify_address(ip, "tenant", floating=True)
    assert addr.public is True and addr.kind == "floating"
    assert "floating IP" in addr.reason


def test_address_classification_follows_hints_per_family():
    hints = NetworkHints(routes_externally={"lab": False},
                         routes_ipv6_externally={"lab": True}, source="clouds.yaml")
    v4 = classify_address("198.51.100.9", "lab", floating=False, hints=hints)
    v6 = classify_address("fd00::9", "lab", floating=False, hints=hints)
    assert v4.public is False and "routes_externally: false" in v4.reason
    assert v6.public is True and "clouds.yaml says network 'lab'" in v6.reason


# -- no-neutron: address lists named public/private -------------------------------------------
@pytest.mark.parametrize("label, ip, public", [
    ("public", "203.0.113.55", True),
    ("private", "10.11.12.13", False),
    ("public", "2001:db8:99::4", True),
    # the label is not trusted: classification is by range
    ("public", "172.31.0.4", False),
    ("private", "198.51.100.4", True),
])
def test_no_neutron_address_lists_are_classified_by_range(label, ip, public):
    profile_hints = NetworkHints.from_entries(profiles.load("openstack").networks,
                                              "profile 'openstack'")
    addr = classify_address(ip, label, floating=False, networks=[], hints=profile_hints)
    assert addr.public is public
    assert f"network '{label}'" in addr.reason


# -- choose_interface -------------------------------------------------------------------------
def _addr(ip: str, public: bool, kind: str = "fixed") -> Address:
    return Address(ip, 6 if ":" in ip else 4, "n", public, "test", kind)


@pytest.mark.parametrize("addresses, expected, words", [
    ([_addr("10.0.0.5", False), _addr("2001:db8::5", True), _addr("203.0.113.5", True)],
     "203.0.113.5", "public IPv4"),
    ([_addr("10.0.0.5", False), _addr("2001:db8::5", True)], "2001:db8::5", "public IPv6"),
    ([_addr("fd00::5", False), _addr("10.0.0.5", False)], "10.0.0.5",
     "private IPv4 (no public address)"),
    ([_addr("10.0.0.5", False), _addr("203.0.113.9", True, "floating")],
     "203.0.113.9", "public IPv4"),
])
def test_choose_interface_preference(addresses, expected, words):
    chosen, reason = choose_interface(addresses)
    assert chosen is not None and chosen.ip == expected
    assert reason.startswith(f"{expected} is the {words}")


def test_choose_interface_without_addresses():
    assert choose_interface([]) == (None, "the server has no address")
    assert choose_interface([_addr("fd00::1", False)])[0] is None

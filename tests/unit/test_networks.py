"""Public/private classification of networks and addresses (cloudnorm.networks).

One scenario per OpenStack quirk profile of shared/quirks.md, built from the
facts a driver would gather; plus the choice of attach / floating networks,
address classification and the SSH interface choice.
"""

from __future__ import annotations

import ipaddress

import pytest

from cloudnorm import errors, profiles
from cloudnorm.models import Address, Network
from cloudnorm.networks import (
    NetworkHints,
    Router,
    choose_attach_network,
    choose_floating_network,
    choose_interface,
    choose_private_interface,
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


@pytest.mark.parametrize("addresses, expected", [
    # A translated public address is never the way in from inside.
    ([_addr("203.0.113.9", True, "floating"), _addr("10.0.0.5", False)], "10.0.0.5"),
    ([_addr("2001:db8::5", True), _addr("fd00::5", False)], "fd00::5"),
    # On a provider network the server's own address is all it has; openstacksdk's
    # private: true falls back to it too (openstack/cloud/meta.py, get_server_ip).
    ([_addr("2001:db8::5", True), _addr("203.0.113.5", True)], "203.0.113.5"),
])
def test_choose_private_interface_prefers_private_then_the_servers_own(addresses, expected):
    chosen, reason = choose_private_interface(addresses)
    assert chosen is not None and chosen.ip == expected
    assert reason.startswith(expected)


def test_choose_private_interface_never_takes_a_translated_address():
    chosen, reason = choose_private_interface([_addr("203.0.113.9", True, "floating")])
    assert chosen is None and "no address of its own" in reason


# -- is_global / classify_address: the fast paths agree with ipaddress ------------------------
# The reference: what is_global and classify_address were before they learned to read
# addresses without ipaddress and to remember them. Results and errors must not differ.
_REFERENCE_NON_GLOBAL = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
))


_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def _reference_is_global(ip_or_cidr):
    net = ipaddress.ip_network(ip_or_cidr, strict=False)
    if net.version == 6 and net.subnet_of(_MAPPED):
        # RFC 4291 2.5.5.2: an IPv4-mapped address stands for the IPv4 address inside it.
        net = ipaddress.ip_network((int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96))
    return not any(net.version == n.version and net.subnet_of(n) for n in _REFERENCE_NON_GLOBAL)


def _reference_classify_address(ip, network, *, floating, networks=(), hints=None):
    if not isinstance(ip, str):  # a number would read as an address: a record's garbage
        raise ValueError(f"{ip!r} is not an IP address text")
    version = ipaddress.ip_address(ip).version
    kind = "floating" if floating else "fixed"
    if floating:
        return Address(ip, version, network, True, "floating IP (NAT to the server)", kind)
    net = next((n for n in networks if network in (n.name, n.id)), None)
    if hints is not None and network:
        said = hints.said(network, net.id if net else network, version)
        if said is not None:
            return Address(ip, version, network, said[0],
                           f"{said[1]} says network '{network}' routes_externally: "
                           f"{str(said[0]).lower()}", kind, "configured")
    where = f" on network '{network}'" if network else ""
    if _reference_is_global(ip):
        return Address(ip, version, network, True, f"globally routable address{where}", kind)
    return Address(ip, version, network, False, f"private-range address{where}", kind)


def _outcome(func, *args, **kwargs):
    try:
        return "ok", func(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 -- the type and words must match too
        return type(exc), str(exc)


_EDGE_TEXTS = [
    # every non-global network's first and last address, and their neighbours outside
    *(str(addr) for n in _REFERENCE_NON_GLOBAL for addr in (
        n.network_address, n.broadcast_address,
        *([n.network_address - 1] if int(n.network_address) > 0 else []),
        *([n.broadcast_address + 1] if int(n.broadcast_address) < (
            2 ** n.max_prefixlen - 1) else []))),
    # carrier-grade NAT, IETF protocol assignments, documentation, benchmarking
    "100.63.255.255", "100.64.0.0", "100.127.255.255", "100.128.0.0", "192.0.0.1",
    "192.0.0.255", "192.0.2.1", "198.17.255.255", "198.18.0.1", "198.19.255.255",
    "198.20.0.0", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db7::1",
    "2001:db9::1", "0.0.0.0", "255.255.255.255", "8.8.8.8",
    # IPv4-mapped, -compatible and NAT64 IPv6: IPv6 addresses, judged as IPv6
    "::ffff:10.0.0.1", "::ffff:8.8.8.8", "::ffff:a00:1", "::10.0.0.1", "::127.0.0.1",
    "64:ff9b::10.0.0.1", "::ffff:0:0", "::ffff:ffff:ffff",
    # the shapes an IPv6 address is written in
    "::", "::1", "::2", "1::", "FE80::1", "fe80:0000:0000:0000:0000:0000:0000:0001",
    "fe80:0:0:0:0:0:0:1", "FC00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::",
    "fec0::1", "ff02::1", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
    "1::8", "1:2:3:4:5:6::8", "2001:DB8:7::1A2B", "0001:0db8::0001",
    # scope ids: ipaddress compares scoped addresses with their scope
    "fe80::1%eth0", "::1%eth0", "fe80::%eth0", "::%1", "ff00::%x", "fe80::%eth0/64",
    # not addresses, or not written the way ipaddress accepts them
    "", " ", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.256", "010.0.0.1", "10.0.0.01",
    "00.0.0.0", " 10.0.0.1", "10.0.0.1 ", "10.0.0.1\n", "10..0.1", "1.2.3.4:80",
    "\u0661.\u0662.\u0663.\u0664", "1\u200b.2.3.4", "+1.2.3.4", "0x1.2.3.4", "1e1.2.3.4",
    "1:2:3:4:5:6:7:8:9", "1::2::3", ":::1", ":1:2:3:4:5:6:7", "1:2:3:4:5:6:7:", "12345::",
    "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::8", "g::1", "1:2:3:4:5:6:1.2.3.4",
    "1:2:3:4:5:6:7:1.2.3.4", "::ffff:010.0.0.1", "::ffff:1.2.3", ":", "1.2.3.4/", "/24",
    "localhost", "fe80::1%", "%eth0",
    # CIDRs, some straddling the edge of a non-global network
    "10.0.0.0/8", "10.0.0.0/7", "11.0.0.0/8", "100.64.0.0/10", "100.64.0.0/9",
    "100.96.0.0/11", "172.16.0.0/12", "172.16.0.0/11", "172.31.255.0/23", "192.168.0.0/15",
    "192.168.255.255/32", "198.18.0.0/15", "198.18.0.0/14", "224.0.0.0/3", "0.0.0.0/0",
    "0.0.0.0/8", "0.0.0.0/7", "::/0", "::/127", "::/128", "::1/128", "fc00::/7", "fc00::/6",
    "fe80::/10", "fe80::/9", "fec0::/10", "ff00::/8", "fe00::/7", "2001:db8::/32",
    "2001:db8::/31", "10.0.0.5/24", "fd12:3456::5/64", "10.0.0.0/33", "10.0.0.0/-1",
    "::/129", "10.0.0.0/255.0.0.0", "10.0.0.0/0.0.0.255", "10.0.0.0/8/8", "10.0.0.0/08",
]


def _random_texts(count=3000, seed=7):
    import random

    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        pick = rng.random()
        if pick < 0.3:
            texts.append(str(ipaddress.IPv4Address(rng.getrandbits(32))))
        elif pick < 0.45:  # inside or just around a non-global IPv4 network
            n = rng.choice([n for n in _REFERENCE_NON_GLOBAL if n.version == 4])
            value = int(n.network_address) + rng.randrange(-3, n.num_addresses + 3)
            texts.append(str(ipaddress.IPv4Address(value % 2 ** 32)))
        elif pick < 0.65:
            value = rng.getrandbits(128) >> rng.choice([0, 0, 16, 64, 100, 120])
            if rng.random() < 0.3:
                value |= rng.choice([0xfc << 120, 0xfe80 << 112, 0xff << 120, 0xffff << 32])
            addr = ipaddress.IPv6Address(value)
            texts.append(rng.choice([addr.compressed, addr.exploded, addr.compressed.upper()]))
        elif pick < 0.8:  # CIDRs of random size around random addresses
            version = rng.choice([4, 6])
            bits = 32 if version == 4 else 128
            n = rng.choice([n for n in _REFERENCE_NON_GLOBAL if n.version == version])
            value = (int(n.network_address) + rng.randrange(-2 ** 20, 2 ** 20)) % 2 ** bits
            addr = ipaddress.ip_address(value) if version == 4 else ipaddress.IPv6Address(value)
            texts.append(f"{addr}/{rng.randrange(0, bits + 1)}")
        else:  # noise from the characters addresses are written with
            alphabet = "0123456789abcdefABCDEF:::...0/%"
            texts.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 20))))
    return texts


_ALL_TEXTS = _EDGE_TEXTS + _random_texts()


def test_is_global_matches_the_reference_everywhere():
    for text in _ALL_TEXTS:
        for _ in range(2):  # the second answer comes from the cache
            assert _outcome(is_global, text) == _outcome(_reference_is_global, text), text


def test_is_global_of_non_text_matches_the_reference():
    for value in (167772161, 3221225985, 2 ** 32, -1, ipaddress.ip_address("10.0.0.1"),
                  ipaddress.ip_network("fc00::/7"), ("10.0.0.0", 8), None, ["10.0.0.1"]):
        assert _outcome(is_global, value) == _outcome(_reference_is_global, value), value


@pytest.mark.parametrize("floating", [False, True])
def test_classify_address_matches_the_reference_everywhere(floating):
    for text in _ALL_TEXTS:
        for _ in range(2):
            assert _outcome(classify_address, text, "tenant", floating=floating) == \
                _outcome(_reference_classify_address, text, "tenant", floating=floating), text


def test_classify_address_matches_the_reference_with_hints():
    nets = [Network(id="n1", name="lab", public=False, reason="r"),
            Network(id="n2", name="tenant", public=False, reason="r")]
    variants = [
        NO_HINTS,
        NetworkHints(routes_externally={"lab": True}),
        NetworkHints(routes_ipv4_externally={"n2": True}, source="profile 'x'",
                     origins={"routes_ipv4_externally:n2": "profile 'x'"}),
        NetworkHints(routes_ipv6_externally={"tenant": False}),
        None,
    ]
    for hints in variants:
        for network in ("lab", "tenant", "n2", "other", None, ""):
            for text in ("10.0.0.5", "203.0.113.9", "fd00::9", "2001:db8::9", "::ffff:10.0.0.1",
                         "fe80::1%eth0", "1.2.3", 167772161):
                got = _outcome(classify_address, text, network, floating=False,
                               networks=nets, hints=hints)
                want = _outcome(_reference_classify_address, text, network, floating=False,
                                networks=nets, hints=hints)
                assert got == want, (text, network, hints)

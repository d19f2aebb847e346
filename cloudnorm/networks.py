"""Public/private classification of networks and addresses, with reasons.

Pure functions over facts a driver gathered; no I/O. A network is public
because of what the cloud says about it (``router:external``, its subnets,
its routers, floating IPs on it) or because the configuration says so
(clouds.yaml ``networks:``, the quirk profile) -- never because of its name.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence

import attrs

from cloudnorm import errors
from cloudnorm.models import Address, Decision, Network

# Addresses that never route on the internet. The documentation ranges
# (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are *not*
# here on purpose: they stand for public addresses in examples, test clouds
# and sandboxes, so cloudnorm treats them as the public addresses they model.
_NON_GLOBAL = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
))


# The same networks as integer bounds, per IP version: (first address, last address).
_NON_GLOBAL_RANGES: dict[int, tuple[tuple[int, int], ...]] = {
    version: tuple((int(n.network_address), int(n.broadcast_address))
                   for n in _NON_GLOBAL if n.version == version)
    for version in (4, 6)
}
# Addresses repeat (every listing of the same servers, every subnet of the same
# networks): parsing and classifying each text once is most of the saving.
_CACHE_SIZE = 8192


# IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, RFC 4291 2.5.5.2) stand for the IPv4
# address inside them, and route (or not) as it does.
_MAPPED_PREFIX = 0xFFFF


def _routable(version: int, first: int, last: int) -> bool:
    """True unless ``first..last`` lies entirely inside one non-global network."""
    if version == 6 and first >> 32 == _MAPPED_PREFIX and last >> 32 == _MAPPED_PREFIX:
        version, first, last = 4, first & 0xFFFFFFFF, last & 0xFFFFFFFF
    for low, high in _NON_GLOBAL_RANGES[version]:
        if low <= first and last <= high:
            return False
    return True


def _is_global_slow(ip_or_cidr: object) -> bool:
    net = ipaddress.ip_network(ip_or_cidr, strict=False)  # type: ignore[arg-type]
    if net.version == 6 and int(net.network_address) >> 32 == _MAPPED_PREFIX \
            and int(net.broadcast_address) >> 32 == _MAPPED_PREFIX:
        return _routable(6, int(net.network_address), int(net.broadcast_address))
    return not any(net.version == n.version and net.subnet_of(n)  # type: ignore[arg-type]
                   for n in _NON_GLOBAL)


# Address texts in their common shapes, read without ipaddress (which accepts all of
# these too, and more: whatever does not match here is left to it). IPv4: four
# decimal octets 0-255 without leading zeros. IPv6: hex groups only (no embedded
# IPv4, no scope id), eight of them or at most seven around one "::".
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_TEXT = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
_HEXTET = r"[0-9A-Fa-f]{1,4}"
_IPV6_TEXT = re.compile(rf"(?:{_HEXTET}:){{7}}{_HEXTET}"
                        rf"|(?:{_HEXTET}(?::{_HEXTET}){{0,6}})?::(?:{_HEXTET}(?::{_HEXTET}){{0,6}})?")


def _parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``ipaddress.ip_address(text)``, without its failed IPv4 attempt on IPv6 text."""
    try:
        return ipaddress.IPv6Address(text) if ":" in text else ipaddress.IPv4Address(text)
    except ValueError:
        return ipaddress.ip_address(text)  # raises, with ip_address's own message


def _address_value(text: str) -> tuple[int, int]:
    """(version, integer value) of a plain address text, exactly as
    ``ipaddress.ip_address`` reads it (and raising what it raises)."""
    if ":" in text:
        if _IPV6_TEXT.fullmatch(text) is not None:
            head, compressed, tail = text.partition("::")
            if not compressed or (head.count(":") + 1 if head else 0) + (
                    tail.count(":") + 1 if tail else 0) <= 7:
                try:
                    return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
                except OSError:  # never for these shapes; ipaddress decides if it happens
                    pass
    else:
        match = _IPV4_TEXT.fullmatch(text)
        if match is not None:
            a, b, c, d = match.groups()
            return 4, int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d)
    addr = _parse_address(text)
    return addr.version, int(addr)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _text_is_global(text: str) -> bool:
    if "/" in text:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            return _is_global_slow(text)  # raises, with ip_network's own message
        return _routable(net.version, int(net.network_address), int(net.broadcast_address))
    try:
        version, value = _address_value(text)
    except ValueError:
        return _is_global_slow(text)
    return _routable(version, value, value)


def is_global(ip_or_cidr: str) -> bool:
    """True when the address (or every address of the CIDR) can route on the internet."""
    # IPv6 scope ids ("fe80::1%eth0") take the general path: ipaddress compares
    # scoped addresses with their scope, which the integer bounds know nothing of.
    if type(ip_or_cidr) is str and "%" not in ip_or_cidr:
        return _text_is_global(ip_or_cidr)
    return _is_global_slow(ip_or_cidr)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _address_facts(ip: str) -> tuple[int, bool]:
    """(IP version, globally routable?) of one plain, unscoped address text."""
    version, value = _address_value(ip)
    return version, _routable(version, value, value)


@attrs.frozen
class Subnet:
    id: str
    network_id: str
    cidr: str
    ip_version: int
    service_types: tuple[str, ...] = ()

    @property
    def allows_floating_ips(self) -> bool:
        # Neutron's subnet service types: an empty list serves every port kind.
        return not self.service_types or "network:floatingip" in self.service_types


@attrs.frozen
class Router:
    id: str
    name: str
    external_network_id: str | None
    internal_network_ids: tuple[str, ...] = ()


@attrs.frozen
class NetworkFacts:
    """What a driver learned about one network."""

    id: str
    name: str
    router_external: bool = False
    shared: bool = False
    subnets: tuple[Subnet, ...] = ()
    has_floating_ips: bool = False
    #: The cloud names this network the default for new servers of its zone (EC2's
    #: default subnets), so a plain request needs to name none.
    default_for_zone: bool = False
    raw: dict = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen
class NetworkHints:
    """Operator knowledge about networks: clouds.yaml ``networks:`` and profile data.

    ``routes_externally`` maps a network name or id to True/False; only what
    was actually written counts (an absent key says nothing). ``origins``
    remembers where each setting came from, for the reasons cloudnorm gives.
    """

    routes_externally: dict[str, bool] = attrs.field(factory=dict)
    routes_ipv4_externally: dict[str, bool] = attrs.field(factory=dict)
    routes_ipv6_externally: dict[str, bool] = attrs.field(factory=dict)
    default_interface: str | None = None
    nat_destination: str | None = None
    nat_source: str | None = None
    source: str = "clouds.yaml"
    origins: dict[str, str] = attrs.field(factory=dict)
    #: A setting's reason in full, where the provider stated it as a fact ("subnet
    #: maps a public IPv4 at launch") rather than someone having configured it.
    statements: dict[str, str] = attrs.field(factory=dict)

    @classmethod
    def from_entries(cls, entries: Iterable[dict], source: str) -> NetworkHints:
        """Build from ``networks:`` entries as written (clouds.yaml or a profile)."""
        tables: dict[str, dict[str, bool]] = {
            "routes_externally": {}, "routes_ipv4_externally": {}, "routes_ipv6_externally": {}}
        picks: dict[str, str | None] = {
            "default_interface": None, "nat_destination": None, "nat_source": None}
        origins: dict[str, str] = {}
        for entry in entries:
            name = entry.get("name") or entry.get("id")
            if not name:
                raise errors.ConfigError(f"a networks: entry in {source} has no name")
            for key, table in tables.items():
                if key in entry:
                    table[name] = bool(entry[key])
                    origins[f"{key}:{name}"] = source
            for key in picks:
                if entry.get(key):
                    picks[key] = name
                    origins[key] = source
        return cls(**tables, **picks, source=source, origins=origins)  # type: ignore[arg-type]

    def merged_over(self, base: NetworkHints) -> NetworkHints:
        """These hints, falling back to ``base`` (e.g. clouds.yaml over profile)."""
        return NetworkHints(
            routes_externally={**base.routes_externally, **self.routes_externally},
            routes_ipv4_externally={**base.routes_ipv4_externally,
                                    **self.routes_ipv4_externally},
            routes_ipv6_externally={**base.routes_ipv6_externally,
                                    **self.routes_ipv6_externally},
            default_interface=self.default_interface or base.default_interface,
            nat_destination=self.nat_destination or base.nat_destination,
            nat_source=self.nat_source or base.nat_source,
            source=self.source,
            origins={**base.origins, **self.origins},
            statements={**base.statements, **self.statements},
        )

    def explain(self, setting: str, words: str) -> str:
        """The reason for ``setting``: the provider's statement, or "<origin> <words>"."""
        return self.statements.get(setting) or f"{self.origin(setting)} {words}"

    def origin(self, setting: str) -> str:
        """Where ``setting`` (``default_interface``, ``routes_externally:NAME``...) came from."""
        return self.origins.get(setting, self.source)

    def routes(self, net_name: str, net_id: str, version: int | None = None) -> bool | None:
        """Whether a network routes externally, or None when nothing was said."""
        said = self.said(net_name, net_id, version)
        return None if said is None else said[0]

    def said(self, net_name: str, net_id: str, version: int | None = None
             ) -> tuple[bool, str] | None:
        """(routes externally?, where that was said) for a network, or None if unsaid."""
        keys = ["routes_externally"]
        if version in (4, 6):
            keys.insert(0, f"routes_ipv{version}_externally")
        for key in keys:
            table = getattr(self, key)
            for name in (net_id, net_name):
                if name in table:
                    return table[name], self.origin(f"{key}:{name}")
        return None


def _cidrs(subnets: Sequence[Subnet]) -> str:
    return ", ".join(s.cidr for s in subnets)


def classify_network(net: NetworkFacts, routers: Sequence[Router],
                     hints: NetworkHints, fip_capable: set[str] | None = None) -> Network:
    """Classify one network. ``fip_capable`` holds ids of external networks
    that can hand out floating IPs (used to describe private networks)."""
    said = hints.said(net.name, net.id)
    if said is not None:
        external = net.router_external and any(s.allows_floating_ips for s in net.subnets)
        key = next((f"routes_externally:{k}" for k in (net.id, net.name)
                    if f"routes_externally:{k}" in hints.statements), "routes_externally:")
        return _network(net, public=said[0], external=external, usable=True,
                        reason=hints.statements.get(key) or
                        f"{said[1]} says routes_externally: {str(said[0]).lower()}")

    if net.router_external:
        if not net.subnets:
            return _network(net, public=False, external=False, usable=False,
                           reason="router:external, but it has no subnet: floating IPs cannot "
                                  "be allocated from it and servers cannot attach to it")
        pool = [s for s in net.subnets if s.allows_floating_ips]
        if not pool:
            kinds = sorted({t for s in net.subnets for t in s.service_types})
            return _network(net, public=False, external=False, usable=False,
                           reason="router:external, but its subnets only serve "
                                  f"{', '.join(kinds)} ports: no floating IPs come from it")
        return _network(net, public=True, external=True, usable=True,
                       reason=f"router:external with subnet {_cidrs(pool)}: "
                              "floating IPs come from here")

    if net.has_floating_ips:
        return _network(net, public=True, external=True, usable=True,
                       reason="floating IPs already exist on it")
    if not net.subnets:
        return _network(net, public=False, usable=False,
                       reason="it has no subnet: servers attached to it get no address")

    public4 = [s for s in net.subnets if s.ip_version == 4 and is_global(s.cidr)]
    public6 = [s for s in net.subnets if s.ip_version == 6 and is_global(s.cidr)]
    private = [s for s in net.subnets if not is_global(s.cidr)]
    if public4:
        return _network(net, public=True, reason=f"subnet {_cidrs(public4)} is globally "
                        "routable and servers attach to it directly")
    via = _router_path(net, routers, fip_capable)
    if public6:
        return _network(net, public=True, reason=f"IPv6 subnet {_cidrs(public6)} is globally "
                        f"routable; IPv4 {_cidrs(private) or 'none'} is private{via}")
    return _network(net, public=False, reason=f"subnet {_cidrs(private)} is a private range{via}")


def _network(net: NetworkFacts, *, public: bool, reason: str, external: bool = False,
             usable: bool = True) -> Network:
    return Network(id=net.id, name=net.name, public=public, reason=reason, external=external,
                   usable=usable, shared=net.shared, subnets=tuple(s.cidr for s in net.subnets),
                   ip_versions=tuple(sorted({s.ip_version for s in net.subnets})), raw=net.raw)


def _router_path(net: NetworkFacts, routers: Sequence[Router],
                 fip_capable: set[str] | None) -> str:
    for router in routers:
        if net.id in router.internal_network_ids and router.external_network_id:
            if fip_capable is None or router.external_network_id in fip_capable:
                return (f"; router '{router.name}' connects it to an external network"
                        " (floating IPs possible)")
            return f"; router '{router.name}' gives it outbound NAT only"
    return "; no router leads outside"


def classify_networks(nets: Sequence[NetworkFacts], routers: Sequence[Router],
                      hints: NetworkHints) -> list[Network]:
    fip_capable = {n.id for n in nets
                   if n.router_external and any(s.allows_floating_ips for s in n.subnets)}
    return [classify_network(n, routers, hints, fip_capable) for n in nets]


# Rank of a network as the place to attach a new server: lower is better.
def _attach_rank(net: Network, routers: Sequence[Router], fip_capable: set[str]) -> int | None:
    if not net.attachable:
        return None  # floating IP pools are not for attaching servers
    if net.public and (4 in net.ip_versions and any(is_global(c) for c in net.subnets
                                                   if ":" not in c) or not net.ip_versions
                       or "routes_externally" in net.reason):
        return 0
    if net.public:
        return 1
    for router in routers:
        if net.id in router.internal_network_ids and router.external_network_id in fip_capable:
            return 2
    return 3


_RANK_WORDS = {
    0: "it is directly public",
    1: "it is public over IPv6 only",
    2: "it is private behind a router to an external network, so a floating IP can reach it",
    3: "it is the only private network and nothing better exists",
}


def choose_attach_network(networks: Sequence[Network], routers: Sequence[Router],
                          hints: NetworkHints) -> tuple[Network, Decision]:
    """The network a new server should be attached to, with the reason."""
    if hints.default_interface:
        net = _by_name_or_id(networks, hints.default_interface,
                             hints.origin("default_interface"), "default_interface")
        return net, Decision("network", net.name,
                             hints.explain("default_interface", "names it default_interface"))
    fip_capable = {n.id for n in networks if n.external}
    ranked: dict[int, list[Network]] = {}
    for net in networks:
        rank = _attach_rank(net, routers, fip_capable)
        if rank is not None:
            ranked.setdefault(rank, []).append(net)
    if not ranked:
        raise errors.NotFound(
            "no network a server can be attached to: "
            + "; ".join(f"'{n.name}': {n.reason}" for n in networks)
            + ". Create a network or name one with default_interface in clouds.yaml")
    best = min(ranked)
    if len(ranked[best]) > 1:
        names = sorted(n.name for n in ranked[best])
        raise errors.Ambiguous(
            f"several networks are equally good to attach servers to ({', '.join(names)}): "
            "pick one with network=NAME, or mark it default_interface: true under networks:"
            " in clouds.yaml", candidates=names)
    net = ranked[best][0]
    return net, Decision("network", net.name, f"'{net.name}': {_RANK_WORDS[best]} ({net.reason})")


def choose_floating_network(attach: Network, networks: Sequence[Network],
                            routers: Sequence[Router], hints: NetworkHints
                            ) -> tuple[Network, Decision]:
    """The external network to take a floating IP from for a server on ``attach``."""
    if hints.nat_source:
        net = _by_name_or_id(networks, hints.nat_source, hints.origin("nat_source"),
                             "nat_source")
        return net, Decision("floating_network", net.name,
                             hints.explain("nat_source", "names it nat_source"))
    by_id = {n.id: n for n in networks}
    for router in routers:
        ext = by_id.get(router.external_network_id or "")
        if attach.id in router.internal_network_ids and ext is not None and ext.external:
            return ext, Decision("floating_network", ext.name,
                                 f"router '{router.name}' links '{attach.name}' to it")
    pools = [n for n in networks if n.external]
    if len(pools) == 1:
        return pools[0], Decision("floating_network", pools[0].name,
                                  "it is the only network floating IPs can come from")
    if not pools:
        raise errors.NotFound(f"no external network can give '{attach.name}' a floating IP")
    names = sorted(n.name for n in pools)
    raise errors.Ambiguous(
        f"several external networks could give floating IPs ({', '.join(names)}): mark one"
        " nat_source: true under networks: in clouds.yaml", candidates=names)


def _by_name_or_id(networks: Sequence[Network], key: str, source: str, setting: str) -> Network:
    for net in networks:
        if key in (net.id, net.name):
            return net
    raise errors.ConfigError(
        f"{source} names '{key}' as {setting}, but the cloud has no such network; "
        f"known networks: {', '.join(sorted(n.name for n in networks)) or 'none'}")


def address_facts(ip: object) -> tuple[int, bool]:
    """(IP version, globally routable?) of an address text a cloud reported.

    Raises ValueError for anything that is not the text of one IP address: a
    number, ``None``, a name, a CIDR, text with spaces. Drivers let it reach their
    record guard, so the record is refused, never turned into an address to SSH to.
    """
    if type(ip) is not str:
        raise ValueError(f"{errors.describe(ip)} is not an IP address text")
    if "%" not in ip:
        return _address_facts(ip)
    addr = ipaddress.ip_address(ip)  # a scoped IPv6 address ("fe80::1%eth0")
    return addr.version, _is_global_slow(addr)


def classify_address(ip: str, network: str | None, *, floating: bool,
                     networks: Sequence[Network] = (), hints: NetworkHints | None = None
                     ) -> Address:
    """Classify one server address (``network`` is the network's name, or the
    address list's label on clouds without a network service).

    Raises ValueError when ``ip`` is not an IP address (see :func:`address_facts`).
    """
    version, routable = address_facts(ip)
    if floating:
        return Address(ip, version, network, True, "floating IP (NAT to the server)", "floating")
    kind = "fixed"
    # Hints with nothing under routes_*externally have nothing to say about any network.
    if hints is not None and network and (hints.routes_externally or hints.routes_ipv4_externally
                                          or hints.routes_ipv6_externally):
        net = next((n for n in networks if network in (n.name, n.id)), None)
        said = hints.said(network, net.id if net else network, version)
        if said is not None:
            return Address(ip, version, network, said[0],
                           f"{said[1]} says network '{network}' routes_externally: "
                           f"{str(said[0]).lower()}", kind, "configured")
    where = f" on network '{network}'" if network else ""
    if routable:
        return Address(ip, version, network, True, f"globally routable address{where}", kind)
    return Address(ip, version, network, False, f"private-range address{where}", kind)


# Within one class of address, the one whose reachability rests on the most: what the
# cloud publishes as the access address, then a network the operator says routes
# externally, then a floating (NAT) address, then one only inferred from its range.
# openstacksdk's get_server_external_ipv4 (openstack/cloud/meta.py) orders them the same.
BASIS_RANK = {"published": 0, "configured": 1, "nat": 2, "range": 3}


def _rank(addr: Address) -> int:
    if addr.public:
        return BASIS_RANK.get(addr.basis, 9)
    # Reached from inside the cloud: the address on the NIC beats a translated one.
    return 0 if addr.basis == "published" else 1 if addr.kind == "fixed" else 2


def best_address(addresses: Sequence[Address], public: bool, version: int) -> Address | None:
    """The strongest address of one class (public or not, IP version), first on ties."""
    best: Address | None = None
    for addr in addresses:
        if addr.public == public and addr.version == version and (
                best is None or _rank(addr) < _rank(best)):
            best = addr
    return best


def choose_interface(addresses: Sequence[Address]) -> tuple[Address | None, str]:
    """The address to SSH to: public IPv4, then public IPv6, then private IPv4; within
    each, the one whose reachability rests on the most (see :data:`BASIS_RANK`)."""
    for (public, version), words in (((True, 4), "public IPv4"), ((True, 6), "public IPv6"),
                                     ((False, 4), "private IPv4 (no public address)")):
        addr = best_address(addresses, public, version)
        if addr is not None:
            others = sum(1 for a in addresses if (a.public, a.version) == (public, version))
            why = f"{addr.ip} is the {words} address ({addr.reason})"
            if others > 1:
                why += f"; of {others} such addresses, its reachability rests on the most " \
                       f"({addr.basis})"
            return addr, why
    return None, "the server has no address"


def choose_private_interface(addresses: Sequence[Address]) -> tuple[Address | None, str]:
    """The address to SSH to from inside the cloud: private IPv4, then private IPv6,
    then the server's own address on a routed network (as openstacksdk's
    ``private: true`` falls back to it), never a translated one."""
    for version, words in ((4, "private IPv4"), (6, "private IPv6")):
        addr = best_address(addresses, False, version)
        if addr is not None:
            return addr, f"{addr.ip} is the {words} address ({addr.reason}); private access"
    own = [a for a in addresses if a.kind == "fixed"]
    if own:
        addr = sorted(own, key=lambda a: a.version)[0]
        return addr, (f"{addr.ip} is the server's own address ({addr.reason}): it has no "
                      "private one, and inside the cloud this one reaches it too")
    return None, "the server has no address of its own"


@attrs.frozen
class PublicPlan:
    """How a server on the chosen network gets a public address.

    ``method`` is ``none`` (it needs none, or the cloud assigns it),
    ``floating_ip`` (from ``pools``, best first), ``port_forwarding`` (a port
    of a floating IP the project shares, forwarded to the server's port 22) or
    ``private`` (none is made: the server is reached on its private address).
    """

    method: str
    pools: tuple[Network, ...]
    decision: Decision

    @property
    def floating_ip(self) -> bool:
        return self.method == "floating_ip"

    @property
    def private(self) -> bool:
        return self.method == "private"


def private_access(why: str) -> PublicPlan:
    """No public address at all: no floating IP, no public IP at launch, no Elastic IP,
    no access config."""
    return PublicPlan("private", (), Decision("public_address", "none (private access)", why))


def plan_public_address(attach: Network | None, networks: Sequence[Network],
                        routers: Sequence[Router], hints: NetworkHints, *,
                        requires_floating_ip: bool | None, floating_ip_source: str,
                        profile_name: str, public_access: str = "floating_ip",
                        no_network_service: str = "the cloud has no network service"
                        ) -> PublicPlan:
    """Decide, before booting, whether a floating IP is needed and from where.

    Deciding up front means a server with no possible way in is never created.
    ``no_network_service`` says why there is no network to attach to, when there is none.
    """
    if attach is None:
        return PublicPlan("none", (), Decision(
            "public_address", "assigned by the cloud",
            f"{no_network_service}: it assigns addresses itself"))
    if floating_ip_source == "none" or requires_floating_ip is False:
        return PublicPlan("none", (), Decision(
            "public_address", "none needed",
            f"profile '{profile_name}' says servers get no floating IPs"))
    if requires_floating_ip is None and attach.public:
        return PublicPlan("none", (), Decision(
            "public_address", "none needed", f"'{attach.name}' is public: {attach.reason}"))
    if public_access == "port_forwarding":
        return PublicPlan("port_forwarding", (), Decision(
            "public_address", "port forwarding on the shared floating IP",
            f"'{attach.name}' is private ({attach.reason}); profile '{profile_name}' says "
            "servers are reached through a port of the floating IP the project shares"))
    pools = [n for n in networks if n.external and n.usable]
    if not pools:
        raise errors.NotReachable(
            f"a server on '{attach.name}' would be unreachable: {attach.reason}, and no "
            "external network can give it a floating IP. Attach it to a public network "
            "(network=...), or mark one routes_externally in clouds.yaml")
    best, decision = choose_floating_network(attach, networks, routers, hints)
    ordered = (best, *[p for p in pools if p.id != best.id])
    return PublicPlan("floating_ip", ordered, Decision(
        "public_address", f"floating IP from {best.name}",
        f"'{attach.name}' is private ({attach.reason}); {decision.reason}"))

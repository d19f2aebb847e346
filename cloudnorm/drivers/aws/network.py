"""An account's VPCs, subnets and route tables as cloudnorm's network facts: no I/O.

A subnet is what a server attaches to; it reaches the internet when its route table
sends 0.0.0.0/0 to an internet gateway, which is then the "router" linking it outside.
"""

from __future__ import annotations

from typing import Any

from cloudnorm import errors, networks
from cloudnorm.drivers.aws.normalize import tags
from cloudnorm.settings import CloudSettings

#: The network Elastic IPs come from, as cloudnorm's flow sees it (there is one per region).
POOL_ID = "amazon"
POOL_NAME = "Amazon public IPv4 pool"

#: What :func:`read_networks` makes of an account: facts, routers, and what AWS says.
AccountNetworks = tuple[list[networks.NetworkFacts], list[networks.Router],
                        networks.NetworkHints]


def internet_gateway(table: dict[str, Any] | None) -> str | None:
    """The internet gateway a route table sends IPv4 default traffic to, if any."""
    for route in (table or {}).get("Routes") or ():
        gateway = str(route.get("GatewayId") or "")
        if (route.get("DestinationCidrBlock") == "0.0.0.0/0" and gateway.startswith("igw-")
                and route.get("State", "active") == "active"):
            return gateway
    return None


def read_networks(vpcs: list[dict[str, Any]], subnets: list[dict[str, Any]],
                  tables: list[dict[str, Any]], *, settings: CloudSettings, elastic: bool,
                  region: str) -> AccountNetworks:
    """The subnets of the VPCs ``settings`` allows, classified by their route tables.

    ``elastic`` adds Amazon's pool (``ip: elastic``); ``region`` is named when the
    configured VPC is not there.
    """
    source = settings.source or "clouds.yaml"
    wanted_vpc = settings.options.get("vpc")
    if wanted_vpc:
        match = [v for v in vpcs if wanted_vpc in (v["VpcId"], tags(v).get("Name"))]
        if not match:
            raise errors.ConfigError(
                f"cloud '{settings.name}' ({source}) names vpc '{wanted_vpc}', but "
                f"region {region} has none such; VPCs: "
                + (", ".join(f"{v['VpcId']} ({tags(v).get('Name', 'no name')})"
                             for v in vpcs) or "none"), cloud=settings.name)
        vpcs = match[:1]
    vpc_ids = {v["VpcId"] for v in vpcs}
    default_vpcs = {v["VpcId"] for v in vpcs if v.get("IsDefault")}
    subnets = sorted((s for s in subnets if s.get("VpcId") in vpc_ids
                      and s.get("State", "available") == "available"),
                     key=lambda s: (s.get("AvailabilityZone", ""), s["SubnetId"]))
    main_tables = {t.get("VpcId"): t for t in tables
                   if any(a.get("Main") for a in t.get("Associations") or ())}
    explicit = {a["SubnetId"]: t for t in tables for a in t.get("Associations") or ()
                if a.get("SubnetId")}

    facts: list[networks.NetworkFacts] = []
    gateways: dict[str, list[str]] = {}
    routes: dict[str, bool] = {}
    statements: dict[str, str] = {}
    for subnet in subnets:
        sid = subnet["SubnetId"]
        table = explicit.get(sid) or main_tables.get(subnet.get("VpcId"))
        igw = internet_gateway(table)
        maps = bool(subnet.get("MapPublicIpOnLaunch"))
        cidrs = [networks.Subnet(id=sid, network_id=sid, cidr=subnet["CidrBlock"],
                                 ip_version=4)] if subnet.get("CidrBlock") else []
        cidrs += [networks.Subnet(id=f"{sid}-v6", network_id=sid,
                                  cidr=a["Ipv6CidrBlock"], ip_version=6)
                  for a in subnet.get("Ipv6CidrBlockAssociationSet") or ()
                  if a.get("Ipv6CidrBlock")]
        raw = {**subnet, "cloudnorm:internet_gateway": igw,
               "cloudnorm:route_table": (table or {}).get("RouteTableId"),
               "cloudnorm:default_vpc": subnet.get("VpcId") in default_vpcs}
        facts.append(networks.NetworkFacts(
            id=sid, name=tags(subnet).get("Name") or sid, subnets=tuple(cidrs),
            default_for_zone=subnet.get("DefaultForAz") is True, raw=raw))
        if igw:
            gateways.setdefault(igw, []).append(sid)
            routes[sid] = True
            statements[f"routes_externally:{sid}"] = (
                f"the subnet maps a public IPv4 at launch and routes 0.0.0.0/0 to {igw}"
                if maps else f"the subnet routes 0.0.0.0/0 to {igw} but maps no public "
                "IPv4 at launch: cloudnorm asks for one with AssociatePublicIpAddress")
        elif maps:
            routes[sid] = False
            statements[f"routes_externally:{sid}"] = (
                "the subnet maps a public IPv4 at launch, but no route leads to an "
                "internet gateway")
    routers = [networks.Router(id=igw, name=igw, external_network_id=POOL_ID,
                               internal_network_ids=tuple(ids))
               for igw, ids in sorted(gateways.items())]
    if elastic:
        facts.append(networks.NetworkFacts(
            id=POOL_ID, name=POOL_NAME, router_external=True,
            subnets=(networks.Subnet(id=f"{POOL_ID}-v4", network_id=POOL_ID,
                                     cidr="0.0.0.0/0", ip_version=4),),
            raw={"cloudnorm:pool": "amazon"}))
        routes[POOL_ID] = True
        statements[f"routes_externally:{POOL_ID}"] = (
            "Elastic IPs are allocated from Amazon's public IPv4 pool")
    default, why = _default_subnet(facts, settings)
    if default:
        statements["default_interface"] = why
    hints = networks.NetworkHints(routes_externally=routes, default_interface=default,
                                  source="AWS", statements=statements)
    return facts, routers, hints


def _default_subnet(facts: list[networks.NetworkFacts], settings: CloudSettings
                    ) -> tuple[str | None, str]:
    """The subnet servers go to unless the caller names one, and why."""
    options = settings.options
    subnets = [f for f in facts if f.id != POOL_ID]
    zone = options.get("zone")
    named = options.get("subnet")
    if named:
        match = [f for f in subnets if named in (f.id, f.name)]
        if not match:
            raise errors.ConfigError(
                f"cloud '{settings.name}' ({settings.source or 'clouds.yaml'}) "
                f"names subnet '{named}', but there is none such"
                + (f" in VPC {options['vpc']}" if options.get("vpc") else "")
                + f"; subnets: {', '.join(f.name for f in subnets) or 'none'}",
                cloud=settings.name)
        return match[0].id, (f"{settings.source or 'clouds.yaml'} names it under "
                             "cloudnorm: subnet:")

    def pick(candidates: list[networks.NetworkFacts]) -> networks.NetworkFacts:
        in_zone = [f for f in candidates if f.raw.get("AvailabilityZone") == zone]
        return (in_zone or candidates)[0]  # facts are sorted by zone, then id

    def where(chosen: networks.NetworkFacts) -> str:
        az = chosen.raw.get("AvailabilityZone")
        return (f"zone {az}, as cloudnorm: zone: asks" if zone and az == zone
                else f"{az}, the first availability zone by name")

    defaults = [f for f in subnets if f.raw.get("cloudnorm:default_vpc")
                and f.raw.get("DefaultForAz")]
    if defaults:
        chosen = pick(defaults)
        return chosen.id, (f"it is the default VPC {chosen.raw.get('VpcId')}'s subnet in "
                           f"{where(chosen)}")
    routed = [f for f in subnets if f.raw.get("cloudnorm:internet_gateway")]
    if len({f.raw.get("VpcId") for f in routed}) == 1:
        # Subnets that already map a public address are the VPC owner's public tier.
        routed.sort(key=lambda f: not f.raw.get("MapPublicIpOnLaunch"))
        mapped = [f for f in routed if f.raw.get("MapPublicIpOnLaunch")] or routed
        chosen = pick(mapped)
        vpc = chosen.raw.get("VpcId")
        scope = (f"cloudnorm: vpc: names VPC {vpc}" if options.get("vpc") else
                 f"there is no default VPC and VPC {vpc} is the only one routed to an "
                 "internet gateway")
        return chosen.id, (f"{scope}; this is its subnet routed to "
                           f"{chosen.raw.get('cloudnorm:internet_gateway')} in "
                           f"{where(chosen)}")
    # Several VPCs reach the internet: the flow asks the caller to pick one.
    return None, ""

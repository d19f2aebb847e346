"""The driver's requests to Neutron: network facts, groups, ports, floating IPs and
port forwardings."""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import attrs

from cloudnorm import errors, parallel
from cloudnorm.drivers.base import Created
from cloudnorm.drivers.openstack import normalize
from cloudnorm.drivers.openstack.transport import Transport
from cloudnorm.models import OWNER_KEY, Address, Decision, Network
from cloudnorm.networks import NetworkFacts, Router

_UUID = re.compile(r"[0-9a-fA-F]{8}-?(?:[0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}")
ROUTER_PORT_OWNERS = ("network:router_interface", "network:router_interface_distributed",
                      "network:ha_router_replicated_interface")


@attrs.frozen
class Refused:
    """A network service endpoint that answered 403 or 404 (``status``)."""

    status: int


class Neutron:
    """The network service of one account, through the driver's transport."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.cloud = transport.settings.name
        #: Ports made for servers (:meth:`make_port`), by id, until their address.
        self.made_ports: dict[str, dict[str, Any]] = {}

    def facts(self) -> tuple[list[NetworkFacts], list[Router]] | Refused:
        """Networks and routers, read at once; :class:`Refused` when the endpoint
        refuses to list networks."""
        queries = {
            "networks": "/networks", "subnets": "/subnets", "routers": "/routers",
            "ports": "/ports?" + urlencode({"device_owner": ROUTER_PORT_OWNERS,
                                            "fields": ["network_id", "device_id"]}, doseq=True),
            "floatingips": "/floatingips?fields=floating_network_id"}
        replies = parallel.all_at_once([functools.partial(self._refusable, path)
                                        for path in queries.values()])
        if isinstance(replies[0], Refused):
            return replies[0]
        # A Neutron without the L3 extension has no routers or floating IPs to list.
        replies = [{} if isinstance(r, Refused) else r for r in replies]
        nets, subnets, routers, ports, fips = (reply.get(key, []) for key, reply in
                                               zip(queries, replies, strict=True))
        return normalize.normalize_networks(nets, subnets, routers, ports, fips)

    def _refusable(self, path: str) -> Any:
        """GET ``path`` from the network service; a 403 or 404 comes back as Refused."""
        try:
            return self.transport.request("network", "GET", path)
        except errors.NotFound:
            return Refused(404)
        except errors.ProviderError as exc:
            if exc.status == 403:
                return Refused(403)
            raise

    def floating_ips_by_server(self, server_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
        """The floating IPs bound to a port of each of ``server_ids``: one listing of
        the project's floating IPs, and one of ports where Neutron's records lack
        ``port_details``."""
        fips = [f for f in self.transport.request("network", "GET", "/floatingips").get(
            "floatingips", []) if f.get("port_id") and f.get("fixed_ip_address")]
        if not fips:
            return {}
        device_of = {f["port_id"]: (f.get("port_details") or {}).get("device_id")
                     for f in fips}
        if not all(device_of.values()):  # Neutron without the fip-port-details extension
            query = {"fields": ["id", "device_id"]}
            if len(server_ids) == 1:
                query["device_id"] = sorted(server_ids)
            ports = self.transport.request("network", "GET", "/ports?" + urlencode(
                query, doseq=True)).get("ports", [])
            device_of = {p["id"]: p.get("device_id") for p in ports}
        return normalize.floating_ips_by_server(fips, device_of, server_ids)

    def create_ssh_access(self, owner: str) -> Created:
        body = self.transport.request("network", "POST", "/security-groups", json={
            "security_group": {"name": f"cloudnorm-{owner}",
                               "description": f"{OWNER_KEY}={owner} ssh access"}})
        group = body["security_group"]
        created = Created("security_group", group["id"], group["name"])
        try:
            # Both rules in one request: Neutron creates a list of rules at once (or none).
            self.transport.request("network", "POST", "/security-group-rules", json={
                "security_group_rules": [{
                    "security_group_id": group["id"], "direction": "ingress",
                    "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
                    "ethertype": ethertype, "remote_ip_prefix": prefix}
                    for ethertype, prefix in (("IPv4", "0.0.0.0/0"), ("IPv6", "::/0"))]})
        except errors.CloudnormError:
            with contextlib.suppress(errors.NotFound):
                self.transport.request("network", "DELETE", f"/security-groups/{group['id']}")
            raise
        return created

    def group_id(self, name_or_id: str) -> str:
        """The id of the security group ``name_or_id`` of this project."""
        if _UUID.fullmatch(name_or_id):
            return name_or_id
        found = self.transport.request("network", "GET", "/security-groups?" + urlencode(
            {"name": name_or_id, "fields": "id"})).get("security_groups", [])
        if not found:
            raise errors.NotFound(f"no security group '{name_or_id}'", cloud=self.cloud)
        if len(found) > 1:
            raise errors.Ambiguous(
                f"{len(found)} security groups are named '{name_or_id}'; use an id",
                candidates=sorted(g["id"] for g in found), cloud=self.cloud)
        return str(found[0]["id"])

    def make_port(self, attach: Network, owner: str, security_groups: Sequence[str]) -> Created:
        request: dict[str, Any] = {"network_id": attach.id, "name": f"cloudnorm-{owner}",
                                   "description": f"{OWNER_KEY}={owner}"}
        if security_groups:
            # Nova leaves the groups of a port it is given alone: the port carries them,
            # and a port takes group ids only.
            request["security_groups"] = [self.group_id(g) for g in security_groups]
        port = self.transport.request("network", "POST", "/ports",
                                      json={"port": request})["port"]
        self.made_ports[port["id"]] = port
        return Created("port", port["id"], port.get("name") or port["id"])

    def _server_port(self, server_id: str, network_id: str) -> dict[str, Any]:
        ports = self.transport.request("network", "GET", "/ports?" + urlencode(
            {"device_id": server_id, "network_id": network_id})).get("ports", [])
        if not ports:
            raise errors.NotReachable(
                f"server {server_id} has no port on network {network_id}: cannot attach a "
                "floating IP", cloud=self.cloud)
        return ports[0]

    def attach_floating_ip(self, server_id: str, attach: Network, pools: list[Network],
                           owner: str, port: Created | None = None
                           ) -> tuple[Created, Address, list[Decision]]:
        # A port made for the server is known already (and may not be bound to it yet).
        made = self.made_ports.pop(port.id, None) if port is not None else None
        interface = made or self._server_port(server_id, attach.id)
        fixed = next((ip["ip_address"] for ip in interface.get("fixed_ips", [])
                      if ":" not in ip["ip_address"]), None)
        notes: list[Decision] = []
        for pool in pools:
            request = {"floating_network_id": pool.id, "port_id": interface["id"],
                       "description": f"{OWNER_KEY}={owner}"}
            if fixed:
                request["fixed_ip_address"] = fixed
            try:
                body = self.transport.request("network", "POST", "/floatingips",
                                              json={"floatingip": request})
            except errors.QuotaExceeded as exc:
                exc.resource = "floating IP"
                raise
            except (errors.ProviderError, errors.NotFound) as exc:
                notes.append(Decision("public_address", f"not {pool.name}",
                                      f"floating IP on '{pool.name}' refused: {exc.message}"))
                continue
            fip = body["floatingip"]
            address = Address(fip["floating_ip_address"], 4, attach.name, True,
                              f"floating IP from '{pool.name}' on port {interface['id'][:8]}",
                              "floating")
            notes.append(Decision("public_address", fip["floating_ip_address"],
                                  f"floating IP from '{pool.name}' attached to the server's"
                                  f" port on '{attach.name}'"))
            return Created("floating_ip", fip["id"], fip["floating_ip_address"]), address, notes
        raise errors.NotReachable(
            f"no external network gave a floating IP for a server on '{attach.name}': "
            + "; ".join(n.reason for n in notes), cloud=self.cloud)

    def forward_ssh_port(self, server_id: str, attach: Network, owner: str
                         ) -> tuple[Created, Address, int, list[Decision]]:
        port = self._server_port(server_id, attach.id)
        fixed = next((ip["ip_address"] for ip in port.get("fixed_ips", [])
                      if ":" not in ip["ip_address"]), None)
        shared = [f for f in self.transport.request("network", "GET", "/floatingips").get(
            "floatingips", []) if not f.get("port_id")
            and OWNER_KEY not in (f.get("description") or "")]
        if not shared or fixed is None:
            raise errors.NotReachable(
                f"cloud '{self.cloud}' reaches servers through port forwarding, but "
                "the project has no unattached floating IP to forward from"
                + ("" if fixed else f" (and the server has no IPv4 address on '{attach.name}')")
                + ": allocate one, or change the profile", cloud=self.cloud)
        fip = shared[0]
        path = f"/floatingips/{fip['id']}/port_forwardings"
        used = {pf.get("external_port") for pf in self.transport.request(
            "network", "GET", path).get("port_forwardings", [])}
        request = {"protocol": "tcp", "internal_port_id": port["id"],
                   "internal_ip_address": fixed, "internal_port": 22,
                   "description": f"{OWNER_KEY}={owner}"}
        # Two creates may pick the same free port at once; Neutron refuses the second.
        for external in (p for p in range(2201, 2300) if p not in used):
            try:
                body = self.transport.request("network", "POST", path, json={
                    "port_forwarding": {**request, "external_port": external}})
            except errors.ProviderError as exc:
                if exc.status in (400, 409) and re.search(r"already exist|duplicate|in use",
                                                          exc.message, re.I):
                    continue
                raise
            forwarding = body["port_forwarding"]
            address = Address(fip["floating_ip_address"], 4, attach.name, True,
                              f"port {external} of the shared floating IP forwards to port 22",
                              "floating")
            note = Decision("public_address", f"{fip['floating_ip_address']}:{external}",
                            f"port forwarding {external} -> 22 on the shared floating IP "
                            f"{fip['floating_ip_address']}")
            return (Created("port_forwarding", f"{fip['id']}/{forwarding['id']}",
                            f"{fip['floating_ip_address']}:{external}"),
                    address, external, [note])
        raise errors.QuotaExceeded(
            f"no free port left on the shared floating IP {fip['floating_ip_address']}",
            resource="port forwarding", cloud=self.cloud)

    # -- cleanup: what carries an owner marker ------------------------------------------------
    def owned_addresses(self, owner: str | None, forwardings: bool) -> list[Created]:
        """Floating IPs, and (``forwardings``) port forwardings on the shared ones, that
        carry ``owner``'s marker (any owner's when None)."""
        def marked(text: str | None) -> str | None:
            return _marked(text, owner)

        fips = self.transport.request("network", "GET", "/floatingips").get("floatingips", [])
        found = [Created("floating_ip", f["id"], f.get("floating_ip_address", ""),
                         marked(f.get("description")) or "",
                         normalize.parse_time(f.get("created_at")))
                 for f in fips if marked(f.get("description"))]
        if forwardings:
            for fip in fips:
                if fip.get("port_id"):
                    continue
                listed = self.transport.request(
                    "network", "GET", f"/floatingips/{fip['id']}/port_forwardings").get(
                    "port_forwardings", [])
                found += [Created("port_forwarding", f"{fip['id']}/{pf['id']}",
                                  f"{fip.get('floating_ip_address')}:{pf['external_port']}",
                                  marked(pf.get("description")) or "")
                          for pf in listed if marked(pf.get("description"))]
        return found

    def owned_ports_and_groups(self, owner: str | None) -> list[Created]:
        """Ports and security groups cloudnorm made for ``owner`` (any owner when None)."""
        def marked(text: str | None) -> str | None:
            return _marked(text, owner)

        request = self.transport.request
        query = "" if owner is None else "?" + urlencode({"name": f"cloudnorm-{owner}"})
        ports = request("network", "GET", "/ports" + (query or "?" + urlencode(
            {"fields": ["id", "name", "description", "created_at"]}, doseq=True))).get(
            "ports", [])
        found = [Created("port", p["id"], p["name"], marked(p.get("description")) or "",
                         normalize.parse_time(p.get("created_at")))
                 for p in ports if (p.get("name") or "").startswith("cloudnorm-")
                 and marked(p.get("description"))]
        groups = request("network", "GET", "/security-groups" + query).get(
            "security_groups", [])
        found += [Created("security_group", g["id"], g["name"],
                          marked(g.get("description")) or "",
                          normalize.parse_time(g.get("created_at")))
                  for g in groups if (g.get("name") or "").startswith("cloudnorm-")
                  and marked(g.get("description"))]
        return found


def _marked(text: str | None, owner: str | None) -> str | None:
    found = normalize.owner_marker(text)
    return found if found and owner in (None, found) else None

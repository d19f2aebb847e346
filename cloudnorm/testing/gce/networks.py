"""Networks, their subnetworks and firewall rules: seeding, lookups, and firewall inserts
and deletes (checked as GCE checks them)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from cloudnorm.testing.gce.common import (
    NAME,
    ApiError,
    invalid,
    last_part,
    new_fingerprint,
    not_found,
    timestamp,
)
from cloudnorm.testing.gce.state import ComputeState


class NetworksMixin(ComputeState):
    """Networks, subnetworks and firewalls of a :class:`.state.ComputeState`."""

    # -- seeding -----------------------------------------------------------------------
    def seed_network(self, project: str, name: str, auto: bool,
                     subnets: dict[str, tuple[str, str]],
                     rules: Callable[[str], list[dict[str, Any]]]) -> None:
        link = self.link(project, "global", "networks", name)
        links = []
        for subnet, (region, cidr) in subnets.items():
            # Auto-mode subnets are all named after the network, one per region.
            subnet_name = name if auto else subnet
            self_link = self.link(project, "regions", region, "subnetworks", subnet_name)
            links.append(self_link)
            network = ipaddress.ip_network(cidr)
            self.subnetworks[project].setdefault(region, {})[subnet_name] = {
                "kind": "compute#subnetwork", "id": self.new_id(), "creationTimestamp": timestamp(),
                "name": subnet_name, "network": link, "ipCidrRange": cidr,
                "gatewayAddress": str(network.network_address + 1),
                "region": self.link(project, "regions", region), "selfLink": self_link,
                "privateIpGoogleAccess": False, "fingerprint": new_fingerprint(),
                "purpose": "PRIVATE", "stackType": "IPV4_ONLY"}
        self.networks[project][name] = {
            "kind": "compute#network", "id": self.new_id(), "creationTimestamp": timestamp(),
            "name": name, "description": "Default network for the project" if auto else "",
            "selfLink": link, "autoCreateSubnetworks": auto, "subnetworks": links,
            "routingConfig": {"routingMode": "REGIONAL"}, "mtu": 1460,
            "networkFirewallPolicyEnforcementOrder": "AFTER_CLASSIC_FIREWALL"}
        for rule in rules(link):
            self.store_firewall(project, dict(rule))

    def store_firewall(self, project: str, rule: dict[str, Any]) -> dict[str, Any]:
        rule.update({"kind": "compute#firewall", "id": self.new_id(),
                     "creationTimestamp": timestamp(),
                     "selfLink": self.link(project, "global", "firewalls", rule["name"]),
                     "disabled": bool(rule.get("disabled", False)),
                     "logConfig": {"enable": False}})
        rule.setdefault("direction", "INGRESS")
        rule.setdefault("priority", 1000)
        self.firewalls[project][rule["name"]] = rule
        return rule

    # -- lookups -----------------------------------------------------------------------
    def network(self, project: str, reference: str) -> dict[str, Any]:
        name = last_part(reference)
        owner = re.search(r"projects/([^/]+)/", reference)
        where = owner.group(1) if owner else project
        self.project(where)
        if name not in self.networks[where]:
            raise not_found(f"projects/{where}/global/networks/{name}")
        return self.networks[where][name]

    # -- firewalls -----------------------------------------------------------------------
    def insert_firewall(self, project: str, body: dict[str, Any],
                        request_id: str | None) -> dict[str, Any]:
        self.project(project)
        if request_id and request_id in self.request_operations:
            return self.request_operations[request_id]
        name = str(body.get("name") or "")
        if not NAME.fullmatch(name):
            raise invalid("resource.name", name, "Must be a match of regex "
                          "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
        if name in self.firewalls[project]:
            raise ApiError(409, "alreadyExists",
                           f"The resource 'projects/{project}/global/firewalls/{name}' "
                           "already exists")
        network = self.network(project, str(body.get("network") or "global/networks/default"))
        allowed, denied = body.get("allowed") or [], body.get("denied") or []
        if bool(allowed) == bool(denied):
            raise invalid("resource", name, "Exactly one of 'allowed' or 'denied' must be "
                          "specified.")
        for entry in [*allowed, *denied]:
            if str(entry.get("IPProtocol", "")).lower() not in (
                    "tcp", "udp", "icmp", "esp", "ah", "sctp", "ipip", "all", "6", "17", "1"):
                raise invalid("resource.allowed[0].IPProtocol", entry.get("IPProtocol"),
                              "Unknown protocol.")
        direction = str(body.get("direction") or "INGRESS")
        if direction not in ("INGRESS", "EGRESS"):
            raise invalid("resource.direction", direction, "Unknown direction.")
        priority = int(body.get("priority", 1000))
        if not 0 <= priority <= 65535:
            raise invalid("resource.priority", priority, "Must be between 0 and 65535.")
        ranges = list(body.get("sourceRanges") or [])
        for cidr in ranges:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise invalid("resource.sourceRanges[0]", cidr, "Invalid IP range.") from None
        if direction == "INGRESS" and not (ranges or body.get("sourceTags")
                                           or body.get("sourceServiceAccounts")):
            ranges = ["0.0.0.0/0"]  # GCE's default source for an ingress rule
        for tag in body.get("targetTags") or []:
            if not NAME.fullmatch(tag):
                raise invalid("resource.targetTags[0]", tag, "Invalid network tag.")
        rule: dict[str, Any] = {key: body[key] for key in (
            "description", "sourceTags", "targetTags", "sourceServiceAccounts",
            "targetServiceAccounts", "destinationRanges", "disabled") if key in body}
        rule.update({"name": name, "network": network["selfLink"], "priority": priority,
                     "direction": direction, "sourceRanges": ranges,
                     "allowed" if allowed else "denied": allowed or denied})
        link = self.link(project, "global", "firewalls", name)
        operation = self.new_operation(project, "global", "insert", link, self.new_id(), request_id)

        def apply() -> None:
            if name in self.firewalls[project]:
                self.finish(operation, ApiError(409, "alreadyExists",
                                                f"The resource '{link}' already exists"))
                return
            stored = self.store_firewall(project, rule)
            operation["targetId"] = stored["id"]
            self.finish(operation)
        self.schedule(self.firewall_seconds, apply)
        return operation

    def delete_firewall(self, project: str, name: str) -> dict[str, Any]:
        self.project(project)
        rule = self.firewalls[project].get(name)
        if rule is None:
            raise not_found(f"projects/{project}/global/firewalls/{name}")
        operation = self.new_operation(project, "global", "delete", rule["selfLink"], rule["id"],
                                       None)

        def apply() -> None:
            self.firewalls[project].pop(name, None)
            self.finish(operation)
        self.schedule(self.firewall_seconds, apply)
        return operation

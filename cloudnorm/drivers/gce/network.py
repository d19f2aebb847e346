"""GCE's networks and firewall rules: which network a server goes to, whether SSH reaches
it, and the rule cloudnorm adds where nothing lets SSH in.

*SSH access*: a firewall rule ``cloudnorm-<owner>`` lets TCP 22 in from anywhere to
instances with the network tag of the same name -- unless a rule of the network already
lets it in to every instance (``default-allow-ssh`` on the ``default`` network), which
the returned resource's description names. Firewall rules take no labels: they carry
``cloudnorm:owner=<owner>`` in their description.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import uuid
from typing import Any

import attrs

from cloudnorm import errors, networks
from cloudnorm.drivers.base import Created
from cloudnorm.drivers.gce.normalize import NAME_PREFIX, firewall_record, last, parse_time
from cloudnorm.drivers.gce.transport import Transport
from cloudnorm.models import OWNER_KEY
from cloudnorm.settings import CloudSettings

_ANYWHERE = "0.0.0.0/0"
_OWNER_MARKER = re.compile(re.escape(OWNER_KEY) + r"=([0-9a-z]+)")


# -- firewall rules ---------------------------------------------------------------------------
def _ports_include(ports: list[Any] | None, port: int) -> bool:
    if not ports:
        return True  # no ports: every port of the protocol
    for entry in ports:
        low, _, high = str(entry).partition("-")
        try:
            if int(low) <= port <= int(high or low):
                return True
        except ValueError:
            continue
    return False


def _matches_tcp(entries: list[dict[str, Any]] | None, port: int) -> bool:
    return any(str(e.get("IPProtocol", "")).lower() in ("tcp", "6", "all")
               and _ports_include(e.get("ports"), port) for e in entries or ())


def _applies_to(rule: dict[str, Any], tags: set[str] | frozenset[str]) -> bool:
    targets = rule.get("targetTags") or []
    if rule.get("targetServiceAccounts"):
        return False  # cloudnorm's instances run without a service account
    return not targets or bool(tags & set(targets))


def ssh_verdict(rules: list[dict[str, Any]], network: str,
                tags: set[str] | frozenset[str] = frozenset(), port: int = 22
                ) -> tuple[bool, dict[str, Any] | None, str]:
    """Whether ``network``'s firewall lets TCP ``port`` in from anywhere to an instance
    with ``tags``: (allowed, the deciding rule or None, why).

    GCE evaluates the enabled ingress rules that apply to the instance by priority (lower
    first, a deny before an allow of the same priority); when none matches, the implied
    rule denies. A rule counts as "from anywhere" only with source range 0.0.0.0/0.
    """
    matching = []
    for rule in rules:
        if last(rule.get("network")) != network or rule.get("disabled"):
            continue
        if str(rule.get("direction") or "INGRESS") != "INGRESS":
            continue
        if _ANYWHERE not in (rule.get("sourceRanges") or []) or not _applies_to(rule, tags):
            continue
        if _matches_tcp(rule.get("denied"), port):
            matching.append((int(rule.get("priority", 1000)), 0, rule))
        elif _matches_tcp(rule.get("allowed"), port):
            matching.append((int(rule.get("priority", 1000)), 1, rule))
    if not matching:
        return False, None, (f"no firewall rule of network '{network}' lets TCP {port} in from "
                             "anywhere (the implied rule denies all ingress)")
    priority, kind, rule = min(matching, key=lambda m: (m[0], m[1]))
    target = ("to every instance" if not rule.get("targetTags")
              else f"to tag(s) {', '.join(rule['targetTags'])}")
    if kind == 0:
        return False, rule, (f"rule '{rule['name']}' (priority {priority}) of network "
                             f"'{network}' denies TCP {port} from anywhere {target}")
    return True, rule, (f"rule '{rule['name']}' (priority {priority}) of network '{network}' "
                        f"lets TCP {port} in from anywhere {target}")


# -- discovery --------------------------------------------------------------------------------
def discover(nets: list[dict[str, Any]], subnets: list[dict[str, Any]],
             rules: list[dict[str, Any]], *, settings: CloudSettings, project: str,
             region: str) -> tuple[list[networks.NetworkFacts], networks.NetworkHints]:
    """The project's networks (checked Networks, Subnetworks of ``region`` and Firewalls
    records) as facts, and what GCE itself says of them as hints: every network with a
    range routes externally (each instance gets an access config), and which network is
    the default one."""
    options = settings.options
    source = settings.source or "clouds.yaml"
    by_network: dict[str, list[dict[str, Any]]] = {}
    for subnet in subnets:
        by_network.setdefault(last(subnet.get("network")), []).append(subnet)
    facts: list[networks.NetworkFacts] = []
    routes: dict[str, bool] = {}
    origins: dict[str, str] = {}
    statements: dict[str, str] = {}
    for net in sorted(nets, key=lambda n: n["name"]):
        name = net["name"]
        mine = sorted(by_network.get(name, []), key=lambda s: s["name"])
        cidrs = [networks.Subnet(id=s["name"], network_id=name, cidr=s["ipCidrRange"],
                                 ip_version=4) for s in mine if s.get("ipCidrRange")]
        cidrs += [networks.Subnet(id=f"{s['name']}-v6", network_id=name,
                                  cidr=s["externalIpv6Prefix"], ip_version=6)
                  for s in mine if s.get("externalIpv6Prefix")]
        if net.get("IPv4Range"):  # a legacy network: one range, no subnets
            mode = "legacy"
            cidrs.append(networks.Subnet(id=name, network_id=name, cidr=net["IPv4Range"],
                                         ip_version=4))
        else:
            mode = "auto" if net.get("autoCreateSubnetworks") else "custom"
        allowed, rule, why = ssh_verdict(rules, name)
        subnet_link = None
        if mode == "custom" and mine:
            wanted = options.get("subnet")
            pick = next((s for s in mine if s["name"] == wanted), None) if wanted else None
            if wanted and pick is None and options.get("network") == name:
                raise errors.ConfigError(
                    f"cloud '{settings.name}' ({source}) names subnet '{wanted}', but "
                    f"network '{name}' has none such in {region}; its subnets there: "
                    + ", ".join(s["name"] for s in mine), cloud=settings.name)
            pick = pick or mine[0]
            subnet_link = f"projects/{project}/regions/{region}/subnetworks/{pick['name']}"
        raw = {**net, "cloudnorm:mode": mode, "cloudnorm:subnetwork": subnet_link,
               "cloudnorm:ssh_allowed": allowed, "cloudnorm:ssh": why,
               "cloudnorm:ssh_rule": (rule or {}).get("name")}
        facts.append(networks.NetworkFacts(id=name, name=name, subnets=tuple(cidrs), raw=raw))
        if cidrs:
            routes[name] = True
            ssh = why if allowed else f"{why}: cloudnorm adds a rule for its own instances"
            statements[f"routes_externally:{name}"] = (
                "every instance gets an external IPv4 from an ONE_TO_ONE_NAT access "
                f"config; {ssh}")
    usable = [f for f in facts if f.subnets]
    default: str | None = None
    wanted = options.get("network")
    if wanted:
        if not any(f.name == wanted for f in facts):
            raise errors.ConfigError(
                f"cloud '{settings.name}' ({source}) names network '{wanted}', but "
                f"project {project} has none such; networks: "
                + (", ".join(f.name for f in facts) or "none"), cloud=settings.name)
        default = wanted
        origins["default_interface"] = f"{source} (cloudnorm: network:)"
    elif any(f.name == "default" for f in usable):
        default = "default"
        statements["default_interface"] = "the project's 'default' network"
    elif len(usable) == 1:
        default = usable[0].name
        statements["default_interface"] = f"the only network with a subnet in {region}"
    hints = networks.NetworkHints(routes_externally=routes, default_interface=default,
                                  source="GCE", origins=origins, statements=statements)
    return facts, hints


# -- cloudnorm's SSH rules --------------------------------------------------------------------
@attrs.frozen
class SshAccess:
    """What :meth:`SshRules.ensure` did for one owner."""

    network: str | None
    created: bool
    tag: str | None = None


class SshRules:
    """The firewall rules of one project, and the SSH access cloudnorm arranged there for
    each owner (remembered until the rule is deleted)."""

    def __init__(self, transport: Transport, cloud: str) -> None:
        self._transport = transport
        self._cloud = cloud
        self._lock = threading.Lock()
        self._access: dict[str, SshAccess] = {}

    def rules(self) -> list[dict[str, Any]]:
        """The project's firewall rules, checked."""
        return [firewall_record(r) for r in self._transport.list_records(
            "firewalls", "listing firewall rules", project=self._transport.project)]

    def defer(self, owner: str) -> Created:
        """Several networks and none named: the rule is made once boot knows the network."""
        name = f"{NAME_PREFIX}{owner}"
        with self._lock:
            self._access[owner] = SshAccess(None, False)
        return Created("firewall", name, f"firewall rule {name}, made at boot on the "
                       "network the server goes to")

    def ensure(self, owner: str, network: str) -> Created:
        """A rule letting TCP 22 in to ``owner``'s tag on ``network``, unless a rule there
        already lets it in."""
        name = tag = f"{NAME_PREFIX}{owner}"
        project = self._transport.project
        rules = self.rules()
        allowed, rule, why = ssh_verdict(rules, network)
        if allowed:
            with self._lock:
                self._access[owner] = SshAccess(network, False)
            return Created("firewall", name, f"no rule of cloudnorm's needed: {why}")
        # The new rule must win over any deny rule that would block it for the tag.
        denies = [int(r.get("priority", 1000)) for r in rules
                  if last(r.get("network")) == network and not r.get("disabled")
                  and str(r.get("direction") or "INGRESS") == "INGRESS"
                  and _ANYWHERE in (r.get("sourceRanges") or [])
                  and _applies_to(r, {tag}) and _matches_tcp(r.get("denied"), 22)]
        priority = min([1000, *(p - 1 for p in denies)])
        if priority < 0:
            raise errors.NotReachable(
                f"{why}, at the highest priority there is: no rule cloudnorm adds could let "
                "SSH in. Change that rule, or use another network (network=...)",
                cloud=self._cloud)
        body = {"name": name, "network": f"projects/{project}/global/networks/{network}",
                "description": f"{OWNER_KEY}={owner} ssh access",
                "direction": "INGRESS", "priority": priority,
                "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}],
                "sourceRanges": [_ANYWHERE], "targetTags": [tag]}
        from google.cloud import compute_v1

        operation = self._transport.call(
            "firewalls", "insert_unary", f"creating firewall rule {name}",
            project=project, firewall_resource=compute_v1.Firewall.from_json(json.dumps(body)),
            request_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"cloudnorm/{project}/{name}/"
                                      f"{network}")))
        created = Created("firewall", name,
                          f"firewall rule {name} on network '{network}' lets TCP 22 in from "
                          f"anywhere to tag {tag} (priority {priority}); {why}")
        try:
            self._transport.wait(operation, f"creating firewall rule {name}")
        except BaseException:
            self.delete_rule(name)
            raise
        with self._lock:
            self._access[owner] = SshAccess(network, True, tag)
        return created

    def for_network(self, owner: str, network: str | None) -> SshAccess:
        """The SSH access of ``owner``, moved to ``network`` if it was made for another."""
        with self._lock:
            access = self._access.get(owner)
        if access is None or network is None or access.network == network:
            return access or SshAccess(None, False)
        if access.created:
            self.delete_rule(f"{NAME_PREFIX}{owner}")
        self.ensure(owner, network)
        with self._lock:
            return self._access[owner]

    def release(self, name: str) -> None:
        """Delete the rule ``name`` (a :meth:`ensure` result's id), unless an existing rule
        let SSH in and there is nothing of cloudnorm's."""
        owner = name.removeprefix(NAME_PREFIX)
        with self._lock:
            access = self._access.pop(owner, None)
        if access is not None and not access.created:
            return
        self.delete_rule(name)

    def delete_rule(self, name: str) -> None:
        """Delete a firewall rule and wait for it; one already gone is no error."""
        with contextlib.suppress(errors.NotFound):
            operation = self._transport.call(
                "firewalls", "delete_unary", f"deleting firewall rule {name}",
                project=self._transport.project, firewall=name, request_id=str(uuid.uuid4()))
            self._transport.wait(operation, f"deleting firewall rule {name}")

    def owned(self, owner: str | None) -> list[Created]:
        """The rules whose description carries ``owner``'s marker (any owner's: None)."""
        def marked(text: str | None) -> str | None:
            found = _OWNER_MARKER.search(text or "")
            return found.group(1) if found and owner in (None, found.group(1)) else None

        return [Created("firewall", r["name"], r.get("description", ""),
                        marked(r.get("description")) or "",
                        parse_time(r.get("creationTimestamp")))
                for r in self.rules() if marked(r.get("description"))]

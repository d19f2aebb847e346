"""Keep the SSH data plane in step with what the local OpenStack says.

The local cloud boots no machines, so this watcher plays the part of the
hypervisor and the network: for every ACTIVE server it keeps a node (a real
sshd with the image's user and the injected key) listening on exactly the
addresses a real cloud of this shape would make reachable -- floating IPs
attached to the server's ports, fixed IPs on globally routed subnets, never a
private address -- and only while a security group rule lets TCP 22 in (or
port security is off). It writes each node's console, with cloud-init's host
key blocks, where Nova's console API reads it.

It talks to the services as the sandbox admin, so its requests are logged
under the admin project and never count against a test's project.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)

_NON_GLOBAL = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "198.18.0.0/15", "fc00::/7", "fe80::/10"))


def _routed(cidr: str) -> bool:
    """A subnet the (simulated) internet routes to: what a real provider network would be."""
    net = ipaddress.ip_network(cidr, strict=False)
    return not any(net.version == n.version and net.subnet_of(n)  # type: ignore[arg-type]
                   for n in _NON_GLOBAL)


def _opens_ssh(rule: dict[str, Any]) -> bool:
    if rule.get("direction") != "ingress":
        return False
    if rule.get("protocol") not in (None, "tcp", "6"):
        return False
    low, high = rule.get("port_range_min"), rule.get("port_range_max")
    if low is not None and not (low <= 22 <= (high or low)):
        return False
    # A rule from a remote group admits only members of that group, not the outside.
    return not rule.get("remote_group_id") and rule.get("remote_ip_prefix") in (
        None, "0.0.0.0/0", "::/0")


class DataPlaneSync:
    """A background thread reconciling ``fleet`` with the cloud every ``interval`` s."""

    def __init__(self, session: Any, region: str, fleet: Any, console_dir: Path,
                 login_user: Callable[[dict[str, Any]], str], interval: float = 0.3) -> None:
        self._session = session
        self._region = region
        self._fleet = fleet
        self._console_dir = console_dir
        self._login_user = login_user
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._keys: dict[str, str] = {}  # server id -> public key injected at boot
        self._users: dict[str, str] = {}  # server id -> the image's login user
        self._known: set[str] = set()
        self.errors: list[str] = []
        self.rounds = 0

    def _get(self, service: str, path: str, **kwargs: Any) -> Any:
        resp = self._session.get(path, endpoint_filter={
            "service_type": service, "interface": "public", "region_name": self._region},
            raise_exc=False, timeout=10, **kwargs)
        if resp.status_code >= 400:
            raise RuntimeError(f"{service} GET {path}: {resp.status_code} {resp.text[:200]}")
        return resp.json()

    def start(self) -> DataPlaneSync:
        self._console_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="dataplane-sync", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
            except Exception as exc:  # keep watching: a passing error must not kill the plane
                LOG.warning("data plane sync failed: %s", exc)
                self.errors.append(str(exc))
                del self.errors[:-20]
            self._stop.wait(self._interval)

    def sync_once(self) -> None:
        servers = self._get("compute", "/servers/detail?all_tenants=1",
                            headers={"OpenStack-API-Version": "compute 2.79"})["servers"]
        active = {s["id"]: s for s in servers if s.get("status") == "ACTIVE"}
        for gone in self._known - set(active):
            self._fleet.remove(gone)
            (self._console_dir / f"{gone}.log").unlink(missing_ok=True)
        self._known &= set(active)
        if not active:
            self.rounds += 1
            return
        ports = self._get("network", "/v2.0/ports")["ports"]
        fips = self._get("network", "/v2.0/floatingips")["floatingips"]
        subnets = {s["id"]: s for s in self._get("network", "/v2.0/subnets")["subnets"]}
        groups = {g["id"]: g for g in self._get("network", "/v2.0/security-groups")[
            "security_groups"]}
        forwardings = self._port_forwardings(fips)
        for sid, server in active.items():
            mine = [p for p in ports if p.get("device_id") == sid]
            if sid not in self._keys and not self._learn(sid, server):
                continue
            addresses, port_number = self._reachable(mine, fips, subnets, forwardings)
            allow = any(not p.get("port_security_enabled", True)
                        or any(_opens_ssh(r) for g in p.get("security_groups", [])
                               for r in groups.get(g, {}).get("security_group_rules", []))
                        for p in mine)
            self._fleet.ensure(sid, addresses, user=self._users[sid],
                               authorized_key=self._keys[sid], port=port_number,
                               allow_ssh=allow and bool(addresses))
            self._known.add(sid)
            console = self._console_dir / f"{sid}.log"
            text = self._fleet.console_text(sid)
            if text and (not console.exists() or console.read_text() != text):
                tmp = console.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.replace(console)
        self.rounds += 1

    def _learn(self, sid: str, server: dict[str, Any]) -> bool:
        """Fetch, once, what the server was booted with: its key and its image's user."""
        key_name = server.get("key_name")
        if not key_name:
            return False
        try:
            keypair = self._get("compute", f"/os-keypairs/{key_name}?user_id={server['user_id']}",
                                headers={"OpenStack-API-Version": "compute 2.10"})["keypair"]
        except RuntimeError as exc:
            LOG.warning("server %s: key pair %s unreadable: %s", sid, key_name, exc)
            return False
        image = self._get("image", f"/v2/images/{server['image']['id']}")
        self._keys[sid] = keypair["public_key"].strip()
        self._users[sid] = self._login_user(image)
        return True

    def _port_forwardings(self, fips: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for fip in fips:
            if fip.get("port_forwardings"):
                found[fip["id"]] = [dict(pf, floating_ip_address=fip["floating_ip_address"])
                                    for pf in fip["port_forwardings"]]
        return found

    def _reachable(self, ports: list[dict[str, Any]], fips: list[dict[str, Any]],
                   subnets: dict[str, dict[str, Any]],
                   forwardings: dict[str, list[dict[str, Any]]]) -> tuple[list[str], int]:
        port_ids = {p["id"] for p in ports}
        addresses = [f["floating_ip_address"] for f in fips
                     if f.get("port_id") in port_ids and f.get("floating_ip_address")]
        for port in ports:
            for fixed in port.get("fixed_ips", []):
                subnet = subnets.get(fixed.get("subnet_id"), {})
                if subnet and _routed(subnet["cidr"]):
                    addresses.append(fixed["ip_address"])
        for entries in forwardings.values():
            for pf in entries:
                if pf.get("internal_port_id") in port_ids and pf.get("internal_port") == 22:
                    return [pf["floating_ip_address"]], int(pf["external_port"])
        return sorted(set(addresses)), 22


# The user each sandbox image's cloud-init creates. Deliberately not cloudnorm's own
# distribution table: the sandbox plays the image, and must not agree with the code
# under test by construction.
_IMAGE_USERS = (("ubuntu", "ubuntu"), ("jammy", "ubuntu"), ("noble", "ubuntu"),
                ("focal", "ubuntu"), ("debian", "debian"), ("bookworm", "debian"),
                ("centos", "centos"), ("fedora", "fedora"), ("rocky", "rocky"))


def image_login_user(image: dict[str, Any]) -> str:
    """The login user of a sandbox image, from its distribution property or its name."""
    text = " ".join(str(image.get(k) or "") for k in (
        "os_distro", "org.openstack__1__os_distro", "name")).lower()
    for word, user in _IMAGE_USERS:
        if word in text:
            return user
    return "cloud-user"

"""Keep the SSH data plane in step with what the local OpenStack says.

The local cloud boots no machines, so this watcher plays the part of the
hypervisor and the network: for every ACTIVE server it keeps a node (a real
sshd with the image's user and the injected key) listening on exactly the
addresses a real cloud of this shape would make reachable -- floating IPs
attached to the server's ports, fixed IPs on globally routed subnets, and private
fixed IPs only on the networks a client sits inside (``Fleet.inside``) -- and
only while a security group rule lets TCP 22 in (or
port security is off). A server reached through floating IP port forwarding
answers on the floating IP, on the external port that maps to its port 22.
It writes each node's console, with cloud-init's host key blocks, where Nova's
console API reads it.

On a cloud without a metadata service (``without_metadata``: those projects'
ids) the key reaches a server only on a config drive: a server booted without
one comes up with no key its owner holds, and every login is refused.

It talks to the services as the sandbox admin, so its requests are logged
under the admin project and never count against a test's project.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from cloudnorm.testing.dataplane.watch import Watcher, write_console_file

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


class DataPlaneSync(Watcher):
    name = "dataplane-sync"

    """A background thread reconciling ``fleet`` with the cloud every ``interval`` s."""

    def __init__(self, session: Any, region: str, fleet: Any, console_dir: Path,
                 login_user: Callable[[dict[str, Any]], str], interval: float = 0.3,
                 without_metadata: Collection[str] = ()) -> None:
        self._session = session
        self._region = region
        self._console_dir = console_dir
        self._login_user = login_user
        super().__init__(interval, fleet)
        self._without_metadata = frozenset(without_metadata)
        self._orphan_key: str | None = None
        self._keys: dict[str, str] = {}  # server id -> public key injected at boot
        self._users: dict[str, str] = {}  # server id -> the image's login user
        self._user_data: dict[str, bytes | None] = {}  # server id -> what cloud-init reads

    def _get(self, service: str, path: str, **kwargs: Any) -> Any:
        resp = self._session.get(path, endpoint_filter={
            "service_type": service, "interface": "public", "region_name": self._region},
            raise_exc=False, timeout=10, **kwargs)
        if resp.status_code >= 400:
            raise RuntimeError(f"{service} GET {path}: {resp.status_code} {resp.text[:200]}")
        return resp.json()

    def start(self) -> DataPlaneSync:
        self._console_dir.mkdir(parents=True, exist_ok=True)
        super().start()
        return self

    def sync_once(self) -> None:
        servers = self._get("compute", "/servers/detail?all_tenants=1",
                            headers={"OpenStack-API-Version": "compute 2.79"})["servers"]
        active = {s["id"]: s for s in servers if s.get("status") == "ACTIVE"}
        self.retire(active)
        if not active:
            self.rounds += 1
            return
        ports = self._get("network", "/v2.0/ports")["ports"]
        fips = self._get("network", "/v2.0/floatingips")["floatingips"]
        subnets = {s["id"]: s for s in self._get("network", "/v2.0/subnets")["subnets"]}
        groups = {g["id"]: g for g in self._get("network", "/v2.0/security-groups")[
            "security_groups"]}
        forwardings = self._port_forwardings(fips)
        inside = self._inside_network_ids()
        reachable: dict[str, tuple[list[dict[str, Any]], list[str], int]] = {}
        for sid, server in active.items():
            mine = [p for p in ports if p.get("device_id") == sid]
            if sid not in self._keys and not self._learn(sid, server):
                continue
            reachable[sid] = (mine, *self._reachable(mine, fips, subnets, forwardings,
                                                     inside))
        self._share_forwarded_addresses(reachable)

        def bring_up(sid: str) -> None:
            mine, addresses, port_number = reachable[sid]
            allow = any(not p.get("port_security_enabled", True)
                        or any(_opens_ssh(r) for g in p.get("security_groups", [])
                               for r in groups.get(g, {}).get("security_group_rules", []))
                        for p in mine)
            self.fleet.ensure(sid, addresses, user=self._users[sid],
                               authorized_key=self._keys[sid], port=port_number,
                               allow_ssh=allow and bool(addresses),
                               userdata=self._user_data.get(sid))
            self.known.add(sid)
            self.show_console(sid, lambda: self.fleet.console_text(sid))

        self.each(reachable, bring_up)
        self.rounds += 1

    def write_console(self, node_id: str, text: str | None) -> None:
        write_console_file(self._console_dir, node_id, text)

    def _learn(self, sid: str, server: dict[str, Any]) -> bool:
        """Fetch, once, what the server was booted with: its key and its image's user."""
        if server.get("tenant_id") in self._without_metadata and not _has_config_drive(server):
            # Nothing could carry the key (or the user data) into the server: it boots,
            # and refuses logins.
            key = self._key_nobody_holds()
        else:
            # Nova shows user_data to an admin from microversion 2.3 on, base64-encoded.
            encoded = server.get("OS-EXT-SRV-ATTR:user_data")
            self._user_data[sid] = base64.b64decode(encoded) if encoded else None
            key_name = server.get("key_name")
            if not key_name:
                return False
            try:
                keypair = self._get(
                    "compute", f"/os-keypairs/{key_name}?user_id={server['user_id']}",
                    headers={"OpenStack-API-Version": "compute 2.10"})["keypair"]
            except RuntimeError as exc:
                LOG.warning("server %s: key pair %s unreadable: %s", sid, key_name, exc)
                return False
            key = keypair["public_key"].strip()
        try:
            image = self._get("image", f"/v2/images/{self._image_id(server)}")
        except RuntimeError as exc:
            LOG.warning("server %s: image unknown: %s", sid, exc)
            return False
        self._keys[sid] = key
        self._users[sid] = self._login_user(image)
        return True

    def _image_id(self, server: dict[str, Any]) -> str:
        """The image the server runs. Nova leaves ``image`` empty for a server booted from
        a volume; Cinder knows which image it made the volume from."""
        if server.get("image"):
            return str(server["image"]["id"])
        for attached in server.get("os-extended-volumes:volumes_attached") or ():
            volume = self._get("block-storage", f"/volumes/{attached['id']}")["volume"]
            image_id = (volume.get("volume_image_metadata") or {}).get("image_id")
            if image_id:
                return str(image_id)
        raise RuntimeError("booted from no image and from no volume made from one")

    def _key_nobody_holds(self) -> str:
        """A public key whose private half was thrown away as soon as it was made.

        The node needs some key for its user; this one can never be used to log in.
        """
        if self._orphan_key is None:
            scratch = Path(tempfile.mkdtemp(prefix="orphan-key-"))
            try:
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                                "no-metadata-service", "-f", str(scratch / "key")],
                               check=True, capture_output=True, timeout=30)
                self._orphan_key = (scratch / "key.pub").read_text().strip()
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return self._orphan_key

    def _port_forwardings(self, fips: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for fip in fips:
            if fip.get("port_id"):
                # Neutron refuses forwardings on a floating IP associated with a port
                # (FloatingIPPortAlreadyAssociated) and the association of one that has
                # some (FipInUseByPortForwarding; services/portforwarding/pf_plugin.py):
                # nothing to ask of this one. Asking anyway cost a request per server a round.
                continue
            entries = fip.get("port_forwardings")
            # The floating IP shows its forwardings only with the expose-port-forwarding-in-fip
            # extension, and then without port ranges: ask the forwardings themselves then.
            if entries is None or any(pf.get("internal_port") is None or
                                      pf.get("external_port") is None for pf in entries):
                entries = self._get(
                    "network", f"/v2.0/floatingips/{fip['id']}/port_forwardings")[
                        "port_forwardings"]
            if entries:
                found[fip["id"]] = [dict(pf, floating_ip_address=fip["floating_ip_address"])
                                    for pf in entries]
        return found

    def _share_forwarded_addresses(
            self, reachable: dict[str, tuple[list[dict[str, Any]], list[str], int]]) -> None:
        """Leave a floating IP forwarded to several servers to one of them, and say so.

        A node answers on whole addresses, so two nodes cannot share one, each on a port
        of its own; handing the address back and forth would break both. The server with
        the lowest external port (then id) keeps it, every round the same.
        """
        by_address: dict[str, list[tuple[int, str]]] = {}
        for sid, (_, addresses, port_number) in reachable.items():
            if port_number != 22:
                for address in addresses:
                    by_address.setdefault(address, []).append((port_number, sid))
        for address, claims in by_address.items():
            if len(claims) < 2:
                continue
            claims.sort()
            message = (f"floating IP {address} is forwarded to servers "
                       f"{', '.join(f'{sid} (port {port})' for port, sid in claims)}; the "
                       f"data plane gives an address to one node only: {claims[0][1]} answers")
            if message not in self.errors:
                self.record_error(message)
            for _, sid in claims[1:]:
                mine, addresses, port_number = reachable[sid]
                reachable[sid] = (mine, [a for a in addresses if a != address], port_number)

    def _inside_network_ids(self) -> set[str]:
        """The networks (named by name or id in ``Fleet.inside``) whose private addresses
        a client of this data plane reaches, as from a machine inside the cloud."""
        wanted = set(self.fleet.inside)
        if not wanted:
            return set()
        nets = self._get("network", "/v2.0/networks")["networks"]
        return {n["id"] for n in nets if {n["id"], n.get("name"), "*"} & wanted}

    def _reachable(self, ports: list[dict[str, Any]], fips: list[dict[str, Any]],
                   subnets: dict[str, dict[str, Any]],
                   forwardings: dict[str, list[dict[str, Any]]],
                   inside: set[str]) -> tuple[list[str], int]:
        port_ids = {p["id"] for p in ports}
        addresses = [f["floating_ip_address"] for f in fips
                     if f.get("port_id") in port_ids and f.get("floating_ip_address")]
        for port in ports:
            for fixed in port.get("fixed_ips", []):
                subnet = subnets.get(fixed.get("subnet_id"), {})
                if subnet and (_routed(subnet["cidr"]) or port.get("network_id") in inside):
                    addresses.append(fixed["ip_address"])
        for entries in forwardings.values():
            for pf in entries:
                external = _external_ssh_port(pf)
                if pf.get("internal_port_id") in port_ids and external is not None:
                    return [pf["floating_ip_address"]], external
        return sorted(set(addresses)), 22


def _has_config_drive(server: dict[str, Any]) -> bool:
    # Nova reports the boot request's flag as a string: "True" (or "" when not asked for).
    return str(server.get("config_drive") or "").lower() in ("true", "1", "yes")


def _external_ssh_port(pf: dict[str, Any]) -> int | None:
    """The external port a forwarding maps to TCP port 22, if it maps one."""
    if pf.get("protocol", "tcp") != "tcp":
        return None
    if pf.get("internal_port") is not None and pf.get("external_port") is not None:
        return int(pf["external_port"]) if int(pf["internal_port"]) == 22 else None

    def bounds(value: Any) -> tuple[int, int] | None:
        if value is None:
            return None
        low, _, high = str(value).partition(":")
        return int(low), int(high or low)

    internal = bounds(pf.get("internal_port_range") or pf.get("internal_port"))
    external = bounds(pf.get("external_port_range") or pf.get("external_port"))
    if internal is None or external is None or not internal[0] <= 22 <= internal[1]:
        return None
    # Ranges of one length map port by port; many external ports to one internal port
    # map them all to 22, and the first is as good as any.
    if internal[1] - internal[0] == external[1] - external[0]:
        return external[0] + 22 - internal[0]
    return external[0]


# The user each sandbox image's cloud-init creates. Deliberately not cloudnorm's own
# distribution table: the sandbox plays the image, and must not agree with the code
# under test by construction. CentOS Stream 9's GenericCloud image creates cloud-user
# (its cloud.cfg since 2022; kubevirt/containerdisks logs in to it as cloud-user),
# CentOS 7's creates centos: first match wins, so "stream 9" comes before "centos".
_IMAGE_USERS = (("ubuntu", "ubuntu"), ("jammy", "ubuntu"), ("noble", "ubuntu"),
                ("focal", "ubuntu"), ("debian", "debian"), ("bookworm", "debian"),
                ("stream 9", "cloud-user"), ("centos", "centos"), ("fedora", "fedora"),
                ("rocky", "rocky"))


def image_login_user(image: dict[str, Any]) -> str:
    """The login user of a sandbox image, from its distribution property or its name."""
    text = " ".join(str(image.get(k) or "") for k in (
        "os_distro", "org.openstack__1__os_distro", "name")).lower()
    for word, user in _IMAGE_USERS:
        if word in text:
            return user
    return "cloud-user"


class DataPlane:
    """The SSH data plane of a running local OpenStack: a fleet of nodes and the
    watcher that keeps it in step. Needs root and a private network namespace."""

    def __init__(self, sandbox: Any, workdir: Path) -> None:
        from keystoneauth1 import session as ks_session
        from keystoneauth1.identity import v3

        from cloudnorm.testing.dataplane import Fleet, require_private_netns

        require_private_netns()
        self._session = ks_session.Session(auth=v3.Password(**sandbox.admin_auth))
        self.fleet = Fleet(workdir)
        # A sandbox.json written before profiles said whether they have a metadata service
        # describes clouds that all had one.
        without_metadata = [project for project, name in sandbox.project_profiles().items()
                            if not sandbox.profile(name).get("metadata_service", True)]
        self.sync = DataPlaneSync(self._session, sandbox.region, self.fleet,
                                  sandbox.console_dir, image_login_user,
                                  without_metadata=without_metadata)

    def start(self) -> DataPlane:
        self.sync.start()
        return self

    def stop(self) -> None:
        self.sync.stop()
        self.fleet.close()
        self._session.session.close()

    def __enter__(self) -> DataPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Keep the SSH data plane in step with what the local Compute Engine says.

The local Compute Engine boots no machines, so this watcher plays the part of the
hypervisor, of the guest environment and of the VPC firewall: for every RUNNING instance
it keeps a node (a real sshd) whose user and key are the first valid entry of the
instance's ``ssh-keys`` metadata -- what Google's guest agent creates -- answering on
exactly what GCE makes reachable from the internet: the external IPv4 of the instance's
``ONE_TO_ONE_NAT`` access config, and its internal address only for a client inside its
network (``Fleet.inside``), with sshd running only while
the network's firewall lets TCP 22 in from 0.0.0.0/0 to the instance. It writes each
node's console where the serial port output is read: with cloud-init's host key blocks for
images whose keys reach the console, or a guest agent's lines and no keys for images whose
guest agent publishes them in guest attributes (``catalog.HOST_KEY_CHANNELS``) -- which it
then does, as Google's guest agent does at first boot: one ``hostkeys/<type>`` attribute per
host key, the base64 blob as value, before sshd answers; refused (and nothing stored) where
the instance's metadata does not turn guest attributes on.

It reads the cloud over compute v1 REST like any client, with plain HTTP requests marked
``X-Cloudnorm-Agent: dataplane``: the endpoint logs them apart, so a test's request counts
are its own. Its firewall evaluation is written here on purpose, apart from the driver's:
the data plane plays GCE and must not agree with the code under test by construction.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cloudnorm.testing.dataplane.watch import Watcher, write_console_file
from cloudnorm.testing.gce import catalog

LOG = logging.getLogger(__name__)
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_PROJECT = re.compile(r"(?:^|/)projects/([^/]+)/")


def login_from_metadata(instance: dict[str, Any]) -> tuple[str, str] | None:
    """(user, "TYPE BLOB") of the first usable ``ssh-keys`` line, as the guest agent
    reads it: ``user:TYPE BLOB [comment]``; ``google-ssh`` keys past their ``expireOn``
    are skipped."""
    items = (instance.get("metadata") or {}).get("items") or []
    value = next((i.get("value", "") for i in items if i.get("key") == "ssh-keys"), "")
    for line in str(value).splitlines():
        user, sep, key = line.strip().partition(":")
        parts = key.split(None, 2)
        if not sep or not _USER.fullmatch(user) or len(parts) < 2:
            continue
        if len(parts) == 3 and parts[2].startswith("google-ssh"):
            try:
                expiry = json.loads(parts[2][len("google-ssh"):]).get("expireOn")
            except ValueError:
                continue
            if expiry and time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) > expiry[:19]:
                continue
        return user, f"{parts[0]} {parts[1]}"
    return None


def user_data(instance: dict[str, Any]) -> bytes | None:
    """The ``user-data`` metadata value as cloud-init's GCE datasource reads it: base64
    when ``user-data-encoding`` says so, text otherwise."""
    items = {i.get("key"): i.get("value") for i in
             (instance.get("metadata") or {}).get("items") or []}
    value = items.get("user-data")
    if value is None:
        return None
    if items.get("user-data-encoding") == "base64":
        return base64.b64decode(value)
    return str(value).encode("utf-8")


def host_key_channel(instance: dict[str, Any]) -> str:
    """``console`` or ``guest-attributes``: how the image the instance booted from shows
    its host keys, known by the project of its boot disk's license (``.../projects/
    debian-cloud/global/licenses/debian-12``)."""
    for disk in instance.get("disks") or ():
        if disk.get("boot"):
            for license_link in disk.get("licenses") or ():
                found = _PROJECT.search(str(license_link))
                if found:
                    return catalog.HOST_KEY_CHANNELS.get(found.group(1), "console")
    return "console"


def guest_agent_console(hostname: str, booted: float) -> str:
    """Serial port text of an image without cloud-init: the guest agent's first-boot lines,
    no host keys, then the login prompt."""
    stamp = time.strftime("%b %d %H:%M:%S", time.gmtime(booted))
    agent = f"{stamp} {hostname} google_guest_agent[412]:"
    return "\n".join([
        f"{agent} GCE Agent Started (version 20240314.00)",
        f"{agent} Instance ID changed, running first-boot actions",
        "",
        f"Debian GNU/Linux 12 {hostname} ttyS0",
        "",
        f"{hostname} login: ",
    ]) + "\n"


def _covers_22(entries: Sequence[dict[str, Any]] | None) -> bool:
    for entry in entries or ():
        if str(entry.get("IPProtocol", "")).lower() not in ("tcp", "6", "all"):
            continue
        ports = entry.get("ports") or []
        if not ports:
            return True
        for span in ports:
            low, _, high = str(span).partition("-")
            if low.isdigit() and int(low) <= 22 <= int(high or low):
                return True
    return False


def ssh_open(rules: list[dict[str, Any]], network_link: str, tags: set[str]) -> bool:
    """Whether GCE's firewall lets TCP 22 from the internet into an instance on
    ``network_link`` with network ``tags``: the best-priority matching rule decides, a deny
    beating an allow of the same priority; nothing matching is the implied deny."""
    best: tuple[int, int] | None = None
    for rule in rules:
        if rule.get("disabled") or rule.get("direction", "INGRESS") != "INGRESS":
            continue
        if rule.get("network", "").rsplit("/", 1)[-1] != network_link.rsplit("/", 1)[-1]:
            continue
        if "0.0.0.0/0" not in (rule.get("sourceRanges") or []):
            continue
        if rule.get("targetServiceAccounts"):
            continue
        if rule.get("targetTags") and not tags & set(rule["targetTags"]):
            continue
        if _covers_22(rule.get("denied")):
            candidate = (int(rule.get("priority", 1000)), 0)
        elif _covers_22(rule.get("allowed")):
            candidate = (int(rule.get("priority", 1000)), 1)
        else:
            continue
        best = candidate if best is None else min(best, candidate)
    return best is not None and best[1] == 1


class GceDataPlaneSync(Watcher):
    """A background thread reconciling ``fleet`` with the local Compute Engine at
    ``endpoint_url`` (instances of ``projects``) every ``interval`` seconds."""

    name = "gce-dataplane-sync"

    def __init__(self, endpoint_url: str, projects: Sequence[str], console_dir: Path,
                 fleet: Any, interval: float = 0.2) -> None:
        super().__init__(interval, fleet)
        self._base = endpoint_url.rstrip("/") + "/compute/v1/projects/"
        self._projects = tuple(projects)
        self._console_dir = Path(console_dir)
        self._logins: dict[str, tuple[str, str]] = {}  # instance id -> (user, key)
        self._published: set[str] = set()  # instances whose agent published its keys

    def _get(self, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self._base + path,
                                         headers={"X-Cloudnorm-Agent": "dataplane"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())  # type: ignore[no-any-return]

    def _publish_host_keys(self, project: str, instance: dict[str, Any],
                           keys: Sequence[str]) -> None:
        """The guest agent's first-boot PUTs of its host keys to guest attributes."""
        zone = str(instance.get("zone") or "").rstrip("/").rsplit("/", 1)[-1]
        for line in keys:
            key_type, blob = line.split()[:2]
            request = urllib.request.Request(
                f"{self._base}{project}/zones/{zone}/instances/{instance['name']}/"
                f"guest-attributes/hostkeys/{key_type}", method="PUT",
                data=json.dumps({"value": blob}).encode(),
                headers={"X-Cloudnorm-Agent": "dataplane", "Metadata-Flavor": "Google",
                         "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=10):
                    pass
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    # The instance was deleted while its agent started (a boot without
                    # waiting, deleted at once): there is nothing left to publish to.
                    return
                if exc.code != 403:
                    raise
                # Guest attributes are off: the agent logs the refusal and goes on.
                LOG.info("instance %s: guest attributes refused its %s key (403)",
                         instance["name"], key_type)
                return

    def start(self) -> GceDataPlaneSync:
        self._console_dir.mkdir(parents=True, exist_ok=True)
        super().start()
        return self

    def __enter__(self) -> GceDataPlaneSync:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_console(self, node_id: str, text: str | None) -> None:
        write_console_file(self._console_dir, node_id, text)

    def _forget(self, node_id: str) -> None:
        self._logins.pop(node_id, None)
        self._published.discard(node_id)

    def sync_once(self) -> None:
        running: dict[str, tuple[str, dict[str, Any]]] = {}
        for project in self._projects:
            reply = self._get(f"{project}/aggregated/instances")
            for scope in (reply.get("items") or {}).values():
                for instance in scope.get("instances") or ():
                    if instance.get("status") == "RUNNING":
                        running[instance["id"]] = (project, instance)
        self.retire(running, forget=self._forget)
        if running:
            rules = {p: self._get(f"{p}/global/firewalls").get("items") or []
                     for p in {p for p, _ in running.values()}}
            self.each(running, lambda iid: self._reconcile(
                iid, running[iid][0], running[iid][1], rules[running[iid][0]]))
        self.rounds += 1

    def _reconcile(self, iid: str, project: str, instance: dict[str, Any],
                   rules: list[dict[str, Any]]) -> None:
        # The guest agent creates the user from the metadata at first boot; later changes
        # to the keys would not replace the machine, so the first login found is kept.
        if iid not in self._logins:
            login = login_from_metadata(instance)
            if login is None:
                return
            self._logins[iid] = login
        user, key = self._logins[iid]
        nics = instance.get("networkInterfaces") or []
        addresses = [a["natIP"] for nic in nics[:1] for a in nic.get("accessConfigs") or ()
                     if a.get("natIP")]
        # A client inside the VPC reaches the internal address too.
        inside = self.fleet.inside
        addresses += [nic["networkIP"] for nic in nics if nic.get("networkIP")
                      and {str(nic.get("network", "")).rsplit("/", 1)[-1], "*"} & inside]
        if not addresses:
            # Nothing reaches it from outside: no node to answer (and no console).
            self.take_down(iid)
            return
        tags = set((instance.get("tags") or {}).get("items") or ())
        allow = ssh_open(rules, nics[0].get("network", ""), tags)
        channel = host_key_channel(instance)
        if channel == "guest-attributes" and iid not in self._published:
            # The agent publishes the keys it made before sshd serves them.
            node = self.fleet.ensure(iid, addresses, user=user, authorized_key=key, port=22,
                                      allow_ssh=False, hostname=instance["name"],
                                      userdata=user_data(instance))
            self.known.add(iid)
            self._publish_host_keys(project, instance,
                                    node.host_keys.keys if node.host_keys else ())
            self._published.add(iid)
        node = self.fleet.ensure(iid, addresses, user=user, authorized_key=key, port=22,
                                  allow_ssh=allow, hostname=instance["name"],
                                  userdata=user_data(instance))
        self.known.add(iid)
        if channel == "guest-attributes":
            booted = node.started_at or time.time()
            self.show_console(iid, lambda: guest_agent_console(instance["name"], booted))
        else:
            self.show_console(iid, lambda: self.fleet.console_text(iid))

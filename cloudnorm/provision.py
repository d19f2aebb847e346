"""The eight steps from "I want a server" to "I am logged in", on any cloud.

1 node key, 2 discovery, 3 choice, 4 boot and wait, 5 public address and
SSH access, 6 login with a verified host key, 7 hardening, 8 node key removal.
Each step reports through ``on_step`` and the log, records its decision on the
returned server, and registers what it created in a ledger; a failure at any
step removes everything the ledger holds, in reverse order, then raises.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from cloudnorm import cleanup, errors, hostkeys, keys, networks, parallel, ssh
from cloudnorm.drivers.base import BootSpec, Created, Driver
from cloudnorm.models import OWNER_KEY, Decision, Flavor, Image, Server

if TYPE_CHECKING:
    from cloudnorm.cloud import Cloud

LOG = logging.getLogger(__name__)

STEPS = ("node_key", "discovery", "choice", "boot", "public_address", "login", "bootstrap",
         "remove_key")


@attrs.frozen
class StepEvent:
    """Progress of one step: ``status`` is ``started``, ``done``, ``skipped`` or ``failed``."""

    step: str
    status: str
    detail: str
    elapsed: float


StepCallback = Callable[[StepEvent], None]


class _Reporter:
    def __init__(self, callback: StepCallback | None, name: str) -> None:
        self._callback = callback
        self._name = name
        self._started = time.monotonic()
        self.decisions: list[Decision] = []

    def emit(self, step: str, status: str, detail: str) -> None:
        event = StepEvent(step, status, detail, round(time.monotonic() - self._started, 3))
        LOG.info("%s: %s %s: %s", self._name, step, status, detail)
        if self._callback is not None:
            self._callback(event)

    def decide(self, decision: Decision) -> None:
        self.decisions.append(decision)


class Ledger:
    """What a create made so far, to undo in reverse order when it fails."""

    #: Tries per item: a rollback usually runs because the cloud is misbehaving, and a
    #: delete lost to one more 503 would leave the item behind.
    attempts = 3
    #: Seconds before the second try; doubled before each further one.
    retry_delay = 0.5

    def __init__(self, driver: Any) -> None:
        self._driver = driver
        self.items: list[Created] = []

    def add(self, item: Created) -> Created:
        self.items.append(item)
        return item

    def rollback(self, wait_server: Callable[[str], None]) -> list[str]:
        """Remove everything; returns what could not be removed (never raises)."""
        leftovers = []
        for item in reversed(self.items):
            for attempt in range(self.attempts):
                try:
                    self._driver.delete(item)
                    if item.kind == "server":
                        wait_server(item.id)
                    break
                except errors.NotFound:
                    break  # already gone
                except Exception as exc:  # keep going: remove as much as possible
                    if attempt + 1 < self.attempts:
                        LOG.warning("rollback: removing %s %s failed (%s); trying again",
                                    item.kind, item.id, exc)
                        time.sleep(self.retry_delay * 2 ** attempt)
                        continue
                    LOG.error("rollback: could not remove %s %s: %s", item.kind, item.id, exc)
                    leftovers.append(f"{item.kind} {item.id} ({exc})")
        self.items.clear()
        return leftovers


class ServerWatcher:
    """Waits for servers of one cloud with one list call per interval for all of them.

    Many threads creating servers on the same :class:`Cloud` share the polls:
    whichever waiter's turn comes fetches every pending server at once.
    """

    def __init__(self, driver: Any, interval: float = 2.0, early_interval: float | None = None,
                 early: float = 10.0) -> None:
        self._driver = driver
        self.interval = interval
        #: Most servers are ready seconds after they are asked for: while any waiter is
        #: younger than ``early`` seconds, polls come every ``early_interval`` instead.
        self.early_interval = min(interval, 1.0) if early_interval is None else early_interval
        self.early = early
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._since: dict[str, float] = {}
        self._latest: dict[str, dict[str, Any]] = {}
        self._polling = False
        self._last_poll = 0.0
        self.polls = 0

    def wait(self, server_id: str, done: Callable[[dict[str, Any] | None], bool],
             deadline: float) -> dict[str, Any] | None:
        """Poll until ``done(record)`` (record None: the server is missing) or the deadline."""
        with self._cond:
            self._pending.add(server_id)
            self._since[server_id] = time.monotonic()
            self._latest.pop(server_id, None)
        try:
            while True:
                with self._cond:
                    seen = self._latest.pop(server_id, "unseen")
                if seen != "unseen" and done(seen):  # type: ignore[arg-type]
                    return seen  # type: ignore[return-value]
                if time.monotonic() >= deadline:
                    raise errors.Timeout(
                        f"server {server_id} did not reach the wanted state in time; last "
                        f"status: {(seen or {}).get('status') if isinstance(seen, dict) else seen}")
                self._poll_or_wait(deadline)
        finally:
            with self._cond:
                self._pending.discard(server_id)
                self._since.pop(server_id, None)

    def _poll_or_wait(self, deadline: float) -> None:
        with self._cond:
            now = time.monotonic()
            interval = (self.early_interval
                        if any(now - t < self.early for t in self._since.values())
                        else self.interval)
            due = self._last_poll + interval - now
            if self._polling or due > 0:
                self._cond.wait(timeout=max(0.05, min(due if due > 0 else interval,
                                                      deadline - now)))
                return
            self._polling = True
            ids = set(self._pending)
        # A failed poll raises in the waiter that made it (its driver's typed error); the
        # other waiters saw nothing new and poll again when the interval comes round.
        found: dict[str, dict[str, Any]] | None = None
        try:
            found = self._driver.poll_servers(ids)
        finally:
            with self._cond:
                self._polling = False
                self._last_poll = time.monotonic()
                self.polls += 1
                if found is not None:
                    for sid in ids:
                        self._latest[sid] = found.get(sid)  # type: ignore[assignment]
                self._cond.notify_all()


def _login_candidates(cloud: Cloud, image: Image, ssh_user: str | None
                      ) -> tuple[list[str], str]:
    if ssh_user:
        return [ssh_user], "asked for by the caller"
    remembered = cloud._cache.peek("login_user", image.id)
    if remembered:
        return [remembered], "learned on an earlier login to this image"
    user, why = cloud.login_user(image)
    if user:
        return [user], why
    from cloudnorm import profiles

    probe = list(dict.fromkeys([*cloud.profile.login_users.values(),
                                *(d.login_user for d in profiles.distros().values()), "root"]))
    return probe, f"{why}; probing {len(probe)} usual users at once"


def create_server(cloud: Cloud, name: str, *, image: str | Image = "ubuntu-22.04",
                  flavor: str | Flavor | None = None, min_ram: int | None = None,
                  min_vcpus: int | None = None, network: str | None = None,
                  key: keys.NodeKey | None = None, authorized_keys: Sequence[str] = (),
                  bootstrap: bool = True, wait: bool = True, timeout: float = 600.0,
                  tags: dict[str, str] | None = None, on_step: StepCallback | None = None,
                  verify_host_keys: bool = True, ssh_user: str | None = None,
                  keep_node_key: bool = False) -> Server:
    """See :meth:`cloudnorm.cloud.Cloud.create_server`."""
    driver = cloud._driver
    report = _Reporter(on_step, name)
    ledger = Ledger(driver)
    deadline = time.monotonic() + timeout
    owner = uuid.uuid4().hex[:12]
    step = STEPS[0]

    def wait_gone(server_id: str) -> None:
        cloud._watcher.wait(server_id, lambda rec: rec is None or rec.get("status") == "DELETED",
                            time.monotonic() + min(120.0, timeout))

    try:
        # 1: the node key, registered the cloud's way
        report.emit(step, "started", "creating a throw-away ed25519 key" if key is None
                    else f"using the caller's key {key.name}")
        node_key = key or keys.generate(f"cloudnorm-{owner}")
        key_name = f"cloudnorm-{owner}"
        cloud.create_keypair(key_name, node_key.public_key)
        ledger.add(Created("keypair", key_name, key_name))
        report.emit(step, "done", f"key pair {key_name} registered")

        # 2: discovery (cached)
        step = STEPS[1]
        report.emit(step, "started", "listing images, flavors and networks (cached)")
        all_images, all_flavors, view = parallel.all_at_once(
            [cloud.list_images, cloud.list_flavors, cloud._network_view])
        report.emit(step, "done", f"{len(all_images)} images, {len(all_flavors)} flavors, "
                    + (f"{len(view[0])} networks" if view else "no network service"))

        # 3: choices, each with its reason
        step = STEPS[2]
        report.emit(step, "started", "choosing image, flavor and network")
        chosen_image = _choose_image(cloud, image, report)
        chosen_flavor = _choose_flavor(cloud, flavor, min_ram, min_vcpus, chosen_image, report)
        hints = driver.network_hints()
        attach = None
        plan = networks.plan_public_address(
            None, [], [], hints, requires_floating_ip=None, floating_ip_source="none",
            profile_name=cloud.profile.name,
            no_network_service=driver.network_service_note or "the cloud has no network service")
        if view is not None:
            nets, routers = view
            if network:
                attach = next((n for n in nets if network in (n.name, n.id)), None)
                if attach is None:
                    raise errors.NotFound(
                        f"no network '{network}'; known: {', '.join(n.name for n in nets)}",
                        cloud=cloud.name)
                report.decide(Decision("network", attach.name, "asked for by the caller"))
            else:
                attach, decision = networks.choose_attach_network(nets, routers, hints)
                report.decide(decision)
            plan = networks.plan_public_address(
                attach, nets, routers, hints,
                requires_floating_ip=cloud.profile.requires_floating_ip,
                floating_ip_source=cloud.profile.floating_ip_source,
                profile_name=cloud.profile.name, public_access=cloud.profile.public_access)
        report.decide(plan.decision)
        # Decided before booting: some clouds install the node key for one named user.
        users, users_why = _login_candidates(cloud, chosen_image, ssh_user)
        report.emit(step, "done", f"{chosen_image.name} / {chosen_flavor.name} / "
                    f"{attach.name if attach else 'network chosen by the cloud'}")

        # 4: boot, with SSH let in by a group cloudnorm owns
        step = STEPS[3]
        group = None
        if driver.supports_security_groups():
            group = ledger.add(driver.create_ssh_access(owner))
            report.decide(Decision("ssh_access", group.description,
                                   "security group owned by cloudnorm lets TCP 22 in"))
        else:
            report.decide(Decision("ssh_access", "none", "the cloud has no security groups "
                                   f"(profile '{cloud.profile.name}'): nothing to open"))
        report.emit(step, "started", "booting")
        port = None
        if plan.floating_ip and wait:
            assert attach is not None
            port = driver.make_port(attach, owner, group.id if group else None)
            if port is not None:
                ledger.add(port)
        server_ref = ledger.add(driver.boot(BootSpec(
            name=name, image=chosen_image, flavor=chosen_flavor, network=attach,
            key_name=key_name, owner=owner, security_group=group.id if group else None,
            config_drive=cloud.profile.config_drive, metadata=dict(tags or {}),
            login_user=users[0] if len(users) == 1 else None,
            port=port.id if port else None)))
        cloud._cache.invalidate("server")
        attached = None
        if port is not None:
            # The server's interface exists already: its floating IP goes on while it
            # boots, instead of after (step 5's work, and its failure if it fails).
            assert attach is not None
            step = STEPS[4]
            attached = driver.attach_public_address({"id": server_ref.id}, attach,
                                                   list(plan.pools), owner, port=port)
            ledger.add(attached[0])
            step = STEPS[3]
        if not wait:
            report.emit(step, "done", f"server {server_ref.id} requested; not waiting")
            requested = driver.poll_servers({server_ref.id}).get(server_ref.id) or {
                "id": server_ref.id, "name": name, "status": "BUILD"}
            return attrs.evolve(driver.normalize_server(requested, cloud.list_networks()),
                                decisions=tuple(report.decisions))
        booted = cloud._watcher.wait(server_ref.id, _booted, deadline)
        if booted is None:
            raise errors.ProviderError(f"server {server_ref.id} vanished while booting",
                                       cloud=cloud.name)
        raw = booted
        if str(raw.get("status")).upper() == "ERROR":
            fault = (raw.get("fault") or {}).get("message") or "no reason given"
            if "quota" in fault.lower():
                raise errors.QuotaExceeded(f"server {name} failed: {fault}",
                                           resource="instances", cloud=cloud.name)
            raise errors.ProviderError(f"server {name} went to ERROR: {fault}",
                                       status="ERROR", cloud=cloud.name)
        report.emit(step, "done", f"server {server_ref.id} running")

        # 5: a public address the way this cloud needs it
        step = STEPS[4]
        report.emit(step, "started", plan.decision.choice)
        server = driver.normalize_server(raw, cloud.list_networks())
        ssh_port = 22
        if plan.method == "port_forwarding":
            assert attach is not None
            forwarding, address, ssh_port, notes = driver.forward_ssh_port(raw, attach, owner)
            ledger.add(forwarding)
            for note in notes:
                report.decide(note)
            server = _with_address(server, address)
        elif plan.floating_ip:
            assert attach is not None
            if attached is None:
                attached = driver.attach_public_address(raw, attach, list(plan.pools), owner)
                ledger.add(attached[0])
            _, address, notes = attached
            for note in notes:
                report.decide(note)
            # The network view stays cached: a new floating IP only confirms the pool
            # it came from, and re-listing five kinds of records per create is not free.
            server = _with_address(server, address)
        interface, why = networks.choose_interface(server.addresses)
        if interface is None or not interface.public:
            raise errors.NotReachable(
                f"server {name} has no public address ({why}); its addresses: "
                + (", ".join(f"{a.ip} ({a.reason})" for a in server.addresses) or "none"),
                cloud=cloud.name)
        report.decide(Decision("interface", interface.ip, why))
        report.emit(step, "done", f"{interface.ip} port {ssh_port} ({interface.reason}"
                    + ("; attached while the server booted)" if port is not None else ")"))

        # 6: login, host key checked against the console
        step = STEPS[5]
        report.emit(step, "started", f"waiting for SSH on {interface.ip}")
        ssh.wait_for_port(interface.ip, ssh_port, timeout=max(1.0, deadline - time.monotonic()),
                          on_attempt=lambda last: report.emit(STEPS[5], "waiting", last))
        announced, console = _announced_host_keys(driver, server.id, deadline,
                                                  verify_host_keys, report)
        if len(users) > 1:
            named = hostkeys.console_login_users(console, node_key.public_key)
            if named:
                users = [named[0]]
                users_why = (f"the console lists the node key among the authorized keys of "
                             f"{named[0]} (cloud-init's ssh-authkey-fingerprints)")
        target = ssh.Target(interface.ip, ssh_port, node_key.private_key,
                            announced if verify_host_keys else None)
        login = ssh.wait_for_login(
            target, users, timeout=max(1.0, deadline - time.monotonic()),
            on_attempt=lambda last: report.emit(STEPS[5], "waiting", last))
        cloud._cache.set("login_user", chosen_image.id, login.user)
        report.decide(Decision("login_user", login.user, users_why))
        host_keys = announced.keys or (login.host_key,)
        stored = _store_login(driver, server.id, login.user, interface.ip, ssh_port,
                              tuple(host_keys), report)
        server = attrs.evolve(server, tags={**server.tags, **stored})
        report.emit(step, "done", f"logged in as {login.user} after {login.attempts} attempt(s)")

        # 7: hardening
        step = STEPS[6]
        if bootstrap:
            report.emit(step, "started", "installing operator keys, turning password logins off")
            _harden(target, login.user, authorized_keys, report)
            report.emit(step, "done", "operator keys installed; password logins refused")
        else:
            report.emit(step, "skipped", "bootstrap=False")

        # 8: the node key goes away
        step = STEPS[7]
        report.emit(step, "started", "removing the node key")
        # From the node first, while the key still logs in; then from the cloud, whose
        # guest agents (GCE's) would otherwise put a key still listed back on the node.
        if not keep_node_key and bootstrap:
            _remove_node_key(target, login.user, node_key)
            detail = "removed from the node and from the cloud"
        else:
            detail = "removed from the cloud; kept on the node as asked"
        cloud.delete_keypair(key_name)
        ledger.items = [i for i in ledger.items if i.kind != "keypair"]
        report.emit(step, "done", detail)
    except BaseException as exc:
        report.emit(step, "failed", str(exc))
        leftovers = ledger.rollback(wait_gone)
        if leftovers and isinstance(exc, errors.CloudnormError):
            exc.message += "; could not remove: " + ", ".join(leftovers)
        raise
    return attrs.evolve(server, interface_ip=interface.ip, ssh_user=login.user, ssh_port=ssh_port,
                        host_keys=tuple(host_keys), key_name=None,
                        decisions=tuple(report.decisions))


def _booted(raw: dict[str, Any] | None) -> bool:
    return raw is not None and str(raw.get("status")).upper() in ("ACTIVE", "ERROR")


def _with_address(server: Server, address: Any) -> Server:
    if any(a.ip == address.ip for a in server.addresses):
        return server
    addresses = (*server.addresses, address)
    return attrs.evolve(server, addresses=addresses,
                        public_v4=address.ip if address.version == 4 else server.public_v4,
                        interface_ip=address.ip)


def _choose_image(cloud: Cloud, image: str | Image, report: _Reporter) -> Image:
    if isinstance(image, Image):
        report.decide(Decision("image", image.name, "given by the caller"))
        return image
    by_id = [i for i in cloud.list_images() if image in (i.id, i.name)]
    if len(by_id) == 1:
        report.decide(Decision("image", by_id[0].name, "named by the caller"))
        return by_id[0]
    chosen, decision = cloud.choose_image(image)
    report.decide(decision)
    return chosen


def _choose_flavor(cloud: Cloud, flavor: str | Flavor | None, min_ram: int | None,
                   min_vcpus: int | None, image: Image, report: _Reporter) -> Flavor:
    if isinstance(flavor, Flavor):
        report.decide(Decision("flavor", flavor.name, "given by the caller"))
        return flavor
    if flavor:
        named = [f for f in cloud.list_flavors() if flavor in (f.id, f.name)]
        if not named:
            raise errors.NotFound(f"no flavor '{flavor}' in cloud '{cloud.name}'",
                                  cloud=cloud.name)
        report.decide(Decision("flavor", named[0].name, "named by the caller"))
        return named[0]
    chosen, decision = cloud.choose_flavor(
        min_ram=max(min_ram or 0, image.min_ram) or None, min_vcpus=min_vcpus,
        min_disk=image.min_disk or None)
    report.decide(decision)
    return chosen


def _announced_host_keys(driver: Any, server_id: str, deadline: float, verify: bool,
                         report: _Reporter) -> tuple[hostkeys.HostKeys, str]:
    """Host keys the server's guest environment published through the cloud's API (GCE's
    guest attributes), else those cloud-init printed on the console, waiting (bounded) for
    either; and the console text (its login-user table is read either way)."""
    if not verify:
        report.decide(Decision("host_keys", "not verified",
                               "verify_host_keys=False was passed: any host key is accepted"))
        return hostkeys.HostKeys(), ""
    # Drivers without the verb (test doubles, older drivers) have only the console.
    published = getattr(driver, "published_host_keys", None)
    has_channel = getattr(type(driver), "published_host_keys", None) not in (
        None, Driver.published_host_keys)
    # Asked once sshd answers: cloud-init prints the keys about then, sometimes a little
    # later. Ask often at first, then back off, so a slow print costs few console reads.
    interval = 0.5
    while True:
        keys: tuple[str, ...] = ()
        if published is not None:
            try:
                keys = tuple(published(server_id))
            except errors.CloudnormError as exc:
                # The console can still tell; the published copy is the better channel,
                # not the only one.
                LOG.warning("server %s: cannot read the host keys published for it (%s); "
                            "reading the console instead", server_id, exc)
                published = None
        console = driver.console_output(server_id)
        if keys:
            report.decide(Decision(
                "host_keys", f"{len(keys)} published",
                "the server's guest environment published them through the cloud's API "
                "(GCE: guest attributes, hostkeys/) and they were read back over that API, "
                "not from the network"))
            return hostkeys.HostKeys(keys=keys), console
        found = hostkeys.parse_console(console)
        if found:
            report.decide(Decision("host_keys", f"{len(found.keys) or len(found.fingerprints)}"
                                   " announced", "read from the console output cloud-init "
                                   "printed at first boot"))
            return found, console
        if time.monotonic() + interval >= deadline:
            raise errors.Timeout(
                f"server {server_id} never printed its SSH host keys on the console"
                + (" nor published them through the cloud's API" if has_channel else "")
                + "; cannot verify whom cloudnorm would log in to. Pass "
                "verify_host_keys=False to accept any key (not recommended)")
        time.sleep(interval)
        interval = min(interval * 1.3, 5.0)


def _store_login(driver: Any, server_id: str, user: str, address: str, port: int,
                 host_keys: tuple[str, ...], report: _Reporter) -> dict[str, str]:
    """Write how to log in (user, address, port, host keys) on the server itself, so
    get_server() gives it back to any later caller; returns the items written."""
    items = hostkeys.login_metadata(user, address, port, host_keys)
    try:
        driver.set_server_metadata(server_id, items)
    except NotImplementedError as exc:
        report.decide(Decision("login_record", "not stored", str(exc)))
        return {}
    except errors.CloudnormError as exc:
        # The server works; only a later get_server() lacks the login. Not worth undoing it.
        LOG.warning("could not store the login on server %s: %s", server_id, exc)
        report.decide(Decision("login_record", "not stored", exc.message))
        return {}
    report.decide(Decision("login_record", f"{len(items)} metadata items",
                           f"user, address, port and {len(items) - 1} host key(s) stored on "
                           "the server, so get_server() can give them back"))
    return items


def _harden(target: ssh.Target, user: str, authorized_keys: Sequence[str],
            report: _Reporter) -> None:
    status, _, err = ssh.run(target, user, ssh.hardening_script(user, authorized_keys, None))
    if status != 0:
        raise errors.NotReachable(f"bootstrap failed on {target.address} (exit {status}): "
                                  f"{err.strip()[-300:]}")
    check = ("SUDO=; [ \"$(id -u)\" = 0 ] || SUDO='sudo -n'; "
             "$SUDO cat /root/.ssh/authorized_keys; echo ---; "
             "$SUDO /usr/sbin/sshd -T 2>/dev/null | grep -i '^passwordauthentication'")
    status, out, err = ssh.run(target, user, check)
    root_keys, _, effective = out.partition("---")
    missing = [k for k in authorized_keys if k.strip() and k.strip() not in root_keys]
    if status != 0 or missing or "passwordauthentication no" not in effective.lower():
        raise errors.NotReachable(
            f"bootstrap on {target.address} did not take: "
            + (f"{len(missing)} operator key(s) missing for root; " if missing else "")
            + f"sshd reports '{effective.strip() or err.strip()}'")
    if not ssh.password_login_refused(target.address, target.port):
        raise errors.NotReachable(f"{target.address} still accepts password logins after "
                                  "bootstrap")
    report.decide(Decision("bootstrap", "hardened", "root and the login user have the "
                           "operator keys; sshd refuses passwords (checked by trying)"))


def _remove_node_key(target: ssh.Target, user: str, node_key: keys.NodeKey) -> None:
    blob = node_key.public_key.split()[1]
    script = ("SUDO=; [ \"$(id -u)\" = 0 ] || SUDO='sudo -n'; for home in /root \"$HOME\"; do "
              f"$SUDO sed -i '\\|{blob}|d' \"$home/.ssh/authorized_keys\" 2>/dev/null || true;"
              " done")
    status, _, err = ssh.run(target, user, script)
    if status != 0:
        raise errors.NotReachable(f"could not remove the node key from {target.address}: "
                                  f"{err.strip()}")
    if not ssh.key_refused(target, user):
        raise errors.NotReachable(f"{target.address} still accepts the node key after its "
                                  "removal")


def delete_server(cloud: Cloud, server: Server | str, *, wait: bool = True,
                  timeout: float = 300.0) -> bool:
    """See :meth:`cloudnorm.cloud.Cloud.delete_server`."""
    driver = cloud._driver
    if isinstance(server, Server):
        raw_list = [server.raw] if server.raw else driver.get_server(server.id)
    else:
        raw_list = driver.get_server(server)
    if not raw_list:
        return False
    if len(raw_list) > 1:
        raise errors.Ambiguous(f"{len(raw_list)} servers are named '{server}'; use an id",
                               candidates=[r["id"] for r in raw_list], cloud=cloud.name)
    raw = raw_list[0]
    owner = (raw.get("metadata") or {}).get(OWNER_KEY)
    resources = driver.owned_resources(owner) if owner else []
    if not any(r.kind == "server" and r.id == raw["id"] for r in resources):
        resources.append(Created("server", raw["id"], raw.get("name", "")))
    deadline = time.monotonic() + timeout
    for resource in sorted(resources, key=lambda r: cleanup.ORDER.get(r.kind, 9)):
        driver.delete(resource)
        if resource.kind == "server" and (wait or owner):
            # Ports and groups stay in use until the server is gone, so wait even if not
            # asked.
            cloud._watcher.wait(resource.id, lambda rec: rec is None
                                or str(rec.get("status")).upper() == "DELETED", deadline)
    cloud._cache.invalidate("server")
    return True

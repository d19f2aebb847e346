"""How far a cloud is from AWS, step by step, measured on the cloud itself.

``run(cloud)`` walks the eight steps of :mod:`cloudnorm.provision` twice:

* **raw cloud**: what the cloud's own API gives a person who uses it the plain way.
  A key pair is registered and a server booted with nothing but image, flavor, key
  and the network cloudnorm would pick (on a cloud without a network service: where
  the cloud puts it) -- no floating IP, no security group, no config drive. Each
  step's verdict is read from what the cloud answered: the key pair listed, the
  server's own record right after it is running, the image's properties, the console.
* **through cloudnorm**: ``create_server`` on the same cloud, with its step events
  and decisions.

Verdicts are ``YES``, ``NO``, ``PARTIAL`` (part of what AWS gives), and, for the raw
cloud only, ``n/a`` when a measurement could not be taken (the plain boot failed, or the
cloud refused it: a flavor with no local disk boots only from a volume on many clouds,
and the plain request names none).
Everything either walk creates is deleted again, and what could not be is reported.

Each measurement is a small function below over driver calls or raw records, so a
verdict can be checked against the record it came from.
"""

from __future__ import annotations

import datetime
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from cloudnorm import errors, hostkeys, keys
from cloudnorm.drivers.base import BootSpec, Created
from cloudnorm.models import OWNER_KEY, Decision, Flavor, Image, Server
from cloudnorm.provision import STEPS, CreateRequest, StepEvent
from cloudnorm.state import ServerState, gone

if TYPE_CHECKING:
    from cloudnorm.cloud import Cloud

LOG = logging.getLogger(__name__)

YES, NO, PARTIAL, NOT_MEASURED = "YES", "NO", "PARTIAL", "n/a"

TITLES = {
    "node_key": "1 node key", "discovery": "2 discovery", "choice": "3 choice",
    "boot": "4 boot", "public_address": "5 public address", "login": "6 login",
    "bootstrap": "7 hardening", "remove_key": "8 key removal",
}

#: Bound on the wait for cloud-init's host keys on the plain server's console.
CONSOLE_WAIT = 60.0
#: Bound on the wait for a deleted server to be gone.
DELETE_WAIT = 120.0


@attrs.frozen
class Measured:
    """One raw-cloud verdict and what it was read from; ``missing`` names the parts of
    a PARTIAL or NO step the cloud did not give (``image``, ``network``)."""

    verdict: str
    detail: str
    missing: tuple[str, ...] = ()


@attrs.frozen
class StepResult:
    """One row of the table."""

    step: str
    title: str
    raw: str
    raw_detail: str
    cloudnorm: str
    cloudnorm_detail: str
    gap: str


@attrs.frozen
class Report:
    """A conformance run: the eight rows, the node created, and what was left over."""

    cloud: str
    provider: str
    profile: str
    started: str
    elapsed: float
    steps: tuple[StepResult, ...]
    node: str = ""
    error: str = ""
    leftovers: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: How the node was reached: ``public`` or ``private`` (private access).
    access: str = "public"

    @property
    def ok(self) -> bool:
        """True when every step works through cloudnorm and nothing was left behind."""
        return (not self.error and not self.leftovers
                and all(s.cloudnorm == YES for s in self.steps))


Progress = Callable[[str, str], None]  # (what, detail), for a progress display


# -- measurements: each one reads a verdict off what the cloud answered ---------------------
def key_pair_api(driver: Any, key: keys.NodeKey, name: str) -> Measured:
    """Step 1: register a key pair through the API and find it in the cloud's list."""
    try:
        driver.create_keypair(name, key.public_key)
    except errors.CloudnormError as exc:
        return Measured(NO, f"the key pair API refused a key: {exc.message}")
    listed = any(k.name == name for k in driver.list_keypairs())
    if not listed:
        return Measured(PARTIAL, f"key pair {name} registered, but the cloud does not list it")
    return Measured(YES, f"key pair API: {name} registered and listed")


def discovery_api(images: int, flavors: int, network_facts: Any) -> Measured:
    """Step 2: images, flavors and networks can all be listed through the API."""
    if network_facts is None:
        return Measured(PARTIAL, f"{_count(images, 'image')} and {_count(flavors, 'flavor')} "
                        "listed; no network API in the catalog: a server's addresses are all "
                        "there is to go by")
    nets, _ = network_facts
    if not images or not flavors:
        return Measured(NO, f"the API lists {_count(images, 'image')} and "
                        f"{_count(flavors, 'flavor')}")
    return Measured(YES, f"{_count(images, 'image')}, {_count(flavors, 'flavor')}, "
                    f"{_count(len(nets), 'network')} listed")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def image_labelled(image: Image) -> str | None:
    """How the image's own record says which OS it holds, or None when only its name does.

    Glance's ``os_distro``/``os_version`` properties (or their older namespaced form),
    or, on EC2, the publisher's public parameter the image was found through.
    """
    raw = image.raw
    for distro, version in (("os_distro", "os_version"),
                            ("org.openstack__1__os_distro", "org.openstack__1__os_version")):
        if raw.get(distro) and raw.get(version):
            return f"properties {distro}={raw[distro]}, {version}={raw[version]}"
    source = str(raw.get("cloudnorm:source") or "")
    if source.startswith("public parameter"):
        return f"the publisher's {source}"
    return None


def default_network_named(network_facts: Any) -> str | None:
    """How the cloud itself says where a server goes when none is named, or None.

    No network service (the cloud places servers), exactly one network a server of the
    project can attach to (Nova's ``auto`` takes it), or EC2's default subnet per zone.
    """
    if network_facts is None:
        return "the cloud places servers itself"
    nets, _ = network_facts
    defaults = [n for n in nets if n.default_for_zone]
    if defaults:
        return f"the default VPC names a default subnet per zone ({len(defaults)})"
    attachable = [n for n in nets if n.subnets and (not n.router_external or n.shared)]
    if len(attachable) == 1:
        return f"'{attachable[0].name}' is the only network a server can go on"
    return None


def choice_facts(image: Image, network_facts: Any) -> Measured:
    """Step 3: can the image for an OS and the network be chosen from what the cloud says,
    without reading names?"""
    label = image_labelled(image)
    default = default_network_named(network_facts)
    parts = [f"image '{image.name}': " + (label or "only its name says which OS it holds"),
             "network: " + (default or "several networks a server could go on, none marked "
                            "default")]
    verdict = YES if label and default else PARTIAL if label or default else NO
    missing = tuple(part for part, given in (("image", label), ("network", default))
                    if not given)
    return Measured(verdict, "; ".join(parts), missing)


def boot_result(state: ServerState | None, elapsed: float) -> Measured:
    """Step 4: the plain boot's server once it stopped changing."""
    if state is None:
        return Measured(NO, "the server vanished while booting")
    if state.phase == "error":
        return Measured(NO, f"the server went to ERROR: {state.fault or 'no reason given'}")
    return Measured(YES, f"running after {elapsed:.1f} s")


def boot_refused(message: str, flavor: Flavor, *, root_is_volume: bool = False) -> Measured:
    """Step 4: the cloud answered the plain boot request with an error (``message``, its
    own words) and made no server.

    A flavor with disk 0 has no local disk: a server booted from the image alone has
    nowhere to put its root disk, and clouds such as Nova (policy
    ``os_compute_api:servers:create:zero_disk_flavor``, admin-only by default) refuse it
    with 403. Where every root disk is a volume anyway (``root_is_volume``) a flavor's
    disk says nothing, and nothing is said of it.
    """
    if flavor.disk == 0 and not root_is_volume:
        return Measured(NO, f"flavor '{flavor.name}' has disk 0 (no local disk) and the plain "
                        f"request names no volume; the cloud refused it: {message}")
    return Measured(NO, f"the cloud refused the plain boot of flavor '{flavor.name}': "
                    f"{message}")


def refused(exc: errors.CloudnormError) -> bool:
    """Whether a failed boot request is the cloud's refusal (it answered, and made
    nothing), rather than a cloud out of reach, credentials it no longer takes, or a
    failure on its side (5xx) that may still have made the server."""
    if isinstance(exc, (errors.ServiceUnavailable, errors.AuthError, errors.Timeout)):
        return False
    status = getattr(exc, "status", None)
    return not (isinstance(status, int) and status >= 500)


def root_disk_note(decision: Decision) -> str:
    """create_server's ``root_disk`` decision in a few words: where the root disk went."""
    if "volume" not in decision.choice:
        return f"root disk: {decision.choice}"
    article = "an" if decision.choice.startswith(("8", "11 ", "18 ", "a", "e", "i", "o", "u")) \
        else "a"
    return f"booted from {article} {decision.choice}: {decision.reason}"


def public_address(server: Server) -> Measured:
    """Step 5: does the server's own record hold a public address right after it runs?

    Addresses are read as the cloud lists them; nothing has been attached.
    """
    listed = ", ".join(f"{a.ip} ({a.reason})" for a in server.addresses) or "none"
    public4 = [a for a in server.addresses if a.public and a.version == 4]
    public6 = [a for a in server.addresses if a.public and a.version == 6]
    if public4:
        return Measured(YES, f"public address after boot: {public4[0].ip} "
                        f"({public4[0].reason})")
    if public6:
        return Measured(PARTIAL, f"public only over IPv6 after boot: {public6[0].ip}; "
                        f"addresses: {listed}")
    return Measured(NO, f"no public address after boot; addresses: {listed}")


def login_facts(image: Image, user_properties: tuple[str, ...], console: str) -> Measured:
    """Step 6: does the image name its login user, and does the console announce the
    host keys a login can be checked against?"""
    named = next(((p, image.raw[p]) for p in user_properties if image.raw.get(p)), None)
    announced = hostkeys.parse_console(console)
    user = (f"image property {named[0]}={named[1]} names the login user" if named else
            "the image names no login user (it is learned by trying)")
    keys_said = (f"the console announces {len(announced.keys) or len(announced.fingerprints)}"
                 " host key(s)" if announced else "the console announces no host keys")
    verdict = YES if named and announced else PARTIAL if named or announced else NO
    return Measured(verdict, f"{user}; {keys_said}")


def hardening() -> Measured:
    """Step 7: no cloud API installs operator keys or turns password logins off; images
    boot with whatever their sshd_config says."""
    return Measured(NO, "nothing in the API installs operator keys or turns password "
                    "logins off")


def key_removal(driver: Any, name: str) -> Measured:
    """Step 8: delete the key pair through the API and check it is no longer listed.

    The key stays in the server's authorized_keys: no cloud API removes it there.
    """
    try:
        driver.delete_keypair(name)
    except errors.CloudnormError as exc:
        return Measured(NO, f"deleting key pair {name} failed: {exc.message}")
    if any(k.name == name for k in driver.list_keypairs()):
        return Measured(NO, f"key pair {name} is still listed after its deletion")
    return Measured(PARTIAL, "the API deletes the key pair; the key stays in the server's "
                    "authorized_keys")


@attrs.define
class _Undo:
    """What the raw walk created, removed in reverse order whatever happens."""

    driver: Any
    cloud: Any
    items: list[Created] = attrs.field(factory=list)

    def remove(self) -> list[str]:
        left = []
        for item in reversed(self.items):
            try:
                self.driver.delete(item)
                if item.kind == "server":
                    self.cloud.watcher.wait(item.id, gone, time.monotonic() + DELETE_WAIT)
            except Exception as exc:  # keep going: remove as much as possible
                LOG.error("could not remove %s %s: %s", item.kind, item.id, exc)
                left.append(f"{item.kind} {item.id} ({exc})")
        self.items.clear()
        return left


def measure_raw(cloud: Cloud, name: str, *, os: str = "ubuntu-22.04", min_ram: int = 2048,
                timeout: float = 300.0, progress: Progress | None = None
                ) -> tuple[dict[str, Measured], list[str]]:
    """The raw cloud's verdict for every step, and what could not be removed afterwards."""
    say = progress or (lambda what, detail: None)
    driver = cloud.driver
    owner = uuid.uuid4().hex[:12]
    key_name = f"cloudnorm-{owner}"
    deadline = time.monotonic() + timeout
    undo = _Undo(driver, cloud)
    found: dict[str, Measured] = {}
    try:
        say("raw: key pair", "registering a key pair through the API")
        found["node_key"] = key_pair_api(driver, keys.generate(key_name), key_name)
        if found["node_key"].verdict != NO:
            undo.items.append(Created("keypair", key_name, key_name))

        say("raw: discovery", "listing images, flavors and networks")
        images, flavors, facts = driver.list_images(), driver.list_flavors(), \
            driver.network_facts()
        found["discovery"] = discovery_api(len(images), len(flavors), facts)
        image, _ = cloud.choose_image(os)
        flavor, _ = cloud.choose_flavor(min_ram=max(min_ram, image.min_ram) or None,
                                        min_disk=image.min_disk or None)
        found["choice"] = choice_facts(image, facts)
        try:
            network = cloud.default_network()
        except errors.CloudnormError as exc:
            # A person would have to pick one; the plain request then names none.
            LOG.info("%s: booting with no network named: %s", cloud.name, exc)
            network = None

        say("raw: boot", f"booting {image.name} plainly on "
            f"{network.name if network else 'the network the cloud picks'}")
        spec = BootSpec(name=f"{name}-raw", image=image, flavor=flavor, network=network,
                        key_name=key_name, owner=owner, plain=True)
        started = time.monotonic()
        record: ServerState | None = None
        server_ref: Created | None = None
        try:
            server_ref = driver.boot(spec)
        except errors.CloudnormError as exc:
            if not refused(exc):
                raise  # no answer to go by: nothing measured from here on
            # The cloud's answer to the plain request (e.g. Nova's 403 for a flavor
            # with no local disk): a verdict, and no server to undo.
            LOG.info("%s: the plain boot was refused: %s", cloud.name, exc)
            found["boot"] = boot_refused(exc.message, flavor,
                                         root_is_volume=driver.capabilities.root_is_volume)
            why = f"not measured: the plain boot was refused ({exc.message})"
        else:
            undo.items.append(server_ref)
            record = cloud.watcher.wait(server_ref.id, lambda s: s is None or s.booted,
                                        deadline)
            found["boot"] = boot_result(record, time.monotonic() - started)
            why = f"not measured: the plain boot failed ({found['boot'].detail})"
        if found["boot"].verdict == YES and record is not None and server_ref is not None:
            found["public_address"] = public_address(
                driver.normalize_server(record, cloud.list_networks()))
            say("raw: console", "waiting for the host keys on the console")
            found["login"] = login_facts(image, cloud.profile.image_user_properties,
                                         _console(driver, server_ref.id, deadline))
        else:
            found["public_address"] = Measured(NOT_MEASURED, why)
            found["login"] = Measured(NOT_MEASURED, why)
        found["bootstrap"] = hardening()
        if found["node_key"].verdict != NO:
            found["remove_key"] = key_removal(driver, key_name)
            undo.items = [i for i in undo.items if i.kind != "keypair"]
        else:
            found["remove_key"] = Measured(NOT_MEASURED, "no key pair could be registered")
    except errors.CloudnormError as exc:
        for step in STEPS:
            found.setdefault(step, Measured(NOT_MEASURED, f"not measured: {exc.message}"))
    finally:
        say("raw: cleanup", "deleting what the plain walk created")
        left = undo.remove()
    return found, left


def _console(driver: Any, server_id: str, deadline: float) -> str:
    """The console once it announces host keys, or as it is at the bound."""
    give_up = min(deadline, time.monotonic() + CONSOLE_WAIT)
    text = ""
    while True:
        text = driver.console_output(server_id)
        if hostkeys.parse_console(text) or time.monotonic() >= give_up:
            return text
        time.sleep(1.0)


# -- through cloudnorm ----------------------------------------------------------------------
def through_cloudnorm(events: list[StepEvent], decisions: tuple[Decision, ...],
                      raw: dict[str, Measured], error: str = ""
                      ) -> list[StepResult]:
    """The table's rows from create_server's events and decisions and the raw verdicts."""
    final: dict[str, StepEvent] = {}
    for event in events:
        if event.status in ("done", "skipped", "failed"):
            final[event.step] = event
    by_step: dict[str, list[Decision]] = {}
    for decision in decisions:
        by_step.setdefault(decision.step, []).append(decision)
    failed = next((e for e in events if e.status == "failed"), None)
    root = by_step.get("root_disk", [None])[-1]
    rows = []
    for step in STEPS:
        measured = raw.get(step, Measured(NOT_MEASURED, "not measured"))
        last = final.get(step)
        if last is not None and last.status == "done":
            verdict, detail = YES, last.detail
            if step == "boot" and root is not None:
                detail = f"{detail}; {root_disk_note(root)}"
        elif last is not None and last.status == "failed":
            verdict, detail = NO, f"failed: {last.detail}"
        elif failed is not None:
            verdict, detail = NO, f"not reached: step {TITLES[failed.step]} failed"
        else:
            verdict, detail = NO, error or "not reached"
        gap = "" if measured.verdict == YES or verdict != YES else _gap(
            step, detail, by_step, measured.missing)
        rows.append(StepResult(step, TITLES[step], measured.verdict, measured.detail, verdict,
                               detail, gap))
    return rows


def _gap(step: str, detail: str, decisions: dict[str, list[Decision]],
         missing: tuple[str, ...] = ()) -> str:
    """One sentence or two on what cloudnorm did where the raw cloud fell short."""
    def last(kind: str) -> Decision | None:
        found = decisions.get(kind)
        return found[-1] if found else None

    said: list[str] = []
    if step == "choice":
        said += [d.reason for kind in (missing or ("image", "network"))
                 if (d := last(kind)) is not None]
    elif step == "public_address":
        # The last note is the concrete one (the address attached and from where).
        public, access = last("public_address"), last("ssh_access")
        if public is not None:
            said.append(public.reason if public.choice.startswith("none") else
                        f"{public.choice}: {public.reason}")
        if access is not None and access.choice != "none":
            said.append(f"TCP 22 opened by {access.choice}")
    elif step == "login":
        user, keys_seen, stored = last("login_user"), last("host_keys"), last("login_record")
        if user is not None:
            said.append(f"login user {user.choice} ({user.reason})")
        if keys_seen is not None:
            said.append(f"host key checked against the console ({keys_seen.choice})")
        if stored is not None and stored.choice != "not stored":
            said.append("the login is stored on the server for later logins")
    elif step == "boot":
        # A plain boot the cloud refused is most often a flavor with no local disk.
        root = last("root_disk")
        if root is not None and "volume" in root.choice:
            said.append(root_disk_note(root))
    elif step == "bootstrap":
        hardened = last("bootstrap")
        if hardened is not None:
            said.append(hardened.reason)
    return "; ".join(said) or detail


def run(cloud: Cloud, *, os: str = "ubuntu-22.04", min_ram: int = 2048,
        timeout: float = 300.0, progress: Progress | None = None,
        on_step: Callable[[StepEvent], None] | None = None,
        after_create: Callable[[Server, keys.NodeKey], list[str]] | None = None,
        public: bool | None = None) -> Report:
    """Measure ``cloud`` raw and through cloudnorm; leaves nothing behind.

    ``public`` is create_server's: False measures private access (the node is reached
    on its private address); None follows the cloud's configuration.

    ``after_create(server, operator_key)`` runs while the node exists (e.g. a login
    with the system ``ssh``) and returns notes for the report.
    """
    began = time.monotonic()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    name = f"cn-conformance-{uuid.uuid4().hex[:6]}"
    raw, leftovers = measure_raw(cloud, name, os=os, min_ram=min_ram, timeout=timeout,
                                 progress=progress)
    events: list[StepEvent] = []

    def collect(event: StepEvent) -> None:
        events.append(event)
        if on_step is not None:
            on_step(event)

    operator = keys.generate("cloudnorm-conformance-operator")
    access = "public" if cloud.settings.public_access(public)[0] else "private"
    server: Server | None = None
    error = ""
    notes: list[str] = []
    try:
        server = cloud.create_server(CreateRequest(
            name, image=os, min_ram=min_ram, authorized_keys=(operator.public_key,),
            timeout=timeout, public=public), on_step=collect)
        if after_create is not None:
            notes += after_create(server, operator)
    except errors.CloudnormError as exc:
        error = str(exc)
    finally:
        if server is not None:
            if progress:
                progress("cleanup", f"deleting {server.name}")
            leftovers += _delete(cloud, server)
    rows = through_cloudnorm(events, server.decisions if server else (), raw, error)
    node = ""
    if server is not None:
        host = f"[{server.interface_ip}]" if ":" in (server.interface_ip or "") else \
            server.interface_ip
        node = f"{server.name}: {server.ssh_user}@{host} port {server.ssh_port}"
    return Report(cloud=cloud.name, provider=cloud.provider, profile=cloud.profile.name,
                  started=started, elapsed=round(time.monotonic() - began, 1),
                  steps=tuple(rows), node=node, error=error, leftovers=tuple(leftovers),
                  notes=tuple(notes), access=access)


def _delete(cloud: Cloud, server: Server) -> list[str]:
    """Delete the node and check, through the owner marker, that nothing of it is left."""
    owner = server.tags.get(OWNER_KEY)
    try:
        cloud.delete_server(server, timeout=DELETE_WAIT)
    except errors.CloudnormError as exc:
        return [f"server {server.id} ({exc})"]
    if not owner:
        return []
    return [f"{c.kind} {c.id}" for c in cloud.owned_resources(owner)]


def as_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data (the shape ``cloudnorm conformance --json`` prints)."""
    data = attrs.asdict(report)
    data["ok"] = report.ok
    data["steps"] = [attrs.asdict(s) for s in report.steps]
    data["leftovers"] = list(report.leftovers)
    data["notes"] = list(report.notes)
    return data

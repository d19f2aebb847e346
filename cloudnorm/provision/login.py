"""Steps 6 to 8 of a create: login with a verified host key, bootstrap, node key removal."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence

import attrs

from cloudnorm import errors, hostkeys, keys, ssh
from cloudnorm.drivers.base import Driver
from cloudnorm.models import CREATE_KEY, Decision, Server
from cloudnorm.provision.context import Run
from cloudnorm.provision.ledger import STEPS, Reporter

LOG = logging.getLogger(__name__)

#: Seconds after sshd first answers until a new server's console is first read, unless
#: earlier servers of the image printed their host keys later (then up to
#: :data:`LATEST_FIRST_READ`: what a learned wait gone stale after a slow spell costs
#: at most; servers of a busy cloud take that long, 5 to 17 s in a fleet of 50 on
#: two cores).
FIRST_CONSOLE_READ = 1.0
LATEST_FIRST_READ = 15.0
#: Seconds from the first console read to the second; the next waits grow from it.
SECOND_CONSOLE_READ = 0.5
#: How much shorter than the wait a first look that found the keys counts, so that the
#: learned wait comes down again when servers print sooner (it found them at most then).
FOUND_AT_ONCE = 0.75


def log_in(run: Run) -> None:
    """6: wait for SSH, read the announced host keys, log in as the right user."""
    run.step = STEPS[5]
    report, request, driver = run.report, run.request, run.driver
    assert run.interface is not None and run.server is not None and run.node_key is not None
    assert run.image is not None
    address = run.interface.ip
    report.emit(run.step, "started", f"waiting for SSH on {address}")
    ssh.wait_for_port(address, run.ssh_port, timeout=run.left(),
                      on_attempt=lambda last: report.emit(STEPS[5], "waiting", last))
    image = run.image

    def learned_wait() -> float:
        learned = run.cloud.host_keys_delay(image)
        return min(LATEST_FIRST_READ, max(FIRST_CONSOLE_READ, learned or 0.0))

    first_read = learned_wait()
    announced, console, seen = announced_host_keys(driver, run.server.id, run.deadline,
                                                   request.verify_host_keys, report,
                                                   first_read=first_read, learned=learned_wait)
    if seen is not None:
        run.cloud.remember_host_keys_delay(run.image, delay_to_learn(seen, first_read))
    users, users_why = run.users, run.users_why
    if len(users) > 1:
        named = hostkeys.console_login_users(console, run.node_key.public_key)
        if named:
            users = [named[0]]
            users_why = (f"the console lists the node key among the authorized keys of "
                         f"{named[0]} (cloud-init's ssh-authkey-fingerprints)")
    run.target = ssh.Target(address, run.ssh_port, run.node_key.private_key,
                            announced if request.verify_host_keys else None)
    login = ssh.wait_for_login(run.target, users, timeout=run.left(),
                               on_attempt=lambda last: report.emit(STEPS[5], "waiting", last))
    run.cloud.remember_login_user(run.image, login.user)
    report.decide(Decision("login_user", login.user, users_why))
    run.login_user = login.user
    run.host_keys = tuple(announced.keys or (login.host_key,))
    report.emit(run.step, "done",
                f"logged in as {login.user} after {login.attempts} attempt(s)")


def bootstrap(run: Run) -> None:
    """7: operator keys for root and the login user, password logins off, both checked."""
    run.step = STEPS[6]
    if not run.request.bootstrap:
        run.report.emit(run.step, "skipped", "bootstrap=False")
        return
    assert run.target is not None
    run.report.emit(run.step, "started", "installing operator keys, turning password logins off")
    _harden(run.target, run.login_user, run.request.authorized_keys, run.report)
    run.report.emit(run.step, "done", "operator keys installed; password logins refused")


def remove_key(run: Run) -> None:
    """8: the node key goes away: from the node first, while it still logs in; then
    from the cloud, whose guest agents (GCE's) would otherwise put a key still listed
    back on the node."""
    run.step = STEPS[7]
    run.report.emit(run.step, "started", "removing the node key")
    if not run.request.keep_node_key and run.request.bootstrap:
        assert run.target is not None and run.node_key is not None
        _remove_node_key(run.target, run.login_user, run.node_key)
        detail = "removed from the node and from the cloud"
    else:
        detail = "removed from the cloud; kept on the node as asked"
    run.cloud.delete_keypair(run.key_name)
    run.ledger.forget("keypair")
    run.report.emit(run.step, "done", detail)


def result(run: Run) -> Server:
    """The created server with how to log in to it and every decision made; the login
    is stored on the server, which is marked done (the last write of a create)."""
    assert run.server is not None and run.interface is not None and run.login_user
    stored = _store_login(run.driver, run.server.id, run.login_user, run.interface.ip,
                          run.ssh_port, run.host_keys, run.report)
    run.server = attrs.evolve(run.server, tags={**run.server.tags, **stored})
    return attrs.evolve(run.server, interface_ip=run.interface.ip, ssh_user=run.login_user,
                        ssh_port=run.ssh_port, host_keys=run.host_keys, key_name=None,
                        decisions=tuple(run.report.decisions))


def announced_host_keys(driver: Driver, server_id: str, deadline: float, verify: bool,
                        report: Reporter, first_read: float = FIRST_CONSOLE_READ,
                        learned: Callable[[], float] | None = None,
                        ) -> tuple[hostkeys.HostKeys, str, float | None]:
    """Host keys the server's guest environment published through the cloud's API (GCE's
    guest attributes), else those cloud-init printed on the console, waiting (bounded) for
    either; the console text (its login-user table is read either way); and, for keys
    read from the console, how many seconds after the call it showed them. The console
    is first read ``first_read`` seconds after the call; ``learned``, asked before every
    read, is how long after sshd answered the image's servers lately showed their keys:
    no read comes sooner, so that servers booting alongside, which learn it while this
    one waits, spare it the reads they found useless."""
    if not verify:
        report.decide(Decision("host_keys", "not verified",
                               "verify_host_keys=False was passed: any host key is accepted"))
        return hostkeys.HostKeys(), "", None
    has_channel = driver.capabilities.published_host_keys
    published = driver.published_host_keys if has_channel else None
    # cloud-init makes the host keys in its init stage, after which sshd starts, but
    # prints them (keys-to-console) only near the end of its final stage, after the
    # config stage and the user's scripts (the module order of its default cloud.cfg):
    # a second or more after sshd answers on an idle machine, much later under load or
    # behind long user data. So the console is first read a second after sshd answered
    # (later when the image's earlier servers printed later: log_in learns it), then half
    # a second later and at growing waits: a quick print is seen about as it comes, a
    # slow one costs few console reads. A guest environment that publishes its keys
    # (GCE's) does so before sshd serves: that copy is read at once.
    waits, started = _console_waits(first_read), time.monotonic()
    first = True
    while True:
        wait = next(waits)
        if learned is not None:
            wait = max(wait, learned() - (time.monotonic() - started))
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
        if keys:
            report.decide(Decision(
                "host_keys", f"{len(keys)} published",
                "the server's guest environment published them through the cloud's API "
                "(GCE: guest attributes, hostkeys/) and they were read back over that API, "
                "not from the network"))
            # Read for its login-user table.
            return hostkeys.HostKeys(keys=keys), driver.console_output(server_id), None
        last_look = time.monotonic() + wait >= deadline
        if not first or last_look:
            console = driver.console_output(server_id)
            found = hostkeys.parse_console(console)
            if found:
                report.decide(Decision(
                    "host_keys", f"{len(found.keys) or len(found.fingerprints)} announced",
                    "read from the console output cloud-init printed at first boot"))
                return found, console, time.monotonic() - started
        first = False
        if last_look:
            raise errors.Timeout(
                f"server {server_id} never printed its SSH host keys on the console"
                + (" nor published them through the cloud's API" if has_channel else "")
                + "; cannot verify whom cloudnorm would log in to. Pass "
                "verify_host_keys=False to accept any key (not recommended)")
        time.sleep(wait)


def delay_to_learn(seen: float, first_read: float) -> float:
    """What a create that found the host keys ``seen`` seconds after sshd answered tells
    the next ones. Keys found at the first read came at most then: they count shorter
    (:data:`FOUND_AT_ONCE`), so that the learned wait comes down again once servers
    print sooner; found later, they count as seen (they came after the read before)."""
    found_at_first_read = seen < first_read + SECOND_CONSOLE_READ
    return seen * FOUND_AT_ONCE if found_at_first_read else seen


def _console_waits(first: float) -> Iterator[float]:
    """Seconds before each look at a new server's host keys: the first console read
    ``first`` seconds after sshd answered, the next half a second later, then half as
    long again each time, up to five seconds."""
    yield first
    wait = SECOND_CONSOLE_READ
    while True:
        yield wait
        wait = min(wait * 1.5, 5.0)


def _store_login(driver: Driver, server_id: str, user: str, address: str, port: int,
                 host_keys: tuple[str, ...], report: Reporter) -> dict[str, str]:
    """Write how to log in (user, address, port, host keys) on the server itself, so
    get_server() gives it back to any later caller, and mark the create done; returns
    the items written. A failure fails the create: a server still marked
    ``in-progress`` is one ``cloudnorm cleanup`` would remove."""
    if not driver.capabilities.server_metadata:
        report.decide(Decision("login_record", "not stored", f"{driver.provider} servers "
                               "carry no metadata cloudnorm can write"))
        return {}
    items = {**hostkeys.login_metadata(user, address, port, host_keys), CREATE_KEY: "done"}
    driver.set_server_metadata(server_id, items)
    report.decide(Decision("login_record", f"{len(items) - 1} metadata items",
                           f"user, address, port and {len(items) - 2} host key(s) stored on "
                           "the server, so get_server() can give them back"))
    return items


def _harden(target: ssh.Target, user: str, authorized_keys: Sequence[str],
            report: Reporter) -> None:
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

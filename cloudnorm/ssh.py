"""Reaching a new server over SSH: who logs in, whether the host key is the
announced one, and the commands of post-boot hardening.

"Ready" means a TCP connection, an SSH banner and a successful key login as the
discovered user. Failures are split in two: *retryable* (refused, timed out,
no banner yet: the server is still booting) and *fatal* (the host key is not
the console's, or the key is refused for every candidate user), so a fatal
failure ends the wait in seconds instead of at the timeout.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import logging
import shlex
import socket
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import attrs

from cloudnorm import errors
from cloudnorm.hostkeys import HostKeys

LOG = logging.getLogger(__name__)
T = TypeVar("T")


@attrs.frozen
class Target:
    """Where and how to log in. ``host_keys`` None means unverified (explicit opt-out)."""

    address: str
    port: int
    private_key: str = attrs.field(repr=False)
    host_keys: HostKeys | None


@attrs.frozen
class Login:
    user: str
    host_key: str  # "<type> <base64>" as presented by the server
    attempts: int
    elapsed: float


class _Retry(Exception):
    """Worth trying again: ``users`` could not be asked yet; ``answered`` when sshd
    already answered some other candidate (so it is up)."""

    def __init__(self, message: str, users: Sequence[str] = (), answered: bool = False) -> None:
        super().__init__(message)
        self.users = list(users)
        self.answered = answered


class _Denied(Exception):
    pass


def _run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code, even under a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _client_factory(target: Target) -> Any:
    import asyncssh

    class _Client(asyncssh.SSHClient):  # type: ignore[misc]
        presented: str = ""

        def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
            algorithm = key.get_algorithm()
            blob = base64.b64encode(key.public_data).decode()
            _Client.presented = f"{algorithm} {blob}"
            return target.host_keys is None or target.host_keys.accepts(algorithm, blob)

    return _Client


def _host_key_algorithms(host_keys: HostKeys | None) -> list[str] | str:
    """Ask for the host key types held in full, so that the server presents one that
    can be checked: a record may hold an RSA key only as a fingerprint (too long for a
    metadata value) or not at all, while sshd would happily present it."""
    if host_keys is None or not host_keys.keys:
        return "default"
    algorithms: list[str] = []
    for key in host_keys.keys:
        key_type = key.split()[0]
        algorithms += (["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] if key_type == "ssh-rsa"
                       else [key_type])
    return list(dict.fromkeys(algorithms))


async def _connect(target: Target, user: str, timeout: float) -> tuple[Any, str]:
    import asyncssh

    client = _client_factory(target)
    try:
        conn, _ = await asyncssh.create_connection(
            client, target.address, target.port, username=user,
            client_keys=[asyncssh.import_private_key(target.private_key)],
            known_hosts=lambda *_: ([], [], []),
            server_host_key_algs=_host_key_algorithms(target.host_keys),
            connect_timeout=timeout, login_timeout=timeout, agent_path=None,
            config=None, preferred_auth="publickey", password=None,
            kbdint_auth=False, ignore_encrypted=True)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise errors.HostKeyMismatch(
            f"{target.address}:{target.port} presented host key {client.presented[:40]}... "
            "which its console output did not announce; nothing was run on it. If the server "
            "was rebuilt, fetch its console again; pass verify_host_keys=False only if you "
            "accept the risk") from exc
    except asyncssh.PermissionDenied as exc:
        raise _Denied(str(exc)) from exc
    except (OSError, asyncio.TimeoutError, asyncssh.ConnectionLost,
            asyncssh.DisconnectError) as exc:
        raise _Retry(f"{type(exc).__name__}: {exc}") from exc
    return conn, client.presented


#: Candidate logins in flight at once. sshd's default MaxStartups (10:30:100) starts
#: dropping unauthenticated connections beyond ten, which would turn a probe of
#: twelve users into a lottery.
PROBE_PARALLEL = 8
#: Printed by the check command of a probe: a login that does not print it (a
#: forced command such as cloud-init's "Please login as the user ..." for root) is
#: not a working login.
_PROBE_MARK = "cloudnorm-login-ok"


async def _attempt(target: Target, user: str, timeout: float, verify: bool,
                   gate: asyncio.Semaphore) -> tuple[Any, str]:
    async with gate:
        conn, presented = await _connect(target, user, timeout)
    if not verify:
        return conn, presented
    try:
        result = await asyncio.wait_for(conn.run(f"echo {_PROBE_MARK}", check=False), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        conn.close()
        raise _Retry(f"{type(exc).__name__}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    if result.exit_status == 0 and _PROBE_MARK in str(result.stdout or ""):
        return conn, presented
    conn.close()
    said = " ".join(str(result.stdout or result.stderr or "").split())[:120]
    raise _Denied(f"{user} gets no shell" + (f" ({said})" if said else ""))


async def _probe(target: Target, users: Sequence[str], timeout: float) -> Login:
    """Try the candidate users at once; the first that gets a shell wins.

    Raises _Retry naming the users worth another try when none got in and some
    could not be asked (no connection yet, dropped by sshd); _Denied when every
    user was refused.
    """
    started = time.monotonic()
    gate = asyncio.Semaphore(PROBE_PARALLEL)
    verify = len(users) > 1
    tasks = {asyncio.ensure_future(_attempt(target, u, timeout, verify, gate)): u
             for u in users}
    retry: list[str] = []
    denied: list[str] = []
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                user = tasks[task]
                exc = task.exception()
                if exc is None:
                    conn, presented = task.result()
                    conn.close()
                    return Login(user=user, host_key=presented, attempts=1,
                                 elapsed=time.monotonic() - started)
                if isinstance(exc, _Retry):
                    retry.append(user)
                    LOG.debug("login as %s: %s", user, exc)
                elif isinstance(exc, _Denied):
                    denied.append(str(exc) or user)
                else:
                    raise exc
    finally:
        for task in tasks:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, tuple):
                result[0].close()
    if retry:
        raise _Retry(f"no answer yet for {', '.join(retry)}", users=retry,
                     answered=bool(denied))
    raise _Denied(", ".join(denied))


#: Seconds between attempts to reach a node at first; each pause is 1.5 times the last,
#: up to the ``interval`` of :func:`wait_for_port` and :func:`wait_for_login`. A node's
#: SSH often answers a moment after its address is assigned: a fixed 2 s pause would add
#: up to 2 s to most creates.
FIRST_LOGIN_PAUSE = 0.25


def _pauses(interval: float) -> Iterator[float]:
    pause = min(FIRST_LOGIN_PAUSE, interval)
    while True:
        yield pause
        pause = min(pause * 1.5, interval)


def wait_for_port(address: str, port: int, *, timeout: float, interval: float = 2.0,
                  on_attempt: Callable[[str], None] | None = None) -> int:
    """Wait until ``address:port`` answers with an SSH banner; returns the attempts made.

    Knocking costs the cloud nothing, unlike reading the console: cloud-init prints the
    host keys there once sshd is up, so the console is worth reading only from then on.
    Raises :class:`~cloudnorm.errors.Timeout` when nothing answers in time.
    """
    deadline = time.monotonic() + timeout
    pauses = _pauses(interval)
    attempts = 0
    while True:
        attempts += 1
        per_try = max(0.5, min(5.0, deadline - time.monotonic()))
        pause = None
        try:
            with socket.create_connection((address, port), timeout=per_try) as sock:
                # A server may send lines before its banner; the first read holds it.
                if b"SSH-" in sock.recv(1024):
                    return attempts
                last = "no SSH banner"
        except ConnectionRefusedError as exc:
            # The machine is up and sshd about to listen: knock again soon.
            last, pause = f"{type(exc).__name__}: {exc}", FIRST_LOGIN_PAUSE
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if on_attempt:
            on_attempt(last)
        pause = pause or next(pauses)
        if time.monotonic() + pause >= deadline:
            raise errors.Timeout(
                f"{address}:{port} was not reachable over SSH within {timeout:.0f} s "
                f"({attempts} attempts); last: {last}")
        time.sleep(pause)


def wait_for_login(target: Target, users: Sequence[str], *, timeout: float,
                   interval: float = 2.0, attempt_timeout: float = 10.0,
                   on_attempt: Callable[[str], None] | None = None) -> Login:
    """Log in as the first of ``users`` that works, retrying until ``timeout``.

    Attempts cost the cloud nothing (they go to the node), so the pauses between
    them start short and grow to ``interval``.

    Raises :class:`~cloudnorm.errors.HostKeyMismatch` at once on a wrong host
    key, :class:`~cloudnorm.errors.NotReachable` at once when every user is
    refused, and :class:`~cloudnorm.errors.Timeout` when the server never answers.
    """
    if not users:
        raise errors.NotReachable("no login user to try: name one with ssh_user=")
    deadline = time.monotonic() + timeout
    attempts = 0
    last = "no attempt made"
    candidates = list(users)
    pauses = _pauses(interval)
    while True:
        attempts += 1
        per_try = max(1.0, min(attempt_timeout, deadline - time.monotonic()))
        pause = next(pauses)
        try:
            login = _run_sync(lambda: _probe(target, candidates, per_try))  # noqa: B023
            return attrs.evolve(login, attempts=attempts)
        except _Denied as exc:
            raise errors.NotReachable(
                f"{target.address}:{target.port} answers SSH but refuses the node key for "
                f"every candidate user ({exc}); the image's login user is unknown: pass "
                "ssh_user=, or set the image property os_admin_user") from None
        except _Retry as exc:
            last = str(exc)
            if exc.users:
                # Users refused once stay refused; sshd answered, so it is up: ask the
                # others again soon.
                candidates = exc.users
                if exc.answered:
                    pause = min(interval, FIRST_LOGIN_PAUSE)
        if on_attempt:
            on_attempt(last)
        if time.monotonic() + pause >= deadline:
            raise errors.Timeout(
                f"{target.address}:{target.port} was not reachable over SSH within "
                f"{timeout:.0f} s ({attempts} attempts); last: {last}")
        time.sleep(pause)


async def _run(target: Target, user: str, command: str, timeout: float) -> tuple[int, str, str]:
    conn, _ = await _connect(target, user, timeout)
    try:
        result = await asyncio.wait_for(conn.run(command, check=False), timeout)
    finally:
        conn.close()
    return int(result.exit_status or 0), str(result.stdout or ""), str(result.stderr or "")


def _reconnecting(what: Callable[[], T], address: str, port: int, patience: float) -> T:
    """Call ``what``, retrying while the server cannot be connected to, for ``patience`` s.

    An sshd told to reload (SIGHUP) re-executes itself and listens again a
    moment later; connections in between are refused. Only connection set-up
    failures are retried, so a command is never run twice after it started.
    """
    deadline = time.monotonic() + patience
    delay = 0.05  # sshd re-executes in tens of milliseconds
    while True:
        try:
            return what()
        except _Retry as exc:
            if time.monotonic() + delay >= deadline:
                raise errors.NotReachable(f"lost {address}:{port}: {exc}") from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def run(target: Target, user: str, command: str, *, timeout: float = 60.0,
        patience: float = 30.0) -> tuple[int, str, str]:
    """Run one command as ``user``; returns (exit status, stdout, stderr)."""
    try:
        return _reconnecting(lambda: _run_sync(lambda: _run(target, user, command, timeout)),
                             target.address, target.port, patience)
    except _Denied as exc:
        raise errors.NotReachable(
            f"{target.address}:{target.port} refused the key for {user}: {exc}") from None


def key_refused(target: Target, user: str, *, patience: float = 30.0) -> bool:
    """True when the server no longer accepts ``target``'s key for ``user``."""
    async def attempt() -> bool:
        try:
            conn, _ = await _connect(target, user, 10.0)
        except _Denied:
            return True
        conn.close()
        return False

    return _reconnecting(lambda: _run_sync(attempt), target.address, target.port, patience)


async def _password_refused(address: str, port: int, user: str, timeout: float) -> bool:
    import asyncssh

    try:
        conn = await asyncssh.connect(
            address, port, username=user, password="cloudnorm-probe-not-a-password",
            known_hosts=None, client_keys=None, agent_path=None, config=None,
            preferred_auth="password,keyboard-interactive", connect_timeout=timeout,
            login_timeout=timeout)
    except asyncssh.PermissionDenied:
        return True
    except (OSError, asyncio.TimeoutError, asyncssh.ConnectionLost,
            asyncssh.DisconnectError) as exc:
        raise _Retry(f"{type(exc).__name__}: {exc}") from exc
    conn.close()
    return False


def password_login_refused(address: str, port: int, user: str = "root",
                           timeout: float = 10.0, patience: float = 30.0) -> bool:
    """True when the server offers no password authentication (the probe password is
    not a secret and never valid; the host key is not needed to ask)."""
    return _reconnecting(lambda: _run_sync(lambda: _password_refused(address, port, user,
                                                                     timeout)),
                         address, port, patience)


def hardening_script(user: str, authorized_keys: Sequence[str], remove_key: str | None) -> str:
    """Shell run as ``user`` (with sudo) on the node: operator keys for root and
    ``user``, password logins off, sshd reloaded, the node key removed."""
    keys = "\n".join(k.strip() for k in authorized_keys if k.strip())
    lines = [
        "set -eu",
        f"KEYS={shlex.quote(keys)}",
        "SUDO=; [ \"$(id -u)\" = 0 ] || SUDO='sudo -n'",
        "for home in /root \"$HOME\"; do",
        "  $SUDO mkdir -p \"$home/.ssh\"; $SUDO chmod 700 \"$home/.ssh\"",
        "  $SUDO touch \"$home/.ssh/authorized_keys\"",
        "  printf '%s\\n' \"$KEYS\" | while IFS= read -r key; do",
        "    [ -n \"$key\" ] || continue",
        "    $SUDO grep -qxF \"$key\" \"$home/.ssh/authorized_keys\" ||"
        " printf '%s\\n' \"$key\" | $SUDO tee -a \"$home/.ssh/authorized_keys\" >/dev/null",
        "  done",
        "  $SUDO chmod 600 \"$home/.ssh/authorized_keys\"",
        "done",
        f"$SUDO chown -R {shlex.quote(user)}: \"$HOME/.ssh\" 2>/dev/null || true",
        # A drop-in wins over the main file where sshd_config includes sshd_config.d
        # (first value wins in sshd); the main file is edited too for images without it.
        "CFG=/etc/ssh/sshd_config",
        "if $SUDO grep -qi '^Include /etc/ssh/sshd_config.d' $CFG; then",
        "  $SUDO mkdir -p /etc/ssh/sshd_config.d",
        "  printf 'PasswordAuthentication no\\nKbdInteractiveAuthentication no\\n"
        "PermitRootLogin prohibit-password\\n' |"
        " $SUDO tee /etc/ssh/sshd_config.d/00-cloudnorm.conf >/dev/null",
        "fi",
        "$SUDO sed -i -E 's/^#?[[:space:]]*(PasswordAuthentication|KbdInteractiveAuthentication|"
        "ChallengeResponseAuthentication)[[:space:]].*/\\1 no/I' $CFG",
        "$SUDO grep -qi '^PasswordAuthentication no' $CFG ||"
        " echo 'PasswordAuthentication no' | $SUDO tee -a $CFG >/dev/null",
        "$SUDO sshd -t 2>/dev/null || $SUDO /usr/sbin/sshd -t",
        "if command -v systemctl >/dev/null && $SUDO systemctl is-active -q ssh 2>/dev/null;"
        " then $SUDO systemctl reload ssh",
        "elif command -v systemctl >/dev/null && $SUDO systemctl is-active -q sshd 2>/dev/null;"
        " then $SUDO systemctl reload sshd",
        "else for pidfile in /run/sshd.pid /var/run/sshd.pid; do",
        "  [ -f $pidfile ] && $SUDO kill -HUP \"$($SUDO cat $pidfile)\" && break",
        "done; fi",
    ]
    if remove_key:
        lines += [
            f"NODE_KEY={shlex.quote(remove_key.strip())}",
            "for home in /root \"$HOME\"; do",
            "  $SUDO sed -i \"\\|$(printf '%s' \"$NODE_KEY\" | cut -d' ' -f2)|d\""
            " \"$home/.ssh/authorized_keys\"",
            "done",
        ]
    return "\n".join(lines) + "\n"

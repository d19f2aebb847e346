"""The private network namespace that nodes live in.

Nodes answer on public-looking addresses (203.0.113.x, 2001:db8::) that must
never be configured on, or routed from, the machine's real network. All of
that therefore happens inside a network namespace of its own with no default
route, where those addresses sit on the loopback link.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence

IP_TIMEOUT = 10


class NotInPrivateNetns(RuntimeError):
    """This process shares the machine's network, or can reach outside it."""


def _ip_binary() -> str:
    return shutil.which("ip") or "/usr/sbin/ip"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    for attempt in range(3):
        try:
            proc = subprocess.run(
                [_ip_binary(), *args], capture_output=True, text=True, timeout=IP_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
            break
        except OSError as exc:
            # Starting the program failed before it ran: seen as EFAULT from execve now and
            # then while many threads start processes at once (CPython starts children with
            # vfork). Nothing happened yet, so asking again is safe.
            if exc.errno != errno.EFAULT or attempt == 2:
                raise
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def require_private_netns() -> None:
    """Refuse unless this process is in a network namespace of its own without a way out."""
    own = os.readlink("/proc/self/ns/net")
    try:
        machine = os.readlink("/proc/1/ns/net")
    except OSError:
        # Without the privilege to look at PID 1, the route check below still
        # refuses the machine's namespace, which always has a default route.
        machine = None
    if own == machine:
        raise NotInPrivateNetns(
            "this process uses the machine's own network namespace; run it under "
            "`unshare -n` (see cloudnorm.testing.dataplane.netns.run_in_private_netns)"
        )
    for family in ("-4", "-6"):
        proc = _ip(family, "route", "show", "table", "all", "default", check=False)
        # A kernel without IPv6 answers with an error and certainly has no v6 route.
        routes = proc.stdout.strip() if proc.returncode == 0 else ""
        if routes:
            raise NotInPrivateNetns(
                f"this network namespace has a default route ({routes.splitlines()[0]}); "
                "node addresses would be reachable from, and leak to, a real network"
            )


def in_private_netns() -> bool:
    """Whether :func:`require_private_netns` would pass: the test modules that need the
    data plane run their scenarios when it does, and re-run themselves in a fresh
    namespace when it does not."""
    try:
        require_private_netns()
    except NotInPrivateNetns:
        return False
    return True


def _prefixed(address: str) -> tuple[str, list[str]]:
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return f"{ip}/32", []
    # Duplicate address detection would keep the address "tentative" and
    # unbindable for a moment after it is added.
    return f"{ip}/128", ["nodad"]


def add_address(address: str) -> None:
    """Make ``address`` local to this namespace (a host route on ``lo``); idempotent."""
    address = str(ipaddress.ip_address(address))
    require_private_netns()
    _ip("link", "set", "lo", "up")
    cidr, flags = _prefixed(address)
    proc = _ip("addr", "add", cidr, "dev", "lo", *flags, check=False)
    if proc.returncode != 0 and address not in local_addresses():
        raise RuntimeError(f"cannot add {cidr} to lo: {proc.stderr.strip()}")


def remove_address(address: str) -> None:
    address = str(ipaddress.ip_address(address))
    require_private_netns()
    cidr, _ = _prefixed(address)
    proc = _ip("addr", "del", cidr, "dev", "lo", check=False)
    if proc.returncode != 0 and address in local_addresses():
        raise RuntimeError(f"cannot remove {cidr} from lo: {proc.stderr.strip()}")


def local_addresses() -> set[str]:
    """Addresses currently on ``lo`` (for checks that a node let go of its addresses)."""
    out = _ip("-o", "addr", "show", "dev", "lo").stdout
    found = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[2] in ("inet", "inet6"):
            found.add(str(ipaddress.ip_address(fields[3].split("/")[0])))
    return found


def private_netns_command(argv: Sequence[str]) -> list[str]:
    """``argv`` wrapped so that it runs in a new network namespace with ``lo`` up."""
    # Without root, a user namespace grants the capabilities needed inside.
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    return [*unshare, "--", "/bin/sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]


def run_in_private_netns(
    argv: Sequence[str],
    *,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> int:
    """Run ``argv`` in a new, empty network namespace and return its exit code."""
    proc = subprocess.Popen(private_netns_command(argv), env=env, cwd=cwd)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise
    except KeyboardInterrupt:
        _stop(proc, signal.SIGINT)
        raise


def _stop(proc: subprocess.Popen[bytes], first: int = signal.SIGTERM) -> None:
    # Nodes started by the child notice its exit (their control pipe closes)
    # and shut themselves down, so stopping the child itself is enough.
    proc.send_signal(first)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)

"""``cloudnorm ssh``: the system ssh client, pointed at a server the way cloudnorm
verified it.

create_server stores the login user, the address and port it logged in on, and the
host keys it checked against the console, on the server itself (see
:func:`cloudnorm.hostkeys.login_metadata`). From those a ``known_hosts`` file is
written for this server alone and ssh runs with ``StrictHostKeyChecking=yes``: a
server presenting another key is refused. Keys too long to store whole (RSA) are
stored as fingerprints; when no whole key is stored, the keys ``ssh-keyscan`` reads
are accepted only if their fingerprints are the stored ones.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cloudnorm import errors, hostkeys

KEYSCAN_TIMEOUT = 10


def cache_dir() -> Path:
    """``$CLOUDNORM_CACHE_DIR``, else ``~/.cache/cloudnorm``."""
    configured = os.environ.get("CLOUDNORM_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "cloudnorm"


def known_hosts_lines(server: Any) -> list[str]:
    """known_hosts lines for the server's verified host keys.

    Whole keys when stored; otherwise the keys the server presents now, if their
    fingerprints are the stored ones.
    """
    if not server.interface_ip:
        raise errors.NotReachable(f"server {server.name} has no address to log in on")
    if server.host_keys:
        return hostkeys.known_hosts_lines(server.host_keys, server.interface_ip,
                                          server.ssh_port)
    record = hostkeys.login_record(server.tags)
    if record is None or not record.fingerprints:
        raise errors.NotReachable(
            f"server {server.name} carries no host keys cloudnorm verified (it was not made "
            "by create_server, or made before logins were stored): its host key cannot be "
            "checked")
    scanned = keyscan(server.interface_ip, server.ssh_port)
    accepted = [k for k in scanned
                if hostkeys.fingerprint(k.split()[1]) in record.fingerprints]
    if not accepted:
        raise errors.HostKeyMismatch(
            f"{server.interface_ip} port {server.ssh_port} presents no host key with a "
            f"fingerprint cloudnorm verified ({', '.join(record.fingerprints)})")
    return hostkeys.known_hosts_lines(tuple(accepted), server.interface_ip, server.ssh_port)


def keyscan(address: str, port: int) -> list[str]:
    """``<type> <base64>`` of every host key the server presents (unverified)."""
    try:
        proc = subprocess.run(["ssh-keyscan", "-T", str(KEYSCAN_TIMEOUT), "-p", str(port),
                               address], capture_output=True, text=True,
                              timeout=KEYSCAN_TIMEOUT * 3, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise errors.NotReachable(f"ssh-keyscan {address} port {port} failed: {exc}") from None
    keys = []
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#"):
            keys.append(f"{fields[1]} {fields[2]}")
    return keys


def write_known_hosts(server: Any, directory: Path | None = None) -> Path:
    """The server's known_hosts file (rewritten on every call), private to the user."""
    directory = directory or cache_dir() / "known_hosts"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{server.location.cloud}-{server.id}".replace("/", "_")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.writelines(line + "\n" for line in known_hosts_lines(server))
    return path


def ssh_argv(server: Any, known_hosts: Path, *, user: str | None = None,
             identity: str | None = None, options: Sequence[str] = (),
             command: Sequence[str] = ()) -> list[str]:
    """The ssh command line for the server: its user, address and port, and only the
    verified host keys accepted."""
    login = user or server.ssh_user
    if not login:
        raise errors.NotReachable(f"the login user of server {server.name} is unknown: "
                                  "name one with --user")
    argv = ["ssh", "-p", str(server.ssh_port), "-l", login,
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", "UpdateHostKeys=no"]
    if identity:
        argv += ["-i", identity, "-o", "IdentitiesOnly=yes"]
    for option in options:
        argv += ["-o", option]
    return [*argv, server.interface_ip, *command]

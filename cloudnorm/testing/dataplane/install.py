"""Make the machine able to run nodes: the real OpenSSH server and sudo.

A node's root filesystem is a copy-on-write view of this machine's, so the
programs a node runs (sshd, sudo, useradd) must be installed here first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
SUDO = Path("/usr/bin/sudo")
PACKAGES = ("openssh-server", "sudo")
# Debian's convention for "packages must not start services": invoke-rc.d
# asks this script and exit code 101 means "action forbidden".
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
APT_TIMEOUT = 600


class InstallError(RuntimeError):
    """The OpenSSH server could not be made available."""


def missing() -> list[str]:
    return [p for p, path in zip(PACKAGES, (SSHD, SUDO), strict=True) if not path.exists()]


def ensure_openssh(timeout: float = APT_TIMEOUT) -> None:
    """Install openssh-server and sudo with apt-get unless already present."""
    packages = missing()
    if not packages:
        return
    if os.geteuid() != 0:
        raise InstallError(
            f"{', '.join(packages)} not installed and this process is not root; "
            f"run as root: apt-get install -y {' '.join(PACKAGES)}"
        )
    if shutil.which("apt-get") is None:
        raise InstallError(f"{', '.join(packages)} not installed and apt-get is not available")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", NEEDRESTART_MODE="l")
    created_policy = forbid_service_start()
    try:
        apt(["apt-get", "update", "-q"], env, timeout)
        apt(
            [
                "apt-get", "install", "-y", "-q", "--no-install-recommends",
                "-o", "Dpkg::Options::=--force-confdef",
                "-o", "Dpkg::Options::=--force-confold",
                *PACKAGES,
            ],
            env,
            timeout,
        )
    finally:
        if created_policy:
            POLICY_RC_D.unlink(missing_ok=True)
    still = missing()
    if still:
        raise InstallError(f"apt-get finished but {', '.join(still)} is still missing")


def forbid_service_start() -> bool:
    # The machine may have no init system; a started sshd would also listen
    # on the machine's real interfaces, which nodes must never do.
    if POLICY_RC_D.exists():
        return False
    POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    return True


def apt(argv: list[str], env: dict[str, str], timeout: float) -> None:
    # Another apt run may hold the lock; wait for it rather than fail at once.
    argv = [argv[0], "-o", "DPkg::Lock::Timeout=120", *argv[1:]]
    try:
        proc = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise InstallError(f"{' '.join(argv)} failed with exit code {proc.returncode}:\n{tail}")

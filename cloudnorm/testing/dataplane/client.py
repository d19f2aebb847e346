"""Logging in to data plane nodes the way a person would: the system ``ssh`` client,
strict host key checking against a known_hosts file, nothing of the caller's own SSH
configuration, agent or keys."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cloudnorm.testing.dataplane.node import DEFAULT_PASSWORD

_ISOLATED = ["-F", "/dev/null", "-o", "StrictHostKeyChecking=yes",
             "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10"]


def key_login(address: str, user: str, key: Path, known_hosts: Path, *options: str,
              command: str = "id -un") -> subprocess.CompletedProcess[str]:
    """Run ``command`` as ``user`` with the private key in ``key`` only."""
    argv = ["ssh", *_ISOLATED, "-i", str(key), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "IdentityAgent=none",
            *options, f"{user}@{address}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL,
                          env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"})


def password_login(address: str, user: str, known_hosts: Path,
                   workdir: Path) -> subprocess.CompletedProcess[str]:
    """Try the nodes' default password for ``user`` (one prompt, password auth only)."""
    askpass = workdir / "askpass"
    askpass.write_text(f"#!/bin/sh\nprintf '%s\\n' '{DEFAULT_PASSWORD}'\n")
    askpass.chmod(0o700)
    argv = ["ssh", *_ISOLATED, "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
            "-o", "NumberOfPasswordPrompts=1", f"{user}@{address}", "id -un"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL,
                          env={"PATH": os.environ["PATH"], "HOME": "/nonexistent",
                               "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"})

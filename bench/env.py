"""Getting ready outside the private network namespace, then moving into one.

Everything that needs the network (the bench's own Python dependencies, the local
OpenStack's cached environment, OpenSSH for the data plane, redis-server and the Redis
client for the shared-cache scenario) is installed first; then
the bench re-executes itself under ``unshare -n`` with only ``lo`` up, where the
sandbox's services, its SSH nodes and every request of the bench live.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import subprocess
import sys

from bench.common import ROOT, say

INSIDE = "CLOUDNORM_BENCH_NETNS"
# import name for each requirement of the bench extra
_MODULES = {"apache-libcloud": "libcloud", "matplotlib": "matplotlib",
            "pyinstrument": "pyinstrument", "psutil": "psutil"}


def inside() -> bool:
    return bool(os.environ.get(INSIDE))


def bench_requirements(extra: str = "bench") -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    raw = config.get("options.extras_require", extra, fallback="")
    return [line.strip() for line in raw.splitlines() if line.strip()]


def ensure_dependencies() -> None:
    """pip-install the requirements of the ``bench`` extra, and of the ``redis`` extra
    (the client the shared discovery cache needs), that are not importable yet."""
    missing = []
    for requirement in bench_requirements() + bench_requirements("redis"):
        name = requirement.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip()
        module = _MODULES.get(name.lower(), name.replace("-", "_"))
        if importlib.util.find_spec(module) is None:
            missing.append(requirement)
    if missing:
        say(f"installing the bench's dependencies: {', '.join(missing)}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", *missing], check=True, timeout=900)


def prepare() -> None:
    ensure_dependencies()
    from cloudnorm.testing.dataplane import ensure_openssh
    from cloudnorm.testing.openstack import install

    say("installing the local OpenStack services (cached after the first run)")
    install.ensure_installed()
    ensure_openssh()
    from cloudnorm.testing.redis import ensure_redis

    ensure_redis()  # redis-server for scenario "processes" (Debian's package, if missing)


def reexec_in_private_netns(argv: list[str]) -> int:
    from cloudnorm.testing.dataplane.netns import run_in_private_netns

    env = dict(os.environ, **{INSIDE: "1"})
    return run_in_private_netns([sys.executable, "-m", "bench", *argv], env=env, cwd=ROOT)

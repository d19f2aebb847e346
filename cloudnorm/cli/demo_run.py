"""``cloudnorm demo``: every local cloud, one server each, logged in, measured, removed.

Outside the sandbox the command starts one (all OpenStack profiles and the local EC2,
with the SSH data plane) and runs itself inside it; the sandbox stops when it ends.
Inside, for every cloud it runs :func:`cloudnorm.conformance.run`: a plain boot to
measure the raw cloud, then ``create_server``; while the node exists it logs in with
the system ``ssh`` exactly as ``cloudnorm ssh`` does (address, port, user and host keys
read back from the server), then everything is deleted.

The OpenStack clouds are measured one after the other (the sandbox's services keep
their databases in SQLite, which serializes writes), the local EC2 beside them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

#: The local EC2's cloud among the sandbox's (the others are variants of it).
AWS_CLOUD = "sandbox-aws"
#: The local compute engine's cloud among the sandbox's.
GCE_CLOUD = "sandbox-gce"
INSIDE = "CLOUDNORM_DEMO_INSIDE"
LOCAL_POLL_INTERVAL = 0.5


def outside_argv(clouds: list[str]) -> list[str]:
    """The sandbox runner with this command inside it; with ``clouds``, only the
    profiles they need are started (``sandbox-<profile>``, ``sandbox-aws``)."""
    argv = [sys.executable, "-m", "cloudnorm.testing", "run"]
    for cloud in clouds:
        argv += ["--profile", cloud.removeprefix("sandbox-")]
    argv += ["--", sys.executable, "-m", "cloudnorm.cli", "demo"]
    for cloud in clouds:
        argv += ["--cloud", cloud]
    return argv


def demo_clouds(clouds_yaml: str) -> list[str]:
    """Every OpenStack profile's cloud, then the local EC2's and compute engine's."""
    import yaml

    with open(clouds_yaml, encoding="utf-8") as handle:
        names = sorted((yaml.safe_load(handle) or {}).get("clouds") or {})
    openstack = [n for n in names if n.startswith("sandbox-") and not n.startswith(
        (AWS_CLOUD, GCE_CLOUD))]
    return openstack + [c for c in (AWS_CLOUD, GCE_CLOUD) if c in names]


def login_with_system_ssh(cloud: Any, server: Any, operator: Any) -> list[str]:
    """Log in to ``server`` the way ``cloudnorm ssh`` does, with what get_server() gives
    back; returns a note for the report (raises when the login fails)."""
    from cloudnorm import errors
    from cloudnorm.cli.ssh_access import ssh_argv, write_known_hosts

    stored = cloud.get_server(server.id)
    with tempfile.TemporaryDirectory(prefix="cloudnorm-demo-") as tmp:
        known = write_known_hosts(stored, Path(tmp))
        key = Path(tmp) / "operator"
        key.write_text(operator.private_key)
        key.chmod(0o600)
        argv = ssh_argv(stored, known, identity=str(key),
                        options=["BatchMode=yes", "ConnectTimeout=10"],
                        command=["id -un; hostname"])
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise errors.NotReachable(f"system ssh to {stored.interface_ip} port "
                                  f"{stored.ssh_port} failed: {proc.stderr.strip()[-300:]}")
    said = " / ".join(proc.stdout.split())
    return [f"system ssh {stored.ssh_user}@{stored.interface_ip} -p {stored.ssh_port}, "
            f"host keys from the server's metadata, StrictHostKeyChecking=yes: "
            f"`id -un; hostname` said {said}"]


def run_inside(clouds: list[str] | None = None, *, timeout: float = 240.0,
               out: Any = None) -> int:
    """Measure every sandbox cloud; prints the tables; 0 when every cloud conforms."""
    import cloudnorm
    from cloudnorm import conformance
    from cloudnorm.cli.progress import Progress
    from cloudnorm.cli.render import conformance_text, summary_table

    out = out or sys.stdout
    began = time.monotonic()
    names = clouds or demo_clouds(os.environ["OS_CLIENT_CONFIG_FILE"])
    reports: dict[str, dict[str, Any]] = {}

    def measure(name: str) -> None:
        progress = Progress(name, live=False)
        try:
            with cloudnorm.connect(name) as cloud:
                # Local clouds answer at once; polling them every half second instead of
                # every two (what real clouds get) takes seconds off every wait.
                cloud.watcher.interval = LOCAL_POLL_INTERVAL
                report = conformance.run(
                    cloud, timeout=timeout, on_step=progress.step,
                    progress=lambda what, detail: progress.status(f"{what}: {detail}"),
                    after_create=lambda server, key: login_with_system_ssh(cloud, server, key))
            reports[name] = conformance.as_dict(report)
            progress.finish(f"measured in {report.elapsed:.0f}s"
                            + ("" if report.ok else " -- does NOT conform"),
                            "ok" if report.ok else "!!", "green" if report.ok else "red")
        except Exception as exc:  # one cloud's failure must not hide the others' tables
            reports[name] = {"cloud": name, "error": f"{type(exc).__name__}: {exc}"}
            progress.finish(f"failed: {exc}", "!!", "red")

    def sequence(group: list[str]) -> None:
        for name in group:
            measure(name)

    groups = [[n for n in names if n != AWS_CLOUD], [n for n in names if n == AWS_CLOUD]]
    threads = [threading.Thread(target=sequence, args=(g,)) for g in groups if g]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ordered = [reports[n] for n in names]
    failed = [r for r in ordered if "steps" not in r]
    complete = [r for r in ordered if "steps" in r]
    print("cloudnorm demo: one server per sandbox cloud, created, logged in to with the "
          "system ssh, deleted;\nthe raw cloud measured by a plain boot beside it.\n",
          file=out)
    for report in complete:
        print(conformance_text(report, width=118) + "\n", file=out)
    for report in failed:
        print(f"cloud {report['cloud']}: error: {report['error']}\n", file=out)
    print(summary_table(complete), file=out)
    ok = not failed and all(r["ok"] for r in complete)
    print(f"\n{len(complete)} clouds measured in {time.monotonic() - began:.0f}s; "
          + ("every one conforms through cloudnorm." if ok else "NOT every cloud conforms."),
          file=out)
    return 0 if ok else 1

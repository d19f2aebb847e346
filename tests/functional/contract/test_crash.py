"""A create killed with SIGKILL at each of its eight steps: the process dies, nothing
can roll back, and what it made is left on the cloud. ``cloudnorm cleanup`` then finds
all of it by its owner marker and removes it: servers, ports, floating and Elastic IPs,
security groups, key pairs and volumes. What is left is counted through the provider's
own API (openstacksdk, boto3, google-cloud-compute), not through cloudnorm: 0.

The create asks for a data volume, so every kind of resource a create makes exists at
the later steps. Each step is killed at its first event after it started (see
:data:`KILL_POINTS`), where what the step made exists and the step has not finished.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from sandbox_clouds import clouds_with

from cloudnorm.provision import STEPS

pytestmark = [pytest.mark.functional,
              pytest.mark.filterwarnings("ignore:Support for InfluxDB")]

#: Where each step dies: (step, status of the event, text the event's detail holds).
KILL_POINTS = {
    "node_key": ("node_key", "done", "registered"),
    "discovery": ("discovery", "done", ""),
    "choice": ("choice", "done", ""),
    "boot": ("boot", "waiting", "requested"),  # the server asked for, not yet running
    "public_address": ("public_address", "done", ""),
    "login": ("login", "done", ""),
    "bootstrap": ("bootstrap", "done", ""),
    "remove_key": ("remove_key", "done", ""),  # all done but marking the server done
}
#: OpenStack's volumes are made through Cinder before Nova is asked for the server.
VOLUMES_MADE = ("boot", "waiting", "volume(s) made")

CHILD = textwrap.dedent("""
    import json, os, signal, sys
    import cloudnorm

    name, config, kill, key = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    def on_step(event):
        if [event.step, event.status] == kill[:2] and kill[2] in event.detail:
            print("killed at", event.step, event.status, event.detail, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    cloud = cloudnorm.connect(name, config_files=[config])
    cloud.create_server("cn-crash", authorized_keys=[key], volumes=[1], on_step=on_step,
                        timeout=120, **json.loads(sys.argv[5]))
    print("the create finished: the kill point never came", flush=True)
""")


def _points() -> list[pytest.param]:
    points = []
    for cloud in clouds_with("volumes"):
        for step in STEPS:
            points.append(pytest.param(cloud.values[0], KILL_POINTS[step],
                                       id=f"{cloud.id}-{step}"))
        if cloud.values[0].provider == "openstack":
            points.append(pytest.param(cloud.values[0], VOLUMES_MADE,
                                       id=f"{cloud.id}-boot-volumes-made"))
    return points


@pytest.mark.parametrize("sandbox_cloud, kill", _points(), indirect=["sandbox_cloud"])
def test_cleanup_removes_what_a_killed_create_left(sandbox_cloud, sandbox_fleet, kill,
                                                   operator_key):
    assert sandbox_cloud.leftovers() == []
    _, operator_pub = operator_key
    create = sandbox_cloud.expect.get("lifecycle", {}).get("create", {})
    child = subprocess.run(
        [sys.executable, "-c", CHILD, sandbox_cloud.cloud, str(sandbox_cloud.clouds_yaml),
         json.dumps(list(kill)), operator_pub, json.dumps(create)],
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
        env={**os.environ, "NO_GCE_CHECK": "true"})
    assert child.returncode == -signal.SIGKILL, (child.stdout, child.stderr[-3000:])
    assert "killed at" in child.stdout

    # What the killed create made is there to find (from the boot on, a server).
    left = sandbox_cloud.leftovers()
    if kill[0] not in ("node_key", "discovery", "choice"):
        assert left, "the create was killed after its boot, yet nothing is on the cloud"

    from cloudnorm import cleanup

    cloud = sandbox_cloud.connect()
    found, kept = cleanup.find(cloud, cleanup.parse_age("0s"))
    assert not [k for k in kept if "its server runs" in k], kept
    failed = cleanup.remove(cloud, found)
    assert failed == []
    assert sandbox_cloud.leftovers() == [], (kill, found)

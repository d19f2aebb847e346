"""create_server through a cloud that misbehaves: the fault proxy in front of the sandbox.

Every create either returns a server cloudnorm logged in to or raises a typed error;
nothing is left behind either way (counted through openstacksdk, not cloudnorm).
"""

from __future__ import annotations

import logging
import time

import pytest

import cloudnorm
from cloudnorm import errors
from cloudnorm.testing import soak
from cloudnorm.testing.faults import Rule, in_front_of, summary
from cloudnorm.testing.openstack.leftovers import leftovers

pytestmark = pytest.mark.functional
PROFILE = "fip-required"
CLOUD = f"sandbox-{PROFILE}"
LOG = logging.getLogger(__name__)


@pytest.fixture
def proxy(openstack_sandbox, tmp_path):
    with in_front_of(openstack_sandbox, PROFILE, CLOUD, tmp_path / "clouds.yaml",
                     seed=20261124) as running:
        yield running


def connect(proxy, **cloudnorm_options):
    return cloudnorm.connect(CLOUD, config_files=[str(proxy.clouds_yaml_path)],
                             cloudnorm=cloudnorm_options)


def left_behind(sandbox, prefix: str) -> list[str]:
    return leftovers(sandbox, PROFILE, servers_named=prefix)


def test_lost_replies_and_consistency_lies(openstack_sandbox, openstack_dataplane, proxy):
    """The boot's reply is lost after Nova made the server, the new server hides from
    lists, its actions answer 409 while it builds, and reads are throttled: one server
    is made, cloudnorm logs in to it, and deleting leaves nothing."""
    proxy.add(Rule("reset_after", service="compute", method="POST", path=r"/servers$", count=1),
              Rule("hide_new", service="compute", method="GET", path=r"/servers/detail",
                   polls=2),
              Rule("conflict_building", service="compute", count=3),
              Rule("status", status=429, retry_after=1, service="network", method="GET",
                   count=2),
              Rule("status", status=503, service="compute", method="GET",
                   path=r"/servers/[0-9a-f-]{36}$", count=2))
    cloud = connect(proxy)
    try:
        server = cloud.create_server("cn-soak-lost", min_ram=2048, timeout=180)
        sdk = openstack_sandbox.connect(PROFILE)
        try:
            made = [s.id for s in sdk.compute.servers() if s.name == "cn-soak-lost"]
        finally:
            sdk.close()
        assert made == [server.id]
        assert server.ssh_user and server.host_keys
        kinds = proxy.counts()
        assert kinds.get("reset_after") == 1 and kinds.get("status", 0) >= 2, kinds
        assert cloud.driver.retries >= 2
        assert cloud.delete_server(server)
    finally:
        proxy.clear()
        cloud.close()
    assert left_behind(openstack_sandbox, "cn-soak") == []


SOAK_CYCLES = soak.CYCLES
SOAK_BUDGET = soak.BUDGET
SOAK_FAULTS = [  # 10% of requests to compute, image and network in all
    Rule("status", status=503, probability=0.03),
    Rule("status", status=429, retry_after=1, probability=0.02),
    Rule("status", status=500, method="GET", probability=0.01),
    Rule("reset", probability=0.015),
    Rule("truncate", method="GET", probability=0.01),
    Rule("malformed", method="GET", probability=0.005),
    Rule("slow", delay=0.5, probability=0.01),
]


def test_soak_create_delete_under_faults(openstack_sandbox, openstack_dataplane, proxy):
    proxy.add(*SOAK_FAULTS)
    # Writes a little faster than the OpenStack default, so that more cycles fit in CI.
    cloud = connect(proxy, rate_limit={"reads": 20, "writes": 4})
    record = {"cycles": 0, "created": 0, "typed_errors": 0, "escaped": [], "delete_errors": 0,
              "rollback_leaks": []}
    undeleted: list[str] = []
    started = time.monotonic()
    try:
        for cycle in range(SOAK_CYCLES):
            if time.monotonic() - started > SOAK_BUDGET:
                break
            record["cycles"] += 1
            name = f"cn-soak-{cycle}"
            try:
                server = cloud.create_server(name, min_ram=2048, timeout=90)
            except errors.CloudnormError as exc:
                record["typed_errors"] += 1
                LOG.warning("cycle %d: create failed, typed: %s: %s", cycle,
                            type(exc).__name__, exc)
                # The rollback is over when the error is raised: what is left now leaked.
                left = left_behind(openstack_sandbox, name)
                if left:
                    record["rollback_leaks"].append(f"cycle {cycle}: {exc}: left {left}")
                continue
            except Exception as exc:  # what this test is looking for
                record["escaped"].append(f"{type(exc).__name__}: {exc}")
                continue
            assert server.ssh_user and server.interface_ip, server
            record["created"] += 1
            try:
                cloud.delete_server(server)
            except errors.CloudnormError as exc:
                # A typed failure to delete is an answer; the person deletes again.
                record["delete_errors"] += 1
                undeleted.append(server.id)
                LOG.warning("cycle %d: delete failed, typed: %s", cycle, exc)
            except Exception as exc:
                record["escaped"].append(f"{type(exc).__name__}: {exc}")
                undeleted.append(server.id)
    finally:
        injected = len(proxy.injected)
        passed = proxy.forwarded
        for line in summary(proxy):
            LOG.warning("soak: %s", line)
        proxy.clear()
        for server_id in undeleted:  # the deletes a person would repeat
            cloud.delete_server(server_id)
        cloud.close()
    leaks = left_behind(openstack_sandbox, "cn-soak")
    LOG.warning("soak: %d cycles in %.0f s, %d created, %d typed errors, %d delete errors, "
                "%d faults of %d requests, %d escaped, %d leaked", record["cycles"],
                time.monotonic() - started, record["created"], record["typed_errors"],
                record["delete_errors"], injected, injected + passed, len(record["escaped"]),
                len(leaks))
    soak.write_result("openstack", {
        **record, "seconds": round(time.monotonic() - started, 1), "faults": injected,
        "requests": injected + passed, "leaked": leaks})
    assert record["escaped"] == []
    assert record["rollback_leaks"] == []
    assert leaks == []
    assert injected > 0 and record["created"] > 0

"""create_server/delete_server cycles on AWS and GCE through a cloud that misbehaves.

The fault proxy (cloudnorm/testing/faults.py) sits between cloudnorm and the local EC2
(moto, cloudnorm/testing/aws.py) or the local Compute Engine (cloudnorm/testing/gce/),
answering about one request in ten with what that API sends when it is having a bad
day: for EC2, 503 and ``RequestLimitExceeded`` (the XML error body with HTTP 503 that
botocore retries), 500 ``InternalError``, reset connections and slow replies; for GCE,
503 ``backendError``, 429 ``rateLimitExceeded``, reset connections (before and after the
endpoint acted), slow replies, and a new instance missing from the instance list the
first time it would appear.

Each cycle is a full create_server -- boot, then an SSH login through the data plane
with the host key checked, hardening, node key removal -- and a delete. Every create
must return a server cloudnorm logged in to or raise a typed cloudnorm error; nothing
else may escape, and after the cycles nothing may be left behind (counted with boto3 and
google-cloud-compute directly, not through cloudnorm).

The data plane answers SSH on the public-looking addresses the clouds hand out, which
exist only in a private network namespace: when the session is not in one,
``test_soak_providers_in_private_netns`` re-runs the soaks in a fresh namespace.

The length comes from :mod:`cloudnorm.testing.soak`: a fixed number of cycles in the test
suite, 100 from ``bash scripts/soak``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cloudnorm
from cloudnorm import errors
from cloudnorm.models import OWNER_KEY
from cloudnorm.testing import soak
from cloudnorm.testing.dataplane import in_private_netns
from cloudnorm.testing.faults import FaultProxy, Rule, ec2_error, google_error, summary

pytestmark = [pytest.mark.functional, pytest.mark.filterwarnings("ignore:Support for InfluxDB"),
              pytest.mark.usefixtures("isolated_cloud_environment")]
LOG = logging.getLogger(__name__)
PROJECT_DIR = Path(__file__).resolve().parents[2]

# A cycle takes 3 to 5 s on these local clouds when nothing goes wrong (most of it the
# wait for the console's host keys and the SSH login), more under faults.
SOAK_CYCLES = soak.CYCLES
SOAK_BUDGET = soak.BUDGET
# The longest one create may take; the budget is checked before each cycle, so a run
# ends at most this much (plus a delete) past it.
CREATE_TIMEOUT = 120.0
# Above the providers' defaults (2 writes/s, a cycle makes about 10 writes), so that the
# budget goes to cycles; every request still waits for its turn in the limiter.
RATE_LIMIT = {"reads": 50, "writes": 10}
# What the demo polls the local clouds with (real clouds get 2 s).
POLL_INTERVAL = 0.5


IN_PRIVATE_NETNS = in_private_netns()
inside = pytest.mark.skipif(
    not IN_PRIVATE_NETNS,
    reason="needs a private network namespace; test_soak_providers_in_private_netns runs "
           "it in one")


@pytest.mark.skipif(IN_PRIVATE_NETNS, reason="the soaks run directly in this namespace")
def test_soak_providers_in_private_netns() -> None:
    from cloudnorm.testing.dataplane import ensure_openssh, run_in_private_netns

    if os.geteuid() != 0:
        pytest.skip("the SSH data plane needs root")
    ensure_openssh()  # installing needs the network, which the namespace does not have
    argv = [sys.executable, "-m", "pytest", __file__, "-q", "-rA", "-s", "-p",
            "no:cacheprovider", "-k", "test_soak_aws or test_soak_gce"]
    # Both soaks, each its budget, a create and a delete past it, and start-up.
    timeout = 2 * (SOAK_BUDGET + CREATE_TIMEOUT + 180)
    assert run_in_private_netns(argv, timeout=timeout, cwd=PROJECT_DIR) == 0


# -- the soak itself -----------------------------------------------------------------------------
def _soak(provider: str, clouds: list[cloudnorm.Cloud], proxy: FaultProxy,
          leftovers: Callable[[], list[str]]) -> None:
    """Create and delete servers in turn on ``clouds`` until SOAK_CYCLES or SOAK_BUDGET;
    assert that nothing escaped and nothing was left behind."""
    for cloud in clouds:
        cloud.watcher.interval = POLL_INTERVAL
    record: dict[str, Any] = {"cycles": 0, "created": 0, "escaped": [], "delete_errors": 0}
    typed: Counter[str] = Counter()
    undeleted: list[tuple[cloudnorm.Cloud, str]] = []
    durations: list[float] = []
    started = time.monotonic()
    try:
        for cycle in range(SOAK_CYCLES):
            if time.monotonic() - started > SOAK_BUDGET:
                break
            record["cycles"] += 1
            cloud = clouds[cycle % len(clouds)]
            name = f"soak-{provider}-{cycle}"
            began = time.monotonic()
            try:
                server = cloud.create_server(name, min_ram=2048, timeout=CREATE_TIMEOUT)
            except errors.CloudnormError as exc:
                typed[type(exc).__name__] += 1
                LOG.warning("soak %s: cycle %d: create failed, typed: %s: %s", provider,
                            cycle, type(exc).__name__, exc)
                continue
            except Exception as exc:  # what this test is looking for
                record["escaped"].append(f"cycle {cycle} create: " + "".join(
                    traceback.format_exception(exc)))
                continue
            assert server.ssh_user and server.interface_ip and server.host_keys, server
            assert server.interface_ip.startswith("198.51.100."), server.interface_ip
            record["created"] += 1
            try:
                assert cloud.delete_server(server) is True
            except errors.CloudnormError as exc:
                # A typed failure to delete is an answer: the person deletes again.
                record["delete_errors"] += 1
                undeleted.append((cloud, server.id))
                LOG.warning("soak %s: cycle %d: delete failed, typed: %s: %s", provider,
                            cycle, type(exc).__name__, exc)
            except Exception as exc:
                record["escaped"].append(f"cycle {cycle} delete: " + "".join(
                    traceback.format_exception(exc)))
                undeleted.append((cloud, server.id))
            durations.append(time.monotonic() - began)
    finally:
        elapsed = time.monotonic() - started
        injected, received = len(proxy.injected), proxy.received
        for line in summary(proxy):
            LOG.warning("soak %s: %s", provider, line)
        proxy.clear()
        for cloud, server_id in undeleted:  # the deletes a person would repeat
            cloud.delete_server(server_id)
    leaks = leftovers()
    full = sorted(durations)
    for limiter in {id(c.driver.limiter): c.driver.limiter for c in clouds}.values():
        LOG.warning("soak %s: rate limiter %s: %s requests, waited %s s", provider,
                    limiter.key, limiter.counts,
                    {k: round(v, 1) for k, v in limiter.waited.items()})
    LOG.warning(
        "soak %s: %d cycles in %.0f s (full cycle median %.1f s, max %.1f s), %d faults "
        "injected of %d requests, %d created, %d typed errors (%s), %d delete errors, "
        "%d escaped, %d leaked", provider, record["cycles"], elapsed,
        full[len(full) // 2] if full else 0.0, full[-1] if full else 0.0, injected, received,
        record["created"], sum(typed.values()),
        ", ".join(f"{k} {v}" for k, v in typed.most_common()) or "none",
        record["delete_errors"], len(record["escaped"]), len(leaks))
    for leak in leaks:
        LOG.error("soak %s: left behind: %s", provider, leak)
    for escaped in record["escaped"]:
        LOG.error("soak %s: escaped: %s", provider, escaped)
    soak.write_result(provider, {
        **record, "seconds": round(elapsed, 1), "faults": injected, "requests": received,
        "typed_errors": dict(typed), "leaked": leaks,
        "full_cycle_median_s": round(full[len(full) // 2], 2) if full else None})
    assert record["escaped"] == []
    assert leaks == []
    assert injected > 0 and record["created"] > 0


# -- AWS ------------------------------------------------------------------------------------------
def _ec2(status: int, code: str, message: str, probability: float) -> Rule:
    return Rule("status", status=status, body=ec2_error(code, message),
                content_type="text/xml;charset=UTF-8", probability=probability)


AWS_FAULTS = [  # about 10% of requests in all
    _ec2(503, "RequestLimitExceeded", "Request limit exceeded.", 0.03),
    _ec2(503, "Unavailable", "The server is temporarily unable to handle the request.",
         0.02),
    _ec2(500, "InternalError", "An internal error has occurred.", 0.02),
    Rule("reset", probability=0.015),
    Rule("slow", delay=0.5, probability=0.015),
]


@inside
def test_soak_aws(aws_sandbox, aws_dataplane, tmp_path_factory):
    # The run's one local EC2 and its data plane (moto's account is process-wide); the
    # data plane fixture asserts at the end of the run that its sync never failed.
    from cloudnorm.testing.aws import CLOUD

    workdir = tmp_path_factory.mktemp("soak-aws")
    source = aws_sandbox.write_clouds_yaml(workdir / "source.yaml")
    assert aws_sandbox.leftovers() == []
    with FaultProxy({"ec2": aws_sandbox.endpoint_url}, seed=20261201) as proxy:
        path = proxy.clouds_yaml_endpoint(source, CLOUD, workdir / "clouds.yaml")
        eip = proxy.clouds_yaml_endpoint(source, f"{CLOUD}-eip", workdir / "clouds-eip.yaml")
        # A launch address and an Elastic IP in turn.
        clouds = [cloudnorm.connect(name, config_files=[str(where)],
                                    cloudnorm={"rate_limit": RATE_LIMIT})
                  for name, where in ((CLOUD, path), (f"{CLOUD}-eip", eip))]
        proxy.add(*AWS_FAULTS)
        try:
            _soak("aws", clouds, proxy, lambda: aws_sandbox.leftovers())
        finally:
            for cloud in clouds:
                cloud.close()


# -- GCE ------------------------------------------------------------------------------------------
def _google(status: int, reason: str, message: str, probability: float) -> Rule:
    return Rule("status", status=status, body=google_error(status, reason, message),
                content_type="application/json; charset=UTF-8", probability=probability)


GCE_FAULTS = [  # about 10% of requests in all, and the listing lie
    _google(503, "backendError", "Backend Error", 0.03),
    _google(429, "rateLimitExceeded", "Rate Limit Exceeded", 0.03),
    Rule("reset", probability=0.015),
    Rule("reset_after", probability=0.005),
    Rule("slow", delay=0.5, probability=0.015),
    # Listing is eventually consistent on GCE: a new instance may be missing from it.
    Rule("hide_new", method="GET", path=r"/instances$", items_key="items", polls=1),
]


def _gce_leftovers(sandbox: Any) -> list[str]:
    """What is left in the sandbox projects, through google-cloud-compute: any instance,
    and cloudnorm's disks and firewall rules."""
    from cloudnorm.drivers.gce.normalize import OWNER_LABEL

    found = []
    for project in sandbox.projects:
        found += [f"instance {i.name} ({i.status})" for i in sandbox.client(
            "InstancesClient").list(project=project, zone=sandbox.zone)]
        found += [f"disk {d.name}" for d in sandbox.client("DisksClient").list(
            request={"project": project, "zone": sandbox.zone,
                     "filter": f"labels.{OWNER_LABEL}:*"})]
        found += [f"firewall rule {r.name}" for r in sandbox.client("FirewallsClient").list(
            project=project) if r.name.startswith("cloudnorm-") or OWNER_KEY in r.description]
    return found


@inside
def test_soak_gce(tmp_path_factory):
    from cloudnorm.testing.dataplane import Fleet
    from cloudnorm.testing.gce import CLOUD, GceSandbox

    workdir = tmp_path_factory.mktemp("soak-gce")
    with GceSandbox(workdir / "sandbox") as sandbox, Fleet(workdir / "fleet") as fleet:
        sync = sandbox.dataplane(fleet).start()
        try:
            source = sandbox.write_clouds_yaml()
            assert _gce_leftovers(sandbox) == []
            with FaultProxy({"gce": sandbox.endpoint_url}, seed=20261202) as proxy:
                path = proxy.clouds_yaml_endpoint(source, CLOUD, workdir / "clouds.yaml")
                custom = proxy.clouds_yaml_endpoint(source, f"{CLOUD}-custom",
                                                    workdir / "clouds-custom.yaml")
                # The default network (whose rule lets SSH in) and a custom one (where
                # cloudnorm adds a firewall rule) in turn.
                clouds = [cloudnorm.connect(name, config_files=[str(where)],
                                            cloudnorm={"rate_limit": RATE_LIMIT})
                          for name, where in ((CLOUD, path), (f"{CLOUD}-custom", custom))]
                proxy.add(*GCE_FAULTS)
                try:
                    _soak("gce", clouds, proxy, lambda: _gce_leftovers(sandbox))
                finally:
                    for cloud in clouds:
                        cloud.close()
        finally:
            sync.stop()
        assert sync.errors == []

"""Twenty threads share one ``Cloud``: each creates a server, logs in, deletes it.

On the local EC2 (moto's server) with its SSH data plane, so every create is a
real login to a real sshd. Afterwards the cache still answers what a fresh
client discovers, the ServerWatcher served all waiters with a few list calls
per interval, and nothing is left (counted with boto3, not cloudnorm).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import cloudnorm
from cloudnorm.testing.dataplane import in_private_netns

pytestmark = [pytest.mark.functional, pytest.mark.filterwarnings("ignore:Support for InfluxDB"),
              pytest.mark.usefixtures("isolated_cloud_environment")]

PROJECT = Path(__file__).resolve().parents[2]
THREADS = 20
DEADLINE = 420.0  # seconds for all threads together


IN_PRIVATE_NETNS = in_private_netns()


@pytest.mark.skipif(IN_PRIVATE_NETNS, reason="the scenario runs directly in this namespace")
def test_threads_in_private_netns() -> None:
    from cloudnorm.testing.dataplane import ensure_openssh, run_in_private_netns

    ensure_openssh()
    argv = [sys.executable, "-m", "pytest", __file__, "-q", "-rA", "-s", "-k", "threads_share",
            "-p", "no:cacheprovider"]
    assert run_in_private_netns(argv, timeout=600, cwd=PROJECT) == 0


@pytest.mark.skipif(not IN_PRIVATE_NETNS, reason="needs a private network namespace")
def test_threads_share_one_cloud(aws_sandbox, aws_dataplane, tmp_path):
    # The run's one local EC2 and its data plane (moto's account is process-wide); the
    # data plane fixture asserts at the end of the run that its sync never failed.
    assert aws_sandbox.leftovers() == []
    clouds_yaml = str(aws_sandbox.write_clouds_yaml(tmp_path / "clouds.yaml"))
    # Writes faster than the AWS default of 2/s: the subject is sharing, not
    # throttling, and 20 creates and deletes make ~200 writes.
    cloud = cloudnorm.connect("sandbox-aws", config_files=[clouds_yaml],
                              cloudnorm={"rate_limit": {"writes": 20, "reads": 100}})
    try:
        results, elapsed = _run_threads(cloud)
        watcher_polls = cloud.watcher.polls  # public: cloud.watcher
        cached = (cloud.list_images(), cloud.list_flavors(), cloud.list_networks(),
                  cloud.find_image("ubuntu-22.04"), cloud.find_flavor(min_ram=1024))
    finally:
        cloud.close()
    fresh = cloudnorm.connect("sandbox-aws", config_files=[clouds_yaml])
    try:
        discovered = (fresh.list_images(), fresh.list_flavors(), fresh.list_networks(),
                      fresh.find_image("ubuntu-22.04"), fresh.find_flavor(min_ram=1024))
    finally:
        fresh.close()
    leaks = aws_sandbox.leftovers()

    failures = [f"thread {i}: {r!r}" for i, r in enumerate(results) if not isinstance(r, dict)]
    logged_in = [r for r in results if isinstance(r, dict)]
    print(f"\n{THREADS} threads on one Cloud: {len(logged_in)} servers created, logged in and "
          f"deleted in {elapsed:.1f} s; {watcher_polls} status polls in all; "
          f"{len(leaks)} leaked")
    assert failures == []
    assert len({r["id"] for r in logged_in}) == THREADS
    assert len({r["address"] for r in logged_in}) == THREADS
    assert all(r["user"] == "ubuntu" and r["host_keys"] for r in logged_in)
    # one list call per interval served every waiter: far fewer polls than waits
    assert watcher_polls < THREADS * 3, watcher_polls
    # the cache, hammered by 20 threads, holds what the cloud says
    assert cached == discovered
    assert leaks == []


def _run_threads(cloud: cloudnorm.Cloud) -> tuple[list[Any], float]:
    results: list[Any] = [None] * THREADS
    barrier = threading.Barrier(THREADS)

    def work(i: int) -> None:
        barrier.wait()
        try:
            server = cloud.create_server(f"thread-{i}", min_ram=1024, timeout=300)
            results[i] = {"id": server.id, "address": server.interface_ip,
                          "user": server.ssh_user, "host_keys": server.host_keys}
            if not cloud.delete_server(server):
                results[i] = RuntimeError(f"delete_server({server.id}) found nothing")
        except Exception as exc:  # recorded per thread, asserted on afterwards
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,), name=f"create-{i}", daemon=True)
               for i in range(THREADS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.1, started + DEADLINE - time.monotonic()))
    for i, thread in enumerate(threads):
        if thread.is_alive():
            results[i] = TimeoutError(f"thread {i} still running after {DEADLINE:.0f} s")
    return results, time.monotonic() - started

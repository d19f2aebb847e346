"""The adaptive rate limit against a cloud that throttles, over real HTTP.

The fault proxy keeps a token bucket in front of the local OpenStack's compute API, as
an API gateway does, and answers 429 with Retry-After (Nova's rate limit fault) when it
is empty. Threads sharing one ``Cloud`` create and delete key pairs through the real
driver and transport, as fast as the limiter lets them: every write arrives, the
limiter slows down to what the cloud takes, and the cloud refuses only the first few
requests of each overload. With the state in Redis, two processes' limiters slow down
together. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid

import pytest

import cloudnorm
from cloudnorm import ratelimit
from cloudnorm.testing.faults import in_front_of, summary
from cloudnorm.testing.openstack.leftovers import leftovers
from cloudnorm.testing.openstack.room import make_room
from cloudnorm.testing.redis import RedisServer

pytestmark = pytest.mark.functional
PROFILE = "fip-required"
CLOUD = f"sandbox-{PROFILE}"
KEYS = 50  # key pairs, each created and deleted: 100 writes
THREADS = 5
# What the cloud takes: half the writes the openstack profile starts at.
RATE, BURST = 5.0, 5
WAIT = 180.0
PUBLIC_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb6hR4e2m0bJ3x1n6XW4Wq0kqW8bC3v1Hn2a0b"
              "cDeFg adaptive@test")


@pytest.fixture(autouse=True)
def _own_limiters(monkeypatch):
    """A limiter of this test's own: it starts at the profile's rates, unslowed."""
    monkeypatch.setattr(ratelimit, "_LIMITERS", {})


@pytest.fixture
def proxy(openstack_sandbox, tmp_path):
    with in_front_of(openstack_sandbox, PROFILE, CLOUD, tmp_path / "clouds.yaml",
                     ("compute",), seed=1) as running:
        yield running


def _work(driver, names: list[str], failures: list[str], done: list[float]) -> None:
    for name in names:
        try:
            driver.create_keypair(name, PUBLIC_KEY)
            driver.delete_keypair(name)
            done.append(time.monotonic())
        except Exception as exc:  # every escaped error is a failure of the test
            failures.append(f"{name}: {exc!r}")


def test_key_pairs_through_a_throttling_cloud(openstack_sandbox, proxy, caplog):
    caplog.set_level(logging.DEBUG, logger="cloudnorm.ratelimit")
    prefix = f"cn-rate-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-{i:02d}" for i in range(KEYS)]
    cloud = cloudnorm.connect(CLOUD, config_files=[str(proxy.clouds_yaml_path)])
    try:
        driver = cloud.driver
        limiter = driver.limiter
        start = limiter.rate("write")
        assert limiter.limit.adaptive and start == 10.0  # the openstack profile's start
        driver.list_keypairs()  # token and microversion discovery, before the clock starts
        bucket = proxy.throttle("compute", rate=RATE, burst=BURST, methods=("POST", "DELETE"))
        failures: list[str] = []
        done: list[float] = []
        started = time.monotonic()
        threads = [threading.Thread(target=_work, args=(driver, names[i::THREADS], failures,
                                                        done), daemon=True)
                   for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(1.0, WAIT - (time.monotonic() - started)))
        elapsed = time.monotonic() - started
        assert not any(t.is_alive() for t in threads), f"not done within {WAIT:.0f} s"
        status = limiter.status()
        report = list(summary(proxy))
        proxy.clear()
        left = [k.name for k in driver.list_keypairs() if k.name.startswith(prefix)]
    finally:
        proxy.clear()
        cloud.close()

    records = [r for r in caplog.records if r.name == "cloudnorm.ratelimit"]
    slowed = [r for r in records if r.levelno == logging.INFO and "slowing down" in r.message]
    climbing = [r for r in records if r.levelno == logging.DEBUG and "after the last" in r.message]
    writes = status["writes"]
    print(f"\n{KEYS} key pairs created and deleted by {THREADS} threads through a {RATE:g}/s "
          f"(burst {BURST}) bucket in {elapsed:.1f} s ({2 * KEYS / elapsed:.2f} writes/s); "
          f"{bucket.refused} answered 429, {writes['slowdowns']} slow-down(s), rate now "
          f"{writes['rate']:.2f}/s (started at {start:g}/s)")
    for line in report:
        print(line)
    for record in slowed:
        print(f"  {record.message}")

    assert failures == []
    assert left == []
    # every write went through once: a 429 is a refusal before the cloud acted
    assert bucket.passed == 2 * KEYS
    # the cloud did throttle, the limiter heard every 429, and slowed down (said at INFO)
    assert bucket.refused > 0
    assert limiter.throttles["write"] == bucket.refused == writes["throttled"]
    assert len(slowed) == writes["slowdowns"] >= 1
    assert "throttled by the cloud at 10/s" in slowed[0].message
    assert "(Retry-After)" in slowed[0].message
    assert climbing, "the climb back after a slow-down is not in the DEBUG log"
    # ... so the cloud refused only the first few requests of each overload: the threads'
    # requests in flight at the moment, not the whole run's
    assert bucket.refused <= writes["slowdowns"] * (THREADS + 1), bucket.refused
    # and the limiter kept near what the cloud takes, not at the 1 write/s of old
    assert 2 * KEYS / elapsed > 0.5 * RATE


#: Servers created at once through a throttling cloud: a few in CI; ``bash scripts/fleet``
#: runs fifty and writes the record to bench/results/throttled-fleet.json.
FLEET = int(os.environ.get("THROTTLED_FLEET", "4"))
FLEET_THREADS = 10
# What the cloud takes, compute and network writes each: below the profile's 10/s start.
FLEET_RATE, FLEET_BURST = 3.0, 3


@pytest.fixture
def fleet_proxy(openstack_sandbox, tmp_path):
    if FLEET > 10:  # beyond the default quotas and the profile's floating IP subnet
        make_room(openstack_sandbox, PROFILE, FLEET)
    with in_front_of(openstack_sandbox, PROFILE, CLOUD, tmp_path / "clouds.yaml",
                     ("compute", "network"), seed=2) as running:
        yield running


def test_servers_at_once_through_a_throttling_cloud(openstack_sandbox, openstack_dataplane,
                                                    fleet_proxy, caplog):
    """Threads sharing one ``Cloud`` create servers (floating IPs, key logins and all)
    while the cloud's compute and network APIs each take 3 writes a second: every create
    finishes, nothing escapes, the limiter slows down and says so, and the cloud refuses
    only the first few writes of each overload."""
    caplog.set_level(logging.INFO, logger="cloudnorm.ratelimit")
    prefix = f"cn-fleet-{uuid.uuid4().hex[:6]}"
    cloud = cloudnorm.connect(CLOUD, config_files=[str(fleet_proxy.clouds_yaml_path)])
    servers: dict[int, object] = {}
    failures: list[str] = []
    try:
        cloud.driver.list_keypairs()  # token and microversions, before the buckets
        buckets = [fleet_proxy.throttle(service, rate=FLEET_RATE, burst=FLEET_BURST,
                                        methods=("POST", "PUT", "DELETE"))
                   for service in ("compute", "network")]
        pending = list(range(FLEET))
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    if not pending:
                        return
                    i = pending.pop(0)
                try:
                    servers[i] = cloud.create_server(f"{prefix}-{i:02d}", min_ram=2048,
                                                     timeout=600)
                except Exception as exc:  # every failure counts against the test
                    failures.append(f"{i}: {type(exc).__name__}: {exc}")

        started = time.monotonic()
        threads = [threading.Thread(target=work, daemon=True)
                   for _ in range(min(FLEET_THREADS, FLEET))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(1.0, 60 + 30 * FLEET - (time.monotonic() - started)))
        elapsed = time.monotonic() - started
        assert not any(t.is_alive() for t in threads), "creates still running"
        status = cloud.driver.limiter.status()
        report = list(summary(fleet_proxy))
        fleet_proxy.clear()
        for server in servers.values():
            cloud.delete_server(server)
    finally:
        fleet_proxy.clear()
        cloud.close()
    leaks = leftovers(openstack_sandbox, PROFILE, servers_named=prefix)
    refused = sum(b.refused for b in buckets)
    slowed = [r.getMessage() for r in caplog.records
              if r.name == "cloudnorm.ratelimit" and "slowing down" in r.getMessage()]
    writes, reads = status["writes"], status["reads"]
    record = {"servers": FLEET, "threads": len(threads), "seconds": round(elapsed, 1),
              "created": len(servers), "failures": failures, "leaked": leaks,
              "cloud_rate_per_service": FLEET_RATE, "refused_429": refused,
              "slowdowns": writes["slowdowns"], "read_slowdowns": reads["slowdowns"],
              "final_write_rate": round(writes["rate"], 2),
              "slow_downs_logged": slowed}
    print(f"\n{json.dumps(record, indent=1)}")
    for line in report:
        print(line)
    if os.environ.get("THROTTLED_FLEET_RESULTS"):
        path = os.path.join(os.environ["THROTTLED_FLEET_RESULTS"], "throttled-fleet.json")
        with open(path, "w", encoding="utf-8") as out:
            json.dump(record, out, indent=1)
    assert failures == []
    assert len(servers) == FLEET and leaks == []
    # A fleet's writes exceed what the cloud takes: it did throttle, the limiter heard
    # it and slowed down (logged) ...
    slowdowns = writes["slowdowns"] + reads["slowdowns"]
    assert refused > 0 and writes["slowdowns"] >= 1 and len(slowed) == slowdowns
    # (the throttle counts every POST, as a real cloud's per-verb limits do: Nova's
    # console output is a POST action, so a console read may be refused and slow the
    # reads down as well)
    # ... and the cloud refused only the requests in flight at each overload.
    assert refused <= slowdowns * (len(threads) + 1), (refused, writes, reads)


def test_processes_sharing_redis_slow_down_together(tmp_path, caplog):
    """Two limiters of one account with their own Redis connections, as two processes
    have: one is throttled, the other holds for the Retry-After and goes on at the
    halved rate."""
    caplog.set_level(logging.INFO, logger="cloudnorm.ratelimit")
    key = f"test|{uuid.uuid4().hex}"
    with RedisServer(tmp_path / "redis") as server:
        limit = ratelimit.RateLimit.from_options(
            1.0, {"storage": server.url}, adaptive={"writes": 10.0})
        one, other = ratelimit.Limiter(key, limit), ratelimit.Limiter(key, limit)
        for _ in range(10):
            one.acquire(write=True)
        assert one.throttled(write=True, retry_after=1.0)
        started = time.monotonic()
        other.acquire(write=True)
        held = time.monotonic() - started
        status = other.status()
    assert 0.9 <= held < 3.0, held
    assert status["shared"] and status["writes"]["slowdowns"] == 1
    assert status["writes"]["rate"] < 10.0 and other.rate("write") < 10.0
    assert any("by another process" in r.message for r in caplog.records)

"""The GCE driver's requests spend the project's rate limit (cloudnorm/ratelimit.py), and
throttled or lost requests are sent again: against the local compute v1 endpoint on
127.0.0.1 (cloudnorm.testing.gce), with the fault proxy in front where a fault must come
from the network. Nothing here looks for real Google credentials or leaves the machine."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from cloudnorm import config, errors, profiles, ratelimit
from cloudnorm.drivers.gce.driver import GceDriver
from cloudnorm.drivers.gce.transport import CLIENTS, Throttle, is_read_call, throttled_transport
from cloudnorm.testing.faults import FaultProxy, Rule, google_error
from cloudnorm.testing.gce import GceSandbox

pytestmark = [pytest.mark.functional, pytest.mark.usefixtures("isolated_cloud_environment")]


@pytest.fixture(autouse=True)
def _own_limiters(monkeypatch):
    """Limiters are per process and per project: each test starts with budgets of its own."""
    monkeypatch.setattr(ratelimit, "_LIMITERS", {})


@pytest.fixture(scope="module")
def sandbox():
    with GceSandbox() as running:
        yield running


def make_driver(endpoint: str, **options: Any) -> GceDriver:
    merged = {"provider": "gce", "project": "cloudnorm-sandbox", "zone": "us-central1-a",
              "endpoint_url": endpoint, "credentials": "anonymous",
              "network": options.pop("network", None) or f"n{uuid.uuid4().hex[:8]}",
              **options}
    settings = config.CloudSettings(name="gce-test", provider="gce", region=None, profile=None,
                                    options=merged, cache=config.CacheSettings())
    return GceDriver(settings, profiles.load("gce"))


def cloudnorm_requests(sandbox: GceSandbox, since: float) -> list[dict[str, Any]]:
    time.sleep(0.05)  # the endpoint logs a request after answering it
    return [r for r in sandbox.requests(since=since) if "cloudnorm/" in r["user_agent"]]


@pytest.mark.parametrize("method, read", [
    ("get", True), ("list", True), ("aggregated_list", True), ("wait", True),
    ("get_serial_port_output", True), ("get_from_family", True),
    ("insert", False), ("delete", False), ("set_metadata", False), ("set_labels", False),
    ("listen", False), ("getaway", False),
])
def test_read_calls(method, read):
    assert is_read_call(method) is read


def test_every_client_gets_the_library_interceptor_wrapped():
    from google.cloud import compute_v1

    limiter = ratelimit.limiter_for(f"test|{uuid.uuid4().hex}", ratelimit.RateLimit(None, None))
    for kind in CLIENTS.values():
        factory = throttled_transport(getattr(compute_v1, kind), limiter)
        throttle = factory.keywords["interceptor"]
        assert type(throttle._base).__name__ == kind.replace("Client", "RestInterceptor")


def test_interceptor_without_the_library_one():
    limiter = ratelimit.limiter_for(f"test|{uuid.uuid4().hex}", ratelimit.RateLimit(None, None))
    throttle = Throttle(limiter)
    assert throttle.pre_get_serial_port_output("req", [("k", "v")]) == ("req", [("k", "v")])
    assert throttle.pre_set_metadata("req", ()) == ("req", ())
    assert throttle.post_get("resp") == "resp"
    assert throttle.post_get_with_metadata("resp", ["m"]) == ("resp", ["m"])
    assert limiter.counts == {"read": 1, "write": 1}
    with pytest.raises(AttributeError):
        throttle.something_else  # noqa: B018
    with pytest.raises(AttributeError):
        throttle._private  # noqa: B018


def test_bad_rate_limit_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="rate_limit: writes: must be a number"):
        make_driver("http://127.0.0.1:9", rate_limit={"writes": "lots"})


def test_every_request_is_counted_by_kind(sandbox):
    """Reads (GET, operation waits) and writes (the rest) as the endpoint saw them, one
    limiter turn per HTTP request."""
    driver = make_driver(sandbox.endpoint_url, network="custom-vpc",
                         rate_limit={"reads": 1000, "writes": 1000})
    before = dict(driver.limiter.counts)  # custom-vpc's limiter: other tests use it too
    since = time.time()
    driver.list_flavors()
    made = driver.create_ssh_access(f"{uuid.uuid4().hex[:12]}")
    driver.delete(made)
    driver.console_output("no-such-instance")
    sent = cloudnorm_requests(sandbox, since)
    reads = [r for r in sent if r["method"] == "GET" or r["path"].endswith("/wait")]
    writes = [r for r in sent if r not in reads]
    assert sorted(r["method"] for r in writes) == ["DELETE", "POST"]
    assert len(reads) >= 6  # machine types, networks, subnets, firewalls (x2), 2 waits...
    assert driver.limiter.counts == {"read": before["read"] + len(reads),
                                     "write": before["write"] + len(writes)}
    driver.close()


def test_a_tiny_write_rate_spaces_writes_not_reads(sandbox):
    driver = make_driver(sandbox.endpoint_url, rate_limit={"reads": 1000, "writes": 1,
                                                                  "window": 1})
    started = time.monotonic()
    for n in range(3):  # deleting what is not there: a write answered 404, quietly
        driver.ssh_rules.delete_rule(f"cloudnorm-none{n}")
    writes_took = time.monotonic() - started
    started = time.monotonic()
    for _ in range(10):
        driver.poll_servers({"no-such-instance"})
    reads_took = time.monotonic() - started
    assert writes_took >= 1.9  # one now, one a second later, one two seconds later
    assert reads_took < 1.5
    assert driver.limiter.counts == {"read": 10, "write": 3}
    assert driver.limiter.waited["write"] >= 1.9
    driver.close()


def test_retries_spend_the_budget_too(sandbox):
    """429 rateLimitExceeded is retried with backoff, and each attempt waits its turn."""
    driver = make_driver(sandbox.endpoint_url, network="custom-vpc",
                         rate_limit={"reads": 1000, "writes": 1000})
    driver.transport.retry_initial = 0.05
    owner = uuid.uuid4().hex[:12]
    before = driver.limiter.counts["write"]
    with sandbox.inject("POST", r"/global/firewalls$", 429, "rateLimitExceeded",
                        "Rate Limit Exceeded", times=2) as fault:
        made = driver.create_ssh_access(owner)
    assert (fault.calls, fault.failed) == (3, 2)
    assert driver.limiter.counts["write"] - before == 3
    driver.delete(made)
    assert all(r["name"] != made.id for r in driver.ssh_rules.rules())
    driver.close()


def test_throttling_that_never_ends_is_quota_exceeded(sandbox, monkeypatch):
    driver = make_driver(sandbox.endpoint_url, rate_limit={"reads": 1000, "writes": 1000})
    driver.transport.retry_initial = 0.05
    real_retry = driver.transport.retry

    def short_retry() -> Any:
        return real_retry().with_timeout(0.5)

    monkeypatch.setattr(driver.transport, "retry", short_retry)
    with sandbox.inject("GET", r"/zones/us-central1-a/instances/", 429, "rateLimitExceeded",
                        "Rate Limit Exceeded"):
        with pytest.raises(errors.QuotaExceeded, match="after retries with backoff") as info:
            driver.poll_servers({"anything"})
    assert info.value.resource == "API request rate"
    driver.close()


@pytest.fixture
def proxy(sandbox):
    with FaultProxy({"gce": sandbox.endpoint_url}, seed=3) as running:
        yield running


def test_lost_connections_and_cut_replies_are_sent_again(sandbox, proxy):
    driver = make_driver(proxy.endpoints["gce"], network="default",
                         rate_limit={"reads": 1000, "writes": 1000})
    driver.transport.retry_initial = 0.05
    before = driver.limiter.counts["read"]
    proxy.add(Rule("reset", method="GET", path=r"/machineTypes$", count=1),
              Rule("truncate", method="GET", path=r"/global/networks$", count=1),
              Rule("status", status=503, body=google_error(503, "backendError"), method="GET",
                   path=r"/firewalls$", count=1))
    assert driver.list_flavors()
    facts, _ = driver.network_facts()
    assert {f.name for f in facts} == {"default", "custom-vpc"}
    assert proxy.counts() == {"reset": 1, "truncate": 1, "status": 1}
    assert driver.limiter.counts["read"] - before == 4 + 3  # three requests sent twice
    driver.close()


def test_a_connection_lost_for_good_is_service_unavailable(sandbox, proxy, monkeypatch):
    driver = make_driver(proxy.endpoints["gce"], rate_limit={"reads": 1000, "writes": 1000})
    driver.transport.retry_initial = 0.05
    real_retry = driver.transport.retry
    monkeypatch.setattr(driver.transport, "retry", lambda: real_retry().with_timeout(0.5))
    proxy.add(Rule("truncate", method="GET"))
    with pytest.raises(errors.ServiceUnavailable, match="after retries with backoff"):
        driver.list_flavors()
    driver.close()


def test_a_garbled_reply_is_a_provider_error(sandbox, proxy):
    driver = make_driver(proxy.endpoints["gce"], rate_limit={"reads": 1000, "writes": 1000})
    proxy.add(Rule("malformed", method="GET", path=r"/machineTypes$", count=1))
    with pytest.raises(errors.ProviderError, match="not the JSON"):
        driver.list_flavors()
    driver.close()


def test_limiter_is_shared_by_drivers_of_one_project():
    network = f"n{uuid.uuid4().hex[:8]}"
    one = make_driver("http://127.0.0.1:9", network=network)
    two = make_driver("http://127.0.0.1:9", network=network, rate_limit={"writes": 1})
    assert one.limiter is two.limiter
    assert one.limiter.limit == ratelimit.RateLimit(reads=10.0, writes=1.0)

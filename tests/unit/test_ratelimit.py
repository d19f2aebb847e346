"""Rate limits shared per account, and the retries of the OpenStack driver's requests."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import botocore.awsrequest
import pytest

from cloudnorm import errors, ratelimit
from cloudnorm.drivers.base import BootSpec
from cloudnorm.drivers.openstack import driver as os_driver
from cloudnorm.drivers.openstack import transport as os_transport
from cloudnorm.models import OWNER_KEY, Flavor, Image

from .conftest import NOVA, cloud_entry
from .test_aws_driver import make_driver as make_aws_driver


def unique_key() -> str:
    return f"test|{uuid.uuid4().hex}"


# -- settings -----------------------------------------------------------------------------------
def test_defaults_follow_the_provider():
    from cloudnorm.drivers import spec

    def default(provider: str) -> float:
        return spec(provider).writes_per_second

    # Nodepool's defaults: one write a second on OpenStack, two on AWS and GCE.
    assert ratelimit.RateLimit.from_options(default("openstack"), None) == \
        ratelimit.RateLimit(10.0, 1.0)
    assert ratelimit.RateLimit.from_options(default("aws"), None) == \
        ratelimit.RateLimit(20.0, 2.0)
    assert ratelimit.RateLimit.from_options(default("gce"), {}) == \
        ratelimit.RateLimit(20.0, 2.0)


def test_reads_follow_configured_writes_and_zero_is_unlimited():
    assert ratelimit.RateLimit.from_options(1.0, {"writes": 3}).reads == 30.0
    limit = ratelimit.RateLimit.from_options(1.0, {"writes": 0, "reads": 5})
    assert (limit.reads, limit.writes) == (5.0, None)


@pytest.mark.parametrize("options, fragment", [
    ({"writes": -1}, "writes: must be a number"),
    ({"reads": "fast"}, "reads: must be a number"),
    ({"reads": True}, "reads: must be a number"),
    ({"burst": 3}, "unknown key(s) burst"),
    ([1, 2], "must be a mapping"),
])
def test_bad_settings_are_config_errors(options, fragment):
    with pytest.raises(errors.ConfigError) as info:
        ratelimit.RateLimit.from_options(1.0, options, "c1")
    assert fragment in str(info.value) and "c1" in str(info.value)


def test_unusable_storage_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="storage"):
        ratelimit.Limiter(unique_key(), ratelimit.RateLimit(1, 1, storage="nosuch://x"))


# -- the limiter --------------------------------------------------------------------------------
def test_writes_are_held_to_their_rate_reads_go_faster():
    limiter = ratelimit.limiter_for(unique_key(), ratelimit.RateLimit(reads=20, writes=4,
                                                                         window=1))
    started = time.monotonic()
    for _ in range(9):  # 4 now, 4 a second later, 1 two seconds later
        limiter.acquire(write=True)
    writes_took = time.monotonic() - started
    started = time.monotonic()
    for _ in range(20):
        limiter.acquire(write=False)
    reads_took = time.monotonic() - started
    assert 1.9 <= writes_took < 4.0
    assert reads_took < 0.5
    assert limiter.counts == {"read": 20, "write": 9}


def test_default_window_lets_a_burst_through_and_keeps_the_rate():
    limiter = ratelimit.limiter_for(unique_key(), ratelimit.RateLimit(reads=None, writes=1))
    started = time.monotonic()
    for _ in range(10):  # one create's writes: no wait
        limiter.acquire(write=True)
    assert time.monotonic() - started < 0.5
    with pytest.raises(errors.Timeout):  # the eleventh waits for the window to move
        limiter.acquire(write=True, deadline=time.monotonic() + 0.5)


def test_window_is_checked():
    assert ratelimit.RateLimit.from_options(2.0, {"window": 60}).window == 60.0
    for bad in (0, 0.5, "long", True, 7200):
        with pytest.raises(errors.ConfigError, match="window"):
            ratelimit.RateLimit.from_options(2.0, {"window": bad})


def test_fractional_rate_spaces_requests():
    limiter = ratelimit.limiter_for(unique_key(), ratelimit.RateLimit(reads=None, writes=0.5,
                                                                         window=1))
    limiter.acquire(write=True)
    started = time.monotonic()
    limiter.acquire(write=True)
    assert 1.8 <= time.monotonic() - started < 3.0


def test_threads_share_one_budget():
    limiter = ratelimit.limiter_for(unique_key(), ratelimit.RateLimit(reads=None, writes=5,
                                                                         window=1))
    stamps: list[float] = []
    lock = threading.Lock()

    def work():
        for _ in range(3):
            limiter.acquire(write=True)
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    stamps.sort()
    assert len(stamps) == 15
    # No one-second window holds more than five requests.
    assert max(sum(1 for s in stamps if first <= s < first + 0.99) for first in stamps) <= 5


def test_deadline_is_a_timeout():
    limiter = ratelimit.limiter_for(unique_key(), ratelimit.RateLimit(reads=None, writes=0.2,
                                                                         window=1))
    limiter.acquire(write=True)
    with pytest.raises(errors.Timeout, match="rate_limit"):
        limiter.acquire(write=True, deadline=time.monotonic() + 0.5)


def test_same_account_shares_a_limiter_and_the_stricter_rate_wins():
    key = unique_key()
    first = ratelimit.limiter_for(key, ratelimit.RateLimit(reads=10, writes=1))
    second = ratelimit.limiter_for(key, ratelimit.RateLimit(reads=50, writes=0.5))
    assert first is second
    assert (first.limit.reads, first.limit.writes) == (10, 0.5)
    assert ratelimit.limiter_for(unique_key(), ratelimit.RateLimit(1, 1)) is not first


# -- the OpenStack driver -------------------------------------------------------------------------
def test_clouds_of_one_account_share_the_limiter(connect, write_clouds):
    import cloudnorm

    path = write_clouds({"a": cloud_entry(), "b": cloud_entry(),
                         "other": cloud_entry(region_name="RegionTwo")})
    a, b, other = (cloudnorm.connect(n, config_files=[path]) for n in ("a", "b", "other"))
    assert a.driver.limiter is b.driver.limiter
    assert a.driver.limiter is not other.driver.limiter


def test_rate_limit_key_is_accepted_and_checked(connect):
    cloud = connect(cloudnorm={"rate_limit": {"reads": 40, "writes": 4}})
    assert cloud.driver.limiter.limit.writes <= 4
    with pytest.raises(errors.ConfigError, match="rate_limit"):
        connect(cloudnorm={"rate_limit": {"writes": "lots"}})


def test_429_is_retried_after_retry_after(connect, fake_os):
    fake_os.nova("/flavors/detail", response_list=[
        {"status_code": 429, "json": {"message": "slow down"}, "headers": {"Retry-After": "1"}},
        {"json": {"flavors": []}}])
    cloud = connect()
    started = time.monotonic()
    assert cloud.list_flavors() == []
    assert time.monotonic() - started >= 1.0
    assert len(fake_os.requests_to(NOVA + "/flavors")) == 2
    assert cloud.driver.retries == 1


def test_429_past_the_deadline_is_not_waited_for(connect, fake_os):
    fake_os.nova("/flavors/detail", status_code=429, json={"message": "slow down"},
                 headers={"Retry-After": "3600"})
    with pytest.raises(errors.ProviderError) as info:
        connect().list_flavors()
    assert info.value.status == 429
    assert len(fake_os.requests_to(NOVA + "/flavors")) == 1


def test_throttled_post_is_sent_again(connect, fake_os):
    fake_os.nova("/os-keypairs", method="POST", response_list=[
        {"status_code": 413, "json": {"overLimit": {"message": "rate"}},
         "headers": {"Retry-After": "0"}},
        {"json": {"keypair": {"name": "k", "public_key": "ssh-ed25519 A"}}}])
    assert connect().create_keypair("k", "ssh-ed25519 A").name == "k"
    assert len([r for r in fake_os.requests_to(NOVA + "/os-keypairs")
                if r.method == "POST"]) == 2


def test_413_quota_without_retry_after_is_not_retried(connect, fake_os):
    fake_os.nova("/os-keypairs", method="POST", status_code=413,
                 json={"overLimit": {"message": "Quota exceeded for keypairs"}})
    with pytest.raises(errors.QuotaExceeded):
        connect().create_keypair("k", "ssh-ed25519 A")
    assert len(fake_os.requests_to(NOVA + "/os-keypairs")) == 1


def test_transient_get_is_retried_post_is_not(connect, fake_os):
    fake_os.nova("/flavors/detail", response_list=[
        {"status_code": 503, "json": {"message": "restarting"}},
        {"status_code": 200, "text": '{"flavors": ['},  # cut short on the way
        {"json": {"flavors": []}}])
    fake_os.nova("/os-keypairs", method="POST", status_code=503,
                 json={"message": "restarting"})
    cloud = connect()
    assert cloud.list_flavors() == []
    assert len(fake_os.requests_to(NOVA + "/flavors")) == 3
    with pytest.raises(errors.ProviderError) as info:
        cloud.create_keypair("k", "ssh-ed25519 A")
    assert info.value.status == 503
    assert len(fake_os.requests_to(NOVA + "/os-keypairs")) == 1


def test_retry_after_forms():
    assert os_transport.retry_after("7") == 7.0
    assert os_transport.retry_after(None) is None
    assert os_transport.retry_after("soon") is None
    assert os_transport.retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def _spec(owner: str) -> BootSpec:
    return BootSpec(name="web1", image=Image(id="img", name="img"),
                    flavor=Flavor(id="f1", name="f1", ram=1, vcpus=1, disk=1),
                    network=None, key_name="k", owner=owner)


def test_lost_boot_reply_finds_the_server_instead_of_booting_twice(connect, fake_os):
    fake_os.nova("/servers", method="POST", status_code=502, text="bad gateway")
    fake_os.nova("/servers/detail", json={"servers": [
        {"id": "other", "name": "web1", "metadata": {OWNER_KEY: "someone-else"}},
        {"id": "mine", "name": "web1", "metadata": {OWNER_KEY: "abc123"}}]})
    created = connect().driver.boot(_spec("abc123"))
    assert created.id == "mine"
    assert len([r for r in fake_os.requests_to(NOVA + "/servers") if r.method == "POST"]) == 1


def test_lost_boot_reply_without_a_server_boots_again(connect, fake_os, monkeypatch):
    monkeypatch.setattr(os_driver.time, "sleep", lambda s: None)
    fake_os.nova("/servers", method="POST", response_list=[
        {"status_code": 200, "text": '{"server": {"id": "x'},
        {"status_code": 202, "json": {"server": {"id": "new"}}}])
    fake_os.nova("/servers/detail", json={"servers": []})
    assert connect().driver.boot(_spec("abc123")).id == "new"
    posts = [r for r in fake_os.requests_to(NOVA + "/servers") if r.method == "POST"]
    lookups = [r for r in fake_os.requests_to(NOVA + "/servers/detail")]
    assert len(posts) == 2 and len(lookups) == 3


def test_refused_boot_is_not_looked_up(connect, fake_os):
    fake_os.nova("/servers", method="POST", status_code=400,
                 json={"badRequest": {"message": "Invalid imageRef"}})
    with pytest.raises(errors.ProviderError, match="Invalid imageRef"):
        connect().driver.boot(_spec("abc123"))
    assert fake_os.requests_to(NOVA + "/servers/detail") == []


# -- the AWS driver -------------------------------------------------------------------------------
def test_aws_calls_spend_the_account_budget():
    driver = make_aws_driver(rate_limit={"reads": 20, "writes": 2, "window": 1},
                             endpoint_url=f"http://127.0.0.1:9/{uuid.uuid4().hex}")
    client = driver.transport.client("ec2")
    body = (b'<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
            b"<regionInfo/></DescribeRegionsResponse>")

    def reply(request, **_):  # registered after the limiter's hook: no request leaves
        return botocore.awsrequest.AWSResponse(request.url, 200, {}, _Raw(body))

    client.meta.events.register("before-send", reply)
    started = time.monotonic()
    for _ in range(25):
        client.describe_regions()
    assert time.monotonic() - started >= 0.9
    assert driver.limiter.counts["read"] == 25 and driver.limiter.counts["write"] == 0


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *_, **__):
        yield self._body


def test_unreachable_shared_storage_limits_in_this_process_with_one_warning(caplog):
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    limiter = ratelimit.Limiter(unique_key(), ratelimit.RateLimit(
        reads=2.0, writes=1.0, storage="redis://127.0.0.1:1/0", window=1))
    started = time.monotonic()
    for _ in range(3):
        limiter.acquire(write=False)
    assert 0.9 < time.monotonic() - started < 3.0  # still two reads a second
    warnings = [r for r in caplog.records if "limiting in this process only" in r.message]
    assert len(warnings) == 1


def test_shared_storage_is_tried_again_after_a_while(monkeypatch):
    limiter = ratelimit.Limiter(unique_key(), ratelimit.RateLimit(
        reads=100.0, writes=1.0, storage="redis://127.0.0.1:1/0"))
    limiter.acquire(write=False)
    assert limiter._current() is limiter._local
    monkeypatch.setattr(ratelimit, "RETRY_SHARED", 0.0)
    assert limiter._current() is limiter._shared


def test_storage_key_names_no_account():
    limiter = ratelimit.Limiter("openstack|https://keystone|demo|Default|alice|RegionOne",
                                ratelimit.RateLimit(reads=None, writes=None))
    assert len(limiter.storage_key) == 16 and "alice" not in limiter.storage_key


def test_gce_defaults_and_clouds_yaml_settings(write_clouds):
    import cloudnorm

    path = write_clouds({"g": {"cloudnorm": {
        "provider": "gce", "project": f"p{uuid.uuid4().hex[:8]}", "zone": "europe-west1-b",
        "endpoint_url": "http://127.0.0.1:9",
        "credentials": "anonymous", "rate_limit": {"reads": 7, "writes": 0.5}}}})
    cloud = cloudnorm.connect("g", config_files=[path])
    try:
        limit = cloud.driver.limiter.limit
        assert (limit.reads, limit.writes) == (7.0, 0.5)
    finally:
        cloud.close()


# -- the adaptive budget: its arithmetic, on a fake clock -------------------------------------
class FakeClock:
    """Wall-clock seconds that move only when the limiter sleeps (no test waits)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


ADAPTIVE = ratelimit.RateLimit(reads=100.0, writes=10.0, adaptive=True)


def adaptive_limiter(clock: FakeClock, limit: ratelimit.RateLimit = ADAPTIVE
                     ) -> ratelimit.Limiter:
    return ratelimit.Limiter(unique_key(), limit, clock=clock.time, sleep=clock.sleep)


def slowdowns(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "cloudnorm.ratelimit" and "slowing down" in r.getMessage()]


def test_the_rate_halves_then_climbs_back_along_a_cubic_curve():
    rate = ratelimit.adaptive_rate
    assert rate(10.0, 0.0, 0.0) == 10.0  # never slowed down: the start rate
    assert rate(10.0, 8.0, 0.0) == 4.0  # halved at once
    assert rate(10.0, 8.0, ratelimit.RECOVERY) == pytest.approx(8.0)  # back where throttled
    climb = [rate(10.0, 8.0, t) for t in range(0, 11)]
    assert climb == sorted(climb)
    # concave below the peak: most of the way back early, slowly near the peak ...
    assert climb[2] - climb[0] > climb[10] - climb[8]
    # ... then on, ever faster, to the start rate and no further
    assert 8.0 < rate(10.0, 8.0, 1.5 * ratelimit.RECOVERY) < rate(10.0, 8.0, 1.8 * 10) <= 10
    assert rate(10.0, 8.0, 10 * ratelimit.RECOVERY) == 10.0
    assert rate(10.0, 0.1, 0.0) == ratelimit.MIN_RATE  # never below the floor


def test_a_turn_spaces_requests_after_a_burst_and_never_before_retry_after():
    state: dict[str, float] = {}
    now = 500.0
    waits = [ratelimit.take_turn(state, "write", now, 0.1, 0.9) for _ in range(11)]
    assert waits[:10] == [0.0] * 10  # one second's worth at once
    assert waits[10] == pytest.approx(0.1)
    assert state["sent:write"] == 10
    assert ratelimit.take_turn(state, "read", now, 0.01, 0.99) == 0.0  # reads: their own turn
    state["blocked"] = now + 2.0
    assert ratelimit.take_turn(state, "read", now, 0.01, 0.99) == pytest.approx(2.0)
    assert ratelimit.take_turn(state, "read", now + 2.0, 0.01, 0.99) == 0.0


def test_a_burst_of_throttling_for_one_overload_slows_down_once():
    now = 100.0
    first = ratelimit.slow_down({}, "write", 10.0, now, now - 0.1, retry_after=2.0,
                                measured=None)
    assert first["peak:write"] == 10.0 and first["slowed:write"] == now
    assert first["blocked"] == now + 2.0 and first["settled:write"] == now + 2.0
    state = dict(first)
    # requests sent before the slow-down settled met the same overload ...
    for sent in (now - 0.2, now + 0.5, now + 1.9):
        again = ratelimit.slow_down(state, "write", 10.0, now + 2.5, sent, 1.0, None)
        assert "slowed:write" not in again and again["blocked"] == now + 3.5
        state.update(again)
    assert state["throttled:write"] == 4 and state["slowdowns:write"] == 1
    # ... one sent after it is news: the rate halves again, from where it had climbed
    later = ratelimit.slow_down(state, "write", 10.0, now + 3.0, now + 2.6, None, None)
    assert later["slowdowns:write"] == 2
    assert later["peak:write"] == pytest.approx(ratelimit.rate_of(state, "write", 10.0,
                                                                  now + 3.0))
    assert "blocked" not in later and later["settled:write"] == now + 3.0 + ratelimit.QUIET


def test_a_slow_down_starts_from_what_was_really_sent():
    changes = ratelimit.slow_down({}, "read", 100.0, 50.0, 50.0, None, measured=6.0)
    assert changes["peak:read"] == 6.0  # not the 100/s allowed: 3/s next
    assert ratelimit.rate_of(changes, "read", 100.0, 50.0) == 3.0


def test_adaptive_limiter_slows_down_holds_for_retry_after_and_recovers(caplog):
    caplog.set_level(logging.DEBUG, logger="cloudnorm.ratelimit")
    clock = FakeClock()
    limiter = adaptive_limiter(clock)
    for _ in range(10):  # a second's worth at the start rate: at once
        limiter.acquire(write=True)
    assert clock.slept == [] and limiter.rate("write") == 10.0
    limiter.acquire(write=True)
    assert sum(clock.slept) == pytest.approx(0.1)

    assert limiter.throttled(write=True, retry_after=2.0) is True
    assert limiter.throttled(write=True, retry_after=2.0) is False  # the same overload
    assert limiter.rate("write") == 5.0 and limiter.rate("read") == 100.0
    assert limiter.throttles == {"read": 0, "write": 2}
    assert len(slowdowns(caplog)) == 1
    assert "10/s; slowing down to 5/s; no request before 2 s" in slowdowns(caplog)[0]

    before = clock.now
    limiter.acquire(write=False)  # reads too wait for the cloud's Retry-After
    assert clock.now - before == pytest.approx(2.0)
    clock.now += ratelimit.RECOVERY
    limiter.acquire(write=True)
    assert limiter.rate("write") == pytest.approx(10.0, rel=0.05)  # back where throttled
    clock.now += 3 * ratelimit.RECOVERY
    limiter.acquire(write=True)
    assert limiter.rate("write") == 10.0
    assert any("back at its start rate" in r.getMessage() for r in caplog.records)
    status = limiter.status()
    assert status["mode"] == "adaptive" and not status["shared"]
    assert status["writes"]["slowdowns"] == 1 and status["writes"]["throttled"] == 2
    assert status["writes"]["rate"] == 10.0 and status["reads"]["slowdowns"] == 0


def test_a_slow_down_follows_the_rate_that_was_measured():
    clock = FakeClock()
    limiter = adaptive_limiter(clock)
    for _ in range(12):  # three writes a second, well below the 10/s allowed
        limiter.acquire(write=True)
        clock.now += 1 / 3
    limiter.throttled(write=True)
    assert limiter.rate("write") == pytest.approx(1.5, rel=0.1)


def test_processes_sharing_the_state_slow_down_together(caplog):
    caplog.set_level(logging.INFO, logger="cloudnorm.ratelimit")
    clock = FakeClock()
    one, other = adaptive_limiter(clock), adaptive_limiter(clock)
    other.key, other.storage_key = one.key, one.storage_key
    other._states = one._own_states  # one storage, as Redis is for two processes
    one.acquire(write=True)
    one.throttled(write=True, retry_after=1.0)
    before = clock.now
    other.acquire(write=True)
    assert clock.now - before == pytest.approx(1.0)  # held by the other's Retry-After
    assert other.rate("write") < 10.0
    assert any("by another process" in r.getMessage() for r in caplog.records)


def test_a_request_waits_no_longer_than_its_deadline_on_a_throttled_account():
    clock = FakeClock()
    limiter = adaptive_limiter(clock)
    limiter.throttled(write=True, retry_after=30.0)
    with pytest.raises(errors.Timeout, match="the cloud throttles this account"):
        limiter.acquire(write=True, deadline=time.monotonic() + 0.5)
    assert sum(clock.slept) <= 1.0


def test_a_fixed_limiter_counts_throttling_and_does_not_adapt():
    limiter = ratelimit.Limiter(unique_key(), ratelimit.RateLimit(reads=None, writes=None))
    assert limiter.throttled(write=False, retry_after=5.0) is False
    limiter.acquire(write=True)  # unlimited: no hold either
    assert limiter.throttles == {"read": 1, "write": 0}
    status = limiter.status()
    assert status["mode"] == "fixed" and status["writes"]["rate"] is None


def test_throttled_without_a_kind_means_this_threads_last_request():
    clock = FakeClock()
    limiter = adaptive_limiter(clock)
    limiter.acquire(write=False)
    limiter.throttled()
    assert limiter.throttles == {"read": 1, "write": 0} and limiter.rate("read") == 50.0


# -- the adaptive budget: settings --------------------------------------------------------------
PROFILE_START = {"writes": 10.0, "reads": 100.0}


@pytest.mark.parametrize("options, expected", [
    (None, ratelimit.RateLimit(100.0, 10.0, adaptive=True)),
    ({"storage": "redis://127.0.0.1:1/0"},
     ratelimit.RateLimit(100.0, 10.0, "redis://127.0.0.1:1/0", adaptive=True)),
    ({"writes": 2}, ratelimit.RateLimit(20.0, 2.0)),  # fixed by clouds.yaml: no adapting
    ({"reads": 0}, ratelimit.RateLimit(None, 1.0)),
    ({"adaptive": False}, ratelimit.RateLimit(10.0, 1.0)),  # the provider's fixed default
    ({"adaptive": True, "writes": 4}, ratelimit.RateLimit(40.0, 4.0, adaptive=True)),
    ({"adaptive": True, "reads": 30}, ratelimit.RateLimit(30.0, 10.0, adaptive=True)),
])
def test_adaptive_unless_clouds_yaml_fixes_the_rates(options, expected):
    assert ratelimit.RateLimit.from_options(1.0, options, "c1", PROFILE_START) == expected


def test_profile_start_rates_and_bad_adaptive_settings():
    assert ratelimit.RateLimit.from_options(1.0, None, adaptive={"writes": 3.0}) == \
        ratelimit.RateLimit(30.0, 3.0, adaptive=True)
    assert ratelimit.RateLimit.from_options(2.0, {"adaptive": True}) == \
        ratelimit.RateLimit(20.0, 2.0, adaptive=True)
    for bad in ({"adaptive": "yes"}, {"adaptive": True, "writes": 0}):
        with pytest.raises(errors.ConfigError, match="adaptive"):
            ratelimit.RateLimit.from_options(1.0, bad, "c1", PROFILE_START)


def test_every_provider_profile_starts_generously():
    from cloudnorm import profiles
    from cloudnorm.drivers import spec
    from cloudnorm.drivers.registry import PROVIDERS

    for provider in PROVIDERS:
        start = profiles.load(provider).adaptive_rate_limit
        assert start["writes"] > spec(provider).writes_per_second
    with pytest.raises(errors.ConfigError, match="adaptive_rate_limit"):
        profiles._checked_rates("p", {"writes": -1})


def test_rates_fixed_in_clouds_yaml_beat_the_adaptive_budget_of_the_same_account():
    key = unique_key()
    first = ratelimit.limiter_for(key, ratelimit.RateLimit(100.0, 10.0, adaptive=True))
    ratelimit.limiter_for(key, ratelimit.RateLimit(200.0, 5.0, adaptive=True))
    assert first.limit == ratelimit.RateLimit(100.0, 5.0, adaptive=True)  # lower of each
    ratelimit.limiter_for(key, ratelimit.RateLimit(30.0, 3.0))
    assert first.limit == ratelimit.RateLimit(30.0, 3.0)
    ratelimit.limiter_for(key, ratelimit.RateLimit(100.0, 1.0, adaptive=True))
    assert first.limit == ratelimit.RateLimit(30.0, 3.0)  # stays fixed


# -- the transports tell the limiter ----------------------------------------------------------
@pytest.fixture
def own_limiters(monkeypatch):
    monkeypatch.setattr(ratelimit, "_LIMITERS", {})


def test_openstack_429_slows_the_account_down(connect, fake_os, own_limiters, caplog):
    caplog.set_level(logging.INFO, logger="cloudnorm.ratelimit")
    fake_os.nova("/os-keypairs", method="POST", response_list=[
        {"status_code": 429, "headers": {"Retry-After": "0"},
         "json": {"overLimit": {"code": 429, "message": "This request was rate-limited."}}},
        {"json": {"keypair": {"name": "k", "public_key": "ssh-ed25519 A"}}}])
    cloud = connect()
    limiter = cloud.driver.limiter
    assert limiter.limit.adaptive and limiter.limit.writes == 10.0  # the openstack profile's
    assert cloud.create_keypair("k", "ssh-ed25519 A").name == "k"
    assert limiter.throttles == {"read": 0, "write": 1}
    assert limiter.rate("write") < 10.0 and len(slowdowns(caplog)) == 1


def test_aws_throttling_reaches_the_limiter(own_limiters, monkeypatch):
    import types

    import botocore.endpoint

    # botocore's own backoff between the attempts: not waited for here
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=lambda s: None))
    driver = make_aws_driver(endpoint_url=f"http://127.0.0.1:9/{uuid.uuid4().hex}")
    client = driver.transport.client("ec2")
    throttled = (b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>slow"
                 b"</Message></Error></Errors><RequestID>r1</RequestID></Response>")
    body = (b'<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
            b"<regionInfo/></DescribeRegionsResponse>")
    replies = [(503, throttled), (200, body)]

    def reply(request, **_):  # registered after the limiter's hook: no request leaves
        status, data = replies.pop(0)
        return botocore.awsrequest.AWSResponse(request.url, status, {}, _Raw(data))

    client.meta.events.register("before-send", reply)
    client.describe_regions()
    assert replies == [] and driver.limiter.throttles == {"read": 1, "write": 0}
    assert driver.limiter.limit.adaptive and driver.limiter.rate("read") < 20.0


def test_gce_throttling_reaches_the_limiter(own_limiters):
    from google.api_core import exceptions as gexc

    from .test_gce_driver import make_driver as make_gce_driver

    driver = make_gce_driver()
    driver.transport.retry_initial = 0.001
    replies = [gexc.TooManyRequests("slow down"), "done"]

    def call():
        driver.limiter.acquire(write=False)
        reply = replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    assert driver.transport.retry()(call)() == "done"
    assert driver.limiter.throttles == {"read": 1, "write": 0}
    assert driver.limiter.rate("read") < 20.0


def test_inspect_shows_the_rate_limit():
    from cloudnorm.cli.inspection import rate_limit_line

    clock = FakeClock()
    limiter = adaptive_limiter(clock)
    assert rate_limit_line(limiter.status()) == (
        "rate limit: adaptive (this process), writes 10/s (starts at 10/s), "
        "reads 100/s (starts at 100/s)")
    limiter.acquire(write=True)
    limiter.throttled(write=True, retry_after=3.0)
    clock.now += 1.0
    line = rate_limit_line(limiter.status())
    assert "writes 6.35/s (starts at 10/s; slowed down 1 time(s), last 1 s ago" in line
    assert line.endswith("nothing goes for 2.0 s (Retry-After)")
    fixed = ratelimit.Limiter(unique_key(), ratelimit.RateLimit(reads=20.0, writes=2.0))
    assert rate_limit_line(fixed.status()) == \
        "rate limit: fixed, 2 writes/s, 20 reads/s, kept over 10 s (this process)"

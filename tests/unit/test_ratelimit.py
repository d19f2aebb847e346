"""Rate limits shared per account, and the retries of the OpenStack driver's requests."""

from __future__ import annotations

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

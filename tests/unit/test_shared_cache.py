"""A discovery cache shared between processes: plain-data values, and surviving the
loss of the shared backend.

``dogpile.cache.memory_pickle`` over one dict stands in for Redis: like Redis it
stores bytes, so values go through the same encoding a shared backend gets.
"""

from __future__ import annotations

import datetime
import json
import logging
import pickle

import pytest
import redis.exceptions
from dogpile.cache.api import CantDeserializeException
from dogpile.cache.proxy import ProxyBackend

from cloudnorm import errors
from cloudnorm.cache import (
    REDIS_LOCK_TIMEOUT,
    DiscoveryCache,
    FallbackProxy,
    decode,
    deserialize,
    encode,
    serialize,
)
from cloudnorm.config import CacheSettings
from cloudnorm.models import Flavor, Image, KeyPair, Network
from cloudnorm.networks import Router

IDENTITY = "openstack|http://127.0.0.1:35357/v3|demo|default|alice|RegionOne"
IMAGE = Image(id="img-1", name="ubuntu-22.04", os_distro="ubuntu", os_version="22.04",
              created=datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc),
              min_ram=512, login_user="ubuntu",
              raw={"id": "img-1", "tags": ["a", "b"], "properties": {"hw_firmware": "bios"},
                   "checksum": None, "size": 1234})
FLAVOR = Flavor(id="f-1", name="m1.small", ram=2048, vcpus=1, disk=20,
                raw={"extra_specs": {"hw:cpu_policy": "shared"}})
NETWORK = Network(id="n-1", name="public", public=True, reason="router:external",
                  external=True, subnets=("s-1",), ip_versions=(4, 6))
ROUTER = Router(id="r-1", name="router", external_network_id="n-1",
                internal_network_ids=("n-2",))


def shared_cache(store: dict, **settings) -> DiscoveryCache:
    return DiscoveryCache(CacheSettings(backend="dogpile.cache.memory_pickle",
                                        arguments={"cache_dict": store}, **settings), IDENTITY)


class Creator:
    def __init__(self, value):
        self.value = value
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.value


# -- values as plain data ---------------------------------------------------------------------
@pytest.mark.parametrize("value", [
    [IMAGE], [FLAVOR], ([NETWORK], [ROUTER]), None, "ubuntu", 3, 2.5, True,
    {"nested": [1, (2, 3), {"x": b"\x00\x01"}]}, (), [],
])
def test_values_survive_the_round_trip(value):
    data = serialize(value)
    json.loads(data)  # plain JSON: readable by any version, runs no code
    assert deserialize(data) == value


def test_models_come_back_whole_including_raw_and_types():
    (image,) = deserialize(serialize([IMAGE]))
    assert type(image) is Image and image.raw == IMAGE.raw
    assert image.created == IMAGE.created and image.created.tzinfo is not None
    nets, routers = deserialize(serialize(([NETWORK], [ROUTER])))
    assert nets[0].subnets == ("s-1",) and nets[0].ip_versions == (4, 6)
    assert routers[0].internal_network_ids == ("n-2",)


def test_private_keys_and_secret_fields_are_never_stored():
    key = KeyPair(name="k", public_key="ssh-ed25519 AAAA", private_key="-----BEGIN OPENSSH")
    image = Image(id="i", name="n", raw={"token": "gAAAA-token", "X-Auth-Token": "t",
                                         "adminPass": "pw", "password": "pw2",
                                         "nested": {"client_secret": "s", "kept": 1}})
    data = serialize([key, image])
    for secret in (b"BEGIN OPENSSH", b"gAAAA", b"pw", b"client_secret", b"private_key"):
        assert secret not in data
    stored_key, stored_image = deserialize(data)
    assert stored_key.private_key is None and stored_key.public_key == "ssh-ed25519 AAAA"
    assert stored_image.raw == {"nested": {"kept": 1}}


def test_a_field_added_by_a_newer_version_is_ignored():
    data = encode([FLAVOR])
    data[0]["f"]["gpus"] = 2  # written by a version whose Flavor has one more field
    assert decode(data) == [FLAVOR]


@pytest.mark.parametrize("written", [
    # a version whose Flavor lacks a field this one requires
    json.dumps([{"m": "Flavor", "f": {"id": "f", "name": "n"}}]).encode(),
    # a model this version does not have
    json.dumps({"m": "Volume", "f": {"id": "v"}}).encode(),
    # cloudnorm 0.1 stored pickles
    pickle.dumps([FLAVOR]),
    b"not json",
])
def test_an_entry_this_version_cannot_rebuild_is_a_miss(written):
    with pytest.raises(CantDeserializeException):
        deserialize(written)


def test_unreadable_entry_is_fetched_again_and_replaced():
    store: dict = {}
    writer = shared_cache(store)
    writer.get_or_create("flavor", "all", lambda: [FLAVOR])
    (key,) = [k for k in store if ":flavor:" in k]
    metadata, _, _ = store[key].partition(b"|")
    store[key] = metadata + b"|" + json.dumps([{"m": "Flavor", "f": {"id": "x"}}]).encode()
    reader = shared_cache(store)
    creator = Creator([FLAVOR])
    assert reader.get_or_create("flavor", "all", creator) == [FLAVOR]
    assert creator.calls == 1
    assert shared_cache(store).get_or_create("flavor", "all", Creator(None)) == [FLAVOR]


def test_a_value_without_plain_form_is_returned_but_not_shared():
    store: dict = {}
    odd = [object()]
    assert shared_cache(store).get_or_create("image", "all", Creator(odd)) is odd
    creator = Creator(["fresh"])
    assert shared_cache(store).get_or_create("image", "all", creator) == ["fresh"]
    assert creator.calls == 1


def test_processes_sharing_a_backend_share_login_users():
    store: dict = {}
    shared_cache(store).set("login_user", "img-1", "ubuntu")
    assert shared_cache(store).peek("login_user", "img-1") == "ubuntu"
    assert shared_cache({}).peek("login_user", "img-1") is None


def test_in_process_memory_keeps_python_objects():
    cache = DiscoveryCache(CacheSettings(), IDENTITY)
    assert cache.fallback is None and cache.region.serializer is None
    value = [IMAGE]
    assert cache.get_or_create("image", "all", lambda: value) is value


def test_invalidation_holds_after_the_backend_expired_the_generation():
    """redis_expiration_time also expires generation entries: an invalidation after
    that must not bring back an entry of an earlier generation."""
    store: dict = {}
    cache = shared_cache(store)
    creator = Creator(None)
    for round_ in (1, 2):
        creator.value = [f"round {round_}"]
        cache.invalidate("image")
        assert cache.get_or_create("image", "all", creator) == [f"round {round_}"]
        for key in [k for k in store if k.endswith(":gen:image")]:
            del store[key]  # the backend forgot the generation
    creator.value = ["round 3"]
    cache.invalidate("image")
    assert cache.get_or_create("image", "all", creator) == ["round 3"]
    assert creator.calls == 3


# -- Redis settings ---------------------------------------------------------------------------
def test_redis_gets_bounded_waits_and_an_expiring_lock():
    cache = DiscoveryCache(CacheSettings(backend="dogpile.cache.redis", arguments={
        "url": "redis://127.0.0.1:9/0", "distributed_lock": True}), IDENTITY)
    backend = cache.region.backend.proxied  # the client connects on first use, not here
    assert backend.lock_timeout == REDIS_LOCK_TIMEOUT and backend.thread_local_lock is False
    assert backend.socket_timeout and backend.socket_connect_timeout
    assert isinstance(cache.fallback, FallbackProxy)


def test_redis_settings_from_clouds_yaml_win_over_the_defaults():
    cache = DiscoveryCache(CacheSettings(backend="dogpile.cache.redis", arguments={
        "url": "redis://127.0.0.1:9/0", "distributed_lock": True, "lock_timeout": 5,
        "socket_timeout": 1}), IDENTITY)
    backend = cache.region.backend.proxied
    assert backend.lock_timeout == 5 and backend.socket_timeout == 1


def test_redis_backend_without_its_client_library_is_a_config_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(errors.ConfigError, match=r"cloudnorm\[redis\]"):
        DiscoveryCache(CacheSettings(backend="dogpile.cache.redis"), IDENTITY)


def test_unreachable_redis_degrades_without_failing(caplog):
    """A real Redis client against a port where nothing listens."""
    cache = DiscoveryCache(CacheSettings(backend="dogpile.cache.redis", arguments={
        "url": "redis://127.0.0.1:9/0", "distributed_lock": True}), IDENTITY)
    creator = Creator([FLAVOR])
    with caplog.at_level(logging.WARNING, logger="cloudnorm.cache"):
        assert cache.get_or_create("flavor", "all", creator) == [FLAVOR]
        assert cache.get_or_create("flavor", "all", creator) == [FLAVOR]
    assert creator.calls == 1
    (message,) = warnings_of(caplog)
    assert message.startswith("cache backend dogpile.cache.redis unreachable (")
    assert "127.0.0.1:9" in message
    assert message.endswith("caching in this process only, retrying every 30 s")


# -- the fallback proxy -----------------------------------------------------------------------
class Outage(ProxyBackend):
    """The shared backend, which can be made unreachable."""

    def __init__(self):
        super().__init__()
        self.down = False
        self.calls = 0

    def _check(self):
        self.calls += 1
        if self.down:
            raise redis.exceptions.ConnectionError("Connection refused.")

    def get_serialized(self, key):
        self._check()
        return self.proxied.get_serialized(key)

    def set_serialized(self, key, value):
        self._check()
        self.proxied.set_serialized(key, value)

    def get_mutex(self, key):
        return Mutex(self)


class Mutex:
    def __init__(self, outage):
        self.outage = outage
        self.held = False

    def acquire(self, wait=True):
        self.outage._check()
        self.held = True
        return True

    def release(self):
        self.outage._check()
        self.held = False

    def locked(self):
        return self.held


@pytest.fixture
def flaky():
    """A shared cache whose backend can go away, and a clock the test moves."""
    store: dict = {}
    now = [0.0]
    cache = shared_cache(store)
    outage = Outage().wrap(cache.fallback.proxied)
    cache.fallback.proxied = outage
    cache.fallback.clock = lambda: now[0]
    return cache, outage, store, now


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_backend_gone_warns_once_and_caches_in_process(flaky, caplog):
    cache, outage, _, _ = flaky
    images = Creator([IMAGE])
    cache.get_or_create("image", "all", images)
    outage.down = True
    flavors = Creator([FLAVOR])
    with caplog.at_level(logging.DEBUG, logger="cloudnorm.cache"):
        for _ in range(5):
            assert cache.get_or_create("flavor", "all", flavors) == [FLAVOR]
            cache.set("login_user", "img-1", "ubuntu")
            assert cache.peek("login_user", "img-1") == "ubuntu"
    assert flavors.calls == 1
    assert warnings_of(caplog) == [
        "cache backend dogpile.cache.memory_pickle unreachable (Connection refused.);"
        " caching in this process only, retrying every 30 s"]
    # until the retry interval has passed, the shared backend is not asked again
    asked = outage.calls
    cache.get_or_create("flavor", "all", flavors)
    assert outage.calls == asked
    # what this process cached before the outage was in the shared backend, not here
    assert cache.get_or_create("image", "all", images) == [IMAGE] and images.calls == 2


def test_backend_is_retried_at_most_once_per_interval_and_used_again(flaky, caplog):
    cache, outage, _, now = flaky
    outage.down = True
    creator = Creator([FLAVOR])
    cache.get_or_create("flavor", "all", creator)
    asked = outage.calls
    now[0] += 10
    cache.peek("flavor", "all")
    assert outage.calls == asked
    now[0] += 25  # past the 30 s interval: one try, still down, no second warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cloudnorm.cache"):
        cache.peek("flavor", "all")
        cache.peek("flavor", "all")
    assert outage.calls == asked + 1
    assert warnings_of(caplog) == []
    outage.down = False
    now[0] += 31
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cloudnorm.cache"):
        assert cache.get_or_create("image", "all", Creator([IMAGE])) == [IMAGE]
    assert not cache.fallback.degraded
    assert warnings_of(caplog) == [
        "cache backend dogpile.cache.memory_pickle reachable again; sharing the cache again"]
    # and what is written now is shared again
    assert shared_cache(cache.fallback.proxied.proxied._cache).get_or_create(
        "image", "all", Creator(None)) == [IMAGE]
    # a second outage is announced again
    outage.down = True
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cloudnorm.cache"):
        cache.peek("image", "all")
    assert cache.fallback.outages == 2
    assert len(warnings_of(caplog)) == 1 and "unreachable" in warnings_of(caplog)[0]


def test_lost_lock_and_failed_release_do_not_fail_the_discovery(flaky):
    cache, outage, _, _ = flaky
    mutex = cache.fallback.get_mutex("k")
    assert mutex.acquire()
    outage.down = True
    mutex.release()  # the store went away while the lock was held
    assert cache.fallback.degraded
    assert mutex.acquire() and mutex.locked()  # this process's own lock now
    mutex.release()
    assert not mutex.locked()


def test_lock_expired_in_the_store_is_not_an_error(flaky):
    cache, outage, _, _ = flaky
    mutex = cache.fallback.get_mutex("k")
    mutex.acquire()

    def expired():
        raise redis.exceptions.LockNotOwnedError("Cannot release a lock that's no longer owned")

    mutex.shared.release = expired
    mutex.release()
    assert not cache.fallback.degraded


# -- a file on disk (dogpile.cache.dbm) ---------------------------------------------------------
def test_dbm_file_fills_two_kinds_at_once_without_waiting_on_itself(tmp_path):
    """dogpile's dbm backend takes one file lock for every key (``dogpile_lockfile``):
    a creator that needs another kind filled from a second thread, as network
    discovery does, would wait for a lock its own caller holds. cloudnorm makes the
    creation lock per key and per process there."""
    import threading

    cache = DiscoveryCache(CacheSettings(backend="dogpile.cache.dbm",
                                         arguments={"filename": str(tmp_path / "d.dbm")}),
                           "cloud-a")
    found: list[object] = []

    def outer() -> None:
        def creator() -> str:
            inner = threading.Thread(
                target=lambda: found.append(cache.get_or_create("subnet", "all", lambda: "s")))
            inner.start()
            inner.join()
            return "n"
        found.append(cache.get_or_create("network", "view", creator))

    worker = threading.Thread(target=outer, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "the dbm cache waited on its own lock"
    assert found == ["s", "n"]
    # and a second process (here: a second cache on the same file) reads both
    other = DiscoveryCache(CacheSettings(backend="dogpile.cache.dbm",
                                         arguments={"filename": str(tmp_path / "d.dbm")}),
                           "cloud-a")
    assert other.peek("network", "view") == "n" and other.peek("subnet", "all") == "s"


def test_dbm_lock_file_named_in_clouds_yaml_is_kept(tmp_path):
    lock = str(tmp_path / "mine.lock")
    cache = DiscoveryCache(CacheSettings(backend="dogpile.cache.dbm", arguments={
        "filename": str(tmp_path / "d.dbm"), "dogpile_lockfile": lock}), "cloud-a")
    assert cache.region.get_or_create("k", lambda: 1) == 1
    assert (tmp_path / "mine.lock").exists()

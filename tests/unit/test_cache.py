"""Discovery cache: computed once, invalidated by kind, namespaced by cloud identity."""

from __future__ import annotations

import pytest

from cloudnorm import errors
from cloudnorm.cache import FORMAT_VERSION, DiscoveryCache
from cloudnorm.config import CacheSettings


class Counter:
    """A creator that says how often it was called."""

    def __init__(self, value: object = "value") -> None:
        self.calls = 0
        self.value = value

    def __call__(self) -> object:
        self.calls += 1
        return (self.value, self.calls)


@pytest.fixture
def shared_backend():
    """One memory store behind several DiscoveryCache instances, as Redis would be."""
    return {}


def make_cache(identity: str = "openstack|http://127.0.0.1:35357/v3|demo|alice|RegionOne",
               store: dict | None = None, **settings) -> DiscoveryCache:
    arguments = {"cache_dict": store} if store is not None else {}
    return DiscoveryCache(CacheSettings(arguments=arguments, **settings), identity)


def test_same_discovery_twice_calls_the_creator_once():
    cache = make_cache()
    creator = Counter()
    assert cache.get_or_create("image", "all", creator) == ("value", 1)
    assert cache.get_or_create("image", "all", creator) == ("value", 1)
    assert creator.calls == 1


def test_different_keys_and_kinds_are_distinct():
    cache = make_cache()
    a, b, c = Counter("a"), Counter("b"), Counter("c")
    cache.get_or_create("image", "all", a)
    cache.get_or_create("image", "public", b)
    cache.get_or_create("flavor", "all", c)
    assert cache.get_or_create("image", "all", a) == ("a", 1)
    assert cache.get_or_create("image", "public", b) == ("b", 1)
    assert cache.get_or_create("flavor", "all", c) == ("c", 1)


def test_invalidate_recomputes_only_that_kind():
    cache = make_cache()
    images, flavors = Counter(), Counter()
    cache.get_or_create("image", "all", images)
    cache.get_or_create("flavor", "all", flavors)
    cache.invalidate("image")
    assert cache.get_or_create("image", "all", images) == ("value", 2)
    assert cache.get_or_create("flavor", "all", flavors) == ("value", 1)
    assert images.calls == 2 and flavors.calls == 1


def test_invalidate_twice_keeps_working():
    cache = make_cache()
    creator = Counter()
    for expected in (1, 2, 3):
        assert cache.get_or_create("network", "view", creator)[1] == expected
        cache.invalidate("network")


def test_invalidation_reaches_every_process_sharing_the_backend(shared_backend):
    first = make_cache(store=shared_backend)
    second = make_cache(store=shared_backend)
    creator = Counter()
    first.get_or_create("image", "all", creator)
    assert second.get_or_create("image", "all", creator) == ("value", 1)
    first.invalidate("image")
    assert second.get_or_create("image", "all", creator) == ("value", 2)


@pytest.mark.parametrize("other", [
    "openstack|http://127.0.0.1:35357/v3|other-project|alice|RegionOne",
    "openstack|http://127.0.0.1:35357/v3|demo|alice|RegionTwo",
    "openstack|http://10.0.0.1:5000/v3|demo|alice|RegionOne",
])
def test_two_identities_never_collide(shared_backend, other):
    mine = make_cache(store=shared_backend)
    theirs = make_cache(other, store=shared_backend)
    assert mine.namespace != theirs.namespace
    assert mine.key("image", "all") != theirs.key("image", "all")
    mine.get_or_create("image", "all", Counter("mine"))
    assert theirs.get_or_create("image", "all", Counter("theirs")) == ("theirs", 1)
    theirs.invalidate("image")
    assert mine.peek("image", "all") == ("mine", 1)


def test_namespace_does_not_contain_the_identity():
    cache = make_cache("openstack|http://keystone|demo|alice|RegionOne")
    assert "alice" not in cache.namespace and "keystone" not in cache.namespace
    assert cache.namespace.startswith(f"cloudnorm:v{FORMAT_VERSION}:")


def test_peek_and_set_never_call_the_cloud():
    cache = make_cache()
    assert cache.peek("flavor", "all") is None
    cache.set("flavor", "all", ["m1.small"])
    assert cache.peek("flavor", "all") == ["m1.small"]
    cache.invalidate("flavor")
    assert cache.peek("flavor", "all") is None


def test_expired_entry_is_recomputed(monkeypatch):
    import dogpile.cache.region as region_module

    now = [1_000_000.0]
    monkeypatch.setattr(region_module.time, "time", lambda: now[0])
    cache = make_cache(expiration_time=300, expirations={"server": 5})
    servers, images = Counter(), Counter()
    cache.get_or_create("server", "all", servers)
    cache.get_or_create("image", "all", images)
    now[0] += 10
    assert cache.get_or_create("server", "all", servers)[1] == 2
    assert cache.get_or_create("image", "all", images)[1] == 1


def test_unknown_backend_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="dogpile.cache.nosuch"):
        make_cache(backend="dogpile.cache.nosuch")

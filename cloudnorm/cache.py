"""Discovery cache: one dogpile.cache region per cloud.

Keys are namespaced by cloud identity (provider, endpoint, project, region)
and by a format version, so several clouds, and several processes sharing a
Redis or memcached backend, never read each other's or an older cloudnorm's
entries. Invalidation is by *generation*: every kind of resource has a
generation token stored in the cache itself, part of every key of that kind;
a write replaces it, which retires every entry of that kind at once -- in
every process sharing the backend.

A backend shared between processes (anything but the in-process memory and
null backends) gets two more things:

* values are stored as plain JSON data, not pickles, and rebuilt into models
  on read (:func:`encode` / :func:`decode`). A pickle names classes and their
  private layout: a reader whose models gained or lost a field would crash on
  it, and anyone able to write to the shared store could run code in every
  reader. Plain data is rebuilt from the fields the reader knows; an entry it
  cannot rebuild is a cache miss, never an error. Secrets (private keys,
  tokens, passwords) are dropped before anything is stored.
* the backend is wrapped in :class:`FallbackProxy`: when the shared store goes
  away, the process logs one warning and goes on with a cache of its own,
  trying the shared store again at most every ``retry_interval`` seconds.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs
from dogpile.cache import make_region
from dogpile.cache.api import NO_VALUE, CacheMutex, CantDeserializeException
from dogpile.cache.backends.memory import MemoryBackend
from dogpile.cache.proxy import ProxyBackend
from dogpile.cache.region import CacheRegion

from cloudnorm import errors, models, networks
from cloudnorm.config import CacheSettings

LOG = logging.getLogger(__name__)
#: Part of every key. Version 1 stored pickles; version 2 stores plain JSON data
#: (see :func:`encode`), so neither ever reads the other's entries.
FORMAT_VERSION = "2"
T = TypeVar("T")

#: How long a process that lost its shared backend waits before trying it again.
RETRY_INTERVAL = 30.0
#: Defaults for the Redis backend, so a store that stops answering costs a
#: bounded wait and a lock held by a process that died is released by Redis.
REDIS_DEFAULTS: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}
REDIS_LOCK_TIMEOUT = 60.0
_REDIS_BACKENDS = ("dogpile.cache.redis", "dogpile.cache.redis_sentinel",
                   "dogpile.cache.redis_cluster", "dogpile.cache.valkey")
#: Keys of a provider record that may carry a secret; never stored in a shared backend.
_SECRET_KEY = re.compile(r"token|password|passwd|secret|private_key|adminpass|credential",
                         re.IGNORECASE)


class DiscoveryCache:
    """Cached discovery for one cloud. ``kind`` is a resource kind (``image``...)."""

    def __init__(self, settings: CacheSettings, identity: str) -> None:
        self.settings = settings
        digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
        self.namespace = f"cloudnorm:v{FORMAT_VERSION}:{digest}"
        self.fallback: FallbackProxy | None = None
        arguments = dict(settings.arguments)
        if settings.backend in _REDIS_BACKENDS:
            for name, value in REDIS_DEFAULTS.items():
                arguments.setdefault(name, value)
            if arguments.get("distributed_lock"):
                arguments.setdefault("lock_timeout", REDIS_LOCK_TIMEOUT)
                # dogpile's advice for distributed locks: a lock taken by one
                # thread may be released by another.
                arguments.setdefault("thread_local_lock", False)
        if settings.backend == "dogpile.cache.dbm":
            # The dbm backend's creation lock is one file lock for every key:
            # discovery that fills two kinds at once (threads, or one creator
            # asking for another kind) would wait on itself forever. Per-key locks
            # in each process instead; two processes may then both ask the cloud
            # once, as with Redis without distributed_lock.
            arguments.setdefault("dogpile_lockfile", False)
            if isinstance(arguments.get("filename"), str):
                arguments["filename"] = os.path.expanduser(arguments["filename"])
        try:
            self.region: CacheRegion = make_region().configure(
                settings.backend,
                expiration_time=settings.expiration_time,
                arguments=arguments,
            )
        except ImportError as exc:
            raise errors.ConfigError(
                f"cache backend '{settings.backend}' needs a client library that is not"
                f" installed ({exc.name or exc}); for Redis: pip install 'cloudnorm[redis]'"
            ) from exc
        except Exception as exc:  # dogpile raises plain exceptions for unknown backends
            raise errors.ConfigError(
                f"cannot set up cache backend '{settings.backend}': {exc}; name a dogpile.cache"
                " backend such as dogpile.cache.memory or dogpile.cache.redis") from exc
        if self.region.backend.serializer is not None:
            # A backend that stores bytes keeps them outside this process, where
            # another process -- possibly another cloudnorm version -- reads
            # them: store plain data, never pickles. (memory and null keep
            # Python objects in this process and need none of this.)
            self.region.serializer = serialize
            self.region.deserializer = deserialize
            self.fallback = FallbackProxy(settings.backend)
            self.region.wrap(self.fallback)

    def _generation(self, kind: str) -> str:
        value = self.region.get(f"{self.namespace}:gen:{kind}", ignore_expiration=True)
        return "0" if value is NO_VALUE else str(value)

    def key(self, kind: str, key: str = "") -> str:
        return f"{self.namespace}:{kind}:{self._generation(kind)}:{key}"

    def get_or_create(self, kind: str, key: str, creator: Callable[[], T]) -> T:
        """The cached value, or ``creator()`` stored for the kind's expiration time.

        With a shared backend and ``distributed_lock``, one process runs
        ``creator`` while the others wait for its result, or go on with the
        expired value when there is one.
        """
        return self.region.get_or_create(  # type: ignore[no-any-return]
            self.key(kind, key), creator,
            expiration_time=self.settings.expiration_for(kind))

    def peek(self, kind: str, key: str = "") -> Any:
        """The cached value, or None; never calls the cloud."""
        value = self.region.get(self.key(kind, key),
                                expiration_time=self.settings.expiration_for(kind))
        return None if value is NO_VALUE else value

    def set(self, kind: str, key: str, value: Any) -> None:
        self.region.set(self.key(kind, key), value)

    def invalidate(self, *kinds: str) -> None:
        """Retire every cached entry of these kinds (after a write changed them)."""
        for kind in kinds:
            # A fresh random token, not a counter: a shared backend may expire
            # the generation entry (redis_expiration_time), and a counter that
            # restarted from 0 would bring retired entries back.
            self.region.set(f"{self.namespace}:gen:{kind}", uuid.uuid4().hex[:16])
        LOG.debug("cache invalidated: %s", ", ".join(kinds))


# -- values as plain data ------------------------------------------------------------

class Unencodable(ValueError):
    """A value holds something that has no plain-data form."""


#: The models a cached value may hold, by class name (what an entry records).
_MODELS: dict[str, Any] = {cls.__name__: cls for cls in (
    models.Image, models.Flavor, models.Network, models.KeyPair, models.Decision,
    models.Location, models.Address, models.Server, networks.Router)}


def encode(value: Any) -> Any:
    """``value`` as JSON-compatible data; models by field name, secrets dropped.

    Every container is tagged (``{"d": ...}`` dict, ``{"t": ...}`` tuple,
    ``{"m": name, "f": fields}`` model...), so decoding is unambiguous.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"t": [encode(v) for v in value]}
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise Unencodable(f"mapping key {k!r} is not a string")
            if not _SECRET_KEY.search(k):
                out[k] = encode(v)
        return {"d": out}
    if isinstance(value, datetime.datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, bytes):
        return {"b": base64.b64encode(value).decode("ascii")}
    model = _MODELS.get(type(value).__name__)
    if model is not None and type(value) is model:
        fields = {a.name: encode(getattr(value, a.name)) for a in attrs.fields(model)
                  if not _SECRET_KEY.search(a.name)}
        return {"m": model.__name__, "f": fields}
    raise Unencodable(f"no plain-data form for {type(value).__qualname__}")


def decode(data: Any) -> Any:
    """The value :func:`encode` made ``data`` from, rebuilt with this version's models.

    Fields this version does not know are ignored; a model whose required field
    is missing, or a model this version does not have, raises ValueError.
    """
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict) or len(data) not in (1, 2):
        raise ValueError(f"not an encoded value: {type(data).__name__}")
    if "t" in data:
        return tuple(decode(v) for v in data["t"])
    if "d" in data:
        return {k: decode(v) for k, v in data["d"].items()}
    if "dt" in data:
        return datetime.datetime.fromisoformat(data["dt"])
    if "b" in data:
        return base64.b64decode(data["b"])
    if "m" in data:
        cls = _MODELS.get(data["m"])
        if cls is None:
            raise ValueError(f"unknown model {data['m']!r}")
        known = {a.name: a.alias for a in attrs.fields(cls) if a.init}
        fields = {known[k]: decode(v) for k, v in data["f"].items() if k in known}
        try:
            return cls(**fields)
        except TypeError as exc:  # a required field this entry lacks
            raise ValueError(f"cannot rebuild {data['m']}: {exc}") from exc
    raise ValueError(f"unknown tag in {sorted(data)}")


_UNCACHEABLE = b'{"uncacheable": true}'


def serialize(value: Any) -> bytes:
    try:
        return json.dumps(encode(value), separators=(",", ":")).encode()
    except Unencodable as exc:
        # The caller still gets its value; the shared entry is a miss for everyone.
        LOG.debug("not storing a value in the shared cache: %s", exc)
        return _UNCACHEABLE


def deserialize(data: bytes) -> Any:
    try:
        return decode(json.loads(data))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # Written by a version whose values this one cannot rebuild: a miss,
        # so the value is fetched again and overwritten.
        LOG.debug("shared cache entry not readable by this version: %s", exc)
        raise CantDeserializeException() from exc


# -- surviving the loss of a shared backend -----------------------------------------

def _connection_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [OSError]  # sockets: refused, reset, timed out
    try:
        import redis.exceptions as redis_errors

        found += [redis_errors.ConnectionError, redis_errors.TimeoutError]
    except ImportError:
        pass
    try:
        import valkey.exceptions as valkey_errors

        found += [valkey_errors.ConnectionError, valkey_errors.TimeoutError]
    except ImportError:
        pass
    try:
        import pymemcache.exceptions as memcache_errors

        found += [memcache_errors.MemcacheUnexpectedCloseError]
    except ImportError:
        pass
    return tuple(found)


def _lock_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    try:
        import redis.exceptions as redis_errors

        found.append(redis_errors.LockError)
    except ImportError:
        pass
    try:
        import valkey.exceptions as valkey_errors

        found.append(valkey_errors.LockError)
    except ImportError:
        pass
    return tuple(found)


class FallbackProxy(ProxyBackend):
    """Turns "shared backend unreachable" into "cache in this process only".

    The first failure logs one warning and switches every operation to an
    in-memory backend. Every ``retry_interval`` seconds one operation tries the
    shared backend again; when it answers, the process logs that and uses it
    again (what was cached meanwhile stays in this process).
    """

    def __init__(self, name: str = "shared", retry_interval: float = RETRY_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.name = name
        self.retry_interval = retry_interval
        self.clock = clock
        self.errors = _connection_errors()
        self.lock_errors = _lock_errors()
        self.local = MemoryBackend({})
        self.degraded = False
        self.outages = 0
        self._retry_at = 0.0
        self._state = threading.Lock()
        self._local_locks: dict[Any, threading.Lock] = {}

    # -- state -----------------------------------------------------------------------
    def _use_shared(self) -> bool:
        if not self.degraded:
            return True
        with self._state:
            if self.clock() < self._retry_at:
                return False
            # One caller tries the shared backend; the others stay local meanwhile.
            self._retry_at = self.clock() + self.retry_interval
            return True

    def _failed(self, exc: BaseException) -> None:
        with self._state:
            self._retry_at = self.clock() + self.retry_interval
            if self.degraded:
                LOG.debug("cache backend %s still unreachable: %s", self.name, exc)
                return
            self.degraded = True
            self.outages += 1
        LOG.warning("cache backend %s unreachable (%s); caching in this process only, "
                    "retrying every %.0f s", self.name, exc, self.retry_interval)

    def _answered(self) -> None:
        if self.degraded:
            with self._state:
                if not self.degraded:
                    return
                self.degraded = False
            LOG.warning("cache backend %s reachable again; sharing the cache again", self.name)

    def _call(self, method: str, *args: Any) -> Any:
        if self._use_shared():
            try:
                result = getattr(self.proxied, method)(*args)
            except self.errors as exc:
                self._failed(exc)
            else:
                self._answered()
                return result
        return getattr(self.local, method)(*args)

    def local_lock(self, key: Any) -> threading.Lock:
        with self._state:
            return self._local_locks.setdefault(key, threading.Lock())

    # -- the backend API -------------------------------------------------------------
    def get(self, key: Any) -> Any:
        return self._call("get", key)

    def get_multi(self, keys: Iterable[Any]) -> Any:
        return self._call("get_multi", list(keys))

    def get_serialized(self, key: Any) -> Any:
        return self._call("get_serialized", key)

    def get_serialized_multi(self, keys: Iterable[Any]) -> Any:
        return self._call("get_serialized_multi", list(keys))

    def set(self, key: Any, value: Any) -> None:
        self._call("set", key, value)

    def set_multi(self, mapping: Mapping[Any, Any]) -> None:
        self._call("set_multi", mapping)

    def set_serialized(self, key: Any, value: bytes) -> None:
        self._call("set_serialized", key, value)

    def set_serialized_multi(self, mapping: Mapping[Any, bytes]) -> None:
        self._call("set_serialized_multi", mapping)

    def delete(self, key: Any) -> None:
        self._call("delete", key)

    def delete_multi(self, keys: Iterable[Any]) -> None:
        self._call("delete_multi", list(keys))

    def get_mutex(self, key: Any) -> CacheMutex | None:
        shared = self.proxied.get_mutex(key)  # builds a lock object; no round trip
        if shared is None:
            return None
        return _FallbackMutex(self, key, shared)


class _FallbackMutex(CacheMutex):
    """The shared backend's lock, or this process's own while the backend is gone."""

    def __init__(self, proxy: FallbackProxy, key: Any, shared: CacheMutex) -> None:
        self.proxy = proxy
        self.key = key
        self.shared = shared
        self.holding: Any = None  # the shared lock or a threading.Lock

    def acquire(self, wait: bool = True) -> bool:
        if self.proxy._use_shared():
            try:
                got = bool(self.shared.acquire(wait))
            except self.proxy.errors as exc:
                self.proxy._failed(exc)
            else:
                self.proxy._answered()
                if got:
                    self.holding = self.shared
                return got
        local = self.proxy.local_lock(self.key)
        got = local.acquire(wait)
        if got:
            self.holding = local
        return got

    def release(self) -> None:
        holding, self.holding = self.holding, None
        if holding is None:
            return
        try:
            holding.release()
        except self.proxy.errors as exc:
            # The lock lives on in the store until its lock_timeout.
            self.proxy._failed(exc)
        except self.proxy.lock_errors as exc:
            # Expired (lock_timeout shorter than the discovery) or lost with a
            # restarted store: nothing left to release.
            LOG.debug("cache lock for %s already released: %s", self.key, exc)

    def locked(self) -> bool:
        if self.holding is not None and self.holding is not self.shared:
            return True  # held through this process's own lock
        if self.proxy.degraded:
            return self.proxy.local_lock(self.key).locked()
        try:
            return bool(self.shared.locked())
        except self.proxy.errors:
            return self.proxy.local_lock(self.key).locked()

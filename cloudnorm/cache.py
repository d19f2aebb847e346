"""Discovery cache: one dogpile.cache region per cloud.

Keys are namespaced by cloud identity (provider, endpoint, project, region)
and by a format version, so several clouds, and several processes sharing a
Redis or memcached backend, never read each other's or an older cloudnorm's
entries. Invalidation is by *generation*: every kind of resource has a
generation number stored in the cache itself, part of every key of that kind;
a write bumps it, which retires every entry of that kind at once -- in every
process sharing the backend.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from dogpile.cache import make_region
from dogpile.cache.api import NO_VALUE
from dogpile.cache.region import CacheRegion

from cloudnorm import errors
from cloudnorm.config import CacheSettings

LOG = logging.getLogger(__name__)
FORMAT_VERSION = "1"
T = TypeVar("T")


class DiscoveryCache:
    """Cached discovery for one cloud. ``kind`` is a resource kind (``image``...)."""

    def __init__(self, settings: CacheSettings, identity: str) -> None:
        self.settings = settings
        digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
        self.namespace = f"cloudnorm:v{FORMAT_VERSION}:{digest}"
        self._local = threading.Lock()
        try:
            self.region: CacheRegion = make_region().configure(
                settings.backend,
                expiration_time=settings.expiration_time,
                arguments=dict(settings.arguments),
            )
        except Exception as exc:  # dogpile raises plain exceptions for unknown backends
            raise errors.ConfigError(
                f"cannot set up cache backend '{settings.backend}': {exc}; name a dogpile.cache"
                " backend such as dogpile.cache.memory or dogpile.cache.redis") from exc

    def _generation(self, kind: str) -> int:
        value = self.region.get(f"{self.namespace}:gen:{kind}", ignore_expiration=True)
        return 0 if value is NO_VALUE else int(value)

    def key(self, kind: str, key: str = "") -> str:
        return f"{self.namespace}:{kind}:{self._generation(kind)}:{key}"

    def get_or_create(self, kind: str, key: str, creator: Callable[[], T]) -> T:
        """The cached value, or ``creator()`` stored for the kind's expiration time."""
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
        with self._local:
            for kind in kinds:
                self.region.set(f"{self.namespace}:gen:{kind}", self._generation(kind) + 1)
        LOG.debug("cache invalidated: %s", ", ".join(kinds))

"""What cloudnorm knows about one cloud before talking to it.

Plain data, read from clouds.yaml by :mod:`cloudnorm.config` and handed to a driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:  # pragma: no cover - imported lazily: openstack costs ~1 s at import
    from openstack.config.cloud_region import CloudRegion


@attrs.frozen
class CacheSettings:
    """How discovery results are cached (the ``cache:`` section of clouds.yaml).

    ``backend`` is any dogpile.cache backend name (``dogpile.cache.memory``,
    ``dogpile.cache.redis``, ...); ``expirations`` maps a resource kind
    (``image``, ``flavor``, ``network``, ``server``, ...) to seconds.
    """

    backend: str = "dogpile.cache.memory"
    expiration_time: float = 300.0
    expirations: dict[str, float] = attrs.field(factory=dict)
    arguments: dict[str, Any] = attrs.field(factory=dict)

    def expiration_for(self, kind: str) -> float:
        return float(self.expirations.get(kind, self.expiration_time))


@attrs.frozen
class CloudSettings:
    """Everything cloudnorm knows about one cloud before talking to it."""

    name: str
    provider: str
    region: str | None
    profile: str | None
    options: dict[str, Any]
    cache: CacheSettings
    source: str | None = None
    #: ``networks:`` entries exactly as written in clouds.yaml (no defaults filled in).
    networks: tuple[dict[str, Any], ...] = ()
    #: How new servers are reached: ``"public"`` (a public address, made if needed) or
    #: ``"private"`` (their private address only: automation inside the cloud).
    access: str = "public"
    #: Where ``access`` was set (``"cloudnorm: access: private"``, ``"private: true"``),
    #: or ``""`` for the default.
    access_source: str = ""
    #: ``cloudnorm: defaults:``: what every create_server on this cloud uses where the
    #: call leaves a field unset (checked by :func:`cloudnorm.provision.request.check_defaults`).
    create_defaults: dict[str, Any] = attrs.field(factory=dict)
    #: The openstack.config view of the same entry (None for non-OpenStack providers).
    openstack: CloudRegion | None = attrs.field(default=None, eq=False, repr=False)

    def public_access(self, asked: bool | None) -> tuple[bool, str]:
        """Whether a server is reached on a public address, and who said so: the
        caller (``asked``, create_server's ``public``), then clouds.yaml, then the
        default (public)."""
        if asked is not None:
            return asked, f"asked for by the caller (public={asked})"
        if self.access == "private":
            return False, f"clouds.yaml says {self.access_source}"
        return True, "the default"

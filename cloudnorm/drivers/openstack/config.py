"""What an OpenStack cloud is to cloudnorm before its driver loads (no SDK import)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudnorm import errors
from cloudnorm.drivers.registry import ProviderSpec

if TYPE_CHECKING:  # pragma: no cover - openstack costs ~1 s at import
    from openstack.config.cloud_region import CloudRegion


def resolve(config: Any, name: str, source: str | None,
            overrides: dict[str, Any]) -> CloudRegion:
    """The cloud's openstack.config region, its auth checked now rather than on the
    first request."""
    from keystoneauth1 import exceptions as ksa_exc
    from openstack import exceptions as os_exc

    try:
        return config.get_one(name, **overrides)  # type: ignore[no-any-return]
    except ksa_exc.MissingRequiredOptions as exc:
        needed = ", ".join(sorted(o.dest for o in exc.options))
        raise errors.ConfigError(
            f"cloud '{name}' ({source}) lacks auth settings: {needed}; add them under"
            " auth: in clouds.yaml or as OS_* environment variables", cloud=name) from exc
    except (os_exc.ConfigException, ksa_exc.ClientException) as exc:
        raise errors.ConfigError(f"cloud '{name}' ({source}): {exc}", cloud=name) from exc


PROVIDER = ProviderSpec(
    name="openstack",
    normalize="cloudnorm.drivers.openstack.normalize",
    driver="cloudnorm.drivers.openstack.driver:OpenStackDriver",
    package="openstacksdk", extra=None, needs=("openstack",),
    # Nodepool's default for OpenStack: one write a second per provider.
    writes_per_second=1.0,
    resolve=resolve,
)

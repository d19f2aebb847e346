"""Provider drivers, imported only when a cloud of that provider is used.

Importing a provider SDK costs up to a second each; ``import cloudnorm`` must
stay cheap, so drivers are named here and loaded on first use.
"""

from __future__ import annotations

import importlib

from cloudnorm import errors
from cloudnorm.drivers.base import Driver

_DRIVERS = {
    "openstack": ("cloudnorm.drivers.openstack", "OpenStackDriver", "openstacksdk"),
    "aws": ("cloudnorm.drivers.aws", "AwsDriver", "boto3"),
    "gce": ("cloudnorm.drivers.gce", "GceDriver", "google-cloud-compute"),
}


def available() -> tuple[str, ...]:
    return tuple(_DRIVERS)


def driver_class(provider: str) -> type[Driver]:
    try:
        module_name, class_name, package = _DRIVERS[provider]
    except KeyError:
        raise errors.ConfigError(
            f"no driver for provider '{provider}'; available: {', '.join(_DRIVERS)}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise errors.ConfigError(
            f"the {provider} driver needs {package}: pip install {package} ({exc})") from exc
    return getattr(module, class_name)  # type: ignore[no-any-return]

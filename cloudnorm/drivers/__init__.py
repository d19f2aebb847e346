"""Provider drivers, imported only when a cloud of that provider is used.

Importing a provider SDK costs up to a second each; ``import cloudnorm`` must
stay cheap, so drivers are named here and loaded on first use.
"""

from __future__ import annotations

import importlib
import importlib.util

import attrs

from cloudnorm import errors
from cloudnorm.drivers.base import Driver


@attrs.frozen
class _Entry:
    module: str
    cls: str
    #: The distribution to install, and the extra of cloudnorm that brings it (None: it
    #: is one of cloudnorm's own requirements).
    package: str
    extra: str | None
    #: Modules the driver imports when it first talks to the cloud, checked at connect():
    #: a driver that imports its SDK lazily would otherwise fail on its first call.
    needs: tuple[str, ...]


_DRIVERS = {
    "openstack": _Entry("cloudnorm.drivers.openstack", "OpenStackDriver", "openstacksdk", None,
                        ("openstack",)),
    "aws": _Entry("cloudnorm.drivers.aws", "AwsDriver", "boto3", "aws", ("boto3", "botocore")),
    "gce": _Entry("cloudnorm.drivers.gce", "GceDriver", "google-cloud-compute", "gce",
                  ("google.cloud.compute_v1", "google.api_core", "google.auth",
                   "google.protobuf")),
}


def available() -> tuple[str, ...]:
    return tuple(_DRIVERS)


def _missing(entry: _Entry, provider: str, cause: object) -> errors.ConfigError:
    how = (f"pip install 'cloudnorm[{entry.extra}]'" if entry.extra
           else f"pip install {entry.package} (a requirement of cloudnorm itself)")
    return errors.ConfigError(
        f"{provider} clouds need {entry.package}, which is not installed ({cause}): {how}")


def _importable(name: str) -> bool:
    # find_spec imports the parent packages (google, google.cloud: namespaces, cheap) and
    # not the module itself; a module set to None in sys.modules is not importable.
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def driver_class(provider: str) -> type[Driver]:
    try:
        entry = _DRIVERS[provider]
    except KeyError:
        raise errors.ConfigError(
            f"no driver for provider '{provider}'; available: {', '.join(_DRIVERS)}") from None
    for name in entry.needs:
        if not _importable(name):
            raise _missing(entry, provider, f"no module named '{name}'")
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        raise _missing(entry, provider, exc) from exc
    return getattr(module, entry.cls)  # type: ignore[no-any-return]

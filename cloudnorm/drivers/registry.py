"""Which providers exist, and what each needs, without importing any SDK.

A provider is a package ``cloudnorm/drivers/<name>/`` with the same files everywhere:
``config.py`` (its :class:`ProviderSpec`: option keys, default rates, what to install),
``normalize.py`` (records to typed state and models, no I/O), ``transport.py`` (calls,
retries, error translation) and ``driver.py`` (the verbs of
:class:`~cloudnorm.drivers.base.Driver`). Adding one is that package, a profile, and
its name in :data:`PROVIDERS`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from cloudnorm import errors

if TYPE_CHECKING:
    from cloudnorm.drivers.base import Driver

#: The registered providers: each names a package under cloudnorm/drivers/.
PROVIDERS = ("openstack", "aws", "gce")
#: A cloud whose ``cloudnorm:`` section names no provider is an OpenStack cloud: that is
#: what clouds.yaml was made for.
DEFAULT_PROVIDER = PROVIDERS[0]


@attrs.frozen
class ProviderSpec:
    """What cloudnorm must know of a provider before loading its driver."""

    name: str
    #: ``"module:Class"`` of the driver, imported on first use.
    driver: str
    #: The module that turns the provider's records into typed state and models with no
    #: I/O and no SDK: ``server_state(record)`` and
    #: ``normalize_server(state, location, networks)``.
    normalize: str
    #: The distribution to install, and the extra of cloudnorm that brings it (None: it
    #: is one of cloudnorm's own requirements).
    package: str
    extra: str | None
    #: Modules the driver imports when it first talks to the cloud, checked at connect():
    #: a driver that imports its SDK lazily would otherwise fail on its first call.
    needs: tuple[str, ...]
    #: Keys this provider reads from a cloud's ``cloudnorm:`` section, with what each is.
    options: Mapping[str, str] = attrs.field(factory=dict)
    #: Writes per second when clouds.yaml says nothing (reads get ten times as many).
    writes_per_second: float = 1.0
    #: Checks the cloud's entry through openstack.config, as
    #: ``resolve(config, name, source, overrides)``, returning the
    #: openstack.config region the driver uses (None: the provider needs none).
    resolve: Callable[[Any, str, str | None, dict[str, Any]], Any] | None = None


#: Keys every provider reads from the ``cloudnorm:`` section.
COMMON_OPTIONS = {
    "provider": "which driver speaks to the cloud",
    "profile": "the quirk profile (cloudnorm/profiles) that describes the cloud",
    "defaults": "default image, min_ram and the like for create_server",
    "region": "the region, where openstack.config does not set it",
    "cache": "cloudnorm's refinements of the cache: section",
    "login_user": "the user new servers let in, where images do not say",
    "sandbox_profile": "the local sandbox profile the entry was written for",
    "rate_limit": "requests per second for reads and writes (cloudnorm.ratelimit)",
    "access": "public (default) or private: reach new servers on their private address"
              " and make no public one (as openstacksdk's private: true)",
}


def available() -> tuple[str, ...]:
    return PROVIDERS


def spec(provider: str) -> ProviderSpec:
    """The spec of ``provider``; a :class:`~cloudnorm.errors.ConfigError` naming the
    known ones when there is no such provider."""
    if provider not in PROVIDERS:
        raise errors.ConfigError(
            f"no driver for provider '{provider}'; available: {', '.join(PROVIDERS)}")
    module = importlib.import_module(f"cloudnorm.drivers.{provider}.config")
    found: ProviderSpec = module.PROVIDER
    return found


def option_keys() -> dict[str, str]:
    """Every key a ``cloudnorm:`` section may hold, for any provider."""
    keys = dict(COMMON_OPTIONS)
    for name in PROVIDERS:
        keys.update(spec(name).options)
    return keys


def _missing(entry: ProviderSpec, cause: object) -> errors.ConfigError:
    how = (f"pip install 'cloudnorm[{entry.extra}]'" if entry.extra
           else f"pip install {entry.package} (a requirement of cloudnorm itself)")
    return errors.ConfigError(
        f"{entry.name} clouds need {entry.package}, which is not installed ({cause}): {how}")


def _importable(name: str) -> bool:
    # find_spec imports the parent packages (google, google.cloud: namespaces, cheap) and
    # not the module itself; a module set to None in sys.modules is not importable.
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def driver_class(provider: str) -> type[Driver]:
    entry = spec(provider)
    for name in entry.needs:
        if not _importable(name):
            raise _missing(entry, f"no module named '{name}'")
    module_name, _, cls = entry.driver.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _missing(entry, exc) from exc
    return getattr(module, cls)  # type: ignore[no-any-return]

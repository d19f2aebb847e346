"""Provider drivers, one package each, imported only when a cloud of that provider is used.

Importing a provider SDK costs up to a second each; ``import cloudnorm`` must stay
cheap. So each provider's ``config.py`` (no SDK import) says what the provider is
(:class:`~cloudnorm.drivers.registry.ProviderSpec`), and its ``driver.py`` is loaded
on first use. See :mod:`cloudnorm.drivers.registry`.
"""

from __future__ import annotations

from cloudnorm.drivers.registry import (
    DEFAULT_PROVIDER,
    ProviderSpec,
    available,
    driver_class,
    option_keys,
    spec,
)

__all__ = ["DEFAULT_PROVIDER", "ProviderSpec", "available", "driver_class", "option_keys",
           "spec"]

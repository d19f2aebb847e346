"""cloudnorm: every compute cloud, the way AWS behaves for the person who automates it.

>>> import cloudnorm
>>> cloud = cloudnorm.connect("mycloud")          # a name from clouds.yaml
>>> cloud.find_image("ubuntu-22.04"), cloud.find_flavor(min_ram=2048)

Provider SDKs are imported only when a cloud of that provider is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudnorm.errors import (
    Ambiguous,
    AuthError,
    CloudnormError,
    ConfigError,
    HostKeyMismatch,
    NotFound,
    NotReachable,
    ProviderError,
    QuotaExceeded,
    ServiceUnavailable,
    Timeout,
)
from cloudnorm.models import (
    Address,
    Decision,
    Flavor,
    Image,
    KeyPair,
    Location,
    Network,
    Server,
    Volume,
)

if TYPE_CHECKING:
    from cloudnorm.cloud import Cloud
    from cloudnorm.offline import describe_server
    from cloudnorm.provision.request import CreateRequest

__version__ = "0.1.0"

__all__ = [
    "Address", "Ambiguous", "AuthError", "Cloud", "CloudnormError", "ConfigError",
    "CreateRequest", "Decision", "Flavor", "HostKeyMismatch", "Image", "KeyPair", "Location",
    "Network", "NotFound",
    "NotReachable", "ProviderError", "QuotaExceeded", "Server", "ServiceUnavailable", "Timeout",
    "Volume", "connect", "describe_server",
]

#: Names loaded on first use: each pulls in modules ``import cloudnorm`` need not pay for.
_LAZY = {"Cloud": "cloudnorm.cloud", "CreateRequest": "cloudnorm.provision.request",
         "describe_server": "cloudnorm.offline"}


def connect(cloud: str | None = None, **kwargs: Any) -> Cloud:
    """Open a cloud by its clouds.yaml name; see :func:`cloudnorm.cloud.connect`."""
    from cloudnorm.cloud import connect as _connect

    return _connect(cloud, **kwargs)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)

"""Servers from records a caller already holds, with no request to any cloud.

Inventory caches, event streams and audit logs keep a provider's own server records;
:func:`describe_server` gives each the same :class:`~cloudnorm.models.Server` that
``Cloud.get_server`` would, from the record and the network context alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from cloudnorm.drivers import registry
from cloudnorm.models import Location, Network, Server
from cloudnorm.state import ServerState


def server_state(provider: str, record: Mapping[str, Any]) -> ServerState:
    """The typed state (phase, fault, owner marker, tags) of one raw server record of
    ``provider``. A malformed record raises :class:`~cloudnorm.errors.ProviderError`."""
    return _normalizer(provider).server_state(record)  # type: ignore[no-any-return]


def describe_server(provider: str, record: Mapping[str, Any], *,
                    networks: Sequence[Network] = (), location: Location | None = None,
                    **context: Any) -> Server:
    """One raw server record of ``provider`` as a :class:`~cloudnorm.models.Server`.

    ``record`` is what the provider's API returns for one server: a Nova server
    (``GET /servers/detail``), one ``Instance`` of EC2's DescribeInstances, one GCE
    instance resource. ``networks`` are the classified networks (``Cloud.list_networks()``,
    possibly cached) the addresses are judged against; without them an address is judged
    by its range alone, and each address's ``reason`` says so. ``location`` names the
    cloud the record came from. ``context`` passes provider-specific inputs on to the
    provider's ``normalize_server`` (see its documentation).
    """
    module = _normalizer(provider)
    state = module.server_state(record)
    return module.normalize_server(  # type: ignore[no-any-return]
        state, location or Location(cloud=""), list(networks), **context)


def _normalizer(provider: str) -> Any:
    return importlib.import_module(registry.spec(provider).normalize)

"""Deleting a server and everything cloudnorm made for it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cloudnorm import errors
from cloudnorm.drivers.base import Created
from cloudnorm.models import OWNER_KEY, Server
from cloudnorm.provision.watcher import ServerWatcher
from cloudnorm.state import ServerState, gone

if TYPE_CHECKING:
    from cloudnorm.provision.context import CloudView

LOG = logging.getLogger(__name__)

#: Removal order: what points at a server first, then the server, then what it used.
ORDER = {"port_forwarding": 0, "floating_ip": 0, "server": 1, "port": 2, "volume": 2,
         "disk": 2, "security_group": 3, "keypair": 4}


#: How many times a server is asked to go when the cloud fails its delete. Nova then
#: puts the server in ERROR (its task state cleared) instead of removing it, and asking
#: again is the documented remedy.
DELETE_ATTEMPTS = 3


def _gone_or_failed(state: ServerState | None) -> bool:
    return gone(state) or (state is not None and state.phase == "error")


def wait_deleted(watcher: ServerWatcher, server_id: str, deadline: float) -> None:
    """Wait until a server asked to go is gone.

    Raises :class:`~cloudnorm.errors.ProviderError` as soon as the cloud says the delete
    failed (the server went to the error phase rather than away), with the cloud's
    explanation, instead of waiting for the deadline.
    """
    state = watcher.wait(server_id, _gone_or_failed, deadline)
    if state is not None and not gone(state):
        raise errors.ProviderError(
            f"the cloud failed to delete server {server_id}: it went to {state.status}"
            + (f" ({state.fault})" if state.fault else ""), status=state.status)


def remove_server(driver_delete: Callable[[Created], None], watcher: ServerWatcher,
                  server: Created, deadline: float) -> None:
    """Delete a server and wait until it is gone, asking again when the cloud failed
    the delete (:data:`DELETE_ATTEMPTS` times in all)."""
    for attempt in range(1, DELETE_ATTEMPTS + 1):
        driver_delete(server)
        try:
            wait_deleted(watcher, server.id, deadline)
            return
        except errors.ProviderError as exc:
            if attempt == DELETE_ATTEMPTS:
                raise
            LOG.warning("%s; asking again (%d of %d)", exc, attempt + 1, DELETE_ATTEMPTS)


def remove_resources(driver_delete: Callable[[Created], None], watcher: ServerWatcher,
                     resources: list[Created], deadline: float, wait: bool = True) -> None:
    """Delete ``resources`` in :data:`ORDER`, waiting for a server to be gone before what
    it used (its ports and groups stay in use until then)."""
    for resource in sorted(resources, key=lambda r: ORDER.get(r.kind, 9)):
        if resource.kind == "server" and wait:
            remove_server(driver_delete, watcher, resource, deadline)
        else:
            driver_delete(resource)


def delete_server(cloud: CloudView, server: Server | str, *, wait: bool = True,
                  timeout: float = 300.0) -> bool:
    """See :meth:`cloudnorm.cloud.Cloud.delete_server`."""
    driver = cloud.driver
    states: list[ServerState]
    if isinstance(server, Server) and server.raw:
        states = [ServerState(id=server.id, name=server.name, phase="running",
                              status=server.status, owner=server.tags.get(OWNER_KEY),
                              tags=server.tags, raw=server.raw)]
    else:
        states = driver.get_server(server.id if isinstance(server, Server) else server)
    if not states:
        return False
    if len(states) > 1:
        raise errors.Ambiguous(f"{len(states)} servers are named '{server}'; use an id",
                               candidates=[s.id for s in states], cloud=cloud.name)
    state = states[0]
    resources = driver.owned_resources(state.owner) if state.owner else []
    if not any(r.kind == "server" and r.id == state.id for r in resources):
        resources.append(Created("server", state.id, state.name))
    # Ports and groups stay in use until the server is gone, so wait even if not asked
    # where there is more than the server to remove.
    remove_resources(driver.delete, cloud.watcher, resources, time.monotonic() + timeout,
                     wait=wait or bool(state.owner))
    cloud.refresh("server")
    return True

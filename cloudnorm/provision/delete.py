"""Deleting a server and everything cloudnorm made for it."""

from __future__ import annotations

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

#: Removal order: what points at a server first, then the server, then what it used.
ORDER = {"port_forwarding": 0, "floating_ip": 0, "server": 1, "port": 2, "volume": 2,
         "disk": 2, "security_group": 3, "keypair": 4}


def remove_resources(driver_delete: Callable[[Created], None], watcher: ServerWatcher,
                     resources: list[Created], deadline: float, wait: bool = True) -> None:
    """Delete ``resources`` in :data:`ORDER`, waiting for a server to be gone before what
    it used (its ports and groups stay in use until then)."""
    for resource in sorted(resources, key=lambda r: ORDER.get(r.kind, 9)):
        driver_delete(resource)
        if resource.kind == "server" and wait:
            watcher.wait(resource.id, gone, deadline)


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

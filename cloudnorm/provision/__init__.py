"""The eight steps from "I want a server" to "I am logged in", on any cloud.

1 node key, 2 discovery, 3 choice, 4 boot and wait, 5 public address and
SSH access, 6 login with a verified host key, 7 hardening, 8 node key removal.
Each step reports through ``on_step`` and the log, records its decision on the
returned server, and registers what it created in a ledger; a failure at any
step removes everything the ledger holds, in reverse order, then raises.

The flow sees the cloud only through :class:`~cloudnorm.provision.context.CloudView`
(the public methods of :class:`~cloudnorm.cloud.Cloud`) and its driver only through
the typed contract of :mod:`cloudnorm.state`.
"""

from __future__ import annotations

from cloudnorm import turns
from cloudnorm.models import Server
from cloudnorm.provision import login, steps
from cloudnorm.provision.context import CloudView, Run
from cloudnorm.provision.delete import ORDER, delete_server
from cloudnorm.provision.ledger import STEPS, Ledger, Reporter, StepCallback, StepEvent
from cloudnorm.provision.request import CreateRequest
from cloudnorm.provision.watcher import ServerWatcher

__all__ = ["ORDER", "STEPS", "CloudView", "CreateRequest", "Ledger", "Reporter",
           "ServerWatcher", "StepCallback", "StepEvent", "create_server", "delete_server"]


def create_server(cloud: CloudView, request: CreateRequest,
                  on_step: StepCallback | None = None) -> Server:
    """See :meth:`cloudnorm.cloud.Cloud.create_server`."""
    # The creates of a fleet take the account's turns oldest first, so that the first
    # servers boot while later ones wait rather than all of them booting late.
    with turns.first_come():
        return _create_server(cloud, request, on_step)


def _create_server(cloud: CloudView, request: CreateRequest,
                   on_step: StepCallback | None) -> Server:
    run = Run.start(cloud, request.with_defaults(cloud.settings.create_defaults), on_step)
    try:
        steps.register_node_key(run)
        steps.discover(run)
        steps.choose(run)
        steps.boot(run)
        if not request.wait:
            return steps.requested(run)
        steps.wait_for_boot(run)
        steps.public_address(run)
        login.log_in(run)
        login.bootstrap(run)
        login.remove_key(run)
    except BaseException as exc:
        run.fail(exc)
        raise
    return login.result(run)

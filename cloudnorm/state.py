"""The typed contract between a driver and the create flow.

A driver reads its cloud's records and answers in these terms; the flow, the cleanup
and the conformance check read only these, never a vendor's own words. Each driver
keeps the one table that maps its cloud's statuses to a :data:`Phase`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from cloudnorm.userdata import SizeLimit

#: Where a server is in its life, in EC2's words (the yardstick) plus ``deleting``:
#: asked to go and not gone yet. A server that no longer exists has no state at all.
Phase = Literal["pending", "running", "stopping", "stopped", "deleting", "terminated",
                "error"]

PHASES: tuple[Phase, ...] = ("pending", "running", "stopping", "stopped", "deleting",
                             "terminated", "error")


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value or {})


@attrs.frozen
class ServerState:
    """One server as its cloud last described it.

    ``status`` is the cloud's own word (``BUILD``, ``pending``, ``STAGING``) for messages
    only; decisions read ``phase``. ``fault`` is the cloud's explanation of an ``error``
    phase, and ``quota`` says the cloud named a quota as its cause. ``owner`` is the
    ``cloudnorm:owner`` marker the server carries, if any; ``tags`` its metadata, tags
    or labels as text. ``raw`` is the record the driver read, which only that driver
    interprets (addresses are classified from it, with the network context, by
    :meth:`~cloudnorm.drivers.base.Driver.normalize_server`).
    """

    id: str
    name: str
    phase: Phase
    status: str
    fault: str | None = None
    quota: bool = False
    owner: str | None = None
    tags: Mapping[str, str] = attrs.field(factory=dict, converter=_mapping)
    raw: Mapping[str, Any] = attrs.field(factory=dict, converter=_mapping, eq=False,
                                         repr=False)

    @property
    def booted(self) -> bool:
        """The boot is over, one way or the other: running or failed."""
        return self.phase in ("running", "error")


def gone(state: ServerState | None) -> bool:
    """True for a server that no longer exists (no record, or terminated)."""
    return state is None or state.phase == "terminated"


def booted(state: ServerState | None) -> bool:
    """True once a server's boot is over: running or failed (a missing server is not)."""
    return state is not None and state.booted


def server_status(phase: Phase) -> str:
    """The :attr:`cloudnorm.models.Server.status` word for a phase: a server being
    deleted is, to its user, already terminated."""
    return "terminated" if phase == "deleting" else phase


@attrs.frozen
class Capabilities:
    """What a driver can do beyond the verbs every driver has.

    The flow asks here before calling an optional verb; a driver never signals a
    missing feature by raising or returning None.
    """

    #: The cloud filters traffic, so cloudnorm opens TCP 22 with a group it owns
    #: (:meth:`~cloudnorm.drivers.base.Driver.create_ssh_access`).
    security_groups: bool
    #: Metadata, tags or labels can be written on a server after it boots
    #: (:meth:`~cloudnorm.drivers.base.Driver.set_server_metadata`); cloudnorm stores
    #: the login there so that a later ``get_server()`` gives it back.
    server_metadata: bool = True
    #: The server's interface can be made before the server
    #: (:meth:`~cloudnorm.drivers.base.Driver.make_port`), so its public address is
    #: attached while it boots.
    prebuilt_ports: bool = False
    #: A port of a shared public address can be forwarded to a server
    #: (:meth:`~cloudnorm.drivers.base.Driver.forward_ssh_port`).
    port_forwarding: bool = False
    #: The guest publishes its host keys through the cloud's API
    #: (:meth:`~cloudnorm.drivers.base.Driver.published_host_keys`), a better channel
    #: than the console.
    published_host_keys: bool = False
    #: How much user data a server takes (None: the cloud takes none).
    user_data_limit: SizeLimit | None = None
    #: The cloud has block storage (volumes): servers can boot from a volume and have
    #: data volumes (OpenStack: a volume service in the catalog).
    block_storage: bool = False
    #: A server's root disk is always a block storage volume (EBS, persistent disk).
    root_is_volume: bool = False

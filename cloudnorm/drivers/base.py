"""The small interface every provider driver implements.

A driver makes the provider's raw calls and turns their answers into
cloudnorm's models; it makes no decisions. Decisions (which image, which
network, public or private) are pure functions in cloudnorm's core, fed with
what the driver returns.
"""

from __future__ import annotations

import abc
import datetime
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

import attrs

from cloudnorm.models import Address, Decision, Flavor, Image, KeyPair, Location, Network, Server
from cloudnorm.networks import NetworkFacts, NetworkHints, Router
from cloudnorm.profiles import Profile
from cloudnorm.settings import CloudSettings
from cloudnorm.state import Capabilities, ServerState

if TYPE_CHECKING:  # pragma: no cover
    from cloudnorm.cache import DiscoveryCache


@attrs.frozen
class BootSpec:
    """What to boot. ``owner`` is the marker every created resource carries."""

    name: str
    image: Image
    flavor: Flavor
    network: Network | None
    key_name: str
    owner: str
    security_group: str | None = None
    config_drive: bool = False
    metadata: dict[str, str] = attrs.field(factory=dict)
    #: The user the node key is for, where the cloud installs keys per user (GCE);
    #: None when cloudnorm will probe several.
    login_user: str | None = None
    #: The interface made for the server beforehand (:meth:`Driver.make_port`), which
    #: carries the security group; None: the cloud makes the server's interfaces.
    port: str | None = None
    #: Boot as the vendor's own examples do, adding nothing of cloudnorm's (no public
    #: address option, no group): what the conformance check measures the raw cloud by.
    plain: bool = False
    #: The user data, as the server receives it (checked against the cloud's limit).
    user_data: bytes | None = None
    availability_zone: str | None = None
    #: The caller's security groups (names or ids; GCE: network tags), in addition to
    #: ``security_group``.
    security_groups: tuple[str, ...] = ()
    #: False: ask for no public address at launch (private access), even where the
    #: network would give one by default.
    public_address: bool = True
    #: The root disk is a block storage volume (OpenStack: boot from volume); always
    #: the case on AWS and GCE.
    boot_from_volume: bool = False
    #: GiB of the root disk; None: the image's (or the flavor's) own size.
    root_size: int | None = None
    #: GiB of each data volume, attached at boot and deleted with the server.
    data_volumes: tuple[int, ...] = ()
    #: Volumes made beforehand by :meth:`Driver.make_volumes`, the root volume first
    #: when booting from a volume, then the data volumes in order; empty where the
    #: boot makes them.
    volume_ids: tuple[str, ...] = ()


@attrs.frozen
class Created:
    """A resource cloudnorm created, so it can be removed again.

    ``owner`` and ``created`` are filled in by :meth:`Driver.owned_resources` (the
    marker it carries, and when the cloud says it was made, if it says so).
    """

    kind: str  # "keypair", "security_group", "floating_ip", "server", ...
    id: str
    description: str = ""
    owner: str = ""
    created: datetime.datetime | None = None


class Driver(abc.ABC):
    """One cloud account in one region, spoken to in its own dialect.

    Every verb answers in cloudnorm's terms (:class:`~cloudnorm.state.ServerState`,
    :mod:`cloudnorm.models`); an optional verb is called only where
    :attr:`capabilities` says the driver has it.
    """

    provider: ClassVar[str]

    def __init__(self, settings: CloudSettings, profile: Profile) -> None:
        self.settings = settings
        self.profile = profile

    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """What this driver can do beyond the verbs every driver has (may depend on
        what the cloud offers, e.g. a network service)."""

    @abc.abstractmethod
    def identity(self) -> str:
        """A stable, non-secret string naming the account and region (cache namespace)."""

    @abc.abstractmethod
    def location(self) -> Location:
        """Where this driver's resources live."""

    @abc.abstractmethod
    def list_images(self) -> list[Image]:
        """Every image the account can boot, normalized (unfiltered)."""

    @abc.abstractmethod
    def list_flavors(self) -> list[Flavor]:
        """Every server size the account can use."""

    @abc.abstractmethod
    def network_facts(self) -> tuple[list[NetworkFacts], list[Router]] | None:
        """Networks and routers as the cloud describes them; None when the cloud
        has no network service (addresses are then classified from servers alone)."""

    @abc.abstractmethod
    def network_hints(self) -> NetworkHints:
        """Operator knowledge about networks (configuration, then profile)."""

    @abc.abstractmethod
    def list_servers(self) -> list[ServerState]:
        """The servers of the account (terminated ones left out)."""

    @abc.abstractmethod
    def get_server(self, name_or_id: str) -> list[ServerState]:
        """The servers with this id or name (none, one or several), terminated ones
        left out: a server deleted a moment ago is not found, as on every cloud."""

    @abc.abstractmethod
    def normalize_server(self, state: ServerState, networks: list[Network]) -> Server:
        """The :class:`Server` of a state, its addresses classified against ``networks``."""

    def describe_servers(self, states: list[ServerState], networks: list[Network]
                         ) -> list[Server]:
        """Servers as a caller asks for them (listing, lookup): normalized, and completed
        where the cloud's server record lags what its other services already know."""
        return [self.normalize_server(state, networks) for state in states]

    #: Why a network service the catalog lists is not used (it answers 404 or 403), or
    #: None. Servers are then described from the compute service's records alone.
    network_service_note: str | None = None

    @abc.abstractmethod
    def list_keypairs(self) -> list[KeyPair]:
        """Key pairs registered with the cloud (public halves only)."""

    @abc.abstractmethod
    def create_keypair(self, name: str, public_key: str) -> KeyPair:
        """Register a public key under ``name``."""

    @abc.abstractmethod
    def delete_keypair(self, name: str) -> bool:
        """Remove a key pair; False when it did not exist."""

    # -- provisioning verbs ---------------------------------------------------------
    def create_ssh_access(self, owner: str) -> Created:
        """A firewall group/rule owned by cloudnorm that lets TCP 22 in
        (``capabilities.security_groups``)."""
        raise _lacks(self, "security_groups")

    def make_volumes(self, spec: BootSpec, made: Callable[[Created], object],
                     deadline: float) -> BootSpec:
        """Make the volumes ``spec`` asks for before the boot, where the cloud's own
        boot would make them unmarked; each is passed to ``made`` as soon as it exists
        (so a failure later removes it), and the spec that boots from them is returned.
        Where the boot request itself makes marked volumes (EC2's tag specifications,
        GCE's disk labels), nothing is made and ``spec`` comes back as it is."""
        return spec

    @abc.abstractmethod
    def boot(self, spec: BootSpec) -> Created:
        """Ask for the server; returns at once with its id."""

    @abc.abstractmethod
    def poll_servers(self, ids: set[str]) -> dict[str, ServerState]:
        """These servers' states, in as few requests as possible (one list call); a
        server that does not exist is left out."""

    @abc.abstractmethod
    def console_output(self, server_id: str) -> str:
        """The server's console text ('' when there is none yet)."""

    def published_host_keys(self, server_id: str) -> tuple[str, ...]:
        """Host keys (``"TYPE BASE64"``) the server's guest environment published through
        the cloud's API (``capabilities.published_host_keys``; GCE's guest attributes);
        () while nothing was published yet. The console is the fallback."""
        raise _lacks(self, "published_host_keys")

    def check_options(self, availability_zone: str | None,
                      security_groups: Sequence[str]) -> None:
        """Raise :class:`~cloudnorm.errors.InvalidRequest` for create options this cloud
        cannot honour, before anything is created; the cloud itself judges the rest."""
        return None

    def make_port(self, attach: Network, owner: str,
                  security_groups: Sequence[str] = ()) -> Created:
        """The new server's interface on ``attach``, made before the server
        (``capabilities.prebuilt_ports``), so that its public address can be attached
        while it boots instead of after. It carries ``security_groups`` (ids, or names
        the driver looks up)."""
        raise _lacks(self, "prebuilt_ports")

    @abc.abstractmethod
    def attach_public_address(self, state: ServerState, attach: Network,
                              pools: list[Network], owner: str, port: Created | None = None
                              ) -> tuple[Created, Address, list[Decision]]:
        """Give the server a public address from the first of ``pools`` that can;
        on ``port`` when :meth:`make_port` made the server's interface."""

    def forward_ssh_port(self, state: ServerState, attach: Network, owner: str
                         ) -> tuple[Created, Address, int, list[Decision]]:
        """Reach the server through a port of an address the account shares
        (``capabilities.port_forwarding``); returns the forwarding, the address, the
        external port and what was decided."""
        raise _lacks(self, "port_forwarding")

    @abc.abstractmethod
    def delete(self, resource: Created) -> None:
        """Remove a created resource; a resource already gone is not an error."""

    def set_server_metadata(self, server_id: str, items: dict[str, str]) -> None:
        """Add or replace metadata items (tags) on a server
        (``capabilities.server_metadata``); each key and value is at most 255
        characters, what every supported cloud accepts."""
        raise _lacks(self, "server_metadata")

    @abc.abstractmethod
    def owned_resources(self, owner: str | None) -> list[Created]:
        """Everything carrying this owner marker, or any owner marker when ``owner`` is
        None (servers last), for cleanup."""

    def keep_discovery_in(self, cache: DiscoveryCache) -> None:  # noqa: B027 - most have none
        """Keep what the driver discovers on its own (an API version) in the cloud's
        discovery cache, so that another process sharing that cache skips it."""

    def close(self) -> None:  # noqa: B027 - most drivers hold nothing to release
        """Release connections."""


def _lacks(driver: Driver, capability: str) -> TypeError:
    # A flow that calls an optional verb without asking Capabilities first is a bug.
    return TypeError(f"{type(driver).__name__} has no {capability}: check "
                     f"driver.capabilities.{capability} before calling it")

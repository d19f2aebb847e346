"""The small interface every provider driver implements.

A driver makes the provider's raw calls and turns their answers into
cloudnorm's models; it makes no decisions. Decisions (which image, which
network, public or private) are pure functions in cloudnorm's core, fed with
what the driver returns.
"""

from __future__ import annotations

import abc
import datetime
from typing import Any, ClassVar

import attrs

from cloudnorm.config import CloudSettings
from cloudnorm.models import Address, Decision, Flavor, Image, KeyPair, Location, Network, Server
from cloudnorm.networks import NetworkFacts, NetworkHints, Router
from cloudnorm.profiles import Profile


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
    """One cloud account in one region, spoken to in its own dialect."""

    provider: ClassVar[str]

    def __init__(self, settings: CloudSettings, profile: Profile) -> None:
        self.settings = settings
        self.profile = profile

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
    def list_servers(self) -> list[dict[str, Any]]:
        """Raw server records of the account."""

    @abc.abstractmethod
    def get_server(self, name_or_id: str) -> list[dict[str, Any]]:
        """Raw records of the servers with this id or name (none, one or several)."""

    @abc.abstractmethod
    def normalize_server(self, raw: dict[str, Any], networks: list[Network]) -> Server:
        """Turn a raw server record into a :class:`Server` with classified addresses."""

    def describe_servers(self, raws: list[dict[str, Any]], networks: list[Network]
                         ) -> list[Server]:
        """Servers as a caller asks for them (listing, lookup): normalized, and completed
        where the cloud's server record lags what its other services already know."""
        return [self.normalize_server(raw, networks) for raw in raws]

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
    @abc.abstractmethod
    def supports_security_groups(self) -> bool:
        """False when the cloud filters no traffic cloudnorm could open (no groups)."""

    @abc.abstractmethod
    def create_ssh_access(self, owner: str) -> Created:
        """A firewall group/rule owned by cloudnorm that lets TCP 22 in."""

    @abc.abstractmethod
    def boot(self, spec: BootSpec) -> Created:
        """Ask for the server; returns at once with its id."""

    @abc.abstractmethod
    def poll_servers(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        """Raw records of these servers, in as few requests as possible (one list call)."""

    @abc.abstractmethod
    def console_output(self, server_id: str) -> str:
        """The server's console text ('' when there is none yet)."""

    def published_host_keys(self, server_id: str) -> tuple[str, ...]:
        """Host keys (``"TYPE BASE64"``) the server's guest environment published through
        the cloud's API, where the cloud has such a channel (GCE's guest attributes); ()
        when it has none, or nothing was published yet. The console is the fallback."""
        return ()

    def make_port(self, attach: Network, owner: str, security_group: str | None
                  ) -> Created | None:
        """The new server's interface on ``attach``, made before the server, so that its
        public address can be attached while it boots instead of after; None where the
        cloud makes a server's interfaces only with the server."""
        return None

    @abc.abstractmethod
    def attach_public_address(self, raw: dict[str, Any], attach: Network,
                              pools: list[Network], owner: str, port: Created | None = None
                              ) -> tuple[Created, Address, list[Decision]]:
        """Give the server a public address from the first of ``pools`` that can;
        on ``port`` when :meth:`make_port` made the server's interface."""

    def forward_ssh_port(self, raw: dict[str, Any], attach: Network, owner: str
                         ) -> tuple[Created, Address, int, list[Decision]]:
        """Reach the server through a port of an address the account shares;
        returns the forwarding, the address, the external port and what was decided."""
        raise NotImplementedError(f"{self.provider} clouds have no port forwarding")

    @abc.abstractmethod
    def delete(self, resource: Created) -> None:
        """Remove a created resource; a resource already gone is not an error."""

    @abc.abstractmethod
    def server_gone(self, server_id: str) -> bool:
        """True once the server no longer exists."""

    def set_server_metadata(self, server_id: str, items: dict[str, str]) -> None:
        """Add or replace metadata items (tags) on a server; each key and value is at
        most 255 characters, what every supported cloud accepts."""
        raise NotImplementedError(f"{self.provider} servers carry no metadata cloudnorm "
                                  "can write")

    @abc.abstractmethod
    def owned_resources(self, owner: str | None) -> list[Created]:
        """Everything carrying this owner marker, or any owner marker when ``owner`` is
        None (servers last), for cleanup."""

    def close(self) -> None:  # noqa: B027 - most drivers hold nothing to release
        """Release connections."""

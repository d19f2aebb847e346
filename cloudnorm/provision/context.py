"""The explicit context of one create: the cloud's public face, and the run's progress."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Protocol

import attrs

from cloudnorm import errors, keys, ssh
from cloudnorm.models import Address, Decision, Flavor, Image, KeyPair, Network, Server
from cloudnorm.provision.delete import wait_deleted
from cloudnorm.provision.ledger import Ledger, Reporter, StepCallback
from cloudnorm.provision.request import CreateRequest
from cloudnorm.state import ServerState

if TYPE_CHECKING:
    from cloudnorm.drivers.base import Created, Driver
    from cloudnorm.networks import NetworkHints, PublicPlan, Router
    from cloudnorm.profiles import Profile
    from cloudnorm.provision.steps import RootDisk
    from cloudnorm.provision.watcher import ServerWatcher
    from cloudnorm.settings import CloudSettings


class CloudView(Protocol):
    """What the create flow uses of a :class:`~cloudnorm.cloud.Cloud`: its public
    methods only, so the flow does not depend on the class above it."""

    name: str
    profile: Profile
    settings: CloudSettings
    watcher: ServerWatcher

    @property
    def driver(self) -> Driver: ...
    def list_images(self) -> list[Image]: ...
    def list_flavors(self) -> list[Flavor]: ...
    def list_networks(self) -> list[Network]: ...
    def network_view(self) -> tuple[list[Network], list[Router]] | None: ...
    def plan_public_address(self, attach: Network | None) -> PublicPlan: ...
    def choose_image(self, os: str, *, architecture: str = ...) -> tuple[Image, Decision]: ...
    def choose_flavor(self, *, min_ram: int | None = ..., min_vcpus: int | None = ...,
                      min_disk: int | None = ..., boot_from_volume: bool | None = ...
                      ) -> tuple[Flavor, Decision]: ...
    def network_hints(self) -> NetworkHints: ...
    def login_user(self, image: Image) -> tuple[str | None, str]: ...
    def remember_login_user(self, image: Image, user: str) -> None: ...
    def learned_login_user(self, image: Image) -> str | None: ...
    def host_keys_delay(self, image: Image) -> float | None: ...
    def remember_host_keys_delay(self, image: Image, seconds: float) -> None: ...
    def create_keypair(self, name: str, public_key: str) -> KeyPair: ...
    def delete_keypair(self, name: str) -> bool: ...
    def refresh(self, *kinds: str) -> None: ...


@attrs.define
class Run:
    """One create under way: what it was asked, what it chose and made so far."""

    cloud: CloudView
    request: CreateRequest
    report: Reporter
    ledger: Ledger
    deadline: float
    owner: str = attrs.field(factory=lambda: uuid.uuid4().hex[:12])
    #: The step under way, named in the failure event if one fails.
    step: str = "node_key"
    node_key: keys.NodeKey | None = None
    image: Image | None = None
    flavor: Flavor | None = None
    attach: Network | None = None
    plan: PublicPlan | None = None
    #: Reached on a public address (True) or on its private one.
    public: bool = True
    root: RootDisk | None = None
    users: list[str] = attrs.field(factory=list)
    users_why: str = ""
    group: Created | None = None
    port: Created | None = None
    attached: tuple[Created, Address, list[Decision]] | None = None
    server_id: str = ""
    state: ServerState | None = None
    server: Server | None = None
    interface: Address | None = None
    ssh_port: int = 22
    target: ssh.Target | None = None
    login_user: str = ""
    host_keys: tuple[str, ...] = ()

    @classmethod
    def start(cls, cloud: CloudView, request: CreateRequest,
              on_step: StepCallback | None) -> Run:
        return cls(cloud=cloud, request=request, report=Reporter(on_step, request.name),
                   ledger=Ledger(cloud.driver),
                   deadline=time.monotonic() + request.timeout)

    @property
    def driver(self) -> Driver:
        return self.cloud.driver

    @property
    def key_name(self) -> str:
        return f"cloudnorm-{self.owner}"

    def left(self) -> float:
        """Seconds until the deadline, at least one (a last try is always allowed)."""
        return max(1.0, self.deadline - time.monotonic())

    def wait_gone(self, server_id: str) -> None:
        # A failed delete raises at once; the ledger asks again.
        wait_deleted(self.cloud.watcher, server_id,
                     time.monotonic() + min(120.0, self.request.timeout))

    def fail(self, exc: BaseException) -> None:
        """Report the failed step and undo everything made, naming what stayed."""
        self.report.emit(self.step, "failed", str(exc))
        leftovers = self.ledger.rollback(self.wait_gone)
        if leftovers and isinstance(exc, errors.CloudnormError):
            exc.message += "; could not remove: " + ", ".join(leftovers)

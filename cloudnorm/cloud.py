"""``Cloud``: the one API, the same on every provider."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from cloudnorm import config, errors, flavors, hostkeys, images, networks, profiles, provision
from cloudnorm.cache import DiscoveryCache
from cloudnorm.drivers import driver_class
from cloudnorm.drivers.base import Created, Driver
from cloudnorm.models import Decision, Flavor, Image, KeyPair, Location, Network, Server
from cloudnorm.provision import CreateRequest, ServerWatcher, StepCallback
from cloudnorm.state import Capabilities, ServerState
from cloudnorm.userdata import UserData

if TYPE_CHECKING:
    from cloudnorm.keys import NodeKey

#: Networks with their classification, and the routers between them.
NetworkView = tuple[list[Network], list[networks.Router]]

LOG = logging.getLogger(__name__)

#: How many of the latest host key delays of an image its next creates go by.
DELAY_SAMPLES = 9


class Cloud:
    """One cloud account in one region.

    Discovery (images, flavors, networks) goes through a cache whose lifetime
    is set in clouds.yaml; ``refresh()`` drops it. Every choice cloudnorm makes
    for you comes with a :class:`~cloudnorm.models.Decision` saying why.
    """

    def __init__(self, settings: config.CloudSettings, driver: Driver) -> None:
        self.settings = settings
        self.name = settings.name
        self.provider = settings.provider
        self.profile = driver.profile
        self._driver = driver
        self._cache = DiscoveryCache(settings.cache, driver.identity())
        driver.keep_discovery_in(self._cache)
        #: Waits for this cloud's servers with one poll for all of them; its ``interval``
        #: (seconds between polls) may be set lower for a local cloud.
        self.watcher = ServerWatcher(driver)

    def __repr__(self) -> str:
        return f"<Cloud {self.name!r} provider={self.provider} region={self.settings.region}>"

    def __enter__(self) -> Cloud:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def location(self) -> Location:
        return self._driver.location()

    @property
    def driver(self) -> Driver:
        """The provider driver under this cloud: for measuring the raw cloud (the
        conformance check) and for tools that need a verb cloudnorm does not wrap."""
        return self._driver

    @property
    def capabilities(self) -> Capabilities:
        """What this cloud's driver can do beyond the verbs every driver has."""
        return self._driver.capabilities

    def network_hints(self) -> networks.NetworkHints:
        """What clouds.yaml and the profile say about networks."""
        return self._driver.network_hints()

    # -- discovery --------------------------------------------------------------
    def list_images(self) -> list[Image]:
        """Every image the account can see, normalized."""
        return list(self._cache.get_or_create("image", "all", self._driver.list_images))

    def list_flavors(self) -> list[Flavor]:
        """Every server size the account can use."""
        return list(self._cache.get_or_create("flavor", "all", self._driver.list_flavors))

    def network_view(self) -> NetworkView | None:
        """The classified networks and the routers, cached; None when the cloud has no
        network service."""
        def discover() -> NetworkView | None:
            facts = self._driver.network_facts()
            if facts is None:
                return None
            nets, routers = facts
            return networks.classify_networks(nets, routers, self._driver.network_hints()), routers
        return self._cache.get_or_create("network", "view", discover)  # type: ignore[no-any-return]

    @property
    def has_network_service(self) -> bool:
        return self.network_view() is not None

    def list_networks(self) -> list[Network]:
        """Networks with their public/private classification and the reason for it.

        Empty on clouds without a network service.
        """
        view = self.network_view()
        return list(view[0]) if view else []

    def choose_network(self) -> Decision | None:
        """Which network a new server goes on, and why (None: the cloud decides)."""
        view = self.network_view()
        if view is None:
            return None
        _, decision = networks.choose_attach_network(view[0], view[1],
                                                     self._driver.network_hints())
        return decision

    def default_network(self) -> Network | None:
        """The network new servers are attached to; None when the cloud has no
        network service and places servers itself."""
        view = self.network_view()
        if view is None:
            return None
        net, _ = networks.choose_attach_network(view[0], view[1], self._driver.network_hints())
        return net

    def plan_public_address(self, attach: Network | None) -> networks.PublicPlan:
        """How a new server on ``attach`` gets a public address (None: the cloud places
        servers itself), decided before anything is created."""
        view = self.network_view()
        profile = self.profile
        if view is None or attach is None:
            return networks.plan_public_address(
                None, [], [], self.network_hints(), requires_floating_ip=None,
                floating_ip_source="none", profile_name=profile.name,
                no_network_service=self._driver.network_service_note
                or "the cloud has no network service")
        return networks.plan_public_address(
            attach, view[0], view[1], self.network_hints(),
            requires_floating_ip=profile.requires_floating_ip,
            floating_ip_source=profile.floating_ip_source, profile_name=profile.name,
            public_access=profile.public_access)

    def floating_network(self, attach: Network | None = None) -> tuple[Network, Decision]:
        """The external network floating IPs for servers on ``attach`` come from."""
        view = self.network_view()
        if view is None:
            raise errors.NotFound(f"cloud '{self.name}' has no network service, hence no"
                                  " floating IPs", cloud=self.name)
        attach = attach or self.default_network()
        assert attach is not None
        return networks.choose_floating_network(attach, view[0], view[1],
                                                self._driver.network_hints())

    def choose_image(self, os: str, *, architecture: str = "x86_64") -> tuple[Image, Decision]:
        """The image to boot for ``os`` (e.g. ``"ubuntu-22.04"``), with the reason."""
        try:
            return images.choose_image(self.list_images(), os, architecture=architecture)
        except errors.CloudnormError as exc:
            exc.cloud = exc.cloud or self.name
            raise

    def find_image(self, os: str, *, architecture: str = "x86_64") -> Image:
        """The newest public, active, non-hidden image of ``os`` (``"ubuntu-22.04"``)."""
        return self.choose_image(os, architecture=architecture)[0]

    def choose_flavor(self, *, min_ram: int | None = None, min_vcpus: int | None = None,
                      min_disk: int | None = None, boot_from_volume: bool | None = None
                      ) -> tuple[Flavor, Decision]:
        """The smallest flavor that fits, with the reason. A flavor with disk 0 is for
        servers booted from a volume only: it fits where the cloud has block storage
        (unless ``boot_from_volume`` is False), and is passed over otherwise."""
        caps = self.capabilities
        root, no_volume = flavors.root_mode(root_is_volume=caps.root_is_volume,
                                            block_storage=caps.block_storage,
                                            boot_from_volume=boot_from_volume)
        try:
            return flavors.choose_flavor(self.list_flavors(), min_ram=min_ram,
                                         min_vcpus=min_vcpus, min_disk=min_disk, root=root,
                                         no_volume=no_volume)
        except errors.CloudnormError as exc:
            exc.cloud = exc.cloud or self.name
            raise

    def find_flavor(self, *, min_ram: int | None = None, min_vcpus: int | None = None,
                    min_disk: int | None = None) -> Flavor:
        """The smallest flavor with at least ``min_ram`` MiB, ``min_vcpus``, ``min_disk`` GiB."""
        return self.choose_flavor(min_ram=min_ram, min_vcpus=min_vcpus, min_disk=min_disk)[0]

    def login_user(self, image: Image) -> tuple[str | None, str]:
        """The user a new server of ``image`` lets in first, and where that answer comes from."""
        if image.login_user:
            return image.login_user, f"image '{image.name}' names it in its properties"
        # The version matters: CentOS Stream 8 images log in as centos, 9 as cloud-user.
        return self.profile.login_user_for(image.os_distro, image.os_version)

    # -- servers ----------------------------------------------------------------
    def list_servers(self) -> list[Server]:
        """Every server of the account, normalized, addresses classified."""
        nets = self.list_networks()
        return [_with_login(server) for server in
                self._driver.describe_servers(self._driver.list_servers(), nets)]

    def get_server(self, name_or_id: str) -> Server:
        """One server by id or exact name."""
        found = self._driver.get_server(name_or_id)
        if not found:
            raise errors.NotFound(f"no server '{name_or_id}' in cloud '{self.name}'",
                                  cloud=self.name)
        if len(found) > 1:
            ids = sorted(s.id for s in found)
            raise errors.Ambiguous(f"{len(found)} servers are named '{name_or_id}' in cloud "
                                   f"'{self.name}'; use an id", candidates=ids, cloud=self.name)
        return _with_login(self._driver.describe_servers(found, self.list_networks())[0])

    def create_server(self, name: str | CreateRequest, *,
                      image: str | Image | None = None,
                      flavor: str | Flavor | None = None, min_ram: int | None = None,
                      min_vcpus: int | None = None, network: str | None = None,
                      key: NodeKey | None = None, authorized_keys: Sequence[str] = (),
                      bootstrap: bool = True, wait: bool = True, timeout: float = 600.0,
                      tags: dict[str, str] | None = None, on_step: StepCallback | None = None,
                      verify_host_keys: bool = True, ssh_user: str | None = None,
                      keep_node_key: bool = False, userdata: UserData | None = None,
                      availability_zone: str | None = None,
                      security_groups: Sequence[str] = (),
                      public: bool | None = None, boot_from_volume: bool | None = None,
                      volume_size: int | None = None, volumes: Sequence[int] = ()) -> Server:
        """Create a server and return it once it is reachable over SSH.

        ``image`` is an OS name (``"ubuntu-22.04"``), an image name or id, or an
        :class:`Image`; the flavor is the smallest with ``min_ram`` MiB and
        ``min_vcpus`` unless named. What the call leaves unset comes from the cloud's
        clouds.yaml ``cloudnorm: defaults:`` (image, flavor, min_ram, min_vcpus,
        network, availability_zone, security_groups, boot_from_volume, volume_size,
        volumes, ssh_user); with no image anywhere, ``ubuntu-22.04``. The eight
        steps (node key, discovery, choice, boot, public address, login, bootstrap,
        key removal) report
        through ``on_step`` and are recorded in ``server.decisions``. With
        ``bootstrap``, ``authorized_keys`` are installed for root and the login
        user and password logins are turned off, both verified. Anything
        created is removed again if a step fails.

        ``userdata`` is what the server's first boot runs (cloud-init): a mapping is
        sent as a cloud-config, text or bytes exactly as given (a script, a
        cloud-config, a MIME multi-part archive, gzip); one larger than the cloud
        takes raises :class:`~cloudnorm.errors.InvalidRequest` before anything is
        created. ``availability_zone`` picks the zone to boot in.
        ``security_groups`` (names or ids; on GCE, network tags) are added to the
        group cloudnorm opens for SSH, never in its place.

        ``public=False`` is private access, for automation inside the cloud's network: no
        public address is made (no floating IP, public IP at launch, Elastic IP or
        access config) and the server is reached on its private address; every other
        step is unchanged. None follows the cloud's configuration (clouds.yaml
        ``private: true`` or ``cloudnorm: access: private``), else public.

        ``boot_from_volume=True`` makes the root disk a block storage volume of
        ``volume_size`` GiB (default: what the image or flavor needs); on AWS and GCE it
        always is one. None boots from a volume where the flavor has disk 0 and the
        cloud has block storage. ``volumes`` are the sizes in GiB of data volumes made
        with the server; every volume goes with the server when it is deleted.

        ``name`` may instead be a whole :class:`~cloudnorm.provision.CreateRequest`
        (what the CLI and the Ansible modules build); the other arguments but
        ``on_step`` are then not used.
        """
        request = name if isinstance(name, CreateRequest) else CreateRequest(
            name=name, image=image, flavor=flavor, min_ram=min_ram, min_vcpus=min_vcpus,
            network=network, key=key, authorized_keys=tuple(authorized_keys),
            bootstrap=bootstrap, wait=wait, timeout=timeout, tags=dict(tags or {}),
            verify_host_keys=verify_host_keys, ssh_user=ssh_user, keep_node_key=keep_node_key,
            userdata=userdata, availability_zone=availability_zone,
            security_groups=tuple(security_groups), public=public,
            boot_from_volume=boot_from_volume, volume_size=volume_size,
            volumes=tuple(volumes))
        return provision.create_server(self, request, on_step)

    def delete_server(self, server: Server | str, *, wait: bool = True,
                      timeout: float = 300.0) -> bool:
        """Delete a server and everything cloudnorm created for it (floating IP,
        security group, key pair). Returns False when there was nothing to delete."""
        return provision.delete_server(self, server, wait=wait, timeout=timeout)

    def wait_for_server(self, server_id: str, until: Callable[[ServerState | None], bool],
                        timeout: float) -> ServerState | None:
        """Poll (shared with every other wait on this cloud) until ``until(state)`` holds;
        state None means the server does not exist. Raises
        :class:`~cloudnorm.errors.Timeout` after ``timeout`` seconds."""
        return self.watcher.wait(server_id, until, time.monotonic() + timeout)

    def owned_resources(self, owner: str | None = None) -> list[Created]:
        """Everything carrying this ``cloudnorm:owner`` marker, or any marker when
        ``owner`` is None (servers last)."""
        return self._driver.owned_resources(owner)

    # -- key pairs ------------------------------------------------------------------
    def list_keypairs(self) -> list[KeyPair]:
        """Key pairs registered with the cloud."""
        return list(self._cache.get_or_create("keypair", "all", self._driver.list_keypairs))

    def create_keypair(self, name: str, public_key: str) -> KeyPair:
        """Register ``public_key`` (OpenSSH format) under ``name``."""
        try:
            return self._driver.create_keypair(name, public_key)
        finally:
            self._cache.invalidate("keypair")

    def delete_keypair(self, name: str) -> bool:
        """Remove a key pair; returns False when there was none (idempotent)."""
        try:
            return self._driver.delete_keypair(name)
        finally:
            self._cache.invalidate("keypair")

    # -- housekeeping -------------------------------------------------------------
    def refresh(self, *kinds: str) -> None:
        """Forget cached discovery (all of it, or just ``image``, ``flavor``, ``network``)."""
        self._cache.invalidate(*(kinds or ("image", "flavor", "network")))

    def remember_login_user(self, image: Image, user: str) -> None:
        """Record that servers of ``image`` let ``user`` in, so later creates try only it
        (shared with other processes where the cache is)."""
        self._cache.set("login_user", image.id, user)

    def learned_login_user(self, image: Image) -> str | None:
        """The user an earlier login to a server of ``image`` worked with, if any."""
        learned: str | None = self._cache.peek("login_user", image.id)
        return learned

    def host_keys_delay(self, image: Image) -> float | None:
        """Seconds after sshd answered until servers of ``image`` lately showed their
        host keys on the console (the median of the last few), if any did."""
        seen = self._cache.peek("host_keys_delay", image.id)
        return statistics.median(seen) if seen else None

    def remember_host_keys_delay(self, image: Image, seconds: float) -> None:
        """Record how long a server of ``image`` took to show its host keys, so that the
        next creates read the console about then instead of several times before (shared
        with other processes where the cache is). Concurrent creates may overwrite one
        another's record: one sample lost does not move a median."""
        seen = tuple(self._cache.peek("host_keys_delay", image.id) or ())
        self._cache.set("host_keys_delay", image.id,
                        (*seen[-(DELAY_SAMPLES - 1):], round(seconds, 2)))

    def close(self) -> None:
        self._driver.close()


def _with_login(server: Server) -> Server:
    """``server`` with the login create_server stored on it: the address, port and user
    it logged in with, and the host keys it verified then."""
    record = hostkeys.login_record(server.tags)
    if record is None:
        return server
    return attrs.evolve(server, interface_ip=record.address, ssh_user=record.user,
                        ssh_port=record.port, host_keys=record.keys)


def connect(cloud: str | None = None, *, config_files: list[str] | None = None,
            **overrides: Any) -> Cloud:
    """Open the cloud named ``cloud`` in clouds.yaml (``OS_CLOUD`` when None).

    ``overrides`` go to openstack.config (``region_name="..."``, ``auth={...}``);
    ``cloudnorm={...}`` overrides the entry's ``cloudnorm:`` section.
    """
    settings = config.load(cloud, config_files=config_files, **overrides)
    profile = profiles.load(settings.profile or settings.provider)
    if profile.provider != settings.provider:
        raise errors.ConfigError(
            f"cloud '{settings.name}' is a {settings.provider} cloud but its profile "
            f"'{profile.name}' is for {profile.provider}", cloud=settings.name)
    driver = driver_class(settings.provider)(settings, profile)
    return Cloud(settings, driver)

"""The OpenStack driver: Nova, Glance and Neutron, spoken to as plain REST.

The requests, retries and error translation are in :mod:`.transport`, the network
service's requests in :mod:`.network`, and what the records mean in :mod:`.normalize`;
here are the verbs of :class:`~cloudnorm.drivers.base.Driver`.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from cloudnorm import errors, networks
from cloudnorm.drivers.base import BootSpec, Created, Driver
from cloudnorm.drivers.openstack import normalize
from cloudnorm.drivers.openstack.network import Neutron, Refused
from cloudnorm.drivers.openstack.transport import Transport, may_have_acted
from cloudnorm.drivers.openstack.volumes import Volumes
from cloudnorm.models import (
    OWNER_KEY,
    Address,
    Decision,
    Flavor,
    Image,
    KeyPair,
    Location,
    Network,
    Server,
)
from cloudnorm.profiles import Profile
from cloudnorm.settings import CloudSettings
from cloudnorm.state import Capabilities, ServerState
from cloudnorm.userdata import SizeLimit

if TYPE_CHECKING:  # pragma: no cover
    from cloudnorm.cache import DiscoveryCache

LOG = logging.getLogger(__name__)


#: "The provided user data must be base64 encoded and is restricted to 65535 bytes"
#: (Nova's user guide, "Provide user data to instances").
USER_DATA_LIMIT = SizeLimit(65535, "base64", "Nova's limit on user_data")


class OpenStackDriver(Driver):
    provider = "openstack"

    def __init__(self, settings: CloudSettings, profile: Profile) -> None:
        super().__init__(settings, profile)
        if settings.openstack is None:
            raise errors.ConfigError("an OpenStack cloud needs an openstack.config entry",
                                     cloud=settings.name)
        self._region = settings.openstack
        self.transport = Transport(settings, self._region, self.identity())
        #: The account's rate limit, shared by every driver of the account.
        self.limiter = self.transport.limiter
        self.neutron = Neutron(self.transport)
        self.volumes = Volumes(self.transport, settings.name)

    @property
    def conn(self) -> Any:
        """openstacksdk's connection (for tools that need a call cloudnorm does not make)."""
        return self.transport.conn

    @property
    def retries(self) -> int:
        """Requests sent again after a throttled or transient failure."""
        return self.transport.retries

    def has_service(self, service_type: str) -> bool:
        return self.transport.has_service(service_type)

    @property
    def capabilities(self) -> Capabilities:
        # Groups, ports and port forwardings are Neutron's: a cloud without a usable
        # network service has none (and cloudnorm opens nothing there).
        network = self._network_service()
        return Capabilities(
            security_groups=self.profile.secgroup_source == "neutron" and network,
            server_metadata=True, prebuilt_ports=network, port_forwarding=network,
            user_data_limit=USER_DATA_LIMIT,
            block_storage=self._block_storage())

    # -- Driver ---------------------------------------------------------------
    def identity(self) -> str:
        auth = self._region.config.get("auth") or {}
        return "|".join(str(x) for x in (
            "openstack", auth.get("auth_url"), auth.get("project_id") or auth.get("project_name"),
            auth.get("project_domain_id") or auth.get("project_domain_name"),
            auth.get("username") or auth.get("application_credential_id"),
            self._region.region_name))

    def location(self) -> Location:
        auth = self._region.config.get("auth") or {}
        return Location(cloud=self.settings.name, region=self._region.region_name or None,
                        project=auth.get("project_name") or auth.get("project_id"))

    def list_images(self) -> list[Image]:
        raw = self.transport.paged("image", "/images", "images")
        return [normalize.normalize_image(r, self.profile.image_user_properties) for r in raw]

    def list_flavors(self) -> list[Flavor]:
        return [normalize.normalize_flavor(r)
                for r in self.transport.paged("compute", "/flavors/detail", "flavors")]

    def _network_service(self) -> bool:
        return self.network_service_note is None and self.has_service("network")

    def network_facts(self) -> tuple[list[networks.NetworkFacts], list[networks.Router]] | None:
        if not self._network_service():
            return None
        facts = self.neutron.facts()
        if isinstance(facts, Refused):
            # A catalog may list a network service whose endpoint refuses (openstacksdk's
            # test_get_server_external_ipv4_neutron_exception plays a 404 on /networks):
            # the cloud is then described from Nova's records alone, as with no service.
            self.network_service_note = (
                f"the catalog lists a network service, but it answered {facts.status} to "
                "GET /networks: servers are described from the compute service's records "
                "alone")
            LOG.warning("cloud '%s': %s", self.settings.name, self.network_service_note)
            return None
        return facts

    def network_hints(self) -> networks.NetworkHints:
        profile_hints = networks.NetworkHints.from_entries(
            self.profile.networks, f"profile '{self.profile.name}'")
        configured = self.settings.networks
        if not configured:
            return profile_hints
        return networks.NetworkHints.from_entries(
            configured, self.settings.source or "clouds.yaml").merged_over(profile_hints)

    # -- servers ----------------------------------------------------------------
    def list_servers(self) -> list[ServerState]:
        # Nova lists no DELETED server unless an admin asks for them; one that still
        # shows up is left out as the contract says.
        states = [normalize.server_state(r) for r in self._server_records()]
        return [s for s in states if s.phase != "terminated"]

    def _server_records(self, **query: Any) -> list[dict[str, Any]]:
        return self.transport.paged("compute", "/servers/detail", "servers", **query)

    def get_server(self, name_or_id: str) -> list[ServerState]:
        body = None
        with contextlib.suppress(errors.NotFound):
            body = self.transport.request("compute", "GET", f"/servers/{name_or_id}")
        if body and isinstance(body.get("server"), dict):
            state = normalize.server_state(body["server"])
            return [] if state.phase == "terminated" else [state]
        # Nova's name filter is a regular expression: anchor it for an exact match.
        found = self._server_records(name=f"^{re.escape(name_or_id)}$")
        return [normalize.server_state(s) for s in found if s.get("name") == name_or_id]

    def normalize_server(self, state: ServerState, networks: list[Network]) -> Server:
        return normalize.normalize_server(state, self.location(), networks,
                                          hints=self.network_hints())

    def describe_servers(self, states: list[ServerState], networks: list[Network]
                         ) -> list[Server]:
        location, hints = self.location(), self.network_hints()
        return [normalize.normalize_server(state, location, networks, hints=hints)
                for state in self._with_neutron_floating_ips(states, networks)]

    def _with_neutron_floating_ips(self, states: list[ServerState], nets: list[Network]
                                   ) -> list[ServerState]:
        """``states`` with the floating IPs Neutron has bound to an ACTIVE server's port
        but Nova's ``addresses`` do not show yet (Nova refreshes its network info
        cache from Neutron's events, a moment or minutes later).

        Asked only for servers Nova lists no floating IP for, on clouds with an
        external network: one listing of the project's floating IPs (and of the ports
        they are bound to, where Neutron's records lack ``port_details``). openstacksdk
        does the same per server (``_get_supplemental_addresses`` in
        openstack/cloud/meta.py). A failure here costs only the extra address.
        """
        lacking = {s.id for s in states if normalize.lacks_floating_ip(s)}
        if not lacking or not any(n.external for n in nets):
            return states
        try:
            found = self.neutron.floating_ips_by_server(lacking)
        except errors.CloudnormError as exc:
            LOG.debug("cloud '%s': floating IPs not looked up in Neutron: %s",
                      self.settings.name, exc)
            return states
        if not found:
            return states
        completed = []
        for state in states:
            extra = found.get(state.id)
            completed.append(attrs.evolve(state, raw=normalize.add_floating(
                state.raw, extra)) if extra else state)
        return completed

    # -- key pairs --------------------------------------------------------------
    def list_keypairs(self) -> list[KeyPair]:
        body = self.transport.request("compute", "GET", "/os-keypairs")
        return [KeyPair(name=k["keypair"]["name"], public_key=k["keypair"].get("public_key", ""),
                        fingerprint=k["keypair"].get("fingerprint"))
                for k in body.get("keypairs", [])]

    def create_keypair(self, name: str, public_key: str) -> KeyPair:
        body = self.transport.request(
            "compute", "POST", "/os-keypairs",
            json={"keypair": {"name": name, "public_key": public_key}})
        kp = body.get("keypair") or {}
        return KeyPair(name=kp.get("name", name), public_key=kp.get("public_key", public_key),
                       fingerprint=kp.get("fingerprint"))

    def delete_keypair(self, name: str) -> bool:
        try:
            self.transport.request("compute", "DELETE", f"/os-keypairs/{name}")
        except errors.NotFound:
            return False
        return True

    # -- provisioning -------------------------------------------------------------
    def create_ssh_access(self, owner: str) -> Created:
        return self.neutron.create_ssh_access(owner)

    def make_port(self, attach: Network, owner: str,
                  security_groups: Sequence[str] = ()) -> Created:
        return self.neutron.make_port(attach, owner, security_groups)

    def _block_storage(self) -> bool:
        return any(self.has_service(t) for t in BLOCK_STORAGE_TYPES)

    def make_volumes(self, spec: BootSpec, made: Callable[[Created], object],
                     deadline: float) -> BootSpec:
        # Made through Cinder with the owner's marker, not by Nova unmarked: see
        # cloudnorm.drivers.openstack.volumes.
        if spec.plain or not (spec.boot_from_volume or spec.data_volumes):
            return spec
        return attrs.evolve(spec, volume_ids=self.volumes.make(spec, made, deadline))

    def boot(self, spec: BootSpec) -> Created:
        server: dict[str, Any] = {
            "name": spec.name, "imageRef": spec.image.id, "flavorRef": spec.flavor.id,
            "key_name": spec.key_name, "metadata": {OWNER_KEY: spec.owner, **spec.metadata},
            "networks": [{"port": spec.port}] if spec.port
            else [{"uuid": spec.network.id}] if spec.network else "auto",
        }
        # Nova's plain request has neither: both are cloudnorm's (the group it opened,
        # the config drive the profile asks for).
        # A port made beforehand carries the groups (Nova leaves its groups alone).
        groups = [*([spec.security_group] if spec.security_group and not spec.plain else []),
                  *spec.security_groups]
        if groups and not spec.port:
            server["security_groups"] = [{"name": g} for g in groups]
        if spec.user_data is not None:
            server["user_data"] = base64.b64encode(spec.user_data).decode("ascii")
        if spec.availability_zone:
            server["availability_zone"] = spec.availability_zone
        if spec.config_drive and not spec.plain:
            server["config_drive"] = True
        mappings = block_device_mappings(spec)
        if mappings:
            server["block_device_mapping_v2"] = mappings
            if spec.boot_from_volume:
                server["imageRef"] = ""  # the image is the root volume's source instead
        for attempt in range(3):
            try:
                body = self.transport.request("compute", "POST", "/servers",
                                              json={"server": server})
            except (errors.ProviderError, errors.ServiceUnavailable) as exc:
                if attempt == 2 or not may_have_acted(exc):
                    raise
                # The reply was lost, not the request: Nova may have made the server.
                # Sending the POST again blindly could make a second one.
                found = self._find_booted(spec.name, spec.owner)
                if found is not None:
                    LOG.info("cloud '%s': server %s was created although the reply was "
                             "lost (%s)", self.settings.name, found, exc)
                    return Created("server", found, spec.name)
                LOG.info("cloud '%s': no server %s after a lost reply (%s); booting again",
                         self.settings.name, spec.name, exc)
                continue
            return Created("server", body["server"]["id"], spec.name)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _find_booted(self, name: str, owner: str) -> str | None:
        """The id of the server ``name`` carrying ``owner``'s marker, if Nova made it.

        Nova lists a new server a moment after accepting it, so a miss is checked
        again before it is believed.
        """
        for pause in (0.0, 1.0, 2.0):
            time.sleep(pause)
            found = self._server_records(name=f"^{re.escape(name)}$")
            mine = [s["id"] for s in found
                    if (s.get("metadata") or {}).get(OWNER_KEY) == owner and s.get("id")]
            if mine:
                return str(mine[0])
        return None

    def poll_servers(self, ids: set[str]) -> dict[str, ServerState]:
        if len(ids) == 1:  # one GET is cheaper than listing a whole project
            (only,) = ids
            try:
                record = self.transport.request("compute", "GET", f"/servers/{only}")["server"]
            except errors.NotFound:
                return {}
            return {only: normalize.server_state(record)}
        # Only the servers asked for are read: a stranger's odd record is no reason to fail.
        return {r["id"]: normalize.server_state(r) for r in self._server_records()
                if r.get("id") in ids}

    def console_output(self, server_id: str) -> str:
        try:
            body = self.transport.request("compute", "POST", f"/servers/{server_id}/action",
                                          reads_only=True,
                                          json={"os-getConsoleOutput": {"length": -1}})
        except errors.ProviderError as exc:
            if exc.status == 409:  # not ready for console yet (still building)
                return ""
            raise
        return str(body.get("output") or "")

    def attach_public_address(self, state: ServerState, attach: Network,
                              pools: list[Network], owner: str, port: Created | None = None
                              ) -> tuple[Created, Address, list[Decision]]:
        # The flow may know only the new server's id yet: the state's record is not read.
        return self.neutron.attach_floating_ip(state.id, attach, pools, owner, port)

    def forward_ssh_port(self, state: ServerState, attach: Network, owner: str
                         ) -> tuple[Created, Address, int, list[Decision]]:
        return self.neutron.forward_ssh_port(state.id, attach, owner)

    def delete(self, resource: Created) -> None:
        if resource.kind == "volume":
            self.volumes.delete(resource.id)
            return
        if resource.kind == "port_forwarding":
            fip_id, forwarding_id = resource.id.split("/", 1)
            with contextlib.suppress(errors.NotFound):
                self.transport.request(
                    "network", "DELETE", f"/floatingips/{fip_id}/port_forwardings/{forwarding_id}")
            return
        paths = {"server": ("compute", "/servers/{}"),
                 "keypair": ("compute", "/os-keypairs/{}"),
                 "port": ("network", "/ports/{}"),
                 "security_group": ("network", "/security-groups/{}"),
                 "floating_ip": ("network", "/floatingips/{}")}
        service, path = paths[resource.kind]
        self.neutron.made_ports.pop(resource.id, None)
        with contextlib.suppress(errors.NotFound):
            self.transport.request(service, "DELETE", path.format(resource.id))

    def set_server_metadata(self, server_id: str, items: dict[str, str]) -> None:
        # Nova merges the items ("Create or Update Metadata Items"): asking twice after a
        # lost reply leaves the same metadata, so the POST is retried like a PUT.
        self.transport.request("compute", "POST", f"/servers/{server_id}/metadata",
                               json={"metadata": items}, repeatable=True)

    def owned_resources(self, owner: str | None) -> list[Created]:
        found: list[Created] = []
        network = self._network_service()
        if network:
            found += self.neutron.owned_addresses(
                owner, forwardings=self.profile.public_access == "port_forwarding")
        for s in self.list_servers():
            if s.owner and owner in (None, s.owner):
                found.append(Created("server", s.id, s.name, s.owner,
                                     normalize.parse_time(s.raw.get("created"))))
        if network:
            found += self.neutron.owned_ports_and_groups(owner)
        for k in self.list_keypairs():
            key_owner = normalize.key_owner(k.name) if owner is None else (
                owner if k.name == f"cloudnorm-{owner}" else None)
            if key_owner is None:
                continue
            created = None
            if owner is None:  # only the detail says when; cleanup needs it, delete does not
                with contextlib.suppress(errors.NotFound):
                    created = normalize.parse_time(self.transport.request(
                        "compute", "GET", f"/os-keypairs/{k.name}").get(
                        "keypair", {}).get("created_at"))
            found.append(Created("keypair", k.name, k.name, key_owner, created))
        if self._block_storage():
            found += self.volumes.owned(owner)
        return found

    def keep_discovery_in(self, cache: DiscoveryCache) -> None:
        self.transport.cache = cache

    def close(self) -> None:
        self.transport.close()


#: The catalog's names for Cinder, newest first (os-service-types: block-storage and its
#: aliases).
BLOCK_STORAGE_TYPES = ("block-storage", "volumev3", "volume")


def block_device_mappings(spec: BootSpec) -> list[dict[str, Any]]:
    """Nova's block_device_mapping_v2 (compute API reference, "Create Server") for the
    volumes made beforehand (:meth:`OpenStackDriver.make_volumes`): the root volume at
    boot index 0 when booting from a volume, the data volumes after it; each deleted
    with the server."""
    if (spec.boot_from_volume or spec.data_volumes) and not spec.volume_ids:
        raise ValueError("the volumes are made before the boot: call make_volumes first")
    return [{"boot_index": 0 if spec.boot_from_volume and number == 0 else -1,
             "uuid": volume_id, "source_type": "volume", "destination_type": "volume",
             "delete_on_termination": True}
            for number, volume_id in enumerate(spec.volume_ids)]

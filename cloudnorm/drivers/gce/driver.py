"""Google Compute Engine driver over google-cloud-compute (``compute_v1``, REST transport).

The ``cloudnorm:`` mapping of a cloud entry says where to go::

    clouds:
      work-gce:
        cloudnorm:
          provider: gce
          project: my-project            # default: the credentials' own project
          zone: europe-west1-b
          credentials_file: ~/sa.json    # a google-auth credentials file (service account
                                         # key, authorized user...); default: Application
                                         # Default Credentials
          network: my-vpc                # optional; default: 'default' when the project has it
          subnet: my-subnet              # optional: which subnet of a custom-mode network
          endpoint_url: http://127.0.0.1:8080  # optional: another compute v1 endpoint
          credentials: anonymous         # only with endpoint_url: send no credentials at all
                                         # (a local test endpoint)
          rate_limit: {reads: 20, writes: 2}   # requests per second (the defaults), see
                                               # cloudnorm.ratelimit

How GCE is made to look like the other clouds (see also normalize.py for the owner label,
tags and statuses, network.py for SSH access, hostkeys.py for host keys, and
transport.py for the rate limit, retries and operations):

- *Key pairs*: GCE has none. A key registered with :meth:`create_keypair` stays in this
  driver and goes into the ``ssh-keys`` metadata of the instances booted with it, as
  ``user:ssh-ed25519 AAAA... user``; the guest environment creates that user. The user is
  the one the neutral flow will log in as (the profile's user for the image's
  distribution). A project with ``enable-oslogin=TRUE`` ignores metadata keys: that is a
  :class:`~cloudnorm.errors.ConfigError` before anything is created.
- *Public address*: an ``ONE_TO_ONE_NAT`` access config at creation, on every instance.
- *Host keys*: :meth:`GceDriver.published_host_keys` reads the guest attributes at most
  every 6 seconds per instance: GCE serves 10 such queries a minute.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from cloudnorm import errors, networks, profiles
from cloudnorm.drivers.base import BootSpec, Created, Driver
from cloudnorm.drivers.gce import hostkeys, network
from cloudnorm.drivers.gce.normalize import (
    NAME_PATTERN,
    NAME_PREFIX,
    OWNER_LABEL,
    fingerprint,
    instance_metadata,
    metadata_key,
    network_record,
    normalize_flavors,
    normalize_image,
    parse_time,
    project_metadata,
    server_state,
    ssh_keys_line,
    subnetwork_record,
)
from cloudnorm.drivers.gce.normalize import normalize_server as server_of_state
from cloudnorm.drivers.gce.transport import (
    OPERATION_LIMIT,
    Transport,
    as_dict,
    connection_options,
)
from cloudnorm.models import Address, Decision, Flavor, Image, KeyPair, Location, Network, Server
from cloudnorm.profiles import Profile
from cloudnorm.settings import CloudSettings
from cloudnorm.state import Capabilities, ServerState
from cloudnorm.userdata import SizeLimit

LOG = logging.getLogger(__name__)


#: A metadata value "must be less than or equal to 262144 bytes (256 KiB)" (the
#: compute v1 API reference, Metadata items).
USER_DATA_LIMIT = SizeLimit(262144, "text", "GCE's limit on a metadata value")


def user_data_items(data: bytes | None) -> list[dict[str, str]]:
    """The metadata items that carry user data: ``user-data`` as text, or base64 with
    ``user-data-encoding`` where it is not text (gzip), as cloud-init's GCE datasource
    reads them."""
    if data is None:
        return []
    try:
        return [{"key": "user-data", "value": data.decode("utf-8")}]
    except UnicodeDecodeError:
        return [{"key": "user-data", "value": base64.b64encode(data).decode("ascii")},
                {"key": "user-data-encoding", "value": "base64"}]


class GceDriver(Driver):
    provider = "gce"

    def __init__(self, settings: CloudSettings, profile: Profile) -> None:
        super().__init__(settings, profile)
        options = settings.options
        source = settings.source or "clouds.yaml"
        endpoint, anonymous = connection_options(settings)
        self._zone = str(options.get("zone") or "")
        if not self._zone:
            raise errors.ConfigError(
                f"cloud '{settings.name}' ({source}) names no zone: add zone: (e.g. "
                "us-central1-a) under cloudnorm:", cloud=settings.name)
        self._region = self._zone.rsplit("-", 1)[0]
        if settings.region and settings.region != self._region:
            raise errors.ConfigError(
                f"cloud '{settings.name}' ({source}): zone {self._zone} is not in region "
                f"{settings.region}", cloud=settings.name)
        self.transport = Transport(settings, endpoint, anonymous)
        #: The project's request budget (shared by every zone and network of it).
        self.limiter = self.transport.limiter
        #: cloudnorm's firewall rules, and the SSH access arranged for each owner.
        self.ssh_rules = network.SshRules(self.transport, settings.name)
        self._lock = threading.Lock()
        self._keys: dict[str, KeyPair] = {}
        self._key_times: dict[str, datetime.datetime] = {}
        self._terminating: set[str] = set()
        self._net: tuple[list[networks.NetworkFacts], networks.NetworkHints] | None = None
        #: Seconds between two guest attribute reads of one instance: GCE serves at most
        #: 10 guest attribute queries per minute per instance.
        self.guest_attribute_interval = 6.0
        self._host_keys_asked: dict[str, float] = {}

    @property
    def capabilities(self) -> Capabilities:
        # GCE filters ingress by firewall rule (cloudnorm adds one where none lets SSH
        # in); every instance gets its public address at creation, so there is nothing
        # to prepare or forward; the guest environment publishes host keys in the guest
        # attributes.
        return Capabilities(security_groups=True, server_metadata=True,
                            prebuilt_ports=False, port_forwarding=False,
                            published_host_keys=True, user_data_limit=USER_DATA_LIMIT,
                            block_storage=True, root_is_volume=True)

    @property
    def project(self) -> str:
        return self.transport.project

    # -- Driver: discovery ----------------------------------------------------------------
    def identity(self) -> str:
        return "|".join([self.transport.identity, self._zone,
                         str(self.settings.options.get("network") or "")])

    def location(self) -> Location:
        return Location(cloud=self.settings.name, region=self._region, zone=self._zone,
                        project=self.transport.known_project
                        or self.settings.options.get("project"))

    def list_images(self) -> list[Image]:
        """The current image of each of the profile's families, and the project's own."""
        found: dict[str, Image] = {}
        for entry in self.profile.images:
            if not entry.get("family"):
                continue
            try:
                record = self.transport.call(
                    "images", "get_from_family",
                    f"reading image family {entry['owner']}/{entry['family']}",
                    project=entry["owner"], family=entry["family"])
            except errors.NotFound:
                LOG.info("%s: image family %s/%s does not exist; skipped",
                         self.settings.name, entry["owner"], entry["family"])
                continue
            image = normalize_image(as_dict(record), entry,
                                    f"family {entry['family']} of project {entry['owner']}")
            found[image.id] = image
        for raw in self.transport.list_records("images", "listing the project's images",
                                               project=self.project):
            image = normalize_image(raw)
            found.setdefault(image.id, image)
        return list(found.values())

    def list_flavors(self) -> list[Flavor]:
        families = self.profile.instance_families
        params: dict[str, Any] = {}
        if families:
            # A regular expression over the whole name (GCE's eq filter, RE2 syntax).
            params["filter"] = f"name eq '({'|'.join(map(re.escape, families))})-.*'"
        raw = self.transport.list_records(
            "machine_types", f"listing the machine types of {self._zone}",
            project=self.project, zone=self._zone, **params)
        return normalize_flavors(raw, families)

    def network_facts(self) -> tuple[list[networks.NetworkFacts], list[networks.Router]] | None:
        facts, _ = self._load_networks()
        # Inbound traffic reaches GCE instances through their access configs; Cloud Routers
        # only carry outbound NAT and VPN routes, so there is no router to report.
        return facts, []

    def network_hints(self) -> networks.NetworkHints:
        _, hints = self._net or self._load_networks()
        merged = hints.merged_over(networks.NetworkHints.from_entries(
            self.profile.networks, f"profile '{self.profile.name}'"))
        if self.settings.networks:
            merged = networks.NetworkHints.from_entries(
                self.settings.networks, self.settings.source or "clouds.yaml").merged_over(merged)
        return merged

    def _load_networks(self) -> tuple[list[networks.NetworkFacts], networks.NetworkHints]:
        nets = [network_record(n) for n in self.transport.list_records(
            "networks", "listing networks", project=self.project)]
        subnets = [subnetwork_record(n) for n in self.transport.list_records(
            "subnetworks", f"listing the subnets of {self._region}", project=self.project,
            region=self._region)]
        rules = self.ssh_rules.rules()
        result = network.discover(nets, subnets, rules, settings=self.settings,
                                  project=self.project, region=self._region)
        with self._lock:
            self._net = result
        return result

    # -- Driver: servers ------------------------------------------------------------------
    def list_servers(self) -> list[ServerState]:
        # GCE lists no deleted instance (a stopped one is TERMINATED: phase stopped).
        return [self._state(i) for i in self.transport.list_records(
            "instances", f"listing the instances of {self._zone}", project=self.project,
            zone=self._zone)]

    def get_server(self, name_or_id: str) -> list[ServerState]:
        if NAME_PATTERN.fullmatch(name_or_id):
            found = self._instance(name_or_id)
            if found is not None:
                return [self._state(found)]
        if name_or_id.isdigit():  # GCE's numeric instance id
            return [self._state(i) for i in self.transport.list_records(
                "instances", f"looking for instance id {name_or_id}", project=self.project,
                zone=self._zone, filter=f"id = {name_or_id}")]
        return []

    def normalize_server(self, state: ServerState, networks: list[Network]) -> Server:
        return server_of_state(state, self.location(), networks)

    def poll_servers(self, ids: set[str]) -> dict[str, ServerState]:
        if len(ids) == 1:  # one GET is cheaper than listing the zone
            (only,) = ids
            found = self._instance(only)
            return {only: self._state(found)} if found is not None else {}
        wanted = sorted(i for i in ids if NAME_PATTERN.fullmatch(i))
        if not wanted:
            return {}
        # One list call for every pending server (names need no quoting: [a-z0-9-]).
        expression = " OR ".join(f'(name = "{name}")' for name in wanted)
        return {i["name"]: self._state(i) for i in self.transport.list_records(
            "instances", "polling instances", project=self.project, zone=self._zone,
            filter=expression) if i["name"] in ids}

    def _instance(self, name: str) -> dict[str, Any] | None:
        try:
            found = self.transport.call("instances", "get", f"reading instance {name}",
                                        project=self.project, zone=self._zone, instance=name)
        except errors.NotFound:
            return None
        return as_dict(found)

    def _state(self, instance: dict[str, Any]) -> ServerState:
        return server_state(instance, terminating=instance.get("name") in self._terminating)

    def console_output(self, server_id: str) -> str:
        try:
            reply = self.transport.call(
                "instances", "get_serial_port_output",
                f"reading the serial console of {server_id}", project=self.project,
                zone=self._zone, instance=server_id, port=1, start=0)
        except errors.NotFound:
            return ""
        except errors.ProviderError as exc:
            if exc.status == 400:  # resourceNotReady: the instance is not running yet
                return ""
            raise
        return str(reply.contents or "")

    def published_host_keys(self, server_id: str) -> tuple[str, ...]:
        """The host keys the instance's guest environment wrote to its guest attributes
        (``hostkeys/``), read with ``instances.getGuestAttributes``; () while none are
        there, where guest attributes are off, or when this was asked too recently."""
        now = time.monotonic()
        with self._lock:
            last = self._host_keys_asked.get(server_id)
            if last is not None and now - last < self.guest_attribute_interval:
                return ()
            self._host_keys_asked[server_id] = now
        what = f"reading the guest attributes of {server_id}"
        try:
            reply = self.transport.call(
                "instances", "get_guest_attributes", what, project=self.project,
                zone=self._zone, instance=server_id,
                query_path=f"{hostkeys.HOSTKEY_NAMESPACE}/")
        except errors.NotFound:
            return ()  # nothing under hostkeys/ (yet)
        except (errors.AuthError, errors.QuotaExceeded) as exc:
            # 403: guest attributes are off for the instance (or the org policy
            # compute.disableGuestAttributesAccess), or the credentials may not read them.
            LOG.info("%s: no host keys from guest attributes: %s", self.settings.name, exc)
            return ()
        except errors.ProviderError as exc:
            if exc.status in (400, 412):
                LOG.info("%s: no host keys from guest attributes: %s", self.settings.name,
                         exc)
                return ()
            raise
        keys, skipped = hostkeys.published_host_keys(as_dict(reply))
        for why in skipped:
            LOG.warning("%s: instance %s: guest attribute %s", self.settings.name, server_id,
                        why)
        return keys

    # -- Driver: key pairs ----------------------------------------------------------------
    def _check_metadata_keys_work(self) -> None:
        """Refuse a project that ignores metadata SSH keys (OS Login), naming the setting."""
        project = as_dict(self.transport.call("projects", "get",
                                              f"reading project {self.project}",
                                              project=self.project))
        items = project_metadata(project)
        if items.get("enable-oslogin", "").strip().lower() == "true":
            raise errors.ConfigError(
                f"project {self.project} has enable-oslogin=TRUE in its metadata (Compute "
                "Engine > Metadata): OS Login ignores the ssh-keys metadata cloudnorm logs in "
                "with. Set enable-oslogin to FALSE for the project, or use a project without "
                "OS Login", cloud=self.settings.name)

    def list_keypairs(self) -> list[KeyPair]:
        """The keys registered with this driver (GCE itself keeps none), which go into the
        ``ssh-keys`` metadata of instances booted with them."""
        with self._lock:
            return list(self._keys.values())

    def create_keypair(self, name: str, public_key: str) -> KeyPair:
        self._check_metadata_keys_work()
        ssh_keys_line("check", public_key)  # refuses what is not an OpenSSH public key
        keypair = KeyPair(name=name, public_key=public_key.strip(),
                          fingerprint=fingerprint(public_key))
        with self._lock:
            self._keys[name] = keypair
            self._key_times[name] = datetime.datetime.now(datetime.timezone.utc)
        return keypair

    def delete_keypair(self, name: str) -> bool:
        with self._lock:
            self._key_times.pop(name, None)
            return self._keys.pop(name, None) is not None

    # -- Driver: provisioning -------------------------------------------------------------
    def _expected_network(self) -> str | None:
        """The network the neutral flow picks when the caller names none (it reads the
        same hints), or None when that takes the caller's choice."""
        facts, _ = self._net or self._load_networks()
        hints = self.network_hints()  # clouds.yaml and profile over the project's facts
        if hints.default_interface:
            return hints.default_interface
        usable = [f.name for f in facts if f.subnets]
        return usable[0] if len(usable) == 1 else None

    def create_ssh_access(self, owner: str) -> Created:
        """A rule letting TCP 22 in to this owner's tag, on the network the server will most
        likely go to -- none when a rule there already lets it in to every instance. Which
        network the caller picks is only known at :meth:`boot`, which fixes a wrong guess."""
        expected = self._expected_network()
        if expected is None:
            return self.ssh_rules.defer(owner)
        return self.ssh_rules.ensure(owner, expected)

    def _login_user(self, image: Image) -> str:
        """The user the neutral flow will log in as on ``image`` (it reads the same
        sources in the same order), whose key goes into the metadata."""
        if image.login_user:
            return image.login_user
        user, _ = self.profile.login_user_for(image.os_distro)
        if user:
            return user
        # An unknown distribution: the flow probes the usual users, this one first.
        return next(iter([*self.profile.login_users.values(),
                          *(d.login_user for d in profiles.distros().values())]))

    def check_options(self, availability_zone: str | None,
                      security_groups: Sequence[str]) -> None:
        # One cloud is one zone (every later call names it); a "security group" is a
        # network tag, which has the shape of a resource name.
        if availability_zone and availability_zone != self._zone:
            raise errors.InvalidRequest(
                f"this cloud boots in zone {self._zone}, not {availability_zone}: "
                "name another cloud (its zone: in clouds.yaml) for another zone",
                cloud=self.settings.name, field="availability_zone")
        for tag in security_groups:
            if not NAME_PATTERN.fullmatch(tag):
                raise errors.InvalidRequest(
                    f"'{tag}' cannot be a GCE network tag: use 1 to 63 lowercase letters, "
                    "digits and dashes, starting with a letter", cloud=self.settings.name,
                    field="security_groups")

    def boot(self, spec: BootSpec) -> Created:
        """Create the instance and wait for its insert operation. ``spec.plain`` leaves
        out cloudnorm's firewall tag: what remains is what gcloud sends (an external
        address included), with the login key and the owner label."""
        name = spec.name
        if not NAME_PATTERN.fullmatch(name):
            raise errors.ConfigError(
                f"'{name}' cannot name a GCE instance: use 1 to 63 lowercase letters, digits "
                "and dashes, starting with a letter and not ending with a dash",
                cloud=self.settings.name)
        self.check_options(spec.availability_zone, spec.security_groups)
        with self._lock:
            keypair = self._keys.get(spec.key_name)
        if keypair is None:
            raise errors.NotFound(
                f"no key pair '{spec.key_name}' was registered with this cloud object; GCE "
                "keeps none: register it with create_keypair first", cloud=self.settings.name)
        items = [{"key": "ssh-keys",
                  "value": ssh_keys_line(spec.login_user or self._login_user(spec.image),
                                         keypair.public_key)}]
        # The guest environment publishes the host keys it makes in guest attributes only
        # where they are on (they are off unless the instance or project says TRUE).
        items.append({"key": "enable-guest-attributes", "value": "TRUE"})
        try:
            items += [{"key": metadata_key(k), "value": str(v)} for k, v in spec.metadata.items()]
        except errors.ConfigError as exc:
            exc.cloud = self.settings.name
            raise
        items += user_data_items(spec.user_data)
        labels = {OWNER_LABEL: spec.owner}
        # No access config: an instance without one has no external address at all.
        nic: dict[str, Any] = {"accessConfigs": [{"name": "External NAT",
                                                  "type": "ONE_TO_ONE_NAT"}]
                               if spec.public_address else []}
        network_name = spec.network.name if spec.network is not None else None
        if spec.network is not None:
            nic["network"] = f"projects/{self.project}/global/networks/{network_name}"
            if spec.network.raw.get("cloudnorm:subnetwork"):
                nic["subnetwork"] = spec.network.raw["cloudnorm:subnetwork"]
        tags = []
        if spec.security_group is not None and not spec.plain:
            access = self.ssh_rules.for_network(spec.owner, network_name)
            if access.created and access.tag:
                tags.append(access.tag)
        tags += [t for t in spec.security_groups if t not in tags]
        body = {
            "name": name, "machineType": f"zones/{self._zone}/machineTypes/{spec.flavor.id}",
            "labels": labels, "metadata": {"items": items}, "tags": {"items": tags},
            "networkInterfaces": [nic],
            "disks": boot_disks(spec, name, labels),
        }
        from google.cloud import compute_v1

        operation = self.transport.call(
            "instances", "insert_unary", f"creating instance {name}", project=self.project,
            zone=self._zone, instance_resource=compute_v1.Instance.from_json(json.dumps(body)),
            # Idempotent: a retried insert cannot start a second instance.
            request_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"cloudnorm/{spec.owner}/{name}")))
        try:
            done = self.transport.wait(operation, f"creating instance {name}")
        except BaseException:
            # The insert was accepted: whatever became of it must not stay behind unseen
            # (a failed insert leaves no instance, and this answers 404).
            with contextlib.suppress(errors.CloudnormError):
                self.delete(Created("server", name, name))
            raise
        if done.status != compute_v1.Operation.Status.DONE:
            LOG.warning("%s: instance %s not created after %.0f s; waiting for it as a server",
                        self.settings.name, name, OPERATION_LIMIT)
        return Created("server", name, name)

    def attach_public_address(self, state: ServerState, attach: Network,
                              pools: list[Network], owner: str, port: Created | None = None
                              ) -> tuple[Created, Address, list[Decision]]:
        # The profile plans no floating IPs: every instance has its access config from boot.
        raise errors.NotReachable(
            f"GCE instances get their external address at creation (an ONE_TO_ONE_NAT access "
            f"config); instance {state.id} has none to add. Check that profile "
            f"'{self.profile.name}' keeps floating_ip_source: none", cloud=self.settings.name)

    def delete(self, resource: Created) -> None:
        if resource.kind == "server":
            with self._lock:
                self._terminating.add(resource.id)
                self._host_keys_asked.pop(resource.id, None)
            with contextlib.suppress(errors.NotFound):
                self.transport.call(
                    "instances", "delete_unary", f"deleting instance {resource.id}",
                    project=self.project, zone=self._zone, instance=resource.id,
                    request_id=str(uuid.uuid4()))
        elif resource.kind == "firewall":
            self.ssh_rules.release(resource.id)
        elif resource.kind == "disk":
            with contextlib.suppress(errors.NotFound):
                operation = self.transport.call(
                    "disks", "delete_unary", f"deleting disk {resource.id}",
                    project=self.project, zone=self._zone, disk=resource.id,
                    request_id=str(uuid.uuid4()))
                self.transport.wait(operation, f"deleting disk {resource.id}")
        elif resource.kind == "keypair":
            self.delete_keypair(resource.id)
        else:
            raise errors.ProviderError(f"cloudnorm cannot delete a {resource.kind} on GCE",
                                       cloud=self.settings.name)

    def set_server_metadata(self, server_id: str, items: dict[str, str]) -> None:
        """Add or replace metadata items of an instance (``cloudnorm:`` keys written with
        ``--``, see :func:`.normalize.metadata_key`); the ``ssh-keys`` item is kept as it
        is."""
        wanted = {metadata_key(k): str(v) for k, v in items.items()}
        from google.cloud import compute_v1

        for attempt in range(3):
            instance = self._instance(server_id)
            if instance is None:
                raise errors.NotFound(f"no instance '{server_id}' in zone {self._zone}",
                                      cloud=self.settings.name)
            metadata = instance.get("metadata") or {}
            merged = {**instance_metadata(instance), **wanted}
            body = {"fingerprint": metadata.get("fingerprint", ""),
                    "items": [{"key": k, "value": v} for k, v in merged.items()]}
            try:
                operation = self.transport.call(
                    "instances", "set_metadata_unary", f"setting metadata of {server_id}",
                    project=self.project, zone=self._zone, instance=server_id,
                    metadata_resource=compute_v1.Metadata.from_json(json.dumps(body)),
                    request_id=str(uuid.uuid4()))
            except errors.ProviderError as exc:
                # Someone else changed the metadata since it was read: read it again.
                if exc.status == 412 and attempt < 2:
                    continue
                raise
            self.transport.wait(operation, f"setting metadata of {server_id}")
            return

    def owned_resources(self, owner: str | None) -> list[Created]:
        """The firewall rules, orphaned disks, instances and held node keys of ``owner``
        (of any owner when None), with their owner and creation time."""
        label = (f"labels.{OWNER_LABEL}:*" if owner is None
                 else f'labels.{OWNER_LABEL} = "{owner}"')
        found = self.ssh_rules.owned(owner)
        # Boot disks go with their instance (autoDelete); only a disk left on its own is
        # cloudnorm's to remove.
        found += [Created("disk", d["name"], d["name"], (d.get("labels") or {}).get(
            OWNER_LABEL, ""), parse_time(d.get("creationTimestamp")))
            for d in self.transport.list_records(
                "disks", "listing owned disks", project=self.project, zone=self._zone,
                filter=label) if not d.get("users")]
        found += [Created("server", i["name"], i["name"], (i.get("labels") or {}).get(
            OWNER_LABEL, ""), parse_time(i.get("creationTimestamp")))
            for i in self.transport.list_records(
                "instances", "listing owned instances", project=self.project,
                zone=self._zone, filter=label)]
        with self._lock:
            held = dict(self._key_times)
        for name, registered in held.items():
            key_owner = name.removeprefix(NAME_PREFIX) if name.startswith(NAME_PREFIX) else ""
            if key_owner and owner in (None, key_owner):
                found.append(Created("keypair", name, name, key_owner, registered))
        return found

    def close(self) -> None:
        self.transport.close()


def boot_disks(spec: BootSpec, name: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    """The instance's disks: the boot disk from the image (``diskSizeGb`` where a size is
    asked for) and one blank persistent disk per data volume, all labelled with the owner
    and deleted with the instance (``autoDelete``)."""
    boot: dict[str, Any] = {"sourceImage": spec.image.id, "labels": labels}
    if spec.root_size:
        boot["diskSizeGb"] = str(spec.root_size)
    disks = [{"boot": True, "autoDelete": True, "type": "PERSISTENT",
              "initializeParams": boot}]
    disks += [{"boot": False, "autoDelete": True, "type": "PERSISTENT",
               "deviceName": f"data-{number}",
               "initializeParams": {"diskName": f"{name}-data-{number}",
                                    "diskSizeGb": str(size), "labels": labels}}
              for number, size in enumerate(spec.data_volumes, start=1)]
    return disks

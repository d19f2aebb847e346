"""Normalized, provider-neutral models.

These frozen attrs classes are the data contract of cloudnorm: every driver
returns them, every decision is made over them, and callers only ever see them.
``raw`` keeps the provider's own record for the rare caller who needs a field
cloudnorm does not normalize; do not rely on its shape across providers.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs

#: Tag/metadata key (or description marker) on everything cloudnorm creates.
OWNER_KEY = "cloudnorm:owner"
#: Server metadata key: ``in-progress`` from the boot of a waited create, ``done`` once
#: the create returned the server. A server left ``in-progress`` belongs to a create
#: that died before its end (its process killed, its machine gone): ``cloudnorm
#: cleanup`` removes it like the rest of what that create made.
CREATE_KEY = "cloudnorm:create"

#: Server states, named as EC2 names them.
SERVER_STATES = ("pending", "running", "stopping", "stopped", "terminated", "error")


def _frozen_dict(value: Any) -> dict[str, Any]:
    return dict(value or {})


@attrs.frozen
class Location:
    """Where a resource lives: the cloud's name in ``clouds.yaml``, its region and zone."""

    cloud: str
    region: str | None = None
    zone: str | None = None
    project: str | None = None


@attrs.frozen
class Address:
    """One IP address of a server, classified.

    ``public`` says whether the address can be reached from outside the cloud;
    ``reason`` says why cloudnorm thinks so, in words a person can check.
    ``kind`` is ``fixed`` (on the NIC) or ``floating`` (NAT in front of a fixed one).
    ``basis`` is what ``public`` rests on, strongest first: ``published`` (the cloud
    names it the address to reach the server by, e.g. Nova's ``accessIPv4``),
    ``configured`` (clouds.yaml or the profile says its network routes externally),
    ``nat`` (a floating IP or public IP the cloud translates to the server), or
    ``range`` (only inferred from the address range). Where a server has several
    addresses of one class, the strongest is the one to SSH to.
    """

    ip: str
    version: int
    network: str | None
    public: bool
    reason: str
    kind: str = "fixed"
    basis: str = attrs.field(default=attrs.Factory(
        lambda self: "nat" if self.kind == "floating" else "range", takes_self=True))


@attrs.frozen
class Network:
    """A network a server could be attached to, or that feeds public addresses.

    ``public`` is true when servers attached to it are reachable from outside.
    ``external`` is true when floating IPs can be taken from it. ``usable`` is
    false for a network cloudnorm must not use for either purpose, and
    ``reason`` says why each of those flags has its value.
    """

    id: str
    name: str
    public: bool
    reason: str
    external: bool = False
    usable: bool = True
    shared: bool = False
    subnets: tuple[str, ...] = ()
    ip_versions: tuple[int, ...] = ()
    raw: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False, converter=_frozen_dict)

    @property
    def attachable(self) -> bool:
        """True when a server can be attached to this network (not just take
        floating IPs from it)."""
        return self.usable and (not self.external or self.shared)


@attrs.frozen
class Image:
    """A bootable image. ``os_distro``/``os_version`` come from image properties
    when the cloud sets them, otherwise from cloudnorm's reading of the name."""

    id: str
    name: str
    os_distro: str | None = None
    os_version: str | None = None
    created: datetime.datetime | None = None
    min_ram: int = 0
    min_disk: int = 0
    status: str = "active"
    visibility: str = "public"
    hidden: bool = False
    is_snapshot: bool = False
    architecture: str | None = None
    login_user: str | None = None
    raw: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False, converter=_frozen_dict)


@attrs.frozen
class Flavor:
    """A server size: RAM in MiB, disk in GiB."""

    id: str
    name: str
    ram: int
    vcpus: int
    disk: int = 0
    is_public: bool = True
    disabled: bool = False
    raw: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False, converter=_frozen_dict)


@attrs.frozen
class KeyPair:
    """A key pair known to the cloud. ``private_key`` is never shown by ``repr()``."""

    name: str
    public_key: str
    fingerprint: str | None = None
    private_key: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class Decision:
    """One choice cloudnorm made, with the reason, so it can be audited."""

    step: str
    choice: str
    reason: str


@attrs.frozen
class Volume:
    """A disk attached to a server: its root disk or a data volume.

    ``size`` is in GiB (None where the server's record does not say, e.g. EC2's);
    ``device`` is the name the cloud attached it under (``/dev/sdf``,
    ``persistent-disk-1``), when it says; ``delete_on_termination`` whether it goes
    with the server.
    """

    id: str
    size: int | None
    device: str | None
    root: bool
    delete_on_termination: bool | None = None


@attrs.frozen
class Server:
    """A server, normalized.

    ``status`` is one of :data:`SERVER_STATES`. ``interface_ip`` is the address
    to SSH to (``ssh_port`` on it, as ``ssh_user``); ``host_keys`` are the
    verified host keys in ``known_hosts`` form (``"ssh-ed25519 AAAA..."``).
    ``decisions`` records what cloudnorm chose for this server and why.
    ``volumes`` are its disks that are volumes of the cloud's block storage (root
    first), as far as its record shows them.
    """

    id: str
    name: str
    status: str
    location: Location
    image: str | None = None
    flavor: str | None = None
    addresses: tuple[Address, ...] = ()
    public_v4: str | None = None
    public_v6: str | None = None
    private_v4: str | None = None
    interface_ip: str | None = None
    ssh_user: str | None = None
    ssh_port: int = 22
    host_keys: tuple[str, ...] = ()
    key_name: str | None = None
    tags: dict[str, str] = attrs.field(factory=dict, converter=_frozen_dict)
    created: datetime.datetime | None = None
    decisions: tuple[Decision, ...] = ()
    volumes: tuple[Volume, ...] = ()
    raw: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False, converter=_frozen_dict)

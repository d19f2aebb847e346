"""What a caller asks of create_server: one record, built alike by every front end."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from cloudnorm import errors
from cloudnorm.userdata import UserData, encode

if TYPE_CHECKING:
    from cloudnorm.keys import NodeKey
    from cloudnorm.models import Flavor, Image


def _strings(value: Mapping[str, str] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


def _texts(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):  # one name, not its letters
        return (value,)
    return tuple(value)


def _sizes(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(value)


def _positive(instance: object, attribute: attrs.Attribute, value: object) -> None:
    sizes = value if isinstance(value, tuple) else (value,)
    if any(size is not None and (type(size) is not int or size < 1) for size in sizes):
        raise errors.InvalidRequest(
            f"{attribute.name} must be whole GiB of at least 1, not {value!r}",
            field=attribute.name)


def _user_data(value: UserData | None) -> bytes | None:
    return None if value is None else encode(value)


@attrs.frozen
class CreateRequest:
    """A server to create, as :meth:`cloudnorm.cloud.Cloud.create_server` documents it.

    ``Cloud.create_server``, the ``cloudnorm`` command, the conformance check and the
    Ansible modules all build this one record, so an option means the same everywhere.
    """

    name: str
    #: An OS name (``"ubuntu-22.04"``), an image name or id, or an Image; None: the
    #: cloud's default (clouds.yaml ``cloudnorm: defaults: image:``), else
    #: :data:`DEFAULT_IMAGE`.
    image: str | Image | None = None
    #: A flavor name or id, or a Flavor; None: the smallest that fits.
    flavor: str | Flavor | None = None
    min_ram: int | None = None
    min_vcpus: int | None = None
    #: A network name or id; None: the network cloudnorm's discovery picks.
    network: str | None = None
    #: The node key; None: a throw-away ed25519 key.
    key: NodeKey | None = None
    #: Operator keys installed for root and the login user by the bootstrap.
    authorized_keys: tuple[str, ...] = attrs.field(default=(), converter=_texts)
    bootstrap: bool = True
    #: False: return as soon as the cloud accepted the request.
    wait: bool = True
    timeout: float = 600.0
    tags: dict[str, str] = attrs.field(factory=dict, converter=_strings)
    verify_host_keys: bool = True
    #: The user to log in as; None: learned from the image, the profile or a probe.
    ssh_user: str | None = None
    keep_node_key: bool = False
    #: What the server's first boot runs (cloud-init): a mapping is written as a
    #: cloud-config, text and bytes go as given; held as the bytes the cloud receives.
    userdata: bytes | None = attrs.field(default=None, converter=_user_data)
    #: The availability zone (GCE: the zone) to boot in; None: the cloud's choice.
    availability_zone: str | None = None
    #: Security groups (GCE: network tags) added to the one cloudnorm opens for SSH.
    security_groups: tuple[str, ...] = attrs.field(default=(), converter=_texts)
    #: False: no public address is made and the server is reached on its private
    #: address (automation inside the cloud's network); None: the cloud's
    #: configuration decides (clouds.yaml ``private: true`` or ``cloudnorm: access:``).
    public: bool | None = None
    #: True: the root disk is a volume of the cloud's block storage (OpenStack: Cinder;
    #: on AWS and GCE it always is); None: where a flavor needs it (disk 0) and the
    #: cloud has block storage; False: never (a flavor with disk 0 is then passed over).
    boot_from_volume: bool | None = None
    #: GiB of the root disk (a volume); None: what the image asks for.
    volume_size: int | None = attrs.field(default=None, validator=_positive)
    #: GiB of each extra data volume, made with the server and deleted with it.
    volumes: tuple[int, ...] = attrs.field(default=(), converter=_sizes, validator=_positive)

    def with_defaults(self, defaults: Mapping[str, Any]) -> CreateRequest:
        """This request with the cloud's defaults (clouds.yaml ``cloudnorm: defaults:``,
        checked by :func:`check_defaults`) in the fields it leaves unset, and
        :data:`DEFAULT_IMAGE` when nothing names an image."""
        unset = {key: value for key, value in defaults.items()
                 if getattr(self, key) in (None, ())}
        if self.image is None and unset.get("image") is None:
            unset["image"] = DEFAULT_IMAGE
        return attrs.evolve(self, **unset) if unset else self


#: The image of a request that names none, on a cloud whose clouds.yaml names none.
DEFAULT_IMAGE = "ubuntu-22.04"

#: What clouds.yaml's ``cloudnorm: defaults:`` may set for every create on a cloud
#: (as nodepool sets them per label), and the type each takes.
DEFAULTABLE: dict[str, tuple[type, ...]] = {
    "image": (str,), "flavor": (str,), "min_ram": (int,), "min_vcpus": (int,),
    "network": (str,), "availability_zone": (str,), "security_groups": (list,),
    "boot_from_volume": (bool,), "volume_size": (int,), "volumes": (list,),
    "ssh_user": (str,),
}


def check_defaults(defaults: Any, where: str) -> dict[str, Any]:
    """clouds.yaml's ``cloudnorm: defaults:`` mapping, checked: a
    :class:`~cloudnorm.errors.ConfigError` names a key that is unknown, of the wrong
    type, or that create_server would refuse."""
    if defaults is None:
        return {}
    if not isinstance(defaults, Mapping):
        raise errors.ConfigError(f"{where}: cloudnorm: defaults: must be a mapping such as "
                                 "{image: debian-12, min_ram: 2048}")
    for key, value in defaults.items():
        kinds = DEFAULTABLE.get(key)
        if kinds is None:
            raise errors.ConfigError(
                f"{where}: cloudnorm: defaults: has unknown key '{key}'; known keys: "
                + ", ".join(sorted(DEFAULTABLE)))
        # bool is an int to Python; a size of True is a mistake all the same.
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            raise errors.ConfigError(
                f"{where}: cloudnorm: defaults: {key} must be "
                f"{' or '.join(k.__name__ for k in kinds)}, not {value!r}")
    try:
        CreateRequest(name="defaults", **dict(defaults))
    except errors.InvalidRequest as exc:
        raise errors.ConfigError(f"{where}: cloudnorm: defaults: {exc.message}") from None
    return dict(defaults)

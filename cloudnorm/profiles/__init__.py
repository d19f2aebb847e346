"""Vendor knowledge as data.

A profile is a YAML file in this folder describing what a kind of cloud does
that cannot be discovered cheaply (a missing metadata service, which network
routes externally, which user a vendor's images log in as). ``distros.yaml``
describes operating systems. Nothing in cloudnorm's flow tests a vendor's
name: it reads these files.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import attrs
import yaml

from cloudnorm import errors

_FIELDS = {"name", "provider", "extends", "description", "image_user_properties",
           "login_users", "requires_floating_ip", "floating_ip_source", "secgroup_source",
           "config_drive", "networks"}
_SOURCES = {"neutron", "none", "aws", "gce", "nova"}


@attrs.frozen
class Distro:
    name: str
    aliases: tuple[str, ...]
    login_user: str
    codenames: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Profile:
    """A vendor/quirk profile; see the YAML files beside this module."""

    name: str
    provider: str
    description: str = ""
    image_user_properties: tuple[str, ...] = ()
    login_users: dict[str, str] = attrs.field(factory=dict)
    requires_floating_ip: bool | None = None
    floating_ip_source: str = "neutron"
    secgroup_source: str = "neutron"
    config_drive: bool = False
    networks: tuple[dict[str, Any], ...] = ()

    def login_user_for(self, distro: str | None) -> tuple[str | None, str]:
        """Login user for a distribution, and where that answer comes from."""
        if distro is None:
            return None, "the image's operating system is unknown"
        if distro in self.login_users:
            return self.login_users[distro], f"profile '{self.name}' maps {distro} to it"
        known = distros().get(distro)
        if known is not None:
            return known.login_user, f"{distro} cloud images create it (distribution default)"
        return None, f"no login user is known for {distro}"


def _read(name: str) -> dict[str, Any]:
    try:
        text = resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise errors.ConfigError(
            f"unknown profile '{name}'; known profiles: {', '.join(available())}") from None
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise errors.ConfigError(f"profile file {name}.yaml must hold a mapping")
    return data


def available() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir()
                  if p.name.endswith(".yaml") and p.name != "distros.yaml")


@functools.cache
def load(name: str) -> Profile:
    """Load a profile by name, following ``extends:``."""
    data = _read(name)
    unknown = set(data) - _FIELDS
    if unknown:
        raise errors.ConfigError(
            f"profile '{name}' has unknown key(s): {', '.join(sorted(unknown))}")
    base: dict[str, Any] = {}
    if data.get("extends"):
        base = attrs.asdict(load(data["extends"]))
    merged = {**base, **{k: v for k, v in data.items() if k != "extends"}}
    merged["name"] = name
    if "login_users" in data and base:
        merged["login_users"] = {**base.get("login_users", {}), **data["login_users"]}
    for key in ("floating_ip_source", "secgroup_source"):
        value = str(merged.get(key, "neutron")).lower()
        if value not in _SOURCES:
            raise errors.ConfigError(f"profile '{name}': {key} must be one of "
                                     f"{', '.join(sorted(_SOURCES))}, not '{value}'")
        merged[key] = value
    if "provider" not in merged:
        raise errors.ConfigError(f"profile '{name}' names no provider")
    merged["image_user_properties"] = tuple(merged.get("image_user_properties") or ())
    merged["networks"] = tuple(dict(n) for n in merged.get("networks") or ())
    return Profile(**merged)


@functools.cache
def distros() -> dict[str, Distro]:
    data = _read("distros")
    return {
        key: Distro(name=key, aliases=tuple(value.get("aliases", [key])),
                    login_user=value["login_user"],
                    codenames=dict(value.get("codenames") or {}))
        for key, value in data.items()
    }

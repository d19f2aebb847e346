"""Vendor knowledge as data.

A profile is a YAML file in this folder describing what a kind of cloud does
that cannot be discovered cheaply (a missing metadata service, which network
routes externally, which user a vendor's images log in as). ``distros.yaml``
describes operating systems. Nothing in cloudnorm's flow tests a vendor's
name: it reads these files.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Any

import attrs
import yaml

from cloudnorm import errors
from cloudnorm.drivers import registry

_FIELDS = {"name", "provider", "extends", "description", "image_user_properties",
           "login_users", "requires_floating_ip", "floating_ip_source", "secgroup_source",
           "config_drive", "networks", "images", "instance_families", "public_access",
           "adaptive_rate_limit"}
# What an ``images:`` entry of a profile may say: the distribution and version it holds,
# the account (or project) that publishes it, its name pattern (``*`` wildcards) or the image
# family whose current member it is (GCE), and optionally a public parameter naming the
# current image and the architecture (x86_64 when not said).
_IMAGE_KEYS = {"distro", "version", "owner", "name", "family", "ssm_parameter", "architecture"}
# Where floating IPs and security groups come from: an OpenStack service, nothing, or
# the provider's own API (named by the provider).
_SOURCES = {"neutron", "nova", "none", *registry.PROVIDERS}
#: How servers on a private network are reached: their own floating IP, or a port
#: forwarded from a floating IP the project shares between servers.
_PUBLIC_ACCESS = {"floating_ip", "port_forwarding"}


@attrs.frozen
class Distro:
    """An operating system as ``distros.yaml`` describes it."""

    name: str
    aliases: tuple[str, ...]
    #: The user the distribution's own generic cloud images create (see ``documented``).
    login_user: str
    codenames: dict[str, str] = attrs.field(factory=dict)
    #: Exceptions by version: ``"8"`` (release 8 and its point releases) or ``">=9"``.
    login_users: dict[str, str] = attrs.field(factory=dict)
    #: Word sets that name this distribution even when apart ("CentOS-9-Stream").
    all_words: tuple[tuple[str, ...], ...] = ()
    #: The broader entry whose os_distro value this distribution's images carry.
    family: str | None = None
    #: False when ``login_user`` is documented only for the vendor's own cloud.
    documented: bool = True
    source: str = ""

    def user_for_version(self, version: str | None) -> tuple[str, str] | None:
        """The version exception that applies, as (user, rule), if one does."""
        return _by_version(self.login_users, version)


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
    public_access: str = "floating_ip"
    #: Where a provider's official images come from (see ``_IMAGE_KEYS``), for providers
    #: whose image catalogue is too large to list whole.
    images: tuple[dict[str, Any], ...] = ()
    #: Server size families, cheapest first: automatic choices prefer earlier families.
    instance_families: tuple[str, ...] = ()
    #: Requests per second (``writes``, and ``reads`` if not ten times as many) the
    #: adaptive rate limit starts at and climbs back to (cloudnorm.ratelimit); {}: the
    #: provider's fixed rates.
    adaptive_rate_limit: dict[str, float] = attrs.field(factory=dict)

    def login_user_for(self, distro: str | None,
                       version: str | None = None) -> tuple[str | None, str]:
        """Login user for a distribution (and version), and where that answer comes from.

        Most specific first: this profile's entry for the version, its entry for the
        distribution, the distribution's own exception for the version, its default.
        A profile entry without a version therefore holds for every version.
        """
        if distro is None:
            return None, "the image's operating system is unknown"
        scoped = {key.partition(" ")[2]: user for key, user in self.login_users.items()
                  if key.partition(" ")[0] == distro and " " in key}
        found = _by_version(scoped, version)
        if found is not None:
            return found[0], f"profile '{self.name}' maps {distro} {found[1]} to it"
        if distro in self.login_users:
            return self.login_users[distro], f"profile '{self.name}' maps {distro} to it"
        known = distros().get(distro)
        if known is None:
            return None, f"no login user is known for {distro}"
        found = known.user_for_version(version)
        if found is not None:
            return found[0], (f"{distro} {version} cloud images create it (distribution "
                              f"default for {distro} {found[1]})")
        if not known.documented:
            return None, (f"{distro} images document no login user outside their vendor's "
                          f"own cloud (there: {known.login_user})")
        return known.login_user, f"{distro} cloud images create it (distribution default)"


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
    merged["login_users"] = _checked_login_users(name, merged.get("login_users") or {})
    for key in ("floating_ip_source", "secgroup_source"):
        value = str(merged.get(key, "neutron")).lower()
        if value not in _SOURCES:
            raise errors.ConfigError(f"profile '{name}': {key} must be one of "
                                     f"{', '.join(sorted(_SOURCES))}, not '{value}'")
        merged[key] = value
    if "provider" not in merged:
        raise errors.ConfigError(f"profile '{name}' names no provider")
    if merged.get("public_access", "floating_ip") not in _PUBLIC_ACCESS:
        raise errors.ConfigError(f"profile '{name}': public_access must be one of "
                                 f"{', '.join(sorted(_PUBLIC_ACCESS))}")
    merged["image_user_properties"] = tuple(merged.get("image_user_properties") or ())
    merged["networks"] = tuple(dict(n) for n in merged.get("networks") or ())
    merged["images"] = tuple(_checked_image(name, i) for i in merged.get("images") or ())
    families = merged.get("instance_families") or ()
    if isinstance(families, str) or not all(isinstance(f, str) and f for f in families):
        raise errors.ConfigError(f"profile '{name}': instance_families must be a list of "
                                 "family names, cheapest first")
    merged["instance_families"] = tuple(families)
    merged["adaptive_rate_limit"] = _checked_rates(name, merged.get("adaptive_rate_limit"))
    return Profile(**merged)


def _checked_rates(profile: str, rates: Any) -> dict[str, float]:
    """``adaptive_rate_limit:`` of a profile: positive requests per second for ``writes``
    and, optionally, ``reads``."""
    if not rates:
        return {}
    if not isinstance(rates, dict) or "writes" not in rates or set(rates) - {"writes", "reads"} \
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       and 0 < v < float("inf") for v in rates.values()):
        raise errors.ConfigError(f"profile '{profile}': adaptive_rate_limit must be like "
                                 "{writes: 10, reads: 100}: requests per second above 0")
    return {key: float(value) for key, value in rates.items()}


def _checked_image(profile: str, entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise errors.ConfigError(f"profile '{profile}': each images: entry must be a mapping")
    unknown = set(entry) - _IMAGE_KEYS
    missing = {"distro", "version", "owner"} - set(entry)
    if not {"name", "family"} & set(entry):
        missing.add("name (or family)")
    if unknown or missing:
        raise errors.ConfigError(
            f"profile '{profile}': images: entry {entry.get('name', entry)} "
            + (f"has unknown key(s) {', '.join(sorted(unknown))}" if unknown else
               f"lacks {', '.join(sorted(missing))}")
            + f"; known keys: {', '.join(sorted(_IMAGE_KEYS))}")
    checked = {key: str(value) for key, value in entry.items()}
    if checked["distro"] not in distros():
        raise errors.ConfigError(
            f"profile '{profile}': images: entry names unknown distribution "
            f"'{checked['distro']}'; known: {', '.join(sorted(distros()))}")
    return checked


def _checked_login_users(profile: str, entries: Any) -> dict[str, str]:
    """``login_users:`` of a profile: ``distro`` or ``distro VERSION-RULE`` to a user."""
    if not isinstance(entries, dict):
        raise errors.ConfigError(f"profile '{profile}': login_users must map distributions "
                                 "to users")
    checked: dict[str, str] = {}
    for key, user in entries.items():
        distro, _, rule = str(key).partition(" ")
        if distro not in distros() or (rule and _RULE.fullmatch(rule) is None) \
                or not isinstance(user, str) or not user:
            raise errors.ConfigError(
                f"profile '{profile}': login_users entry '{key}: {user}' must be "
                "'DISTRO: USER' or 'DISTRO VERSION: USER' (VERSION like 8 or >=9) with DISTRO "
                f"one of {', '.join(sorted(distros()))}")
        checked[str(key)] = user
    return checked


#: A version rule: ``8`` (that release and its point releases) or ``>=9``.
_RULE = re.compile(r"(>=)?(\d+(?:\.\d+)*)")


def _numbers(version: str) -> tuple[int, ...] | None:
    parts = version.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else None


def _by_version(rules: dict[str, str], version: str | None) -> tuple[str, str] | None:
    """The rule for ``version`` as (user, rule): a release (longest first) before a
    ``>=`` bound (highest first). Versions that are not numbers match no rule."""
    have = _numbers(version) if version else None
    if have is None:
        return None
    releases, bounds = [], []
    for rule, user in rules.items():
        match = _RULE.fullmatch(rule)
        want = _numbers(match.group(2)) if match else None
        if want is None:
            continue
        if match and match.group(1):
            if have >= want:
                bounds.append((want, user, rule))
        elif have[: len(want)] == want:
            releases.append((want, user, rule))
    for found in (releases, bounds):
        if found:
            _, user, rule = max(found)
            return user, rule
    return None


@functools.cache
def distros() -> dict[str, Distro]:
    table: dict[str, Distro] = {}
    for key, value in _read("distros").items():
        rules = {str(rule): str(user) for rule, user in (value.get("login_users") or {}).items()}
        if any(_RULE.fullmatch(rule) is None for rule in rules):
            raise errors.ConfigError(f"distros.yaml: {key}: login_users keys must be version "
                                     f"rules like 8 or >=9, not {', '.join(rules)}")
        table[key] = Distro(
            name=key, aliases=tuple(value.get("aliases", [key])),
            login_user=value["login_user"],
            codenames={str(k): str(v) for k, v in (value.get("codenames") or {}).items()},
            login_users=rules,
            all_words=tuple(tuple(str(w).lower() for w in group)
                            for group in value.get("all_words") or ()),
            family=value.get("family"), documented=bool(value.get("documented", True)),
            source=" ".join(str(value.get("source") or "").split()))
    unknown = {d.family for d in table.values() if d.family and d.family not in table}
    if unknown:
        raise errors.ConfigError(f"distros.yaml names unknown families: {', '.join(unknown)}")
    return table

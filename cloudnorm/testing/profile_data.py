"""Quirk profiles of the sandbox clouds: YAML files in ``profiles/``, loaded and checked.

A profile describes what one kind of cloud shows a project (networks, routers, images,
flavors, clouds.yaml settings) and, under ``expect:``, what a correct discovery must
conclude from it. Seeding and tests read the same file.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
NETWORK_KINDS = ("tenant", "provider", "external")
UPLOAD_ROUNDS = (1, 2, 3)
#: Cinder's per-project quotas a profile may set.
VOLUME_QUOTAS = ("volumes", "gigabytes", "snapshots", "backups", "backup_gigabytes",
                 "groups", "per_volume_gigabytes")


class ProfileError(ValueError):
    """A profile file is missing or inconsistent; the message names the file and the field."""


def available() -> list[str]:
    return sorted(path.stem for path in PROFILE_DIR.glob("*.yaml"))


def load(name: str) -> dict[str, Any]:
    import yaml

    path = PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ProfileError(f"no sandbox profile {name!r}; available: {', '.join(available())}")
    with open(path) as handle:
        profile = yaml.safe_load(handle)
    _check(profile, path)
    return profile


def load_all(names: list[str] | None = None) -> list[dict[str, Any]]:
    """Load the named profiles (all when none are named) and check they can coexist."""
    profiles = [load(name) for name in (names or available())]
    _check_disjoint(profiles)
    return profiles


def subnets(profile: dict[str, Any]) -> list[dict[str, Any]]:
    return [subnet for network in profile["networks"] for subnet in network.get("subnets", [])]


def _check(profile: Any, path: Path) -> None:
    def fail(message: str) -> NoReturn:
        raise ProfileError(f"{path}: {message}")

    if not isinstance(profile, dict):
        fail("not a mapping")
    if profile.get("name") != path.stem:
        fail(f"name must be {path.stem!r}, the file's name")
    for key in ("networks", "images", "flavors", "expect"):
        if key not in profile:
            fail(f"missing {key!r}")
    network_names = [network["name"] for network in profile["networks"]]
    if len(set(network_names)) != len(network_names):
        fail("network names must be unique within a profile")
    for network in profile["networks"]:
        if network.get("kind") not in NETWORK_KINDS:
            fail(f"network {network['name']!r}: kind must be one of {NETWORK_KINDS}")
    subnet_names = [subnet["name"] for subnet in subnets(profile)]
    if len(set(subnet_names)) != len(subnet_names):
        fail("subnet names must be unique within a profile")
    for subnet in subnets(profile):
        _check_pools(subnet, fail)
    if not isinstance(profile.get("metadata_service", True), bool):
        fail("metadata_service must be true or false")
    _check_block_storage(profile, fail)
    for router in profile.get("routers", []):
        if router.get("gateway") not in network_names:
            fail(f"router {router['name']!r}: gateway must name a network of the profile")
        for interface in router.get("interfaces", []):
            if interface not in subnet_names:
                fail(f"router {router['name']!r}: interface {interface!r} is not a subnet")
    fip_addresses = _check_floating_ips(profile, fail)
    cloudnorm_settings = profile.get("clouds_yaml", {}).get("cloudnorm", {})
    if not isinstance(cloudnorm_settings, dict):
        fail("clouds_yaml.cloudnorm must be a mapping")
    if {"provider", "sandbox_profile"} & set(cloudnorm_settings):
        fail("clouds_yaml.cloudnorm: provider and sandbox_profile are set by the sandbox")
    image_keys = [image["key"] for image in profile["images"]]
    if len(set(image_keys)) != len(image_keys):
        fail("image keys must be unique within a profile")
    for image in profile["images"]:
        if image.get("upload_round", 1) not in UPLOAD_ROUNDS:
            fail(f"image {image['key']!r}: upload_round must be one of {UPLOAD_ROUNDS}")
        if not _is_count(image.get("min_disk", 0)):
            fail(f"image {image['key']!r}: min_disk must be a whole number of GiB")
    expect = profile["expect"]
    if expect.get("image", {}).get("key") not in image_keys:
        fail("expect.image.key must name one of the profile's images")
    flavor_names = [flavor["name"] for flavor in profile["flavors"]]
    if expect.get("flavor", {}).get("name") not in flavor_names:
        fail("expect.flavor.name must name one of the profile's flavors")
    if expect.get("default_network") not in network_names:
        fail("expect.default_network must name one of the profile's networks")
    if set(expect.get("networks", {})) != set(network_names):
        fail("expect.networks must describe every network of the profile")
    fip = expect.get("floating_ip_network")
    if fip is not None and fip not in network_names:
        fail("expect.floating_ip_network must name one of the profile's networks or be null")
    shared = expect.get("shared_floating_ip")
    if shared is not None and shared not in fip_addresses:
        fail("expect.shared_floating_ip must be the address of one of floating_ips")


def _check_block_storage(profile: dict[str, Any], fail: Callable[[str], NoReturn]) -> None:
    """``block_storage``: whether the project's catalog lists Cinder (default: it does).
    ``volume_quotas``: the project's Cinder quotas by name (-1: unlimited)."""
    block_storage = profile.get("block_storage", True)
    if not isinstance(block_storage, bool):
        fail("block_storage must be true or false")
    quotas = profile.get("volume_quotas")
    if quotas is None:
        return
    if not block_storage:
        fail("volume_quotas needs block_storage")
    if not isinstance(quotas, dict) or not quotas:
        fail("volume_quotas must map Cinder quota names to limits")
    for name, limit in quotas.items():
        if name not in VOLUME_QUOTAS:
            fail(f"volume_quotas: {name!r} is not one of {VOLUME_QUOTAS}")
        if not (_is_count(limit) or limit == -1):
            fail(f"volume_quotas: {name} must be a whole number or -1 (unlimited)")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_pools(subnet: dict[str, Any], fail: Callable[[str], NoReturn]) -> None:
    cidr = ipaddress.ip_network(subnet["cidr"])
    gateway = subnet.get("gateway_ip")
    for pool in subnet.get("allocation_pools", []):
        start, end = ipaddress.ip_address(pool["start"]), ipaddress.ip_address(pool["end"])
        if start not in cidr or end not in cidr or int(start) > int(end):
            fail(f"subnet {subnet['name']!r}: allocation pool {start}-{end} is not a range "
                 f"of {cidr}")
        if gateway is not None and int(start) <= int(ipaddress.ip_address(gateway)) <= int(end):
            fail(f"subnet {subnet['name']!r}: gateway_ip {gateway} lies in a pool")


def _check_floating_ips(profile: dict[str, Any], fail: Callable[[str], NoReturn]) -> list[str]:
    """Floating IPs the admin creates in the project; returns their addresses."""
    networks = {network["name"]: network for network in profile["networks"]}
    addresses = []
    for spec in profile.get("floating_ips", []):
        network = networks.get(spec.get("network"))
        if network is None or network["kind"] != "external":
            fail(f"floating IP {spec.get('address')}: network must name an external network")
        address = ipaddress.ip_address(spec["address"])
        if not any(_in_pool(address, subnet) for subnet in network.get("subnets", [])):
            fail(f"floating IP {address}: not in an allocation pool of {network['name']!r}")
        addresses.append(str(address))
    if len(set(addresses)) != len(addresses):
        fail("floating IP addresses must be unique within a profile")
    return addresses


def _in_pool(address: Any, subnet: dict[str, Any]) -> bool:
    if address not in ipaddress.ip_network(subnet["cidr"]):
        return False
    pools = subnet.get("allocation_pools")
    return not pools or any(
        int(ipaddress.ip_address(pool["start"])) <= int(address)
        <= int(ipaddress.ip_address(pool["end"])) for pool in pools)


def _check_disjoint(profiles: list[dict[str, Any]]) -> None:
    """Address ranges and flavor names must not collide between profiles.

    Each address is later bound on the host by the SSH data plane, and Nova's flavor names
    are global to the cloud.
    """
    ranges = [(profile["name"], ipaddress.ip_network(subnet["cidr"]))
              for profile in profiles for subnet in subnets(profile)]
    for (owner_a, net_a), (owner_b, net_b) in itertools.combinations(ranges, 2):
        if net_a.version == net_b.version and net_a.overlaps(net_b):
            raise ProfileError(f"profiles {owner_a} and {owner_b}: {net_a} overlaps {net_b}")
    seen: dict[str, str] = {}
    for profile in profiles:
        for flavor in profile["flavors"]:
            other = seen.setdefault(flavor["name"], profile["name"])
            if other != profile["name"]:
                raise ProfileError(
                    f"profiles {other} and {profile['name']} both define flavor {flavor['name']!r}")

"""Whatever a console or a cloud sends, parsing it raises nothing but cloudnorm's errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudnorm import errors, hostkeys
from cloudnorm.drivers.openstack.normalize import (
    normalize_flavor,
    normalize_image,
    normalize_server,
    server_state,
)
from cloudnorm.models import Location
from cloudnorm.networks import NetworkHints

from . import fuzzing

json_values = fuzzing.json_values()

console_lines = st.sampled_from([
    "-----BEGIN SSH HOST KEY KEYS-----", "-----END SSH HOST KEY KEYS-----",
    "-----BEGIN SSH HOST KEY FINGERPRINTS-----", "-----END SSH HOST KEY FINGERPRINTS-----",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl root@h",
    "ssh-rsa AAAA!!notbase64 root@h", "256 SHA256:abc root@h (ED25519)", "ec2: ", "\x00\xff",
]) | st.text()


@fuzzing.FUZZ
@given(st.lists(console_lines, max_size=20).map("\n".join) | st.none())
def test_parse_console_never_crashes(text):
    found = hostkeys.parse_console(text)
    assert isinstance(found, hostkeys.HostKeys)
    for key in found.keys:  # whatever it accepts is a whole key of the type it names
        assert hostkeys.valid_key(*key.split())


def _record(extra):
    return {"id": "x1", **extra}


def _typed_or_ok(call):
    try:
        call()
    except (errors.CloudnormError, KeyError, TypeError, ValueError, AttributeError) as exc:
        # A record this broken may be refused, but only by a cloudnorm error.
        if not isinstance(exc, errors.CloudnormError):
            pytest.fail(f"{type(exc).__name__} escaped: {exc}")


fields = st.dictionaries(st.sampled_from([
    "name", "status", "addresses", "flavor", "image", "metadata", "created",
    "OS-EXT-STS:task_state", "OS-EXT-AZ:availability_zone", "tenant_id", "key_name",
    "ram", "vcpus", "disk", "min_ram", "min_disk", "created_at", "visibility", "os_hidden",
    "os_distro", "os_version", "architecture", "image_type", "os-flavor-access:is_public",
]), json_values, max_size=8)


@fuzzing.FUZZ
@given(fields)
def test_normalize_server_never_crashes(extra):
    _typed_or_ok(lambda: normalize_server(server_state(_record(extra)), Location(cloud="c"),
                                          [], hints=NetworkHints()))


@fuzzing.FUZZ
@given(fields)
def test_normalize_image_never_crashes(extra):
    _typed_or_ok(lambda: normalize_image(_record(extra)))


@fuzzing.FUZZ
@given(fields)
def test_normalize_flavor_never_crashes(extra):
    _typed_or_ok(lambda: normalize_flavor(_record(extra)))

"""Vendor/quirk profiles and the distribution table (cloudnorm/profiles)."""

from __future__ import annotations

import pytest

from cloudnorm import errors, profiles


@pytest.fixture
def fake_profile_files(monkeypatch):
    """Serve profile YAML from a dict instead of the package folder."""
    files: dict[str, dict] = {}
    real_read = profiles._read

    def read(name: str) -> dict:
        return dict(files[name]) if name in files else real_read(name)

    monkeypatch.setattr(profiles, "_read", read)
    profiles.load.cache_clear()
    yield files
    profiles.load.cache_clear()


def test_available_profiles():
    names = profiles.available()
    assert {"openstack", "limestone", "config-drive", "aws", "gce"} <= set(names)
    assert "distros" not in names
    assert names == sorted(names)


@pytest.mark.parametrize("name", ["openstack", "limestone", "config-drive", "aws", "gce"])
def test_every_shipped_profile_loads(name):
    profile = profiles.load(name)
    assert profile.name == name
    assert profile.provider in ("openstack", "aws", "gce")


def test_extends_inherits_and_overrides():
    base = profiles.load("openstack")
    drive = profiles.load("config-drive")
    assert drive.provider == "openstack"
    assert drive.config_drive is True and base.config_drive is False
    assert drive.image_user_properties == base.image_user_properties
    assert drive.image_user_properties[0] == "os_admin_user"


def test_limestone_profile_networks():
    limestone = profiles.load("limestone")
    by_name = {n["name"]: n for n in limestone.networks}
    assert by_name["Public Internet"]["nat_source"] is True
    assert by_name["Private Network (Floating Public)"]["default_interface"] is True
    assert by_name["DDoS Protected"]["routes_externally"] is True


def test_unknown_profile_lists_known_ones():
    with pytest.raises(errors.ConfigError) as info:
        profiles.load("no-such-vendor")
    assert "'no-such-vendor'" in str(info.value)
    assert "limestone" in str(info.value) and "openstack" in str(info.value)


def test_unknown_profile_key_is_refused(fake_profile_files):
    fake_profile_files["typo"] = {"provider": "openstack", "requires_floating_ips": True}
    with pytest.raises(errors.ConfigError, match="requires_floating_ips"):
        profiles.load("typo")


def test_bad_floating_ip_source_is_refused(fake_profile_files):
    fake_profile_files["bad"] = {"provider": "openstack", "floating_ip_source": "magic"}
    with pytest.raises(errors.ConfigError, match="floating_ip_source must be one of"):
        profiles.load("bad")


def test_profile_without_provider_is_refused(fake_profile_files):
    fake_profile_files["orphan"] = {"description": "no provider"}
    with pytest.raises(errors.ConfigError, match="names no provider"):
        profiles.load("orphan")


def test_login_users_merge_over_the_base(fake_profile_files):
    fake_profile_files["vendor"] = {"extends": "aws", "login_users": {"ubuntu": "admin"},
                                    "floating_ip_source": "NONE"}
    vendor = profiles.load("vendor")
    assert vendor.provider == "aws"
    assert vendor.login_users["ubuntu"] == "admin"
    assert vendor.login_users["debian"] == "admin"       # from aws
    assert vendor.floating_ip_source == "none"


# -- login users (shared/quirks.md, cloud-init defaults) --------------------------------------
@pytest.mark.parametrize("distro, user", [
    ("ubuntu", "ubuntu"), ("debian", "debian"), ("centos", "centos"), ("rhel", "cloud-user"),
    ("fedora", "fedora"), ("rocky", "rocky"), ("almalinux", "almalinux"),
    ("amazon", "ec2-user"), ("cirros", "cirros"), ("flatcar", "core"),
])
def test_distribution_default_login_users(distro, user):
    found, reason = profiles.load("openstack").login_user_for(distro)
    assert found == user
    assert "distribution default" in reason


@pytest.mark.parametrize("distro, user", [
    ("debian", "admin"), ("rhel", "ec2-user"), ("ubuntu", "ubuntu"), ("amazon", "ec2-user"),
])
def test_aws_login_users(distro, user):
    found, reason = profiles.load("aws").login_user_for(distro)
    assert found == user
    if distro in ("debian", "rhel"):
        assert reason == f"profile 'aws' maps {distro} to it"


def test_unknown_distribution_has_no_login_user():
    assert profiles.load("openstack").login_user_for(None) == (
        None, "the image's operating system is unknown")
    user, reason = profiles.load("openstack").login_user_for("plan9")
    assert user is None and "plan9" in reason


def test_distros_table_has_codenames():
    table = profiles.distros()
    assert table["ubuntu"].codenames["jammy"] == "22.04"
    assert table["debian"].codenames["bookworm"] == "12"
    assert "centos-stream" in table["centos"].aliases

"""Vendor/quirk profiles and the distribution table (cloudnorm/profiles)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import yaml

from cloudnorm import errors, images, profiles
from cloudnorm.cloud import Cloud
from cloudnorm.models import Image


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
    ("centos-stream", "cloud-user"), ("opensuse", "opensuse"), ("sles", "sles"),
    ("arch", "arch"), ("freebsd", "freebsd"), ("bitnami", "bitnami"),
])
def test_distribution_default_login_users(distro, user):
    found, reason = profiles.load("openstack").login_user_for(distro)
    assert found == user
    assert "distribution default" in reason


@pytest.mark.parametrize("distro, user", [
    ("debian", "admin"), ("rhel", "ec2-user"), ("ubuntu", "ubuntu"), ("amazon", "ec2-user"),
    ("sles", "ec2-user"), ("opensuse", "ec2-user"), ("oracle", "ec2-user"),
    ("freebsd", "ec2-user"), ("bitnami", "bitnami"), ("almalinux", "ec2-user"),
])
def test_aws_login_users(distro, user):
    found, reason = profiles.load("aws").login_user_for(distro)
    assert found == user
    if distro != "ubuntu":
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
    assert "centos-stream" in table["centos-stream"].aliases
    assert table["centos-stream"].family == "centos"


def test_every_distribution_cites_where_its_user_is_documented():
    for name, distro in profiles.distros().items():
        assert distro.source, f"distros.yaml: {name} has no source"
        # provision builds its probe list from these: each must be a user name
        assert isinstance(distro.login_user, str) and distro.login_user


# -- login users by version ----------------------------------------------------------------------
@pytest.mark.parametrize("provider, distro, version, user", [
    # CentOS Linux 7 and Stream 8 GenericCloud: centos; Stream 9 and later: cloud-user
    # (OpenStack image guide; kubevirt/containerdisks registry.go; CSC Pouta images.md).
    ("openstack", "centos", "7", "centos"),
    ("openstack", "centos", "7.9.2009", "centos"),
    ("openstack", "centos", "9", "cloud-user"),
    ("openstack", "centos-stream", "8", "centos"),
    ("openstack", "centos-stream", "9", "cloud-user"),
    ("openstack", "centos-stream", "10", "cloud-user"),
    ("openstack", "centos-stream", None, "cloud-user"),
    # EC2: CentOS Linux and Stream 8 AMIs centos, Stream 9+ ec2-user (kitchen-ec2 pull 631).
    ("aws", "centos", "7", "centos"),
    ("aws", "centos", "9", "ec2-user"),
    ("aws", "centos-stream", "8", "centos"),
    ("aws", "centos-stream", "9", "ec2-user"),
    ("aws", "centos-stream", "10", "ec2-user"),
    # AWS EC2 User Guide, default user names.
    ("aws", "sles", "15.5", "ec2-user"),
    ("aws", "opensuse", "15.5", "ec2-user"),
    ("aws", "oracle", "8.9", "ec2-user"),
    ("aws", "freebsd", "14.1", "ec2-user"),
    ("aws", "bitnami", None, "bitnami"),
    ("aws", "debian", "12", "admin"),
    # The distributions' own images on OpenStack.
    ("openstack", "sles", "15.5", "sles"),
    ("openstack", "opensuse", "15.6", "opensuse"),
    ("openstack", "arch", None, "arch"),
    ("openstack", "freebsd", "14.1", "freebsd"),
])
def test_login_user_by_version(provider, distro, version, user):
    assert profiles.load(provider).login_user_for(distro, version)[0] == user


def test_version_rule_says_which_rule_applied():
    user, reason = profiles.load("aws").login_user_for("centos-stream", "8.5")
    assert user == "centos" and reason == "profile 'aws' maps centos-stream 8 to it"
    user, reason = profiles.load("openstack").login_user_for("centos", "9")
    assert user == "cloud-user"
    assert reason == "centos 9 cloud images create it (distribution default for centos >=9)"


def test_undocumented_distribution_default_is_probed_not_claimed():
    """Oracle documents opc for its own cloud only: elsewhere cloudnorm must probe."""
    user, reason = profiles.load("openstack").login_user_for("oracle", "9.4")
    assert user is None
    assert "opc" in reason
    assert profiles.load("aws").login_user_for("oracle", "9.4")[0] == "ec2-user"


@pytest.mark.parametrize("rules, version, found", [
    ({"8": "a"}, "8", ("a", "8")),
    ({"8": "a"}, "8.10", ("a", "8")),
    ({"8": "a"}, "80", None),
    ({">=9": "b"}, "9", ("b", ">=9")),
    ({">=9": "b"}, "10.1", ("b", ">=9")),
    ({">=9": "b"}, "8.9", None),
    ({">=9": "b", "10": "c"}, "10.2", ("c", "10")),          # a release before a bound
    ({">=9": "b", ">=10": "c"}, "11", ("c", ">=10")),        # the highest bound
    ({"15": "a", "15.5": "b"}, "15.5", ("b", "15.5")),       # the longest release
    ({">=9": "b"}, "tumbleweed", None),                      # not a number
    ({">=9": "b"}, None, None),
])
def test_version_rules(rules, version, found):
    assert profiles._by_version(rules, version) == found


def test_gce_login_user_does_not_depend_on_the_version():
    """The GCE driver writes the key for ``login_user_for(distro)`` before any version is
    known: the answer with a version must be the same, for every distribution."""
    gce = profiles.load("gce")
    for distro in profiles.distros():
        assert distro in gce.login_users, f"gce.yaml has no user for {distro}"
        plain = gce.login_user_for(distro)[0]
        for version in ("7", "8", "9", "10", "15.5"):
            assert gce.login_user_for(distro, version)[0] == plain, (distro, version)


@pytest.mark.parametrize("entries, bad", [
    ({"plan9": "glenda"}, "plan9"),
    ({"centos 8-stream": "centos"}, "centos 8-stream"),
    ({"centos >9": "centos"}, "centos >9"),
    ({"centos": ""}, "centos"),
])
def test_malformed_login_users_entries_are_refused(fake_profile_files, entries, bad):
    fake_profile_files["typo"] = {"provider": "openstack", "login_users": entries}
    with pytest.raises(errors.ConfigError, match="login_users entry") as info:
        profiles.load("typo")
    assert f"'{bad}:" in str(info.value)


def test_versioned_login_users_merge_over_the_base(fake_profile_files):
    fake_profile_files["vendor"] = {"extends": "aws", "login_users": {"centos-stream 9": "rocky"}}
    vendor = profiles.load("vendor")
    assert vendor.login_user_for("centos-stream", "9.3")[0] == "rocky"
    assert vendor.login_user_for("centos-stream", "10")[0] == "ec2-user"   # from aws
    assert vendor.login_user_for("centos-stream", "8")[0] == "centos"      # from aws


# -- the documented corpus ----------------------------------------------------------------------
CORPUS = Path(__file__).parent / "corpus" / "login_users" / "documented.yaml"
DOCUMENTED = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))


def _row_id(row: dict) -> str:
    what = row.get("image") or f"{row['distro']}-{row['version']}"
    return f"{row['provider']}:{what}"


@pytest.mark.parametrize("row", DOCUMENTED, ids=_row_id)
def test_documented_login_user(row):
    """Each row: a cited source documents the user a new server of this image lets in."""
    if "image" in row:
        distro, version, _ = images.describe_image("img-1", row["image"],
                                                   row.get("properties") or {})
    else:
        distro, version = row["distro"], row["version"]
    image = Image(id="img-1", name=row.get("image") or distro, os_distro=distro,
                  os_version=version)
    # Cloud.login_user itself, on a stand-in that carries only the provider's profile.
    stand_in = types.SimpleNamespace(profile=profiles.load(row["provider"]))
    user, reason = Cloud.login_user(stand_in, image)  # type: ignore[arg-type]
    assert user == row["user"], f"{distro} {version}: {reason} (source: {row['source']})"


def test_corpus_rows_are_complete():
    assert len(DOCUMENTED) >= 30
    for row in DOCUMENTED:
        assert row["provider"] in ("aws", "openstack", "gce")
        assert ("image" in row) != ("distro" in row), row
        assert row["source"].strip() and "before" in row, row

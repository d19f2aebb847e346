"""clouds.yaml through openstack.config, with cloudnorm's own checks and clear errors."""

from __future__ import annotations

import pytest

import cloudnorm
from cloudnorm import config, errors
from cloudnorm.config import CacheSettings

from .conftest import CLOUD, PASSWORD, cloud_entry


def load(path: str, name: str | None = CLOUD, **kwargs):
    return config.load(name, config_files=[path], **kwargs)


def test_a_valid_entry_loads(write_clouds):
    path = write_clouds({CLOUD: cloud_entry(cloudnorm={"profile": "limestone",
                                                        "defaults": {"min_ram": 2048}})})
    settings = load(path)
    assert settings.name == CLOUD and settings.provider == "openstack"
    assert settings.region == "RegionOne"
    assert settings.profile == "limestone"
    assert settings.source == path
    assert settings.openstack is not None


def test_cloudnorm_section_keeps_yaml_types(write_clouds):
    """``defaults: {min_ram: 2048}`` must reach callers as the int the YAML holds
    (openstack.config's normalized copy turns ints into strings)."""
    path = write_clouds({CLOUD: cloud_entry(cloudnorm={"defaults": {"min_ram": 2048,
                                                                    "image": "ubuntu-22.04"}})})
    assert load(path).options["defaults"] == {"min_ram": 2048, "image": "ubuntu-22.04"}


def test_password_never_shows_in_settings_repr(write_clouds):
    settings = load(write_clouds({CLOUD: cloud_entry()}))
    assert PASSWORD not in repr(settings)


def test_broken_yaml_names_the_file_and_line(write_clouds):
    path = write_clouds(
        "clouds:\n"
        "  testcloud:\n"
        "    auth:\n"
        "      auth_url: http://127.0.0.1:35357/v3\n"
        "      username: alice\n"
        "     password: misindented\n")
    with pytest.raises(errors.ConfigError) as info:
        load(path)
    text = str(info.value)
    assert path in text
    assert "line 6" in text
    assert "not valid YAML" in text


def test_yaml_that_is_not_a_mapping(write_clouds):
    path = write_clouds("- just\n- a list\n")
    with pytest.raises(errors.ConfigError, match="mapping"):
        load(path)


def test_clouds_key_must_be_a_mapping(write_clouds):
    """A list under clouds: must give cloudnorm's ConfigError naming the file, not an
    AttributeError from inside openstack.config."""
    path = write_clouds("clouds:\n  - testcloud\n")
    with pytest.raises(errors.ConfigError) as info:
        load(path)
    assert path in str(info.value) and "clouds:" in str(info.value)


def test_missing_config_file_is_named(tmp_path):
    missing = str(tmp_path / "nope" / "clouds.yaml")
    with pytest.raises(errors.ConfigError, match="does not exist") as info:
        load(missing)
    assert missing in str(info.value)


def test_unknown_cloud_lists_known_clouds(write_clouds):
    path = write_clouds({"alpha": cloud_entry(), "beta": cloud_entry()})
    with pytest.raises(errors.ConfigError) as info:
        load(path, "gamma")
    text = str(info.value)
    assert "unknown cloud 'gamma'" in text
    assert "known clouds: alpha, beta" in text
    assert path in text
    assert info.value.cloud == "gamma"


def test_single_cloud_is_used_when_none_named(write_clouds):
    assert load(write_clouds({"only": cloud_entry()}), None).name == "only"


def test_several_clouds_and_none_named(write_clouds):
    path = write_clouds({"alpha": cloud_entry(), "beta": cloud_entry()})
    with pytest.raises(errors.ConfigError) as info:
        load(path, None)
    assert "OS_CLOUD" in str(info.value) and "alpha, beta" in str(info.value)


def test_os_cloud_names_the_cloud(write_clouds, monkeypatch):
    path = write_clouds({"alpha": cloud_entry(), "beta": cloud_entry()})
    monkeypatch.setenv("OS_CLOUD", "beta")
    assert load(path, None).name == "beta"


def test_explicit_cloud_beats_os_cloud(write_clouds, monkeypatch):
    path = write_clouds({"alpha": cloud_entry(), "beta": cloud_entry()})
    monkeypatch.setenv("OS_CLOUD", "beta")
    assert load(path, "alpha").name == "alpha"


def test_explicit_config_files_beat_os_client_config_file(write_clouds, monkeypatch):
    """A caller's config_files=[...] is the file to read, whatever OS_CLIENT_CONFIG_FILE
    says (openstack.config puts the variable's file first and uses only that)."""
    other = write_clouds({"from-env": cloud_entry()}, filename="env-clouds.yaml")
    path = write_clouds({CLOUD: cloud_entry()})
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", other)
    settings = load(path)
    assert settings.name == CLOUD and settings.source == path


def test_unknown_key_under_cloudnorm(write_clouds):
    path = write_clouds({CLOUD: cloud_entry(cloudnorm={"provider": "openstack",
                                                       "flavour": "m1.small"})})
    with pytest.raises(errors.ConfigError) as info:
        load(path)
    text = str(info.value)
    assert "flavour" in text and "cloudnorm:" in text and path in text
    assert "known keys:" in text and "defaults" in text


@pytest.mark.parametrize("entry, access, source", [
    ({}, "public", ""),
    # openstacksdk's own flag (openstack.config docs, "private" in a cloud entry).
    ({"private": True}, "private", "private: true"),
    ({"private": False}, "public", "private: false"),
    ({"cloudnorm": {"access": "private"}}, "private", "cloudnorm: access: private"),
    ({"private": True, "cloudnorm": {"access": "private"}}, "private",
     "cloudnorm: access: private"),
])
def test_access_mode_from_clouds_yaml(write_clouds, entry, access, source):
    settings = load(write_clouds({CLOUD: cloud_entry(**entry)}))
    assert (settings.access, settings.access_source) == (access, source)


@pytest.mark.parametrize("entry, words", [
    ({"cloudnorm": {"access": "inside"}}, "access: must be public or private"),
    ({"private": "yes"}, "private: must be true or false"),
    ({"private": False, "cloudnorm": {"access": "private"}}, "keep one"),
])
def test_a_wrong_access_mode_names_what_to_fix(write_clouds, entry, words):
    path = write_clouds({CLOUD: cloud_entry(**entry)})
    with pytest.raises(errors.ConfigError, match=words) as info:
        load(path)
    assert path in str(info.value)


def test_create_defaults_fill_what_a_request_leaves_unset(write_clouds):
    # Per-cloud defaults for every create, as nodepool's per-label boot-from-volume and
    # volume-size: a call's own values win, unset fields take the cloud's.
    from cloudnorm.provision import CreateRequest

    settings = load(write_clouds({CLOUD: cloud_entry(cloudnorm={"defaults": {
        "image": "debian-12", "min_ram": 4096, "boot_from_volume": True, "volume_size": 40,
        "security_groups": ["web"]}})}))
    request = CreateRequest("web1", min_ram=1024).with_defaults(settings.create_defaults)
    assert (request.image, request.min_ram, request.boot_from_volume, request.volume_size,
            request.security_groups) == ("debian-12", 1024, True, 40, ("web",))
    assert CreateRequest("web1").with_defaults({}).image == "ubuntu-22.04"
    assert CreateRequest("web1", image="fedora-39").with_defaults(
        settings.create_defaults).image == "fedora-39"


@pytest.mark.parametrize("defaults, words", [
    ({"imag": "debian-12"}, "unknown key 'imag'"),
    ({"min_ram": "2G"}, "min_ram must be int"),
    ({"volume_size": True}, "volume_size must be int"),
    ({"volume_size": 0}, "volume_size must be whole GiB of at least 1"),
    ({"volumes": [10, -1]}, "volumes must be whole GiB"),
    (["image"], "defaults: must be a mapping"),
])
def test_wrong_create_defaults_name_what_to_fix(write_clouds, defaults, words):
    path = write_clouds({CLOUD: cloud_entry(cloudnorm={"defaults": defaults})})
    with pytest.raises(errors.ConfigError, match=words) as info:
        load(path)
    assert path in str(info.value)


def test_unknown_key_in_cloudnorm_override(write_clouds):
    path = write_clouds({CLOUD: cloud_entry()})
    with pytest.raises(errors.ConfigError, match="bogus"):
        load(path, cloudnorm={"bogus": 1})


def test_cloudnorm_override_is_merged(write_clouds):
    path = write_clouds({CLOUD: cloud_entry(cloudnorm={"profile": "openstack"})})
    assert load(path, cloudnorm={"profile": "limestone"}).profile == "limestone"


def test_unknown_provider(write_clouds):
    path = write_clouds({CLOUD: cloud_entry(cloudnorm={"provider": "azure"})})
    with pytest.raises(errors.ConfigError) as info:
        load(path)
    assert "provider 'azure'" in str(info.value) and "openstack" in str(info.value)


def test_missing_auth_url_is_named(write_clouds):
    entry = cloud_entry()
    del entry["auth"]["auth_url"]
    path = write_clouds({CLOUD: entry})
    with pytest.raises(errors.ConfigError) as info:
        load(path)
    text = str(info.value)
    assert "auth_url" in text and path in text
    assert PASSWORD not in text


def test_unknown_profile_fails_at_connect(write_clouds):
    path = write_clouds({CLOUD: cloud_entry(cloudnorm={"profile": "rackspace-classic"})})
    with pytest.raises(errors.ConfigError) as info:
        cloudnorm.connect(CLOUD, config_files=[path])
    assert "rackspace-classic" in str(info.value) and "limestone" in str(info.value)


def test_profile_of_another_provider_fails_at_connect(write_clouds):
    path = write_clouds({CLOUD: cloud_entry(cloudnorm={"profile": "aws"})})
    with pytest.raises(errors.ConfigError, match="profile 'aws' is for aws"):
        cloudnorm.connect(CLOUD, config_files=[path])


# -- cache: section ---------------------------------------------------------------------------
def test_cache_defaults_to_memory_for_five_minutes(write_clouds):
    cache = load(write_clouds({CLOUD: cloud_entry()})).cache
    assert cache == CacheSettings(backend="dogpile.cache.memory", expiration_time=300.0)


def test_openstack_config_cache_section_is_mapped(write_clouds):
    path = write_clouds({CLOUD: cloud_entry()}, top={"cache": {
        "class": "dogpile.cache.memory_pickle",
        "expiration_time": 600,
        "expiration": {"image": 7200, "flavor": 86400},
        "arguments": {"cache_size": "100"},
    }})
    cache = load(path).cache
    assert cache.backend == "dogpile.cache.memory_pickle"
    assert cache.expiration_time == 600.0
    assert cache.expirations == {"image": 7200.0, "flavor": 86400.0}
    assert cache.arguments == {"cache_size": "100"}
    assert cache.expiration_for("image") == 7200.0
    assert cache.expiration_for("network") == 600.0


def test_cache_expiration_alone_selects_memory(write_clouds):
    path = write_clouds({CLOUD: cloud_entry()}, top={"cache": {"expiration_time": 30}})
    cache = load(path).cache
    assert (cache.backend, cache.expiration_time) == ("dogpile.cache.memory", 30.0)


def test_cloudnorm_cache_section_refines_the_global_one(write_clouds):
    path = write_clouds(
        {CLOUD: cloud_entry(cloudnorm={"cache": {"expiration_time": 10,
                                                  "expiration": {"network": 5}}})},
        top={"cache": {"class": "dogpile.cache.memory", "expiration_time": 600,
                       "expiration": {"image": 7200}}})
    cache = load(path).cache
    assert cache.expiration_time == 10.0
    assert cache.expirations == {"image": 7200.0, "network": 5.0}


def test_cache_settings_expiration_for():
    settings = CacheSettings(expiration_time=60, expirations={"server": 5})
    assert settings.expiration_for("server") == 5.0
    assert settings.expiration_for("image") == 60.0

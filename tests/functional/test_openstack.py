"""What is OpenStack's own, on real OpenStack services, one project per quirk profile.

The scenarios every cloud must pass -- create, strict root login, passwords refused,
delete, nothing left; a fault at each step; image, flavor and network decisions against
each profile's ``expect:`` section; discovery's cost -- run on every profile in the
contract suite (tests/functional/contract/, the clouds in
tests/functional/sandbox_clouds.py). Here: what only an OpenStack cloud has -- images
anyone can upload with no known login user, clouds.yaml settings that decide, servers
booted behind cloudnorm's back, Keystone's answers to bad credentials and regions.
"""

from __future__ import annotations

import time

import pytest

import cloudnorm
from cloudnorm import errors
from cloudnorm.testing import profile_data

pytestmark = pytest.mark.functional
PROFILES = profile_data.available()


@pytest.fixture
def connect(openstack_sandbox):
    opened = []

    def _connect(profile: str, **overrides):
        cloud = cloudnorm.connect(f"sandbox-{profile}",
                                  config_files=[str(openstack_sandbox.clouds_yaml)], **overrides)
        opened.append(cloud)
        return cloud

    yield _connect
    for cloud in opened:
        cloud.close()


def sdk_connection(sandbox, profile):
    """openstacksdk itself, as the profile's user: the independent view of the cloud."""
    import openstack.config
    import openstack.connection

    region = openstack.config.OpenStackConfig(
        config_files=[str(sandbox.clouds_yaml)], load_envvars=False).get_one(
            f"sandbox-{profile}")
    return openstack.connection.Connection(config=region)


# -- discovery ------------------------------------------------------------------------------
def test_misnamed_network_names_do_not_decide(connect):
    cloud = connect("misnamed")
    nets = {n.name: n for n in cloud.list_networks()}
    assert nets["private"].public and nets["private"].attachable
    assert "203.0.113.64/27" in nets["private"].reason
    assert not nets["external"].usable
    assert "no subnet" in nets["external"].reason


def test_multi_external_honours_clouds_yaml(connect, openstack_sandbox):
    cloud = connect("multi-external")
    decision = cloud.choose_network()
    assert decision.choice == "Private Network (Floating Public)"
    assert "default_interface" in decision.reason
    assert str(openstack_sandbox.clouds_yaml) in decision.reason


@pytest.mark.parametrize("profile", PROFILES)
def test_servers_are_normalized_with_classified_addresses(connect, openstack_sandbox, profile):
    expect = profile_data.load(profile)["expect"]
    cloud = connect(profile)
    sdk = sdk_connection(openstack_sandbox, profile)
    image = cloud.find_image("ubuntu-22.04")
    flavor = cloud.find_flavor(min_ram=512)
    net = cloud.default_network()
    name = f"disco-{profile}-{int(time.time())}"
    kwargs: dict = {"networks": [{"uuid": net.id}] if net else "auto"}
    if flavor.disk == 0:  # Nova lets only volume-backed servers use it
        kwargs["block_device_mapping"] = [{
            "boot_index": 0, "uuid": image.id, "source_type": "image",
            "destination_type": "volume", "volume_size": expect["root_volume_gb"],
            "delete_on_termination": True}]
    else:
        kwargs["image_id"] = image.id
    raw = sdk.compute.create_server(name=name, flavor_id=flavor.id, **kwargs)
    try:
        sdk.compute.wait_for_server(raw, status="ACTIVE", wait=60, interval=0.5)
        server = cloud.get_server(name)
        assert server.id == raw.id and server.status == "running"
        assert server.flavor == flavor.name
        # Nova names no image for a server booted from a volume.
        assert server.image == (None if flavor.disk == 0 else image.id)
        if flavor.disk == 0:
            (root,) = server.volumes
            assert root.root and root.delete_on_termination
        assert server.location.cloud == f"sandbox-{profile}"
        assert server.addresses, "the server has no address"
        for address in server.addresses:
            assert address.reason
        want_public = expect["networks"][expect["default_network"]]["public"]
        if want_public:
            assert server.interface_ip and server.public_v4 or server.public_v6
        else:
            assert server.public_v4 is None and server.private_v4.startswith("10.")
        assert server.id in {s.id for s in cloud.list_servers()}
    finally:
        sdk.compute.delete_server(raw)
        sdk.compute.wait_for_delete(raw, wait=60, interval=0.5)
        sdk.close()
    with pytest.raises(errors.NotFound, match=name):
        cloud.get_server(name)


# -- credentials and configuration --------------------------------------------------------
def test_wrong_password_is_an_auth_error(connect):
    with pytest.raises(errors.AuthError) as info:
        connect("fip-required", auth={"password": "not-the-password"}).list_images()
    assert "not-the-password" not in str(info.value)
    assert "clouds.yaml" in str(info.value) and "sandbox-fip-required" in str(info.value)


def test_unknown_region_names_what_to_fix(connect):
    with pytest.raises(errors.ConfigError, match="Atlantis is not a valid region"):
        connect("fip-required", region_name="Atlantis").list_flavors()


def test_unknown_cloud_lists_the_known_ones(openstack_sandbox):
    with pytest.raises(errors.ConfigError) as info:
        cloudnorm.connect("sandbox-nope", config_files=[str(openstack_sandbox.clouds_yaml)])
    assert "sandbox-fip-required" in str(info.value)


# -- create_server ----------------------------------------------------------------------------
@pytest.mark.parametrize("printed", [True, False], ids=["console-table", "no-table"])
def test_unknown_login_user_comes_from_the_console_or_a_probe(openstack_sandbox,
                                                              openstack_dataplane, printed):
    """An image nobody knows the user of: cloud-init's authorized keys table on the
    console names it; without the table (no_ssh_fingerprints) the probe finds it."""
    profile = "fip-required"
    sdk = openstack_sandbox.connect(profile)
    image = sdk.image.create_image(name=f"appliance-{printed}", data=b"\0" * 512,
                                   disk_format="raw", container_format="bare",
                                   visibility="private")
    openstack_dataplane.node_options["print_authorized_keys"] = printed
    cloud = cloudnorm.connect(f"sandbox-{profile}",
                              config_files=[str(openstack_sandbox.clouds_yaml)])
    try:
        server = cloud.create_server(f"cn-appliance-{printed}", image=image.id, min_ram=2048,
                                     timeout=240)
        try:
            assert server.ssh_user == "cloud-user"  # the data plane's user for such images
            why = {d.step: d for d in server.decisions}["login_user"].reason
            if printed:
                assert "console lists the node key" in why, why
            else:
                assert "probing" in why, why
        finally:
            assert cloud.delete_server(server)
    finally:
        openstack_dataplane.node_options.pop("print_authorized_keys", None)
        cloud.close()
        sdk.image.delete_image(image)
        sdk.close()


# -- what automation passes to create_server ----------------------------------------------------
def test_zone_and_extra_groups_reach_nova_and_ssh_stays_open(connect, openstack_sandbox):
    """The caller's group goes on next to cloudnorm's, and the zone is Nova's
    availability_zone, both read back with openstacksdk."""
    sdk = sdk_connection(openstack_sandbox, "fip-required")
    extra = sdk.network.create_security_group(name="cn-extra-web", description="test")
    cloud = connect("fip-required")
    server = None
    try:
        server = cloud.create_server("cn-zone-groups", wait=False, availability_zone="nova",
                                     security_groups=["cn-extra-web"])
        seen = sdk.compute.wait_for_server(sdk.compute.get_server(server.id), wait=120)
        assert seen.availability_zone == "nova"
        groups = {g["name"] for g in seen.security_groups or ()}
        assert "cn-extra-web" in groups
        assert any(g.startswith("cloudnorm-") for g in groups)  # SSH is still let in
    finally:
        if server is not None:
            cloud.delete_server(server.id)
        sdk.network.delete_security_group(extra)
        sdk.close()


def test_an_unknown_zone_is_the_clouds_refusal_typed_and_rolled_back(connect,
                                                                     openstack_sandbox):
    from cloudnorm.testing.openstack.leftovers import leftovers

    cloud = connect("fip-required")
    with pytest.raises(errors.CloudnormError, match="(?i)availability zone"):
        cloud.create_server("cn-no-zone", wait=False, availability_zone="no-such-zone")
    assert leftovers(openstack_sandbox, "fip-required", servers_named="cn-") == []

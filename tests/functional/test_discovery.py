"""Discovery on real OpenStack services, one project per quirk profile.

Expectations come from the profile files the sandbox is seeded from
(``cloudnorm/testing/profiles/*.yaml``, section ``expect:``), so the data that
shapes a cloud and what cloudnorm must conclude about it live side by side.
"""

from __future__ import annotations

import re
import time

import pytest

import cloudnorm
from cloudnorm import errors
from cloudnorm.testing import profile_data

pytestmark = pytest.mark.functional
PROFILES = profile_data.available()
FACT = re.compile(r"\d+\.\d+\.\d+\.\d+/\d+|[0-9a-f:]+::/\d+|router:external|routes_externally"
                  r"|no subnet|floating IPs")


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


@pytest.mark.parametrize("profile", PROFILES)
def test_image_choice_despite_naming_variance(connect, profile):
    expect = profile_data.load(profile)["expect"]["image"]
    cloud = connect(profile)
    image, decision = cloud.choose_image(expect["os"])
    assert image.name == expect["name"]
    assert image.os_distro == "ubuntu" and image.os_version == "22.04"
    assert image.status == "active" and not image.hidden and not image.is_snapshot
    assert decision.reason.startswith(f"'{expect['name']}' is the newest")
    # the same name can be carried by an older upload: the newest must win
    same_name = [i for i in cloud.list_images() if i.name == image.name]
    assert image.created == max(i.created for i in same_name if i.status == "active")


@pytest.mark.parametrize("profile", PROFILES)
def test_flavor_choice_despite_naming_variance(connect, profile):
    expect = profile_data.load(profile)["expect"]["flavor"]
    cloud = connect(profile)
    flavor = cloud.find_flavor(min_ram=expect["min_ram"])
    assert flavor.name == expect["name"]
    assert flavor.ram >= expect["min_ram"]
    smaller = [f for f in cloud.list_flavors() if expect["min_ram"] <= f.ram < flavor.ram]
    assert smaller == []


@pytest.mark.parametrize("profile", PROFILES)
def test_network_classification_with_reasons(connect, profile):
    expect = profile_data.load(profile)["expect"]
    cloud = connect(profile)
    nets = {n.name: n for n in cloud.list_networks()}
    if not cloud.has_network_service:
        # The client sees no network service: classification comes from server addresses.
        assert nets == {}
        assert cloud.default_network() is None
        return
    assert set(nets) == set(expect["networks"])
    for name, want in expect["networks"].items():
        net = nets[name]
        # a reason cites a fact the cloud or the configuration gave, never the name
        assert FACT.search(net.reason), net.reason
        assert net.public == want["public"], f"{name}: {net.reason}"
        # expect's "usable": a server of the project can have a port there
        assert net.attachable == want["usable"], f"{name}: {net.reason}"
        # expect's "external": the cloud marks it router:external
        says_external = net.external or "router:external" in net.reason
        assert says_external == want["external"], f"{name}: {net.reason}"
    assert cloud.default_network().name == expect["default_network"]
    if expect["floating_ip_network"]:
        pool, decision = cloud.floating_network()
        assert pool.name == expect["floating_ip_network"], decision.reason


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
    kwargs = {"networks": [{"uuid": net.id}] if net else "auto"}
    raw = sdk.compute.create_server(name=name, image_id=image.id, flavor_id=flavor.id, **kwargs)
    try:
        sdk.compute.wait_for_server(raw, status="ACTIVE", wait=60, interval=0.5)
        server = cloud.get_server(name)
        assert server.id == raw.id and server.status == "running"
        assert server.flavor == flavor.name and server.image == image.id
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


def test_discovery_twice_costs_no_request_and_a_write_invalidates(connect, openstack_sandbox):
    cloud = connect("fip-required")
    project = "sandbox-fip-required"
    cloud.list_images(), cloud.list_flavors(), cloud.list_networks(), cloud.list_keypairs()
    cloud.find_image("ubuntu-22.04"), cloud.find_flavor(min_ram=2048), cloud.default_network()
    mark = time.time()
    time.sleep(0.05)
    cloud.list_images(), cloud.list_flavors(), cloud.list_networks(), cloud.list_keypairs()
    cloud.find_image("ubuntu-22.04"), cloud.find_flavor(min_ram=2048), cloud.default_network()
    time.sleep(0.3)  # the request log is written by the services after they answer
    assert openstack_sandbox.requests(since=mark, project=project) == []

    # a write through cloudnorm retires what it changed, and only that
    from cloudnorm import keys

    key = keys.generate(f"disco-{int(mark)}")
    cloud.create_keypair(key.name, key.public_key)
    try:
        mark = time.time()
        time.sleep(0.05)
        assert key.name in {k.name for k in cloud.list_keypairs()}
        cloud.list_images()
        time.sleep(0.3)
        paths = [r["path"] for r in openstack_sandbox.requests(since=mark, project=project)]
        assert any("os-keypairs" in p for p in paths)
        assert not any("/images" in p for p in paths)
    finally:
        cloud.delete_keypair(key.name)
    # refresh() drops discovery: the next lookup asks the cloud again
    cloud.refresh("image")
    mark = time.time()
    time.sleep(0.05)
    cloud.list_images()
    time.sleep(0.3)
    assert any("/images" in r["path"]
               for r in openstack_sandbox.requests(since=mark, project=project))


def test_wrong_password_is_an_auth_error(connect):
    with pytest.raises(errors.AuthError) as info:
        connect("fip-required", auth={"password": "not-the-password"}).list_images()
    assert "not-the-password" not in str(info.value)
    assert "clouds.yaml" in str(info.value) and "sandbox-fip-required" in str(info.value)


def test_unreachable_auth_url_is_service_unavailable(connect):
    with pytest.raises(errors.ServiceUnavailable, match="127.0.0.1:9"):
        connect("fip-required", auth={"auth_url": "http://127.0.0.1:9/v3"}).list_flavors()


def test_unknown_region_names_what_to_fix(connect):
    with pytest.raises(errors.ConfigError, match="Atlantis is not a valid region"):
        connect("fip-required", region_name="Atlantis").list_flavors()


def test_unknown_cloud_lists_the_known_ones(openstack_sandbox):
    with pytest.raises(errors.ConfigError) as info:
        cloudnorm.connect("sandbox-nope", config_files=[str(openstack_sandbox.clouds_yaml)])
    assert "sandbox-fip-required" in str(info.value)

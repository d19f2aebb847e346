"""Discovery on every sandbox cloud: the decisions its data calls for, each with a reason,
and what it costs in requests.

Expectations live beside the data that shapes each cloud: the OpenStack profiles'
``expect:`` sections (``cloudnorm/testing/profiles/*.yaml``), and for the local EC2 and
Compute Engine, the accounts they are seeded with (sandbox_clouds.py).
"""

from __future__ import annotations

import pytest
from sandbox_clouds import clouds_with

from cloudnorm import errors, keys

pytestmark = [pytest.mark.functional,
              pytest.mark.filterwarnings("ignore:Support for InfluxDB")]


@pytest.mark.parametrize("sandbox_cloud", clouds_with("image"), indirect=True)
def test_image_choice_despite_naming_variance(sandbox_cloud):
    want = sandbox_cloud.expect["image"]
    cloud = sandbox_cloud.connect()
    image, decision = cloud.choose_image(want["os"])
    assert image.name == want["name"]
    distro, version = want["os"].split("-")
    assert image.os_distro == distro and image.os_version == version
    assert image.status == "active" and not image.hidden and not image.is_snapshot
    assert decision.reason.startswith(f"'{want['name']}' is the newest")
    # the same name can be carried by an older upload: the newest must win
    same_name = [i for i in cloud.list_images() if i.name == image.name]
    assert image.created == max(i.created for i in same_name if i.status == "active")
    for field in ("id", "architecture"):
        if field in want:
            assert getattr(image, field) == want[field]
    # where the image was found, as cloudnorm recorded it
    if "source" in want:
        assert image.raw["cloudnorm:source"] == want["source"]
    if "source_prefix" in want:
        assert image.raw["cloudnorm:source"].startswith(want["source_prefix"])


@pytest.mark.parametrize("sandbox_cloud", clouds_with("images"), indirect=True)
def test_other_images_and_their_login_users(sandbox_cloud):
    cloud = sandbox_cloud.connect()
    found = {}
    for want in sandbox_cloud.expect["images"]:
        image = found[want["os"]] = cloud.find_image(want["os"])
        if "same_as" in want:
            assert image.id == found[want["same_as"]].id
        for field in ("id", "name", "os_distro", "os_version"):
            if field in want:
                assert getattr(image, field) == want[field], (want["os"], field)
        if "name_endswith" in want:
            assert image.name.endswith(want["name_endswith"])
        if "login_user" in want:
            assert cloud.login_user(image)[0] == want["login_user"]


@pytest.mark.parametrize("sandbox_cloud", clouds_with("flavor"), indirect=True)
def test_flavor_choice_despite_naming_variance(sandbox_cloud):
    want = sandbox_cloud.expect["flavor"]
    cloud = sandbox_cloud.connect()
    flavor, decision = cloud.choose_flavor(min_ram=want["min_ram"])
    assert flavor.name == want["name"]
    assert flavor.name in decision.reason
    assert flavor.ram >= want["min_ram"]
    passed_over = want.get("zero_disk_passed_over", [])
    smaller = [f for f in cloud.list_flavors() if want["min_ram"] <= f.ram < flavor.ram
               and f.name not in passed_over]
    assert smaller == []
    for name in passed_over:  # a cloud without block storage cannot boot them
        assert name in decision.reason and "no block storage" in decision.reason, decision
    if "ram" in want:
        assert (flavor.ram, flavor.vcpus) == (want["ram"], want["vcpus"])
    for ask, name in want.get("fits", ()):
        assert cloud.find_flavor(**ask).name == name, ask
    by_name = {f.name: f for f in cloud.list_flavors()}
    for name in want.get("absent", ()):
        assert name not in by_name
    for name in want.get("disabled", ()):
        assert by_name[name].disabled
    for name, why in want.get("passed_over", {}).items():
        assert by_name[name].disabled
        assert why in by_name[name].raw["cloudnorm:passed_over"]


@pytest.mark.parametrize("sandbox_cloud", clouds_with("networks"), indirect=True)
def test_network_classification_with_reasons(sandbox_cloud):
    expect = sandbox_cloud.expect
    cloud = sandbox_cloud.connect()
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
        assert sandbox_cloud.fact.search(net.reason), net.reason
        assert net.public == want["public"], f"{name}: {net.reason}"
        if "usable" in want:
            # expect's "usable": a server of the project can have a port there
            assert net.attachable == want["usable"], f"{name}: {net.reason}"
        if "external" in want:
            # expect's "external": the cloud marks it router:external
            says_external = net.external or "router:external" in net.reason
            assert says_external == want["external"], f"{name}: {net.reason}"
        for text in want.get("reason", ()):
            assert text in net.reason, f"{name}: {net.reason}"
        if "reason_is" in want:
            assert net.reason == want["reason_is"]
        if "subnets" in want:
            assert net.subnets == want["subnets"]
    assert cloud.default_network().name == expect["default_network"]
    for text in expect.get("choose_network_reason", ()):
        assert text in cloud.choose_network().reason
    if expect.get("floating_ip_network"):
        pool, decision = cloud.floating_network()
        assert pool.name == expect["floating_ip_network"], decision.reason


@pytest.mark.parametrize("sandbox_cloud", clouds_with("discovery"), indirect=True)
def test_discovery_twice_costs_no_request_and_refresh_asks_again(sandbox_cloud):
    want = sandbox_cloud.expect["discovery"]
    cloud = sandbox_cloud.connect()
    mark = sandbox_cloud.mark()
    cloud.list_images(), cloud.list_flavors(), cloud.list_networks()
    first = sandbox_cloud.requests(since=mark)
    if "first" in want:
        assert first == want["first"]
    else:
        assert first  # the cloud was asked
    cloud.list_keypairs()
    asked = sandbox_cloud.requests(since=mark)
    cloud.find_image("ubuntu-22.04"), cloud.find_flavor(min_ram=2048), cloud.choose_network()
    cloud.default_network()
    assert sandbox_cloud.requests(since=mark) == asked  # the lookups come from the cache

    mark = sandbox_cloud.mark()
    cloud.list_images(), cloud.list_flavors(), cloud.list_networks(), cloud.list_keypairs()
    cloud.find_image("ubuntu-22.04"), cloud.find_flavor(min_ram=2048), cloud.default_network()
    assert sandbox_cloud.requests(since=mark) == []  # all from the cache

    # refresh() drops discovery: the next lookup asks the cloud again
    cloud.refresh("image")
    mark = sandbox_cloud.mark()
    cloud.list_images()
    assert any(want["image_request"] in r for r in sandbox_cloud.requests(since=mark))


@pytest.mark.parametrize("sandbox_cloud", clouds_with("discovery", "keypair_request"),
                         indirect=True)
def test_a_write_retires_what_it_changed_and_only_that(sandbox_cloud):
    """Clouds that keep key pairs themselves: a write through cloudnorm makes the next
    key pair listing ask again, and leaves the cached images alone."""
    want = {**sandbox_cloud.expect["discovery"],
            "keypair_request": sandbox_cloud.expect["keypair_request"]}
    cloud = sandbox_cloud.connect()
    cloud.list_images(), cloud.list_keypairs()
    key = keys.generate("cn-disco")
    cloud.create_keypair(key.name, key.public_key)
    try:
        mark = sandbox_cloud.mark()
        assert key.name in {k.name for k in cloud.list_keypairs()}
        cloud.list_images()
        sent = sandbox_cloud.requests(since=mark)
        assert any(want["keypair_request"] in r for r in sent), sent
        assert not any(want["image_request"] in r for r in sent), sent
    finally:
        cloud.delete_keypair(key.name)
    assert key.name not in {k.name for k in cloud.list_keypairs()}


@pytest.mark.parametrize("sandbox_cloud", clouds_with("unreachable"), indirect=True)
def test_unreachable_endpoint_is_service_unavailable(sandbox_cloud):
    want = sandbox_cloud.expect["unreachable"]
    cloud = sandbox_cloud.connect(**want["overrides"])
    with pytest.raises(errors.ServiceUnavailable, match=want["match"]):
        cloud.list_flavors()

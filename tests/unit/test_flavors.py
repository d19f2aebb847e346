"""Choosing the smallest flavor that fits, whatever the cloud calls its sizes."""

from __future__ import annotations

import itertools

import pytest

from cloudnorm import errors, flavors
from cloudnorm.drivers.openstack.normalize import normalize_flavor
from cloudnorm.flavors import choose_flavor
from cloudnorm.models import Flavor


def flavor(name: str, ram: int, vcpus: int, disk: int = 0, **extra) -> Flavor:
    return Flavor(id=f"f-{name}", name=name, ram=ram, vcpus=vcpus, disk=disk, **extra)


MENU = [
    flavor("m1.tiny", 512, 1, 1),
    flavor("m1.small", 2048, 1, 20),
    flavor("2GB Standard Instance", 2048, 1, 40),
    flavor("v3-standard-2", 4096, 2, 0),
    flavor("ssd.2c4g", 4096, 2, 40),
    flavor("m1.large", 8192, 4, 80),
    flavor("gpu.huge", 65536, 16, 200, disabled=True),
]


@pytest.mark.parametrize("asks, expected", [
    ({}, "m1.tiny"),
    ({"min_ram": 1024}, "m1.small"),                    # same RAM/CPU, less disk than 2GB
    ({"min_ram": 2048, "min_disk": 30}, "2GB Standard Instance"),
    ({"min_vcpus": 2}, "v3-standard-2"),                # disk 0: a volume holds the root
    ({"min_ram": 4096, "min_disk": 10}, "v3-standard-2"),  # the volume is sized to the ask
    ({"min_ram": 4096, "min_disk": 10, "root": "local"}, "ssd.2c4g"),  # no volume possible
    ({"min_vcpus": 2, "root": "local"}, "ssd.2c4g"),
    ({"min_ram": 2048, "min_disk": 500, "root": "volume"}, "m1.small"),  # disk is moot
    ({"min_ram": 3000, "min_vcpus": 3}, "m1.large"),
])
def test_smallest_flavor_that_fits(asks, expected):
    chosen, decision = choose_flavor(MENU, **asks)
    assert chosen.name == expected
    assert decision.step == "flavor" and decision.choice == expected
    assert f"'{expected}' ({chosen.ram} MiB, {chosen.vcpus} vCPUs" in decision.reason


def test_zero_disk_flavors_boot_from_a_volume_or_are_passed_over_with_the_reason():
    # Nova refuses a server of a disk-0 flavor unless it boots from a volume (policy
    # os_compute_api:servers:create:zero_disk_flavor, admin-only by default: "Only
    # volume-backed servers are allowed for flavors with zero disk.").
    _, decision = choose_flavor(MENU, min_vcpus=2)
    assert decision.reason.endswith("its disk is 0, so the server boots from a volume")
    _, decision = choose_flavor(MENU, min_vcpus=2, root="local",
                                no_volume="the cloud has no block storage")
    assert ("passed over 1 flavor(s) with disk 0 (v3-standard-2): they boot only from a "
            "volume, and the cloud has no block storage") in decision.reason
    with pytest.raises(errors.NotFound, match="passed over 1 flavor"):
        choose_flavor([flavor("zero", 4096, 2, 0)], root="local")


def test_reason_names_the_asks():
    _, decision = choose_flavor(MENU, min_ram=4096, min_disk=10)
    assert "ram >= 4096" in decision.reason and "disk >= 10" in decision.reason


TIES = [flavor("m1.small", 2048, 1, 20), flavor("2GB Standard Instance", 2048, 1, 20),
        flavor("v3-standard-1", 2048, 1, 20)]


@pytest.mark.parametrize("order", list(itertools.permutations(TIES)))
def test_ties_are_broken_by_name_whatever_the_order(order):
    chosen, decision = choose_flavor(list(order), min_ram=2048)
    assert chosen.name == "2GB Standard Instance"
    assert "same size as m1.small, v3-standard-1, first by name" in decision.reason


def test_ties_with_the_same_name_are_broken_by_id():
    a = Flavor(id="b-2", name="m1.small", ram=2048, vcpus=1, disk=20)
    b = Flavor(id="a-1", name="m1.small", ram=2048, vcpus=1, disk=20)
    assert choose_flavor([a, b])[0].id == "a-1"
    assert choose_flavor([b, a])[0].id == "a-1"


def test_disabled_flavor_is_never_chosen():
    with pytest.raises(errors.NotFound):
        choose_flavor(MENU, min_ram=32768)


def test_nothing_fits_names_the_largest():
    with pytest.raises(errors.NotFound) as info:
        choose_flavor(MENU[:6], min_ram=16384, min_vcpus=8)
    text = str(info.value)
    assert "ram >= 16384" in text and "vcpus >= 8" in text
    assert "the largest is 'm1.large' (8192 MiB, 4 vCPUs, 80 GiB)" in text


def test_empty_flavor_list():
    with pytest.raises(errors.NotFound, match="lists no flavors"):
        choose_flavor([], min_ram=512)


def test_nova_flavor_record_is_normalized():
    f = normalize_flavor({"id": 42, "name": "ssd.2c4g", "ram": 4096, "vcpus": 2, "disk": 40,
                          "os-flavor-access:is_public": False,
                          "OS-FLV-DISABLED:disabled": True, "swap": ""})
    assert (f.id, f.name, f.ram, f.vcpus, f.disk) == ("42", "ssd.2c4g", 4096, 2, 40)
    assert f.is_public is False and f.disabled is True


@pytest.mark.parametrize("root_is_volume, block_storage, asked, mode", [
    (True, False, None, "volume"),      # EBS, GCE persistent disks
    (False, True, True, "volume"),      # boot from volume asked for
    (False, True, None, "either"),      # disk-0 flavors boot from a volume
    (False, True, False, "local"),
    (False, False, None, "local"),      # no volume service in the catalog
])
def test_root_mode(root_is_volume, block_storage, asked, mode):
    found, why = flavors.root_mode(root_is_volume=root_is_volume, block_storage=block_storage,
                                   boot_from_volume=asked)
    assert found == mode
    assert bool(why) is (mode == "local")

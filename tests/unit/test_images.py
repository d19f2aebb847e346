"""Reading an image's OS from its properties or name, and choosing an image for an OS ask."""

from __future__ import annotations

import random

import pytest

from cloudnorm import errors
from cloudnorm.images import OSAsk, choose_image, describe_image, parse_os, version_matches

from .conftest import image

JAMMY_NAMES = [
    ("Ubuntu 22.04 LTS (Jammy Jellyfish)", {}),
    ("ubuntu-22.04-x86_64", {}),
    ("Ubuntu-Jammy-22.04-amd64-20240301", {}),
    ("jammy-server-cloudimg-amd64", {"os_distro": "ubuntu", "os_version": "22.04"}),
    ("jammy-server-cloudimg-amd64", {}),
    ("Ubuntu Server 22.04.4", {}),
    ("my-golden-image", {"os_distro": "Ubuntu", "os_version": "22.04",
                         "architecture": "x86_64"}),
]


# -- reading names and properties -------------------------------------------------------------
@pytest.mark.parametrize("name, props", JAMMY_NAMES)
def test_jammy_naming_variants_are_ubuntu_22_04(name, props):
    distro, version, _ = describe_image("id", name, props)
    assert distro == "ubuntu"
    assert version_matches("22.04", version)


@pytest.mark.parametrize("name, expected", [
    ("ubuntu-22.04-x86_64", ("ubuntu", "22.04", "x86_64")),
    ("Ubuntu-Jammy-22.04-amd64-20240301", ("ubuntu", "22.04", "x86_64")),
    ("Ubuntu 24.04 (Noble Numbat) aarch64", ("ubuntu", "24.04", "aarch64")),
    ("Debian 12 (bookworm)", ("debian", "12", None)),
    ("debian-12-genericcloud-arm64-20240211-1654", ("debian", "12", "aarch64")),
    ("CentOS-Stream-9-20240304.0.x86_64", ("centos-stream", "9", "x86_64")),
    ("Rocky-9.3-x86_64", ("rocky", "9.3", "x86_64")),
    ("AlmaLinux 9", ("almalinux", "9", None)),
    ("Red Hat Enterprise Linux 9.3", ("rhel", "9.3", None)),
    ("cirros-0.6.2-x86_64-disk", ("cirros", "0.6.2", "x86_64")),
    ("openSUSE-Leap-15.5", ("opensuse", "15.5", None)),
    ("Windows Server 2022", (None, None, None)),
])
def test_describe_image_from_name(name, expected):
    assert describe_image("id", name, {}) == expected


def test_fedora_coreos_is_not_plain_fedora():
    """distros.yaml lists fedora-coreos as an alias of flatcar (login user core); a Fedora
    CoreOS image must not be read as Fedora (login user fedora)."""
    distro, _, _ = describe_image(
        "id", "fedora-coreos-39.20240210.3.0-openstack.x86_64", {})
    assert distro == "flatcar"


def test_properties_win_over_name():
    assert describe_image("id", "ubuntu-20.04-x86_64", {
        "os_distro": "debian", "os_version": "12", "architecture": "arm64"}) == (
        "debian", "12", "aarch64")


def test_property_alias_is_mapped_to_distribution():
    assert describe_image("id", "golden", {"os_distro": "rockylinux"})[0] == "rocky"
    assert describe_image("id", "golden", {"os_distro": "Amzn2"})[0] == "amazon"


def test_hw_architecture_property_is_read():
    assert describe_image("id", "x", {"hw_architecture": "AMD64"})[2] == "x86_64"


# -- OS asks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("ubuntu-22.04", OSAsk("ubuntu", "22.04")),
    ("ubuntu 22.04", OSAsk("ubuntu", "22.04")),
    ("Ubuntu-Jammy", OSAsk("ubuntu", "22.04")),
    ("debian-12", OSAsk("debian", "12")),
    ("debian bookworm", OSAsk("debian", "12")),
    ("fedora", OSAsk("fedora", None)),
    ("rhel-9", OSAsk("rhel", "9")),
])
def test_parse_os(text, expected):
    assert parse_os(text) == expected


def test_parse_os_unknown_lists_known_distributions():
    with pytest.raises(errors.NotFound) as info:
        parse_os("windows-2022")
    assert "'windows-2022'" in str(info.value)
    assert "ubuntu" in str(info.value) and "debian" in str(info.value)


@pytest.mark.parametrize("want, have, ok", [
    ("22.04", "22.04", True), ("22", "22.04", True), ("22.04", "22.04.4", True),
    ("22.04", "22.10", False), ("22.04", None, False), (None, None, True),
    ("9", "9.3", True), ("9", "8.9", False), ("2", "22.04", False),
])
def test_version_matches(want, have, ok):
    assert version_matches(want, have) is ok


# -- choosing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, props", JAMMY_NAMES)
def test_each_naming_variant_is_chosen_among_distractors(name, props):
    target = image(name, id="target", created_at="2024-03-01T00:00:00Z", **props)
    distractors = [
        image("Ubuntu 20.04 LTS (Focal Fossa)", created_at="2024-05-01T00:00:00Z"),
        image("Ubuntu 24.04 LTS (Noble Numbat)", created_at="2024-05-01T00:00:00Z"),
        image("Debian 12 (bookworm)", created_at="2024-05-01T00:00:00Z"),
        image("ubuntu-22.04-arm64", created_at="2024-05-01T00:00:00Z"),
    ]
    chosen, decision = choose_image(distractors + [target], "ubuntu-22.04")
    assert chosen.id == "target"
    assert decision.step == "image" and decision.choice == name


PASSED_OVER = [
    ("ubuntu-22.04-x86_64 (hidden)", {"os_hidden": True}, "hidden"),
    ("ubuntu-22.04-x86_64 snapshot", {"image_type": "snapshot", "visibility": "private"},
     "a snapshot"),
    ("ubuntu-22.04 server backup", {"instance_uuid": "0b2c7d6e"}, "a snapshot"),
    ("ubuntu-22.04-aarch64", {}, "aarch64"),
    ("ubuntu-22.04-x86_64-old", {"status": "deactivated"}, "status deactivated"),
    ("ubuntu-22.04-x86_64-uploading", {"status": "queued"}, "status queued"),
]


@pytest.mark.parametrize("name, fields, why", PASSED_OVER)
def test_unusable_images_are_passed_over_even_when_newer(name, fields, why):
    good = image("Ubuntu-Jammy-22.04-amd64-20240101", created_at="2024-01-01T00:00:00Z")
    bad = image(name, created_at="2024-06-01T00:00:00Z", **fields)
    chosen, decision = choose_image([bad, good], "ubuntu-22.04")
    assert chosen.name == good.name
    assert f"passed over '{name}' ({why})" in decision.reason


def test_only_unusable_images_raise_not_found_listing_them():
    bad = [image(name, **fields) for name, fields, _ in PASSED_OVER]
    with pytest.raises(errors.NotFound) as info:
        choose_image(bad + [image("Debian 12 (bookworm)")], "ubuntu-22.04")
    text = str(info.value)
    assert "no usable ubuntu 22.04 image" in text
    for name, _, why in PASSED_OVER:
        assert f"'{name}' ({why})" in text
    assert "debian-12" in text


def test_aarch64_is_chosen_when_asked():
    arm = image("ubuntu-22.04-aarch64")
    x86 = image("ubuntu-22.04-x86_64")
    chosen, decision = choose_image([x86, arm], "ubuntu-22.04", architecture="aarch64")
    assert chosen is arm
    assert "aarch64 image" in decision.reason and "'ubuntu-22.04-x86_64' (x86_64)" in \
        decision.reason


def test_newest_created_wins():
    images = [image("ubuntu-22.04-x86_64 a", id="a", created_at="2024-01-01T00:00:00Z"),
              image("ubuntu-22.04-x86_64 b", id="b", created_at="2024-03-01T00:00:00Z"),
              image("ubuntu-22.04-x86_64 c", id="c", created_at="2024-02-01T00:00:00Z")]
    chosen, decision = choose_image(images, "ubuntu-22.04")
    assert chosen.id == "b"
    assert "among 3 candidate(s)" in decision.reason


def test_build_date_in_name_breaks_equal_timestamps():
    same = "2024-01-01T00:00:00Z"
    images = [image("Ubuntu-Jammy-22.04-amd64-20240301", created_at=same),
              image("Ubuntu-Jammy-22.04-amd64-20231115", created_at=same),
              image("Ubuntu-Jammy-22.04-amd64-20240115", created_at=same)]
    assert choose_image(images, "ubuntu-22.04")[0].name == "Ubuntu-Jammy-22.04-amd64-20240301"


def test_public_image_preferred_over_newer_private_one():
    public = image("ubuntu-22.04-x86_64", created_at="2024-01-01T00:00:00Z")
    private = image("ubuntu-22.04-x86_64-mine", visibility="private",
                    created_at="2024-06-01T00:00:00Z")
    assert choose_image([private, public], "ubuntu-22.04")[0] is public


def test_without_version_the_highest_version_wins():
    images = [image("Ubuntu 20.04 LTS", created_at="2024-06-01T00:00:00Z"),
              image("Ubuntu 24.04 LTS", created_at="2024-01-01T00:00:00Z"),
              image("Ubuntu 22.04 LTS", created_at="2024-06-01T00:00:00Z")]
    assert choose_image(images, "ubuntu")[0].name == "Ubuntu 24.04 LTS"


def test_choice_is_independent_of_listing_order():
    same = "2024-01-01T00:00:00Z"
    images = [image("ubuntu-22.04-x86_64", id=f"id-{i}", created_at=same) for i in range(6)]
    winners = set()
    for seed in range(5):
        shuffled = list(images)
        random.Random(seed).shuffle(shuffled)
        winners.add(choose_image(shuffled, "ubuntu-22.04")[0].id)
    assert winners == {"id-5"}


def test_choose_image_accepts_a_parsed_ask():
    assert choose_image([image("Debian 12 (bookworm)")], OSAsk("debian", "12"))[0].os_version \
        == "12"


# -- distributions with documented login users (tests/unit/corpus/login_users) -------------------
# Names as clouds and vendors publish them; the source of each is next to it.
VENDOR_NAMES = [
    # SUSE's AMIs (getmoto/moto moto/ec2/resources/amis.json; hashicorp/vault
    # enos/modules/ec2_info/main.tf filters suse-sles-15-sp7-v*-hvm-*): "15 SP3" is 15.3.
    ("suse-sles-12-sp3-v20170907-hvm-ssd-x86_64", ("sles", "12.3", "x86_64")),
    # openSUSE Minimal-VM Cloud images (kubevirt/containerdisks artifacts/opensuse/*/testdata):
    # Leap 16 drops the "openSUSE" prefix; Tumbleweed is rolling and has no number.
    ("openSUSE-Leap-15.6-Minimal-VM.x86_64-Cloud.qcow2", ("opensuse", "15.6", "x86_64")),
    ("Leap-16.0-Minimal-VM.x86_64-Cloud.qcow2", ("opensuse", "16.0", "x86_64")),
    ("openSUSE-Tumbleweed-Minimal-VM.x86_64-1.0.0-Cloud-Snapshot20240629.qcow2",
     ("opensuse", "tumbleweed", "x86_64")),
    # CentOS (kubevirt/containerdisks artifacts/centos*/testdata; CSC Pouta images.md;
    # kitchen-ec2 centos_spec.rb for the AMI names).
    ("CentOS-7-x86_64-GenericCloud-1811.qcow2", ("centos", "7", "x86_64")),
    ("CentOS Linux 7.9 x86_64", ("centos", "7.9", "x86_64")),
    ("CentOS-Stream-GenericCloud-8-20210603.0.x86_64.qcow2", ("centos-stream", "8", "x86_64")),
    ("CentOS-Stream-GenericCloud-x86_64-10-20241118.0.x86_64.qcow2",
     ("centos-stream", "10", "x86_64")),
    ("CentOS Stream 9 x86_64 20240701", ("centos-stream", "9", "x86_64")),
    ("CentOS-9-Stream", ("centos-stream", "9", None)),
    # Arch's official image (geo.mirror.pkgbuild.com/images/latest/): rolling, no version.
    ("Arch-Linux-x86_64-cloudimg.qcow2", ("arch", None, "x86_64")),
    ("Arch-Linux-x86_64-cloudimg-20240301.218094.qcow2", ("arch", None, "x86_64")),
    # Oracle's AMIs (owner 131827586825) glue the release to "OL"; its KVM images add an
    # update number ("OL9U4" is 9.4); OCI's own images spell the name out.
    ("OL8.5-x86_64-HVM-2021-11-24", ("oracle", "8.5", "x86_64")),
    ("OL9U4_x86_64-kvm-b234.qcow2", ("oracle", "9.4", "x86_64")),
    ("Oracle-Linux-8.9-2024.01.26-0", ("oracle", "8.9", None)),
    # FreeBSD's AMIs (kitchen-ec2 freebsd_spec.rb).
    ("FreeBSD 14.1-RELEASE-amd64", ("freebsd", "14.1", "x86_64")),
    # AlmaLinux's AMIs (kitchen-ec2 alma_spec.rb).
    ("AlmaLinux OS 9.4.20240805 x86_64", ("almalinux", "9.4", "x86_64")),
    # Amazon Linux: the release is in the family prefix, not in the build numbers (the
    # sandbox's aws_data/images.yaml; vault's ec2_info filters "amzn2-ami-ecs-hvm-2.0*").
    ("al2023-ami-2023.4.20240401.1-kernel-6.1-x86_64", ("amazon", "2023", "x86_64")),
]


@pytest.mark.parametrize("name, expected", VENDOR_NAMES)
def test_vendor_image_names(name, expected):
    assert describe_image("id", name, {}) == expected


@pytest.mark.parametrize("name", [
    # Bitnami stacks name the distribution under them (WillDutcher/udemy_lauromuller_
    # terraform_course 11-multiple-resources/data.tf; the older "-linux-debian-12-x86_64-hvm-
    # ebs-nami" form): the stack decides the login user, so the stack is what is recognized.
    "bitnami-nginx-1.29.0-r02-debian-12-amd64-f5774628-e459-457a-b058-3b513caefdee",
    "bitnami-wordpress-6.5.4-2-r02-linux-debian-12-x86_64-hvm-ebs-nami",
])
def test_bitnami_stack_is_recognized_over_its_base_distribution(name):
    assert describe_image("id", name, {})[0] == "bitnami"


def test_a_product_named_later_in_the_name_does_not_win():
    # "Oracle Database on Ubuntu" is Ubuntu: only "Oracle Linux"/"OL" name Oracle Linux.
    assert describe_image("id", "Oracle Database 19c on Ubuntu 22.04", {})[0] == "ubuntu"


def test_stream_in_the_name_refines_os_distro_centos():
    """Glance's os_distro has no value for CentOS Stream: such images say "centos" and the
    name tells them apart (the sandbox's no-neutron catalogue: "CentOS Stream 9 (PVHVM)"
    with org.openstack__1__os_distro=org.centos)."""
    assert describe_image("id", "CentOS Stream 9 (PVHVM)", {
        "org.openstack__1__os_distro": "org.centos", "org.openstack__1__os_version": "9"}) == (
        "centos-stream", "9", None)
    # A name that says nothing more keeps the property.
    assert describe_image("id", "golden", {"os_distro": "centos", "os_version": "9"})[:2] == (
        "centos", "9")
    # A property naming another distribution is not refined by the name.
    assert describe_image("id", "CentOS Stream 9", {"os_distro": "rocky"})[0] == "rocky"


@pytest.mark.parametrize("text, expected", [
    ("centos-stream-9", OSAsk("centos-stream", "9")),
    ("centos-7", OSAsk("centos", "7")),
    ("sles-15-sp5", OSAsk("sles", "15.5")),
    ("opensuse-leap-15.6", OSAsk("opensuse", "15.6")),
    ("opensuse-tumbleweed", OSAsk("opensuse", "tumbleweed")),
    ("arch", OSAsk("arch", None)),
    ("freebsd-14", OSAsk("freebsd", "14")),
    ("oracle-linux-9", OSAsk("oracle", "9")),
    ("ol8", OSAsk("oracle", "8")),
])
def test_parse_os_for_the_new_distributions(text, expected):
    assert parse_os(text) == expected


def test_centos_ask_accepts_a_centos_stream_image():
    """CentOS 9 exists only as Stream: "centos-9" finds it, "centos-7" does not."""
    stream = image("CentOS-Stream-GenericCloud-9-20211222.0.x86_64.qcow2")
    linux = image("CentOS-7-x86_64-GenericCloud-2009.qcow2")
    assert choose_image([stream, linux], "centos-9")[0] is stream
    assert choose_image([stream, linux], "centos-7")[0] is linux
    assert choose_image([stream, linux], "centos-stream")[0] is stream
    with pytest.raises(errors.NotFound):
        choose_image([linux], "centos-stream-9")

"""The sandbox's block storage: a real Cinder (API, scheduler, volume service) behind the
catalog, used by Nova through its attachment API, seen through openstacksdk directly.

Most checks run on the boot-from-volume profile, whose flavors all have a 0 GiB disk.
"""

from __future__ import annotations

import time
import uuid

import pytest

from cloudnorm.models import OWNER_KEY

openstack = pytest.importorskip("openstack")

pytestmark = [pytest.mark.functional,
              pytest.mark.filterwarnings("ignore:Support for InfluxDB")]

PROFILE = "boot-from-volume"
WITHOUT_BLOCK_STORAGE = "direct-public"
TIMEOUT = 60
ZERO_DISK_REFUSAL = "Only volume-backed servers are allowed for flavors with zero disk."


@pytest.fixture(scope="module")
def sandbox(openstack_sandbox):
    if PROFILE not in openstack_sandbox.profile_names:
        pytest.skip(f"the running sandbox has no profile {PROFILE}")
    return openstack_sandbox


@pytest.fixture(scope="module")
def conn(sandbox):
    connection = sandbox.connect(PROFILE)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def expect(sandbox):
    return sandbox.profile(PROFILE)["expect"]


@pytest.fixture
def cleanup(conn):
    """Servers and volumes a test made, removed after it even when it fails."""
    made: dict[str, list] = {"servers": [], "volumes": []}
    yield made
    for server in made["servers"]:
        conn.compute.delete_server(server, ignore_missing=True)
        conn.compute.wait_for_delete(server, wait=TIMEOUT, interval=0.2)
    for volume in made["volumes"]:
        current = _volume_or_none(conn, volume.id)
        if current is None:
            continue
        if current.status in ("in-use", "detaching"):
            # Its server is gone (deleted above); Nova detaches it shortly after.
            current = conn.block_storage.wait_for_status(current, "available", wait=TIMEOUT,
                                                         interval=0.2)
        conn.block_storage.delete_volume(current, ignore_missing=True)
        conn.block_storage.wait_for_delete(current, wait=TIMEOUT, interval=0.2)


def _volume_or_none(conn, volume_id):
    try:
        return conn.block_storage.get_volume(volume_id)
    except openstack.exceptions.NotFoundException:
        return None


def _statuses(conn, volume_id, until, seconds=TIMEOUT):
    """Every status the volume shows while polling, until it shows ``until``."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = conn.block_storage.get_volume(volume_id).status
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in (until, "error", "error_attaching"):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"volume {volume_id} never became {until}: {seen}")


def _in_order(seen, order):
    """``seen`` is ``order`` with some steps missed (polling can miss a short one)."""
    positions = [order.index(status) for status in seen]
    return positions == sorted(positions) and seen[-1] == order[-1]


def _boot_from_volume(conn, expect, name, delete_on_termination=True, volume_size=8):
    return conn.compute.create_server(
        name=name, flavor_id=expect["flavor"]["id"],
        networks=[{"uuid": expect["default_network_id"]}],
        block_device_mapping=[{
            "boot_index": 0, "uuid": expect["image"]["id"], "source_type": "image",
            "destination_type": "volume", "volume_size": volume_size,
            "delete_on_termination": delete_on_termination}])


def test_catalog_lists_block_storage_as_profiles_say(sandbox):
    for name in sandbox.profile_names:
        conn = sandbox.connect(name)
        try:
            want = sandbox.profile(name)["block_storage"]
            assert conn.has_service("block-storage") is want, name
            catalog = conn.session.auth.get_access(conn.session).service_catalog
            types = {service["type"] for service in catalog.catalog}
            # under the official type and the older one many clients still look for
            if want:
                assert {"block-storage", "volumev3"} <= types, (name, types)
            else:
                assert not {"block-storage", "volumev3"} & types, (name, types)
            # endpoint filtering hides one service, not the others
            assert {"identity", "compute", "image"} <= types, (name, types)
        finally:
            conn.close()
    assert sandbox.profile(PROFILE)["block_storage"] is True
    if WITHOUT_BLOCK_STORAGE in sandbox.profile_names:
        assert sandbox.profile(WITHOUT_BLOCK_STORAGE)["block_storage"] is False


def test_volume_is_created_and_deleted(conn, cleanup):
    volume = conn.block_storage.create_volume(size=1, name=f"sandbox-test-{uuid.uuid4().hex[:8]}")
    cleanup["volumes"].append(volume)

    assert _in_order(_statuses(conn, volume.id, "available"), ["creating", "available"])
    listed = {v.id: v for v in conn.block_storage.volumes()}
    assert listed[volume.id].size == 1 and listed[volume.id].attachments == []

    conn.block_storage.delete_volume(volume)
    conn.block_storage.wait_for_delete(volume, wait=TIMEOUT, interval=0.2)
    assert _volume_or_none(conn, volume.id) is None


def test_seeded_quotas_are_the_profiles(sandbox, conn):
    project_id = sandbox.profile(PROFILE)["project_id"]
    quota = conn.block_storage.get(f"/os-quota-sets/{project_id}")
    assert quota.status_code == 200, quota.text
    assert {name: quota.json()["quota_set"][name]
            for name in ("volumes", "gigabytes", "snapshots")} == {
        "volumes": 10, "gigabytes": 200, "snapshots": 10}


def test_volume_past_a_quota_is_refused_with_413(sandbox, conn, cleanup):
    from cloudnorm.testing.openstack.quotas import volume_quotas

    project = sandbox.profile(PROFILE)["project_name"]
    project_id = sandbox.profile(PROFILE)["project_id"]
    with volume_quotas(sandbox, project, volumes=1, gigabytes=3):
        first = conn.block_storage.create_volume(size=1)
        cleanup["volumes"].append(first)
        conn.block_storage.wait_for_status(first, "available", wait=TIMEOUT, interval=0.2)

        too_many = conn.block_storage.post("/volumes", json={"volume": {"size": 1}})
        assert too_many.status_code == 413, too_many.text
        assert "VolumeLimitExceeded" in too_many.json()["overLimit"]["message"]

        conn.block_storage.delete_volume(first)
        conn.block_storage.wait_for_delete(first, wait=TIMEOUT, interval=0.2)
        too_large = conn.block_storage.post("/volumes", json={"volume": {"size": 4}})
        assert too_large.status_code == 413, too_large.text
        assert "gigabytes quota" in too_large.json()["overLimit"]["message"]
    # the block's limits are undone
    quota = conn.block_storage.get(f"/os-quota-sets/{project_id}").json()["quota_set"]
    assert (quota["volumes"], quota["gigabytes"]) == (10, 200)


def test_zero_disk_flavor_refuses_a_server_booted_from_an_image(conn, expect):
    reply = conn.compute.post("/servers", json={"server": {
        "name": "sandbox-test-image-boot", "imageRef": expect["image"]["id"],
        "flavorRef": expect["flavor"]["id"], "networks": [{"uuid": expect["default_network_id"]}],
    }})

    assert reply.status_code == 403, reply.text
    assert reply.json()["forbidden"]["message"] == ZERO_DISK_REFUSAL
    assert not list(conn.compute.servers(name="sandbox-test-image-boot"))


def test_root_volume_smaller_than_the_images_min_disk_is_refused(conn, expect):
    assert expect["root_volume_gb"] == 8  # the profile's images ask for 8 GiB
    reply = conn.compute.post("/servers", json={"server": {
        "name": "sandbox-test-small-root", "flavorRef": expect["flavor"]["id"],
        "networks": [{"uuid": expect["default_network_id"]}],
        "block_device_mapping_v2": [{
            "boot_index": 0, "uuid": expect["image"]["id"], "source_type": "image",
            "destination_type": "volume", "volume_size": 7, "delete_on_termination": True}],
    }})

    assert reply.status_code == 400, reply.text
    assert "smaller than the minimum size specified in image" in reply.text


def test_boot_from_volume_attach_a_volume_and_delete(conn, expect, cleanup):
    server = _boot_from_volume(conn, expect, "sandbox-test-bfv")
    cleanup["servers"].append(server)
    server = conn.compute.wait_for_server(server, status="ACTIVE", wait=TIMEOUT, interval=0.2)

    # Nova made the root volume from the image, through Cinder, and attached it.
    (root_id,) = [a.volume_id for a in conn.compute.volume_attachments(server)]
    root = conn.block_storage.get_volume(root_id)
    assert (root.status, root.size, root.is_bootable) == ("in-use", 8, True)
    assert [a["server_id"] for a in root.attachments] == [server.id]
    assert root.volume_image_metadata["image_id"] == expect["image"]["id"]

    # An extra blank volume goes through the attachment API: reserved, attaching, in-use.
    extra = conn.block_storage.create_volume(size=1, name="sandbox-test-extra")
    cleanup["volumes"].append(extra)
    conn.block_storage.wait_for_status(extra, "available", wait=TIMEOUT, interval=0.2)
    attachment = conn.compute.create_volume_attachment(server, volume=extra)
    seen = _statuses(conn, extra.id, "in-use")
    assert _in_order(seen, ["available", "reserved", "attaching", "in-use"]), seen
    assert attachment.device and attachment.device != "/dev/sda"
    assert {a.volume_id for a in conn.compute.volume_attachments(server)} == {root_id, extra.id}

    # delete_on_termination: the root volume goes with the server, the extra one stays.
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=TIMEOUT, interval=0.2)
    conn.block_storage.wait_for_delete(root, wait=TIMEOUT, interval=0.2)
    assert _volume_or_none(conn, root_id) is None
    extra = conn.block_storage.wait_for_status(extra, "available", wait=TIMEOUT, interval=0.2)
    assert extra.attachments == []


def test_leftovers_report_volumes(sandbox, conn, expect, cleanup):
    from cloudnorm.testing.openstack.leftovers import leftovers

    owner = f"sandbox-test-{uuid.uuid4().hex[:8]}"
    marked = conn.block_storage.create_volume(size=1, name="data",
                                              metadata={OWNER_KEY: owner})
    cleanup["volumes"].append(marked)
    conn.block_storage.wait_for_status(marked, "available", wait=TIMEOUT, interval=0.2)

    line = f"volume data {marked.id} available"
    assert line in leftovers(sandbox, PROFILE, owner=owner)
    assert line in leftovers(sandbox, PROFILE)
    assert leftovers(sandbox, PROFILE, owner="someone-else") == []

    # A root volume kept after its server: Nova made it, unnamed, for nobody in particular.
    server = _boot_from_volume(conn, expect, "sandbox-test-kept-root",
                               delete_on_termination=False)
    cleanup["servers"].append(server)
    server = conn.compute.wait_for_server(server, status="ACTIVE", wait=TIMEOUT, interval=0.2)
    (root_id,) = [a.volume_id for a in conn.compute.volume_attachments(server)]
    root = conn.block_storage.get_volume(root_id)
    cleanup["volumes"].append(root)
    # while attached, it counts with the server that counts
    assert f"volume (unnamed) {root_id} in-use" in leftovers(
        sandbox, PROFILE, servers_named="sandbox-test-kept-root")
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=TIMEOUT, interval=0.2)
    conn.block_storage.wait_for_status(root, "available", wait=TIMEOUT, interval=0.2)
    assert f"volume (unnamed) {root_id} available" in leftovers(sandbox, PROFILE)

    for volume in (marked, root):
        conn.block_storage.delete_volume(volume)
        conn.block_storage.wait_for_delete(volume, wait=TIMEOUT, interval=0.2)
    assert not [entry for entry in leftovers(sandbox, PROFILE) if entry.startswith("volume ")]


def test_profiles_state_block_storage_consistently(tmp_path, monkeypatch):
    import yaml

    from cloudnorm.testing import profile_data

    base = profile_data.load(PROFILE)
    monkeypatch.setattr(profile_data, "PROFILE_DIR", tmp_path)

    def check(**changes):
        (tmp_path / f"{PROFILE}.yaml").write_text(yaml.safe_dump({**base, **changes}))
        return profile_data.load(PROFILE)

    assert check()["block_storage"] is True
    with pytest.raises(profile_data.ProfileError, match="block_storage must be true or false"):
        check(block_storage="yes")
    with pytest.raises(profile_data.ProfileError, match="volume_quotas needs block_storage"):
        check(block_storage=False)
    with pytest.raises(profile_data.ProfileError, match="'volume' is not one of"):
        check(volume_quotas={"volume": 1})
    with pytest.raises(profile_data.ProfileError, match="gigabytes must be a whole number"):
        check(volume_quotas={"gigabytes": 1.5})
    with pytest.raises(profile_data.ProfileError, match="min_disk must be a whole number"):
        check(images=[dict(base["images"][0], min_disk="8")])

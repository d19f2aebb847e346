"""The OpenStack driver against a fake Keystone/Nova/Glance/Neutron (requests-mock).

Every test drives the real ``cloudnorm.connect`` → openstack.config →
openstacksdk → ``OpenStackDriver`` path; only the HTTP replies are fake.
"""

from __future__ import annotations

import base64
import json
import time

import pytest

import cloudnorm
from cloudnorm import errors
from cloudnorm.drivers.base import BootSpec, Created
from cloudnorm.drivers.openstack.normalize import normalize_image, normalize_server, server_state
from cloudnorm.models import OWNER_KEY, Flavor, Image, Location, Network
from cloudnorm.networks import NetworkHints
from cloudnorm.state import ServerState

from .conftest import (
    CINDER,
    GLANCE,
    NOVA,
    PASSWORD,
    TOKEN_URL,
    glance_image,
    nova_address,
    nova_server,
)


def _walk_errors(exc: BaseException):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


# -- Glance images ----------------------------------------------------------------------------
@pytest.mark.parametrize("fields, attribute, expected", [
    ({"os_hidden": True}, "hidden", True),
    ({"os_hidden": "True"}, "hidden", True),
    ({"os_hidden": False}, "hidden", False),
    ({"image_type": "snapshot"}, "is_snapshot", True),
    ({"instance_uuid": "5c9a1f3e"}, "is_snapshot", True),
    ({}, "is_snapshot", False),
    ({"architecture": "arm64"}, "architecture", "aarch64"),
    ({"architecture": "x86_64"}, "architecture", "x86_64"),
    ({"status": "deactivated"}, "status", "deactivated"),
    ({"visibility": "community"}, "visibility", "community"),
    ({"min_ram": 1024, "min_disk": 10}, "min_disk", 10),
])
def test_glance_image_normalization(fields, attribute, expected):
    image = normalize_image(glance_image("ubuntu-22.04", **fields))
    assert getattr(image, attribute) == expected


def test_glance_image_properties_and_login_user():
    image = normalize_image(
        glance_image("jammy-server-cloudimg-amd64", os_distro="ubuntu", os_version="22.04",
                     created_at="2024-03-01T10:00:00Z", default_user="ubuntu-admin"),
        user_properties=("os_admin_user", "default_user"))
    assert (image.os_distro, image.os_version, image.architecture) == (
        "ubuntu", "22.04", "x86_64")
    assert image.login_user == "ubuntu-admin"
    assert image.created is not None and image.created.year == 2024
    assert image.created.tzinfo is not None


def test_images_come_from_glance_and_choice_passes_over_unusable_ones(connect, fake_os):
    fake_os.glance("/images", json={"images": [
        glance_image("Ubuntu-Jammy-22.04-amd64-20240301", id="good"),
        glance_image("ubuntu-22.04-x86_64-hidden", id="hidden", os_hidden=True,
                     created_at="2024-06-01T00:00:00Z"),
        glance_image("ubuntu-22.04 snapshot", id="snap", image_type="snapshot",
                     visibility="private", created_at="2024-06-01T00:00:00Z"),
        glance_image("ubuntu-22.04-arm64", id="arm", created_at="2024-06-01T00:00:00Z"),
        glance_image("ubuntu-22.04-x86_64-old", id="old", status="deactivated",
                     created_at="2024-06-01T00:00:00Z"),
        glance_image("Debian 12 (bookworm)", id="deb"),
    ]})
    cloud = connect()
    chosen, decision = cloud.choose_image("ubuntu-22.04")
    assert chosen.id == "good"
    for name in ("ubuntu-22.04-x86_64-hidden", "ubuntu-22.04 snapshot", "ubuntu-22.04-arm64",
                 "ubuntu-22.04-x86_64-old"):
        assert f"'{name}'" in decision.reason
    assert cloud.login_user(chosen) == ("ubuntu",
                                        "ubuntu cloud images create it (distribution default)")


def test_image_not_found_names_the_cloud(connect, fake_os):
    fake_os.glance("/images", json={"images": [glance_image("Debian 12 (bookworm)")]})
    with pytest.raises(errors.NotFound) as info:
        connect().find_image("ubuntu-22.04")
    assert info.value.cloud == "testcloud"
    assert "testcloud" in str(info.value) and "debian-12" in str(info.value)


# -- pagination -------------------------------------------------------------------------------
def test_images_are_paged_by_marker(connect, fake_os):
    records = [glance_image(f"img {i}", id=f"img-{i:04d}") for i in range(1001)]

    def page(request, context):
        marker = request.qs.get("marker", [None])[0]
        limit = int(request.qs["limit"][0])
        start = 0 if marker is None else next(
            i + 1 for i, r in enumerate(records) if r["id"] == marker)
        return {"images": records[start:start + limit]}

    fake_os.glance("/images", json=page)
    images = connect().list_images()
    assert [i.id for i in images] == [r["id"] for r in records]
    assert len(fake_os.requests_to(GLANCE + "/v2/images")) == 2


def test_images_follow_glance_next_link(connect, fake_os):
    """Glance caps a page at its api_limit_max (operators lower it below 1000) and says
    where the rest is with ``next``: a short page with ``next`` is not the last one."""
    first = [glance_image("a", id="img-a"), glance_image("b", id="img-b")]
    second = [glance_image("c", id="img-c")]

    def page(request, context):
        if request.qs.get("marker") == ["img-b"]:
            return {"images": second, "first": "/v2/images"}
        return {"images": first, "first": "/v2/images",
                "next": "/v2/images?limit=2&marker=img-b"}

    fake_os.glance("/images", json=page)
    assert [i.id for i in connect().list_images()] == ["img-a", "img-b", "img-c"]


def test_nova_servers_follow_servers_links(connect, fake_os):
    """Nova caps pages at [api]max_limit and adds a ``servers_links`` next link."""
    fake_os.services = ["compute", "image"]

    def page(request, context):
        if request.qs.get("marker") == ["srv-2"]:
            return {"servers": [nova_server("srv-3", "c")]}
        return {"servers": [nova_server("srv-1", "a"), nova_server("srv-2", "b")],
                "servers_links": [{"rel": "next",
                                   "href": NOVA + "/servers/detail?limit=2&marker=srv-2"}]}

    fake_os.nova("/servers/detail", json=page)
    assert [s.id for s in connect().list_servers()] == ["srv-1", "srv-2", "srv-3"]


def test_reply_without_the_list_is_malformed(connect, fake_os):
    fake_os.glance("/images", json={"image": []})
    with pytest.raises(errors.ProviderError, match="no 'images' list"):
        connect().list_images()


# -- flavors and compute microversion ---------------------------------------------------------
NOVA_FLAVORS = {"flavors": [
    {"id": "1", "name": "m1.small", "ram": 2048, "vcpus": 1, "disk": 20},
    {"id": "2", "name": "2GB Standard Instance", "ram": 2048, "vcpus": 1, "disk": 20},
    {"id": "3", "name": "ssd.2c4g", "ram": 4096, "vcpus": 2, "disk": 40},
    {"id": "4", "name": "v3-standard-2", "ram": 4096, "vcpus": 2, "disk": 0,
     "OS-FLV-DISABLED:disabled": True},
]}


def test_flavors_come_from_nova(connect, fake_os):
    fake_os.nova("/flavors/detail", json=NOVA_FLAVORS)
    cloud = connect()
    flavor, decision = cloud.choose_flavor(min_ram=2000)
    assert flavor.name == "2GB Standard Instance"
    assert "same size as m1.small" in decision.reason
    assert cloud.find_flavor(min_vcpus=2).name == "ssd.2c4g"   # v3-standard-2 is disabled


@pytest.mark.parametrize("max_version, expected", [("2.90", "2.79"), ("2.60", "2.60"),
                                                   ("", "2.1")])
def test_compute_microversion(connect, fake_os, max_version, expected):
    fake_os.compute_max_version = max_version
    fake_os.nova("/flavors/detail", json=NOVA_FLAVORS)
    connect().list_flavors()
    request = fake_os.requests_to(NOVA + "/flavors/detail")[0]
    assert request.headers["OpenStack-API-Version"] == f"compute {expected}"


def test_compute_microversion_is_kept_with_a_shared_cache(connect, fake_os, tmp_path):
    """A process that shares the discovery cache of an earlier one (a file here)
    asks no version document of Nova, and still sends the version that one found."""
    top = {"cache": {"class": "dogpile.cache.dbm",
                     "arguments": {"filename": str(tmp_path / "discovery.dbm")}}}
    fake_os.compute_max_version = "2.60"
    fake_os.nova("/flavors/detail", json=NOVA_FLAVORS)

    def version_documents() -> int:
        return sum(1 for r in fake_os.m.request_history if r.url.rstrip("/") == NOVA)

    first = connect(top=top)
    first.driver.list_flavors()
    first.close()
    assert version_documents() == 1
    second = connect(top=top)
    second.driver.list_flavors()
    assert version_documents() == 1
    request = fake_os.requests_to(NOVA + "/flavors/detail")[-1]
    assert request.headers["OpenStack-API-Version"] == "compute 2.60"


# -- cache through Cloud ----------------------------------------------------------------------
def test_discovery_is_cached(connect, fake_os):
    fake_os.glance("/images", json={"images": [glance_image("ubuntu-22.04-x86_64")]})
    cloud = connect()
    assert cloud.list_images() == cloud.list_images()
    cloud.find_image("ubuntu-22.04")
    assert len(fake_os.requests_to(GLANCE + "/v2/images")) == 1


def test_refresh_recomputes(connect, fake_os):
    fake_os.glance("/images", json={"images": [glance_image("ubuntu-22.04-x86_64")]})
    fake_os.nova("/flavors/detail", json=NOVA_FLAVORS)
    cloud = connect()
    cloud.list_images()
    cloud.list_flavors()
    cloud.refresh("image")
    cloud.list_images()
    cloud.list_flavors()
    assert len(fake_os.requests_to(GLANCE + "/v2/images")) == 2
    assert len(fake_os.requests_to(NOVA + "/flavors/detail")) == 1


def test_cache_expiration_from_clouds_yaml_reaches_the_cloud(connect, fake_os):
    cloud = connect(top={"cache": {"class": "dogpile.cache.memory", "expiration_time": 60,
                                   "expiration": {"image": 7200}}})
    assert cloud.settings.cache.expiration_for("image") == 7200.0
    assert cloud._cache.settings.expiration_for("flavor") == 60.0


# -- errors -----------------------------------------------------------------------------------
LISTINGS = ["list_images", "list_flavors", "list_networks"]


@pytest.mark.parametrize("listing", LISTINGS)
def test_refused_token_is_an_auth_error_naming_clouds_yaml(connect, fake_os, listing):
    fake_os.m.post(TOKEN_URL, status_code=401, json={"error": {
        "code": 401, "title": "Unauthorized",
        "message": "The request you have made requires authentication."}})
    cloud = connect()
    with pytest.raises(errors.AuthError) as info:
        getattr(cloud, listing)()
    text = str(info.value)
    assert cloud.settings.source in text and cloud.settings.source.endswith("clouds.yaml")
    assert "http://127.0.0.1:35357/v3" in text


@pytest.mark.parametrize("listing", LISTINGS)
def test_failed_auth_never_shows_the_password(connect, fake_os, listing):
    fake_os.m.post(TOKEN_URL, status_code=401, json={"error": {
        "code": 401, "title": "Unauthorized", "message": "Invalid user / password"}})
    with pytest.raises(Exception) as info:
        getattr(connect(), listing)()
    for exc in _walk_errors(info.value):
        assert PASSWORD not in str(exc) and PASSWORD not in repr(exc)


def test_api_401_is_an_auth_error(connect, fake_os):
    fake_os.nova("/flavors/detail", status_code=401, json={"error": {"message": "expired"}})
    with pytest.raises(errors.AuthError, match="clouds.yaml"):
        connect().list_flavors()


def test_server_error_carries_status_and_request_id(connect, fake_os):
    fake_os.glance("/images", status_code=500, text="<html>Internal Server Error</html>",
                   headers={"x-openstack-request-id": "req-7f3c2a9e-0001"})
    with pytest.raises(errors.ProviderError) as info:
        connect().list_images()
    exc = info.value
    assert type(exc) is errors.ProviderError
    assert exc.status == 500 and exc.request_id == "req-7f3c2a9e-0001"
    assert exc.endpoint == "image GET /images"
    assert "req-7f3c2a9e-0001" in str(exc) and "status 500" in str(exc)
    assert "Internal Server Error" in str(exc)


def test_compute_request_id_header_is_used(connect, fake_os):
    fake_os.nova("/flavors/detail", status_code=503,
                 json={"computeFault": {"code": 503, "message": "nova-api is restarting"}},
                 headers={"x-compute-request-id": "req-nova-42"})
    with pytest.raises(errors.ProviderError) as info:
        connect().list_flavors()
    assert info.value.request_id == "req-nova-42"
    assert "nova-api is restarting" in str(info.value)


def test_non_json_success_is_malformed(connect, fake_os):
    fake_os.glance("/images", status_code=200, text="<html>proxy login page</html>",
                   headers={"x-openstack-request-id": "req-html"})
    with pytest.raises(errors.ProviderError) as info:
        connect().list_images()
    assert "malformed" in str(info.value)
    assert info.value.status == 200 and info.value.request_id == "req-html"


def test_quota_message_is_quota_exceeded(connect, fake_os):
    fake_os.nova("/servers", method="POST", status_code=403, json={"forbidden": {
        "code": 403,
        "message": "Quota exceeded for instances: Requested 1, but already used 10 of 10 "
                   "instances"}})
    cloud = connect()
    with pytest.raises(errors.QuotaExceeded) as info:
        cloud._driver.transport.request("compute", "POST", "/servers", json={"server": {}})
    assert info.value.resource == "servers"
    assert "Quota exceeded for instances" in str(info.value)


def test_policy_refusal_mentioning_quotas_is_not_quota_exceeded(connect, fake_os):
    """A 403 because policy forbids *reading* quotas is not an exhausted quota."""
    fake_os.nova("/os-quota-sets/p-1", status_code=403, json={"forbidden": {
        "code": 403,
        "message": "Policy doesn't allow os_compute_api:os-quota-sets:show to be performed."}})
    with pytest.raises(errors.ProviderError) as info:
        connect()._driver.transport.request("compute", "GET", "/os-quota-sets/p-1")
    assert not isinstance(info.value, errors.QuotaExceeded)
    assert info.value.status == 403


def test_neutron_quota_error_body(connect, fake_os):
    fake_os.neutron("/floatingips", method="POST", status_code=409, json={"NeutronError": {
        "type": "OverQuota", "message": "Quota exceeded for resources: ['floatingip'].",
        "detail": ""}})
    with pytest.raises(errors.QuotaExceeded) as info:
        connect()._driver.transport.request("network", "POST", "/floatingips", json={})
    assert "floatingip" in str(info.value)


def test_404_is_not_found(connect, fake_os):
    fake_os.nova("/flavors/detail", status_code=404,
                 json={"itemNotFound": {"code": 404, "message": "no such thing"}})
    with pytest.raises(errors.NotFound, match="no such thing"):
        connect().list_flavors()


def test_missing_service_is_service_unavailable(connect, fake_os):
    fake_os.services = ["compute", "network"]
    with pytest.raises(errors.ServiceUnavailable):
        connect().list_images()


# -- servers ----------------------------------------------------------------------------------
TWO_NETWORKS = {
    "tenant-net": [nova_address("10.0.0.5"), nova_address("203.0.113.10", "floating")],
    "v6-net": [nova_address("192.168.7.4"), nova_address("2001:db8:4::5")],
}


def test_server_record_with_fixed_and_floating_addresses():
    server = normalize_server(server_state(nova_server(addresses=TWO_NETWORKS)),
                              Location(cloud="testcloud", region="RegionOne", project="demo"),
                              [], hints=NetworkHints())
    assert (server.id, server.name, server.status) == ("srv-1", "web-1", "running")
    assert server.public_v4 == "203.0.113.10"
    assert server.private_v4 == "10.0.0.5"
    assert server.public_v6 == "2001:db8:4::5"
    assert server.interface_ip == "203.0.113.10"
    by_ip = {a.ip: a for a in server.addresses}
    assert set(by_ip) == {"10.0.0.5", "203.0.113.10", "192.168.7.4", "2001:db8:4::5"}
    assert by_ip["203.0.113.10"].kind == "floating" and by_ip["203.0.113.10"].public
    assert by_ip["203.0.113.10"].network == "tenant-net"
    assert by_ip["10.0.0.5"].public is False and "tenant-net" in by_ip["10.0.0.5"].reason
    assert by_ip["2001:db8:4::5"].public is True and by_ip["2001:db8:4::5"].version == 6
    assert server.flavor == "m1.small" and server.image == "img-ubuntu"
    assert server.location == Location(cloud="testcloud", region="RegionOne", zone="nova",
                                       project="p-1")
    assert server.key_name == "deploy" and server.tags == {"role": "web"}
    assert server.created is not None and server.created.year == 2024


@pytest.mark.parametrize("status, task_state, expected, phase", [
    ("ACTIVE", None, "running", "running"),
    ("BUILD", "spawning", "pending", "pending"),
    ("BUILD", None, "pending", "pending"),
    ("REBUILD", None, "pending", "pending"),
    ("SHUTOFF", None, "stopped", "stopped"),
    ("ERROR", None, "error", "error"),
    ("ACTIVE", "powering-off", "stopping", "stopping"),
    ("SUSPENDED", None, "stopped", "stopped"),
    ("SHELVED_OFFLOADED", None, "stopped", "stopped"),
    ("DELETED", None, "terminated", "terminated"),
    # Asked to go and not gone yet: the flow waits on; to its user it is terminated.
    ("ACTIVE", "deleting", "terminated", "deleting"),
    ("SOFT_DELETED", None, "terminated", "deleting"),
    ("active", None, "running", "running"),
    ("SOMETHING_NEW", None, "error", "error"),
])
def test_server_status_mapping(status, task_state, expected, phase):
    raw = nova_server(status=status, task_state=task_state)
    state = server_state(raw)
    assert (state.phase, state.status) == (phase, status)
    server = normalize_server(state, Location(cloud="c"), [], hints=NetworkHints())
    assert server.status == expected


def test_server_state_reads_owner_tags_and_the_record():
    raw = nova_server(metadata={"role": "web", OWNER_KEY: "abc123def456"})
    state = server_state(raw)
    assert (state.id, state.name, state.status, state.phase) == (
        "srv-1", "web-1", "ACTIVE", "running")
    assert state.owner == "abc123def456"
    assert state.tags == {"role": "web", OWNER_KEY: "abc123def456"}
    assert state.raw == raw
    assert (state.fault, state.quota) == (None, False)
    assert server_state(nova_server(metadata=None)).owner is None


@pytest.mark.parametrize("fault, quota", [
    ({"code": 500, "message": "Quota exceeded for cores: Requested 4, but already used 8 of 8"},
     True),
    ({"code": 500, "message": "No valid host was found. There are not enough hosts."}, False),
])
def test_error_server_state_carries_nova_fault(fault, quota):
    state = server_state(nova_server(status="ERROR", fault=fault))
    assert state.phase == "error" and state.fault == fault["message"]
    assert state.quota is quota


def test_fault_is_read_only_for_an_error_phase():
    assert server_state(nova_server(status="ERROR")).fault is None
    state = server_state(nova_server(status="ACTIVE", fault={"message": "resize failed"}))
    assert state.phase == "running" and state.fault is None


@pytest.mark.parametrize("raw", [
    {"name": "no-id", "status": "ACTIVE"},
    nova_server(metadata=["role", "web"]),
    nova_server(status="ERROR", fault="boom"),
    ["not", "a", "record"],
])
def test_malformed_server_record_is_a_provider_error(raw):
    with pytest.raises(errors.ProviderError, match="malformed server record"):
        server_state(raw)


def test_state_without_a_record_normalizes_from_the_state_alone():
    """What the create flow knows of a server it just asked for: an id and a name."""
    state = ServerState(id="srv-9", name="new-1", phase="pending", status="requested",
                        owner="abc")
    server = normalize_server(state, Location(cloud="c"), [])
    assert (server.id, server.name, server.status) == ("srv-9", "new-1", "pending")
    assert server.addresses == () and server.interface_ip is None


def test_boot_from_volume_server_has_no_image():
    server = normalize_server(server_state(nova_server(image="")), Location(cloud="c"), [])
    assert server.image is None


def test_attached_volumes_root_first_when_booted_from_a_volume():
    # os-extended-volumes:volumes_attached (microversion 2.3+ adds delete_on_termination).
    attached = [{"id": "vol-root", "delete_on_termination": True},
                {"id": "vol-data", "delete_on_termination": False}]
    record = nova_server(image="", **{"os-extended-volumes:volumes_attached": attached})
    server = normalize_server(server_state(record), Location(cloud="c"), [])
    assert [(v.id, v.root, v.delete_on_termination) for v in server.volumes] == [
        ("vol-root", True, True), ("vol-data", False, False)]
    record = nova_server(**{"os-extended-volumes:volumes_attached": attached[1:]})
    (data,) = normalize_server(server_state(record), Location(cloud="c"), []).volumes
    assert not data.root


def _with_cinder(fake_os, *services: str) -> None:
    """A catalog with Cinder, whose version discovery answers as Cinder 3.x does."""
    fake_os.services = [*(services or ("compute", "image", "network")), "volumev3"]
    version = {"id": "v3.0", "status": "CURRENT", "min_version": "3.0",
               "version": "3.70", "links": [{"rel": "self", "href": CINDER + "/"}]}
    for url in (CINDER, CINDER.rsplit("/", 2)[0] + "/"):
        fake_os.m.get(url, json={"versions": [version]})


@pytest.mark.parametrize("from_volume", [True, False])
def test_volumes_are_made_marked_then_booted_from(connect, fake_os, from_volume):
    # Cinder v3 "Create a volume" (imageRef for the root volume, metadata for the
    # marker), then block_device_mapping_v2 (compute API reference, "Create Server")
    # with source_type "volume": root at boot_index 0, data volumes at -1.
    _with_cinder(fake_os)
    ids = iter(["vol-root", "vol-d1", "vol-d2"] if from_volume else ["vol-d1", "vol-d2"])
    created = fake_os.m.post(CINDER + "/volumes", status_code=202, json=lambda r, c: {
        "volume": {"id": next(ids), "status": "creating"}})
    listed = fake_os.m.get(CINDER + "/volumes/detail", [
        {"json": {"volumes": [{"id": v, "status": "creating"} for v in
                              ("vol-root", "vol-d1", "vol-d2")]}},
        {"json": {"volumes": [{"id": v, "status": "available"} for v in
                              ("vol-root", "vol-d1", "vol-d2")]}}])
    posted = fake_os.nova("/servers", method="POST", status_code=202,
                          json={"server": {"id": "srv-new"}})
    driver = connect().driver
    made = []
    spec = driver.make_volumes(_boot_spec(boot_from_volume=from_volume,
                                          root_size=8 if from_volume else None,
                                          data_volumes=(1, 2)), made.append, time.monotonic() + 30)
    driver.boot(spec)
    bodies = [r.json()["volume"] for r in created.request_history]
    assert [b["size"] for b in bodies] == ([8, 1, 2] if from_volume else [1, 2])
    assert all(b["metadata"] == {OWNER_KEY: "abc123"} for b in bodies)
    assert ("imageRef" in bodies[0]) is from_volume
    assert [m.kind for m in made] == ["volume"] * len(bodies)
    assert json.loads(listed.last_request.qs["metadata"][0]) == {OWNER_KEY: "abc123"}
    sent = posted.last_request.json()["server"]
    data = [{"boot_index": -1, "uuid": v, "source_type": "volume", "destination_type": "volume",
             "delete_on_termination": True} for v in ("vol-d1", "vol-d2")]
    if from_volume:
        assert sent["imageRef"] == ""
        assert sent["block_device_mapping_v2"] == [
            {"boot_index": 0, "uuid": "vol-root", "source_type": "volume",
             "destination_type": "volume", "delete_on_termination": True}, *data]
    else:
        assert sent["imageRef"] == "img" and sent["block_device_mapping_v2"] == data


def test_a_volume_in_error_fails_the_boot_before_nova_is_asked(connect, fake_os):
    _with_cinder(fake_os)
    fake_os.m.post(CINDER + "/volumes", status_code=202,
                        json={"volume": {"id": "vol-1", "status": "creating"}})
    fake_os.m.get(CINDER + "/volumes/detail",
                       json={"volumes": [{"id": "vol-1", "status": "error", "size": 1}]})
    made = []
    with pytest.raises(errors.ProviderError, match="vol-1.*went to error"):
        connect().driver.make_volumes(_boot_spec(data_volumes=(1,)), made.append,
                                      time.monotonic() + 30)
    assert [m.id for m in made] == ["vol-1"]  # the ledger has it, so it is removed
    assert not fake_os.requests_to(NOVA + "/servers")


def test_volume_quota_is_a_typed_error(connect, fake_os):
    # Cinder's 413 for the gigabytes quota (cinder/exception.py VolumeSizeExceedsAvailableQuota).
    _with_cinder(fake_os)
    fake_os.m.post(CINDER + "/volumes", status_code=413, json={"overLimit": {
        "code": 413, "message": "VolumeSizeExceedsAvailableQuota: Requested volume or "
        "snapshot exceeds allowed gigabytes quota. Requested 8G, quota is 10G and 5G has "
        "been consumed."}})
    with pytest.raises(errors.QuotaExceeded) as info:
        connect().driver.make_volumes(_boot_spec(boot_from_volume=True, root_size=8),
                                      lambda c: None, time.monotonic() + 30)
    assert info.value.resource == "gigabytes"


def test_removing_a_volume_waits_while_nova_deletes_it(connect, fake_os, monkeypatch):
    # A server's delete_on_termination volume is Nova's to delete: it is found
    # "deleting", then gone; cloudnorm sends no DELETE of its own (kcli PR #845).
    monkeypatch.setattr("cloudnorm.drivers.openstack.volumes.time.sleep", lambda s: None)
    _with_cinder(fake_os)
    fake_os.m.get(CINDER + "/volumes/vol-1", [
        {"json": {"volume": {"id": "vol-1", "status": "deleting"}}},
        {"status_code": 404, "json": {"itemNotFound": {"code": 404, "message": "gone"}}}])
    deleted = fake_os.m.delete(CINDER + "/volumes/vol-1", status_code=202)
    connect().driver.delete(Created("volume", "vol-1"))
    assert not deleted.called


def test_removing_an_available_volume_deletes_it(connect, fake_os, monkeypatch):
    monkeypatch.setattr("cloudnorm.drivers.openstack.volumes.time.sleep", lambda s: None)
    _with_cinder(fake_os)
    fake_os.m.get(CINDER + "/volumes/vol-1", [
        {"json": {"volume": {"id": "vol-1", "status": "available"}}},
        {"json": {"volume": {"id": "vol-1", "status": "deleting"}}},
        {"status_code": 404, "json": {"itemNotFound": {"code": 404, "message": "gone"}}}])
    deleted = fake_os.m.delete(CINDER + "/volumes/vol-1", status_code=202)
    connect().driver.delete(Created("volume", "vol-1"))
    assert deleted.call_count == 1


def test_owned_volumes_are_found_by_metadata(connect, fake_os):
    _with_cinder(fake_os, "compute", "image")
    fake_os.nova("/servers/detail", json={"servers": []})
    fake_os.nova("/os-keypairs", json={"keypairs": []})
    fake_os.m.get(CINDER + "/volumes/detail", json={"volumes": [
        {"id": "v1", "name": "cloudnorm-abc-root", "status": "available",
         "metadata": {OWNER_KEY: "abc"}, "created_at": "2026-01-01T00:00:00.000000"},
        {"id": "v2", "status": "deleting", "metadata": {OWNER_KEY: "abc"}},
        {"id": "v3", "status": "available", "metadata": {}}]})
    found = connect().driver.owned_resources(None)
    assert [(c.kind, c.id, c.owner) for c in found] == [("volume", "v1", "abc")]
    assert found[0].created is not None


def test_get_server_by_id(connect, fake_os):
    fake_os.services = ["compute", "image"]
    fake_os.nova("/servers/srv-1", json={"server": nova_server(addresses=TWO_NETWORKS)})
    server = connect().get_server("srv-1")
    assert server.id == "srv-1" and server.interface_ip == "203.0.113.10"
    assert server.location.cloud == "testcloud" and server.location.region == "RegionOne"


def test_get_server_by_name_with_two_matches_is_ambiguous(connect, fake_os):
    fake_os.services = ["compute", "image"]
    fake_os.nova("/servers/web", status_code=404,
                 json={"itemNotFound": {"code": 404, "message": "Instance web not found"}})
    fake_os.nova("/servers/detail", json={"servers": [
        nova_server("srv-b", "web"), nova_server("srv-a", "web")]})
    with pytest.raises(errors.Ambiguous) as info:
        connect().get_server("web")
    assert info.value.candidates == ["srv-a", "srv-b"]
    assert "use an id" in str(info.value)
    listing = fake_os.requests_to(NOVA + "/servers/detail")[0]
    assert listing.qs["name"] == ["^web$"]


def test_get_server_by_name_filters_regex_matches(connect, fake_os):
    fake_os.services = ["compute", "image"]
    fake_os.nova("/servers/web.1", status_code=404, json={"itemNotFound": {"message": "no"}})
    fake_os.nova("/servers/detail", json={"servers": [
        nova_server("srv-1", "web.1"), nova_server("srv-2", "webx1")]})
    assert connect().get_server("web.1").id == "srv-1"


def test_get_missing_server_is_not_found(connect, fake_os):
    fake_os.services = ["compute", "image"]
    fake_os.nova("/servers/ghost", status_code=404, json={"itemNotFound": {"message": "no"}})
    fake_os.nova("/servers/detail", json={"servers": []})
    with pytest.raises(errors.NotFound, match="no server 'ghost'"):
        connect().get_server("ghost")


# -- no-neutron -------------------------------------------------------------------------------
def test_no_neutron_cloud_classifies_address_lists(connect, fake_os):
    fake_os.services = ["compute", "image"]
    fake_os.nova("/servers/detail", json={"servers": [nova_server(addresses={
        "private": [{"addr": "10.11.12.13", "version": 4}],
        "public": [{"addr": "203.0.113.55", "version": 4},
                   {"addr": "2001:db8:99::4", "version": 6}],
    })]})
    cloud = connect()
    assert cloud.has_network_service is False
    assert cloud.list_networks() == [] and cloud.choose_network() is None
    assert cloud.default_network() is None
    with pytest.raises(errors.NotFound, match="no network service"):
        cloud.floating_network()
    [server] = cloud.list_servers()
    assert server.public_v4 == "203.0.113.55" and server.private_v4 == "10.11.12.13"
    assert server.public_v6 == "2001:db8:99::4"
    assert server.interface_ip == "203.0.113.55"
    by_ip = {a.ip: a for a in server.addresses}
    assert by_ip["203.0.113.55"].reason == "globally routable address on network 'public'"
    assert not any(r.url.startswith("http://127.0.0.1:39696") for r in
                   fake_os.m.request_history)


# -- Neutron ----------------------------------------------------------------------------------
def _neutron_fip_required(fake_os):
    fake_os.neutron("/networks", json={"networks": [
        {"id": "net-ext", "name": "public", "router:external": True, "shared": False},
        {"id": "net-tenant", "name": "tenant-net", "router:external": False, "shared": False},
        {"id": "net-old", "name": "old-pool", "router:external": False, "shared": False},
    ]})
    fake_os.neutron("/subnets", json={"subnets": [
        {"id": "sub-ext", "network_id": "net-ext", "cidr": "172.24.4.0/24", "ip_version": 4,
         "service_types": []},
        {"id": "sub-tenant", "network_id": "net-tenant", "cidr": "10.0.0.0/24",
         "ip_version": 4, "service_types": []},
        {"id": "sub-old", "network_id": "net-old", "cidr": "10.99.0.0/24", "ip_version": 4},
    ]})
    fake_os.neutron("/routers", json={"routers": [
        {"id": "rtr-1", "name": "router1",
         "external_gateway_info": {"network_id": "net-ext", "enable_snat": True}}]})
    fake_os.neutron("/ports", json={"ports": [
        {"network_id": "net-tenant", "device_id": "rtr-1"}]})
    fake_os.neutron("/floatingips", json={"floatingips": [
        {"floating_network_id": "net-old"}]})


def test_neutron_network_facts_are_read_and_classified(connect, fake_os):
    _neutron_fip_required(fake_os)
    cloud = connect()
    nets = {n.name: n for n in cloud.list_networks()}
    assert nets["public"].external and "172.24.4.0/24" in nets["public"].reason
    assert "router 'router1'" in nets["tenant-net"].reason
    assert nets["old-pool"].reason == "floating IPs already exist on it"
    assert cloud.default_network().name == "tenant-net"
    pool, decision = cloud.floating_network()
    assert pool.name == "public" and "router1" in decision.reason
    ports = [r for r in fake_os.m.request_history if "/ports" in r.url][0]
    assert sorted(ports.qs["device_owner"]) == sorted([
        "network:router_interface", "network:router_interface_distributed",
        "network:ha_router_replicated_interface"])


def test_neutron_requests_use_the_versioned_endpoint_once(connect, fake_os):
    """openstacksdk's network proxy already ends in /v2.0: paths must not repeat it."""
    _neutron_fip_required(fake_os)
    try:
        connect().list_networks()
    except Exception:  # noqa: BLE001 - the URLs are what this test checks
        pass
    urls = [r.url for r in fake_os.m.request_history if r.url.startswith(
        "http://127.0.0.1:39696")]
    assert urls, "no request reached Neutron"
    assert not [u for u in urls if "/v2.0/v2.0/" in u]


def test_clouds_yaml_network_hints_reach_the_driver(connect, fake_os):
    cloud = connect(cloudnorm={"profile": "limestone"}, networks=[
        {"name": "Private Network (10.0.0.0/8 only)", "default_interface": True},
        {"name": "DDoS Protected", "routes_externally": True}])
    hints = cloud._driver.network_hints()
    assert hints.default_interface == "Private Network (10.0.0.0/8 only)"
    assert hints.nat_source == "Public Internet"                 # from the profile
    assert hints.routes("DDoS Protected", "x") is True
    assert hints.source == cloud.settings.source


def test_networks_entry_without_routes_externally_says_nothing_about_routing(connect,
                                                                             fake_os):
    """openstack.config fills ``routes_externally: false`` into every networks: entry that
    omits it; cloudnorm must not read that filler as the operator's word, or a public
    provider network named only as default_interface turns private."""
    cloud = connect(networks=[{"name": "provider-net", "default_interface": True}])
    hints = cloud._driver.network_hints()
    assert hints.default_interface == "provider-net"
    assert hints.routes("provider-net", "net-1") is None
    server = cloud._driver.normalize_server(
        server_state(nova_server(addresses={"provider-net": [nova_address("203.0.113.5")]})), [])
    assert server.public_v4 == "203.0.113.5"


def test_profile_hints_without_clouds_yaml_networks(connect, fake_os):
    hints = connect(cloudnorm={"profile": "limestone"})._driver.network_hints()
    assert hints.default_interface == "Private Network (Floating Public)"
    assert hints.source == "profile 'limestone'"


# -- SSH access ---------------------------------------------------------------------------------
def test_ssh_access_is_a_group_and_one_bulk_rule_request(connect, fake_os):
    fake_os.neutron("/security-groups", method="POST", status_code=201, json={
        "security_group": {"id": "g-1", "name": "cloudnorm-abc"}})
    rules = fake_os.neutron("/security-group-rules", method="POST", status_code=201,
                            json={"security_group_rules": [{"id": "r-4"}, {"id": "r-6"}]})
    made = connect()._driver.create_ssh_access("abc")
    assert (made.kind, made.id) == ("security_group", "g-1")
    assert rules.call_count == 1
    sent = rules.last_request.json()["security_group_rules"]
    assert [(r["ethertype"], r["remote_ip_prefix"]) for r in sent] == [
        ("IPv4", "0.0.0.0/0"), ("IPv6", "::/0")]
    assert all((r["security_group_id"], r["direction"], r["protocol"], r["port_range_min"],
                r["port_range_max"]) == ("g-1", "ingress", "tcp", 22, 22) for r in sent)


def test_ssh_access_removes_its_group_when_the_rules_are_refused(connect, fake_os):
    fake_os.neutron("/security-groups", method="POST", status_code=201, json={
        "security_group": {"id": "g-1", "name": "cloudnorm-abc"}})
    fake_os.neutron("/security-group-rules", method="POST", status_code=409, json={
        "NeutronError": {"type": "OverQuota", "message": "Quota exceeded for resources: "
                         "['security_group_rule'].", "detail": ""}})
    deleted = fake_os.neutron("/security-groups/g-1", method="DELETE", status_code=204)
    with pytest.raises(errors.QuotaExceeded):
        connect()._driver.create_ssh_access("abc")
    assert deleted.call_count == 1


# -- identity and secrets ---------------------------------------------------------------------
def test_identity_and_location_hold_no_secret(connect, fake_os):
    cloud = connect()
    identity = cloud._driver.identity()
    assert PASSWORD not in identity
    assert "http://127.0.0.1:35357/v3" in identity and "RegionOne" in identity
    assert cloud.location == Location(cloud="testcloud", region="RegionOne", project="demo")
    assert PASSWORD not in repr(cloud)


def test_keypair_repr_hides_the_private_key():
    private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END"
    key = cloudnorm.KeyPair(name="deploy", public_key="ssh-ed25519 AAAAC3Nza deploy",
                            fingerprint="SHA256:abc", private_key=private)
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in repr(key)
    assert "BEGIN OPENSSH PRIVATE KEY" not in repr(key)
    assert "deploy" in repr(key)
    assert key.private_key == private


# -- capabilities, polling, boot ---------------------------------------------------------------
def test_capabilities_follow_the_network_service(connect, fake_os):
    caps = connect().capabilities
    assert (caps.security_groups, caps.prebuilt_ports, caps.port_forwarding) == (
        True, True, True)
    assert caps.server_metadata and not caps.published_host_keys
    assert not caps.block_storage  # no volume service in the catalog
    fake_os.services = [*fake_os.services, "volumev3"]
    assert connect().capabilities.block_storage


def test_without_a_network_service_there_are_no_groups_ports_or_forwardings(connect,
                                                                            fake_os):
    fake_os.services = ["compute", "image"]
    caps = connect().capabilities
    assert (caps.security_groups, caps.prebuilt_ports, caps.port_forwarding) == (
        False, False, False)
    assert caps.server_metadata


def test_poll_servers_gives_states_and_leaves_out_missing_ones(connect, fake_os):
    fake_os.services = ["compute", "image"]
    fake_os.nova("/servers/srv-1", json={"server": nova_server(status="BUILD")})
    fake_os.nova("/servers/ghost", status_code=404, json={"itemNotFound": {"message": "no"}})
    fake_os.nova("/servers/detail", json={"servers": [
        nova_server("srv-1"), nova_server("srv-2", status="ERROR"), {"name": "no id"}]})
    driver = connect()._driver
    assert driver.poll_servers({"srv-1"})["srv-1"].phase == "pending"
    assert driver.poll_servers({"ghost"}) == {}
    found = driver.poll_servers({"srv-1", "srv-2", "ghost"})
    assert {k: v.phase for k, v in found.items()} == {"srv-1": "running", "srv-2": "error"}
    assert len(fake_os.requests_to(NOVA + "/servers/detail")) == 1


def test_listing_leaves_out_deleted_servers(connect, fake_os):
    fake_os.services = ["compute", "image"]
    fake_os.nova("/servers/detail", json={"servers": [
        nova_server("srv-1"), nova_server("srv-2", status="DELETED"),
        nova_server("srv-3", task_state="deleting")]})
    states = connect()._driver.list_servers()
    assert [(s.id, s.phase) for s in states] == [("srv-1", "running"), ("srv-3", "deleting")]


def _boot_spec(**extra) -> BootSpec:
    return BootSpec(name="web1", image=Image(id="img", name="img"),
                    flavor=Flavor(id="f1", name="f1", ram=1, vcpus=1, disk=1),
                    network=Network(id="net-1", name="tenant-net", external=False,
                                    public=False, reason="private"),
                    key_name="k", owner="abc123", security_group="g-1", config_drive=True,
                    **extra)


@pytest.mark.parametrize("plain", [False, True])
def test_plain_boot_adds_no_group_and_no_config_drive(connect, fake_os, plain):
    posted = fake_os.nova("/servers", method="POST", status_code=202,
                          json={"server": {"id": "srv-new"}})
    created = connect()._driver.boot(_boot_spec(plain=plain))
    assert (created.kind, created.id) == ("server", "srv-new")
    sent = posted.last_request.json()["server"]
    assert sent["networks"] == [{"uuid": "net-1"}]
    assert sent["metadata"] == {OWNER_KEY: "abc123"}
    if plain:
        assert "security_groups" not in sent and "config_drive" not in sent
    else:
        assert sent["security_groups"] == [{"name": "g-1"}] and sent["config_drive"] is True
    assert posted.call_count == 1


def test_boot_passes_user_data_zone_and_the_callers_groups(connect, fake_os):
    # Nova's create server request: user_data base64-encoded, availability_zone, and
    # security_groups by name (compute API reference, "Create Server").
    posted = fake_os.nova("/servers", method="POST", status_code=202,
                          json={"server": {"id": "srv-new"}})
    connect().driver.boot(_boot_spec(user_data=b"#cloud-config\nruncmd: [true]\n",
                                      availability_zone="az-2", security_groups=("web",)))
    sent = posted.last_request.json()["server"]
    assert base64.b64decode(sent["user_data"]) == b"#cloud-config\nruncmd: [true]\n"
    assert sent["availability_zone"] == "az-2"
    assert sent["security_groups"] == [{"name": "g-1"}, {"name": "web"}]


def test_a_port_made_first_carries_the_callers_groups_by_id(connect, fake_os):
    # A port takes group ids only (Networking API, "Create port"); a name is looked up.
    fake_os.services = ["compute", "image", "network"]
    fake_os.neutron("/security-groups?name=web&fields=id",
                    json={"security_groups": [{"id": "5e0c1b7e-0000-4000-8000-000000000001"}]})
    posted = fake_os.neutron("/ports", method="POST", status_code=201,
                             json={"port": {"id": "port-1", "name": "cloudnorm-abc"}})
    attach = Network(id="net-1", name="tenant-net", public=False, reason="private")
    group = "0f1e2d3c-0000-4000-8000-00000000000a"
    connect().driver.make_port(attach, "abc", (group, "web"))
    assert posted.last_request.json()["port"]["security_groups"] == [
        group, "5e0c1b7e-0000-4000-8000-000000000001"]


def test_an_unknown_group_name_is_not_found(connect, fake_os):
    fake_os.services = ["compute", "image", "network"]
    fake_os.neutron("/security-groups?name=nope&fields=id", json={"security_groups": []})
    attach = Network(id="net-1", name="tenant-net", public=False, reason="private")
    with pytest.raises(errors.NotFound, match="no security group 'nope'"):
        connect().driver.make_port(attach, "abc", ("nope",))


def test_nova_takes_user_data_up_to_its_limit():
    from cloudnorm.drivers.openstack.driver import USER_DATA_LIMIT

    assert (USER_DATA_LIMIT.limit, USER_DATA_LIMIT.measured) == (65535, "base64")


def test_a_metadata_merge_is_asked_again_after_a_transient_failure(connect, fake_os,
                                                                   monkeypatch):
    # Nova's "Create or Update Metadata Items" (POST /servers/{id}/metadata) merges the
    # items, so repeating it after a 503 leaves the same metadata; a boot POST is not
    # repeated (it would make a second server).
    monkeypatch.setattr("cloudnorm.drivers.openstack.transport._BACKOFF_BASE", 0.0)
    unavailable = {"status_code": 503,
                   "json": {"computeFault": {"code": 503, "message": "try again"}}}
    merged = fake_os.nova("/servers/srv-1/metadata", method="POST", response_list=[
        unavailable, {"status_code": 200, "json": {"metadata": {"cloudnorm:create": "done"}}}])
    boot = fake_os.nova("/servers", method="POST", **unavailable)
    cloud = connect()
    cloud._driver.set_server_metadata("srv-1", {"cloudnorm:create": "done"})
    assert merged.call_count == 2
    with pytest.raises(errors.ProviderError):
        cloud._driver.transport.request("compute", "POST", "/servers", json={"server": {}})
    assert boot.call_count == 1

"""The local OpenStack sandbox behaves as its quirk profiles say, seen through openstacksdk.

Every check runs as the profile's own user, so it also proves that projects do not see each
other's networks, images and flavors.
"""

from __future__ import annotations

import configparser
import ipaddress
import subprocess
import time
from pathlib import Path

import pytest
from sandbox_clouds import processes_mentioning

from cloudnorm.testing import profile_data

openstack = pytest.importorskip("openstack")

pytestmark = pytest.mark.functional

PROFILES = profile_data.available()
WITH_NETWORK = [name for name in PROFILES if name != "no-neutron"]
BOOT_TIMEOUT = 60
DELETE_TIMEOUT = 60


@pytest.fixture(scope="module")
def connect(openstack_sandbox):
    cache = {}

    def connect(profile):
        if profile not in openstack_sandbox.profile_names:
            pytest.skip(f"the running sandbox has no profile {profile}")
        if profile not in cache:
            cache[profile] = openstack_sandbox.connect(profile)
        return cache[profile]

    return connect


def _profile(name):
    return profile_data.load(name)


@pytest.mark.parametrize("profile", WITH_NETWORK)
def test_project_sees_exactly_its_networks(connect, profile):
    spec = _profile(profile)
    networks = {network.name: network for network in connect(profile).network.networks()}

    assert set(networks) == {network["name"] for network in spec["networks"]}
    for network in spec["networks"]:
        external = network["kind"] == "external"
        assert networks[network["name"]].is_router_external is external, network["name"]
        assert spec["expect"]["networks"][network["name"]]["external"] is external


@pytest.mark.parametrize("profile", WITH_NETWORK)
def test_project_sees_the_subnets_of_its_networks(connect, profile):
    spec = _profile(profile)
    subnets = {subnet.name: subnet.cidr for subnet in connect(profile).network.subnets()}

    assert subnets == {subnet["name"]: str(ipaddress.ip_network(subnet["cidr"]))
                       for subnet in profile_data.subnets(spec)}


@pytest.mark.parametrize("profile", PROFILES)
def test_project_sees_exactly_its_images(connect, openstack_sandbox, profile):
    spec = _profile(profile)
    ids = openstack_sandbox.profile(profile)["images"]
    conn = connect(profile)

    listed = {image.id for image in conn.image.images()}
    hidden = {image.id for image in conn.image.images(is_hidden=True)}

    assert listed == {ids[image["key"]] for image in spec["images"] if not image.get("hidden")}
    assert hidden == {ids[image["key"]] for image in spec["images"] if image.get("hidden")}


@pytest.mark.parametrize("profile", PROFILES)
def test_expected_image_is_the_newest_active_of_its_name(connect, openstack_sandbox, profile):
    expect = openstack_sandbox.profile(profile)["expect"]["image"]
    same_name = [image for image in connect(profile).image.images()
                 if image.name == expect["name"]]
    chosen = next(image for image in same_name if image.id == expect["id"])

    assert chosen.status == "active"
    assert all(image.created_at < chosen.created_at for image in same_name if image is not chosen)


def test_deactivated_and_private_images_are_as_the_profiles_say(connect, openstack_sandbox):
    multi = openstack_sandbox.profile("multi-external")["images"]
    statuses = {image.id: image.status for image in connect("multi-external").image.images()}
    assert statuses[multi["jammy-deactivated"]] == "deactivated"

    fip = openstack_sandbox.profile("fip-required")
    snapshot = connect("fip-required").image.get_image(fip["images"]["webserver-snapshot"])
    assert snapshot.visibility == "private"
    assert snapshot.owner == fip["project_id"]
    assert snapshot.properties.get("image_type") == "snapshot"


@pytest.mark.parametrize("profile", PROFILES)
def test_project_sees_exactly_its_flavors(connect, profile):
    spec = _profile(profile)
    flavors = {flavor.name: flavor for flavor in connect(profile).compute.flavors()}

    assert set(flavors) == {flavor["name"] for flavor in spec["flavors"]}
    expected = spec["expect"]["flavor"]
    assert flavors[expected["name"]].ram >= expected["min_ram"]


def test_no_neutron_cloud_has_no_network_endpoint(connect):
    conn = connect("no-neutron")

    assert conn.has_service("compute")
    assert conn.has_service("image")
    assert not conn.has_service("network")


def test_clouds_yaml_carries_profile_settings(openstack_sandbox):
    import yaml

    clouds = yaml.safe_load(openstack_sandbox.clouds_yaml.read_text())["clouds"]

    assert set(clouds) == set(openstack_sandbox.cloud_names)
    for name, cloud in clouds.items():
        profile = cloud["cloudnorm"]["sandbox_profile"]
        assert name == f"sandbox-{profile}"
        assert cloud["cloudnorm"]["provider"] == "openstack"
    assert clouds["sandbox-no-neutron"]["region_name"] == "RegionNoNet"
    networks = {network["name"]: network
                for network in clouds["sandbox-multi-external"]["networks"]}
    assert networks["Public Internet"]["nat_source"] is True
    assert networks["Private Network (Floating Public)"]["default_interface"] is True
    # Clouds whose quirk cloudnorm cannot discover are named to it through its own profiles.
    assert clouds["sandbox-config-drive-only"]["cloudnorm"] == {
        "provider": "openstack", "profile": "config-drive",
        "sandbox_profile": "config-drive-only"}
    assert clouds["sandbox-port-forward"]["cloudnorm"] == {
        "provider": "openstack", "profile": "port-forward", "sandbox_profile": "port-forward"}


@pytest.mark.parametrize("profile", PROFILES)
def test_server_boots_on_the_default_network(connect, openstack_sandbox, profile):
    spec = _profile(profile)
    expect = openstack_sandbox.profile(profile)["expect"]
    conn = connect(profile)
    # Without a network service the client cannot name one; Nova picks the only one.
    networks = "auto" if profile == "no-neutron" else [{"uuid": expect["default_network_id"]}]

    # A flavor with disk 0 takes only a volume-backed server (Nova's zero_disk_flavor
    # policy): the image goes in as the source of the root volume.
    boot: dict = ({"image_id": expect["image"]["id"]} if "root_volume_gb" not in expect
                  else {"block_device_mapping": [{
                      "boot_index": 0, "uuid": expect["image"]["id"], "source_type": "image",
                      "destination_type": "volume", "volume_size": expect["root_volume_gb"],
                      "delete_on_termination": True}]})
    server = conn.compute.create_server(
        name=f"sandbox-test-{profile}", flavor_id=expect["flavor"]["id"], networks=networks,
        **boot)
    try:
        server = conn.compute.wait_for_server(server, status="ACTIVE", wait=BOOT_TIMEOUT,
                                              interval=0.5)
        default = next(n for n in spec["networks"] if n["name"] == expect["default_network"])
        ranges = [ipaddress.ip_network(subnet["cidr"]) for subnet in default["subnets"]]

        assert list(server.addresses) == [expect["default_network"]]
        addresses = [ipaddress.ip_address(entry["addr"])
                     for entry in server.addresses[expect["default_network"]]]
        assert sorted(address.version for address in addresses) == sorted(
            network.version for network in ranges)
        for address in addresses:
            assert any(address in network for network in ranges), address
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=DELETE_TIMEOUT, interval=0.5)


def test_console_output_comes_from_the_console_file(connect, openstack_sandbox):
    expect = openstack_sandbox.profile("direct-public")["expect"]
    conn = connect("direct-public")
    server = conn.compute.create_server(
        name="sandbox-test-console", image_id=expect["image"]["id"],
        flavor_id=expect["flavor"]["id"], networks=[{"uuid": expect["default_network_id"]}])
    console_file = Path(openstack_sandbox.console_dir) / f"{server.id}.log"
    try:
        conn.compute.wait_for_server(server, status="ACTIVE", wait=BOOT_TIMEOUT, interval=0.5)
        canned = conn.compute.get_server_console_output(server)["output"]
        text = ("-----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
                "256 SHA256:sandbox root@sandbox-test-console (ED25519)\n"
                "-----END SSH HOST KEY FINGERPRINTS-----\n")
        console_file.write_text(text)

        assert canned != text
        assert conn.compute.get_server_console_output(server)["output"] == text
    finally:
        console_file.unlink(missing_ok=True)
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=DELETE_TIMEOUT, interval=0.5)


def test_floating_ip_comes_from_fip_required_public(connect, openstack_sandbox):
    conn = connect("fip-required")
    public = openstack_sandbox.profile("fip-required")["networks"]["public"]

    floating_ip = conn.network.create_ip(floating_network_id=public)
    try:
        assert ipaddress.ip_address(floating_ip.floating_ip_address) in ipaddress.ip_network(
            "203.0.113.0/27")
    finally:
        conn.network.delete_ip(floating_ip)


def test_floating_ip_fails_on_misnamed_external(connect, openstack_sandbox):
    conn = connect("misnamed")
    external = openstack_sandbox.profile("misnamed")["networks"]["external"]

    with pytest.raises(openstack.exceptions.BadRequestException,
                       match="does not contain any IPv4 subnet"):
        conn.network.create_ip(floating_network_id=external)


def test_floating_ip_fails_on_gateway_only_subnet(connect, openstack_sandbox):
    conn = connect("ipv6-public")
    egress = openstack_sandbox.profile("ipv6-public")["networks"]["egress"]

    with pytest.raises(openstack.exceptions.ConflictException, match="No valid service subnet"):
        conn.network.create_ip(floating_network_id=egress)


def test_config_drive_only_records_the_config_drive(connect, openstack_sandbox):
    state = openstack_sandbox.profile("config-drive-only")
    expect = state["expect"]
    conn = connect("config-drive-only")
    # What the SSH data plane reads to decide whether a server's key could arrive.
    assert state["metadata_service"] is False
    assert all(openstack_sandbox.profile(name)["metadata_service"] is True
               for name in openstack_sandbox.profile_names if name != "config-drive-only")

    server = conn.compute.create_server(
        name="sandbox-test-config-drive", image_id=expect["image"]["id"],
        flavor_id=expect["flavor"]["id"], networks=[{"uuid": expect["default_network_id"]}],
        config_drive=True)
    try:
        server = conn.compute.wait_for_server(server, status="ACTIVE", wait=BOOT_TIMEOUT,
                                              interval=0.5)
        assert str(server.has_config_drive).lower() == "true"
        (address,) = server.addresses["Ext-Net"]
        assert ipaddress.ip_address(address["addr"]) in ipaddress.ip_network("203.0.113.224/29")
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=DELETE_TIMEOUT, interval=0.5)


def test_port_forward_project_owns_one_shared_floating_ip(connect, openstack_sandbox):
    state = openstack_sandbox.profile("port-forward")
    shared = state["expect"]["shared_floating_ip"]
    conn = connect("port-forward")

    (floating_ip,) = conn.network.ips()
    assert floating_ip.floating_ip_address == shared
    assert floating_ip.id == state["floating_ips"][shared]
    assert floating_ip.project_id == state["project_id"]
    assert floating_ip.port_id is None
    assert floating_ip.floating_network_id == state["networks"]["public"]
    assert floating_ip.description == "shared floating IP: reach servers through port forwarding"
    # The pool held the router's gateway address and this one: there is no other.
    with pytest.raises(openstack.exceptions.ConflictException,
                       match="No more IP addresses available"):
        conn.network.create_ip(floating_network_id=state["networks"]["public"])
    assert [ip.id for ip in conn.network.ips()] == [floating_ip.id]


def test_port_forward_project_can_forward_a_port_of_the_shared_ip(connect, openstack_sandbox):
    state = openstack_sandbox.profile("port-forward")
    fip_id = state["floating_ips"][state["expect"]["shared_floating_ip"]]
    conn = connect("port-forward")
    # A port of the project's tenant network stands in for a server's: no boot needed.
    port = conn.network.create_port(network_id=state["networks"]["private"],
                                    name="sandbox-test-forwarded")
    try:
        internal_ip = port.fixed_ips[0]["ip_address"]
        forwarding = conn.network.create_port_forwarding(
            floatingip_id=fip_id, internal_port_id=port.id, internal_ip_address=internal_ip,
            internal_port=22, external_port=2201, protocol="tcp", description="ssh")
        try:
            listed = list(conn.network.port_forwardings(fip_id))
            assert [(pf.id, pf.internal_port, pf.external_port) for pf in listed] == [
                (forwarding.id, 22, 2201)]
            # The floating IP shows its forwardings too (expose-port-forwarding-in-fip) and
            # now belongs to the router that connects the port's subnet.
            body = conn.network.get(f"/floatingips/{fip_id}").json()["floatingip"]
            assert [(pf["internal_port_id"], pf["external_port"])
                    for pf in body["port_forwardings"]] == [(port.id, 2201)]
            assert body["router_id"] == state["routers"]["router1"]
            # One external port maps to one place.
            with pytest.raises(openstack.exceptions.BadRequestException, match="collision"):
                conn.network.create_port_forwarding(
                    floatingip_id=fip_id, internal_port_id=port.id,
                    internal_ip_address=internal_ip, internal_port=23, external_port=2201,
                    protocol="tcp")
        finally:
            conn.network.delete_port_forwarding(forwarding, fip_id, ignore_missing=True)
        assert list(conn.network.port_forwardings(fip_id)) == []
        assert conn.network.get_ip(fip_id).router_id is None
    finally:
        conn.network.delete_port(port)


def test_default_security_group_keeps_ssh_closed(connect):
    conn = connect("fip-required")
    groups = list(conn.network.security_groups(name="default"))

    assert len(groups) == 1
    rules = list(conn.network.security_group_rules(security_group_id=groups[0].id))
    ingress = [rule for rule in rules if rule.direction == "ingress"]
    assert ingress, "Neutron's default group admits traffic from its own members"
    assert all(rule.remote_group_id == groups[0].id for rule in ingress)


def test_request_log_records_requests_with_project(connect, openstack_sandbox):
    conn = connect("fip-required")
    started = time.time()
    list(conn.compute.flavors())
    list(conn.network.networks())

    nova = openstack_sandbox.requests(since=started, service="nova",
                                      project="sandbox-fip-required")
    neutron = openstack_sandbox.requests(since=started, service="neutron",
                                         project="sandbox-fip-required")
    assert any(entry["path"].endswith("/flavors/detail") and entry["status"] == 200
               for entry in nova)
    assert any(entry["path"] == "/v2.0/networks" for entry in neutron)
    assert not openstack_sandbox.requests(since=started, project="sandbox-misnamed")


# Where each service's configuration names its database (file, section), and which one.
DATABASE_SETTINGS = [
    ("keystone/etc/keystone.conf", "database", "keystone"),
    ("glance/etc/glance-api.conf", "database", "glance"),
    ("neutron/etc/neutron.conf", "database", "neutron"),
    ("placement/etc/placement.conf", "placement_database", "placement"),
    ("nova/etc/nova.conf", "api_database", "nova_api"),
    ("nova/etc/nova.conf", "database", "nova"),
    ("cinder/etc/cinder.conf", "database", "cinder"),
]


def _psql(database: dict, name: str, query: str) -> list[str]:
    from cloudnorm.testing.openstack import postgres

    command = [str(postgres.bin_dir() / "psql"), "-h", database["socket_dir"], "-U",
               database["role"], "-d", name, "-Atc", query]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.splitlines()


def test_services_keep_their_data_in_postgresql(openstack_sandbox):
    database = openstack_sandbox.database
    assert database.get("engine") == "postgresql", database.get("warning")

    present = set(_psql(database, "postgres", "SELECT datname FROM pg_database"))
    assert set(database["databases"]) <= present
    for path, section, name in DATABASE_SETTINGS:
        if name not in database["databases"]:
            continue  # no profile with block storage: no Cinder
        config = configparser.ConfigParser(interpolation=None)
        config.read(Path(openstack_sandbox.workdir) / path)
        assert config.get(section, "connection") == (
            f"postgresql+psycopg2://{database['role']}@/{name}?host={database['socket_dir']}")
    # Nova's cells as nova-manage maps them, and its compute host in cell1.
    cells = dict(row.split("|") for row in _psql(
        database, "nova_api", "SELECT name, database_connection FROM cell_mappings"))
    assert cells["cell0"].startswith("postgresql+psycopg2://") and "/nova_cell0?" in cells["cell0"]
    assert "/nova?" in cells["cell1"]
    assert _psql(database, "nova_api", "SELECT c.name FROM host_mappings h JOIN cell_mappings c"
                 " ON h.cell_id = c.id") == ["cell1"]


def test_without_postgresql_the_sandbox_warns_and_uses_sqlite(tmp_path, monkeypatch, capsys):
    from cloudnorm.testing.openstack import postgres
    from cloudnorm.testing.openstack.stack import OpenStackStack

    monkeypatch.setattr(postgres, "bin_dir", lambda: None)
    stack = OpenStackStack(tmp_path / "sandbox")
    urls = stack._start_database(stack._prepare_workdir(), block_storage=True)

    assert urls["keystone"].startswith("sqlite:///") and urls["nova_api"] == "sqlite://"
    assert stack.database["engine"] == "sqlite"
    assert "PostgreSQL is not installed" in stack.database["reason"]
    assert stack.database["warning"] in capsys.readouterr().err
    assert stack.database["warning"].startswith("WARNING")
    with pytest.raises(ValueError, match="postgresql"):
        OpenStackStack(tmp_path / "other", database="mysql")


def test_failed_start_leaves_no_process(tmp_path, monkeypatch):
    from cloudnorm.testing.openstack import seed
    from cloudnorm.testing.openstack.stack import OpenStackStack

    def broken_seed(*args, **kwargs):
        raise seed.SeedError("seeding broke on purpose")

    monkeypatch.setattr(seed, "seed", broken_seed)
    stack = OpenStackStack(tmp_path / "sandbox", ["direct-public"])

    with pytest.raises(seed.SeedError, match="on purpose"):
        stack.start()
    assert processes_mentioning(str(tmp_path)) == []

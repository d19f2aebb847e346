"""The Ansible collection's modules and inventory plugin, with cloudnorm mocked at
``cloudnorm.connect``: what each module asks the library and what it reports."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest

pytest.importorskip("ansible")

from ansible.module_utils.testing import patch_module_args  # noqa: E402
from ansible.plugins.loader import init_plugin_loader  # noqa: E402

PROJECT = Path(__file__).resolve().parents[2]
# Ansible's collection loader imports the collection from where it lives in this
# repository, as ansible-playbook would; the modules are imported through it.
init_plugin_loader([str(PROJECT)])

import cloudnorm  # noqa: E402
from ansible_collections.cloudnorm.cloud.plugins.modules import (  # noqa: E402
    cloud_info,
    server,
    server_info,
)
from cloudnorm.models import (  # noqa: E402
    Address,
    Decision,
    Flavor,
    Image,
    Location,
    Network,
    Server,
)

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFUo1Lq9n2bSGa4dHc1jDdLvd3mQFZAgjd6a6+ofq2lf"


def make_server(name="web1", **fields):
    values = dict(
        id="srv-1", name=name, status="running",
        location=Location(cloud="mycloud", region="RegionOne"), image="img-1",
        flavor="m1.small",
        addresses=(Address("10.0.0.5", 4, "private", False, "subnet is a private range"),
                   Address("203.0.113.7", 4, "public", True, "floating IP", kind="floating")),
        public_v4="203.0.113.7", private_v4="10.0.0.5", interface_ip="203.0.113.7",
        ssh_user="ubuntu", ssh_port=22, host_keys=(HOST_KEY,),
        tags={"role": "web", "cloudnorm:owner": "abc"},
        decisions=(Decision("image", "Ubuntu 22.04", "newest"),))
    values.update(fields)
    return Server(**values)


@pytest.fixture
def cloud():
    fake = mock.MagicMock(name="Cloud")
    with mock.patch.object(cloudnorm, "connect", return_value=fake) as connect:
        fake.connect = connect
        yield fake


def run(module, args, capsys):
    """Run a module's main() with ``args``; its JSON result and exit code."""
    with patch_module_args(args), pytest.raises(SystemExit) as exited:
        module.main()
    result = json.loads(capsys.readouterr().out)
    result["rc"] = exited.value.code
    return result


# -- server ---------------------------------------------------------------------------------
def test_present_creates_when_the_name_is_unknown(cloud, capsys):
    cloud.get_server.side_effect = cloudnorm.NotFound("no server 'web1'")
    cloud.create_server.return_value = make_server()
    result = run(server, dict(cloud="mycloud", name="web1", min_ram=2048,
                              authorized_keys=["ssh-ed25519 AAAA op"], tags={"n": 1},
                              timeout=120, config_files=["/etc/clouds.yaml"]), capsys)
    assert result["rc"] == 0 and result["changed"] is True
    cloud.connect.assert_called_once_with("mycloud", config_files=["/etc/clouds.yaml"])
    cloud.create_server.assert_called_once_with(cloudnorm.CreateRequest(
        "web1", image=None, flavor=None, min_ram=2048, min_vcpus=None,
        network=None, authorized_keys=("ssh-ed25519 AAAA op",), bootstrap=True, wait=True,
        timeout=120.0, tags={"n": "1"}))
    out = result["server"]
    assert (out["interface_ip"], out["ssh_user"], out["ssh_port"]) == ("203.0.113.7",
                                                                      "ubuntu", 22)
    assert out["addresses"][1] == dict(ip="203.0.113.7", version=4, network="public",
                                       public=True, reason="floating IP", kind="floating")
    assert out["decisions"] == [dict(step="image", choice="Ubuntu 22.04", reason="newest")]
    assert result["known_hosts"] == [f"203.0.113.7 {HOST_KEY}"]
    cloud.close.assert_called_once_with()


@pytest.mark.parametrize("given", [{"runcmd": ["touch /root/ran"]}, "#!/bin/sh\ntrue\n"],
                         ids=["cloud-config", "script"])
def test_present_passes_user_data_zone_and_groups(cloud, capsys, given):
    cloud.get_server.side_effect = cloudnorm.NotFound("no server 'web1'")
    cloud.create_server.return_value = make_server()
    result = run(server, dict(cloud="mycloud", name="web1", userdata=given,
                              availability_zone="az-2", security_groups=["web"]), capsys)
    assert result["rc"] == 0
    (request,), _ = cloud.create_server.call_args
    assert request.userdata == cloudnorm.userdata.encode(given)
    assert (request.availability_zone, request.security_groups) == ("az-2", ("web",))


@pytest.mark.parametrize("given, expected", [(True, True), (False, False), ("no", False),
                                             (None, None)])
def test_present_passes_the_access_mode(cloud, capsys, given, expected):
    cloud.get_server.side_effect = cloudnorm.NotFound("no server 'web1'")
    cloud.create_server.return_value = make_server()
    args = dict(cloud="mycloud", name="web1")
    if given is not None:
        args["public"] = given
    assert run(server, args, capsys)["changed"] is True
    (request,), _ = cloud.create_server.call_args
    assert request.public is expected


def test_present_is_no_change_when_the_server_exists(cloud, capsys):
    cloud.get_server.return_value = make_server(ssh_port=2222)
    result = run(server, dict(cloud="mycloud", name="web1"), capsys)
    assert result["changed"] is False
    cloud.create_server.assert_not_called()
    assert result["server"]["id"] == "srv-1"
    assert result["known_hosts"] == [f"[203.0.113.7]:2222 {HOST_KEY}"]


def test_present_in_check_mode_creates_nothing(cloud, capsys):
    cloud.get_server.side_effect = cloudnorm.NotFound("no server 'web1'")
    result = run(server, dict(cloud="mycloud", name="web1", _ansible_check_mode=True), capsys)
    assert (result["changed"], result["server"], result["known_hosts"]) == (True, {}, [])
    cloud.create_server.assert_not_called()


def test_absent_deletes_the_named_server(cloud, capsys):
    existing = make_server()
    cloud.get_server.return_value = existing
    result = run(server, dict(cloud="mycloud", name="web1", state="absent", timeout=60),
                 capsys)
    assert result["changed"] is True and result["server"] == {}
    cloud.delete_server.assert_called_once_with(existing, wait=True, timeout=60.0)


def test_absent_is_no_change_without_the_server(cloud, capsys):
    cloud.get_server.side_effect = cloudnorm.NotFound("no server 'web1'")
    result = run(server, dict(cloud="mycloud", name="web1", state="absent"), capsys)
    assert result["changed"] is False
    cloud.delete_server.assert_not_called()


def test_absent_in_check_mode_deletes_nothing(cloud, capsys):
    cloud.get_server.return_value = make_server()
    result = run(server, dict(cloud="mycloud", name="web1", state="absent",
                              _ansible_check_mode=True), capsys)
    assert result["changed"] is True
    cloud.delete_server.assert_not_called()


def test_cloudnorm_errors_fail_with_their_message(cloud, capsys):
    cloud.get_server.side_effect = cloudnorm.NotFound("no server 'web1'")
    cloud.create_server.side_effect = cloudnorm.QuotaExceeded(
        "the project's instance quota (10) is used up; delete a server or ask for more",
        resource="instances", cloud="mycloud")
    result = run(server, dict(cloud="mycloud", name="web1"), capsys)
    assert result["rc"] == 1 and result["failed"] is True
    assert result["msg"] == ("cloud 'mycloud': the project's instance quota (10) is used up;"
                             " delete a server or ask for more")
    assert (result["error"], result["cloud"]) == ("QuotaExceeded", "mycloud")
    cloud.close.assert_called_once_with()


def test_two_servers_with_one_name_fail_with_the_candidates(cloud, capsys):
    cloud.get_server.side_effect = cloudnorm.Ambiguous(
        "2 servers are named 'web1' in cloud 'mycloud'; use an id", candidates=["a", "b"],
        cloud="mycloud")
    result = run(server, dict(cloud="mycloud", name="web1"), capsys)
    assert result["failed"] is True and result["candidates"] == ["a", "b"]
    assert "use an id" in result["msg"]
    cloud.create_server.assert_not_called()


def test_connect_errors_fail_the_module(capsys):
    with mock.patch.object(cloudnorm, "connect",
                           side_effect=cloudnorm.ConfigError("no cloud 'nope' in clouds.yaml")):
        result = run(server, dict(cloud="nope", name="web1"), capsys)
    assert result["failed"] is True and result["msg"] == "no cloud 'nope' in clouds.yaml"


def test_flavor_and_min_ram_exclude_each_other(cloud, capsys):
    result = run(server, dict(cloud="mycloud", name="web1", flavor="m1.small", min_ram=1),
                 capsys)
    assert result["failed"] is True and "mutually exclusive" in result["msg"]
    cloud.get_server.assert_not_called()


# -- server_info ----------------------------------------------------------------------------
def test_server_info_lists_every_server(cloud, capsys):
    cloud.list_servers.return_value = [make_server(), make_server("db1", id="srv-2",
                                                                  host_keys=())]
    result = run(server_info, dict(cloud="mycloud"), capsys)
    assert [s["name"] for s in result["servers"]] == ["web1", "db1"]
    assert result["known_hosts"] == [f"203.0.113.7 {HOST_KEY}"]
    assert result["changed"] is False


def test_server_info_by_name_is_empty_when_unknown(cloud, capsys):
    cloud.get_server.side_effect = cloudnorm.NotFound("no server 'x'")
    result = run(server_info, dict(cloud="mycloud", name="x"), capsys)
    assert result["servers"] == []


# -- cloud_info -----------------------------------------------------------------------------
def test_cloud_info_discovers_with_reasons(cloud, capsys):
    cloud.name, cloud.provider = "mycloud", "openstack"
    cloud.location = Location(cloud="mycloud", region="RegionOne")
    cloud.profile.name = "openstack"
    image = Image(id="img-1", name="Ubuntu 22.04", os_distro="ubuntu", os_version="22.04")
    flavor = Flavor(id="2", name="m1.small", ram=2048, vcpus=1, disk=20)
    cloud.list_images.return_value = [image]
    cloud.list_flavors.return_value = [flavor]
    cloud.list_networks.return_value = [
        Network(id="n1", name="public", public=True, reason="router:external", external=True)]
    cloud.choose_network.return_value = Decision("network", "private", "the only one")
    cloud.choose_image.return_value = (image, Decision("image", "Ubuntu 22.04", "newest"))
    cloud.login_user.return_value = ("ubuntu", "distribution default")
    cloud.choose_flavor.return_value = (flavor, Decision("flavor", "m1.small", "smallest"))
    result = run(cloud_info, dict(cloud="mycloud", image="ubuntu-22.04", min_ram=2048),
                 capsys)
    assert result["cloud"] == dict(name="mycloud", provider="openstack", region="RegionOne",
                                   profile="openstack")
    assert result["networks"][0]["reason"] == "router:external"
    assert result["networks"][0]["attachable"] is False
    assert result["flavors"][0]["ram"] == 2048
    assert result["images"][0]["os_version"] == "22.04"
    assert result["default_network"] == dict(step="network", choice="private",
                                             reason="the only one")
    assert result["image_choice"]["login_user"] == "ubuntu"
    assert result["flavor_choice"]["reason"] == "smallest"
    cloud.choose_flavor.assert_called_once_with(min_ram=2048, min_vcpus=None)


def test_cloud_info_gathers_only_what_is_asked(cloud, capsys):
    cloud.name, cloud.provider, cloud.profile.name = "mycloud", "aws", "aws"
    cloud.choose_network.return_value = None
    cloud.location = Location(cloud="mycloud")
    result = run(cloud_info, dict(cloud="mycloud", gather=["networks"]), capsys)
    assert "images" not in result and "flavors" not in result
    assert result["default_network"] == {} and "image_choice" not in result
    cloud.list_images.assert_not_called()


# -- inventory ------------------------------------------------------------------------------
def test_inventory_groups_and_connection_variables(tmp_path):
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    config = tmp_path / "cloudnorm.yml"
    config.write_text(
        "plugin: cloudnorm.cloud.servers\nclouds: [one, two]\n"
        f"known_hosts_file: {tmp_path}/known_hosts\n")
    clouds = {
        "one": mock.MagicMock(name="one"),
        "two": mock.MagicMock(name="two"),
    }
    clouds["one"].list_servers.return_value = [
        make_server(location=Location(cloud="one", region="RegionOne"))]
    clouds["one"].list_images.return_value = [
        Image(id="img-1", name="Ubuntu", os_distro="ubuntu", os_version="22.04")]
    clouds["two"].list_servers.return_value = [
        make_server(id="i-2", location=Location(cloud="two", region="us-east-1"),
                    image="ami-9", interface_ip="198.51.100.4", public_v4="198.51.100.4",
                    ssh_port=2222, tags={"role": "web"}),
        make_server("hidden", id="i-3", interface_ip=None, public_v4=None, private_v4=None,
                    addresses=())]
    clouds["two"].list_images.return_value = []
    with mock.patch.object(cloudnorm, "connect", side_effect=lambda name, **kw: clouds[name]):
        inventory = InventoryManager(loader=DataLoader(), sources=[str(config)])
    hosts = {h.name: h for h in inventory.get_hosts()}
    assert sorted(hosts) == ["web1", "web1.two"]
    first, second = hosts["web1"].get_vars(), hosts["web1.two"].get_vars()
    assert (first["ansible_host"], first["ansible_port"], first["ansible_user"]) == (
        "203.0.113.7", 22, "ubuntu")
    assert (second["ansible_host"], second["ansible_port"]) == ("198.51.100.4", 2222)
    assert first["ansible_ssh_common_args"] == (
        f"-o UserKnownHostsFile={tmp_path}/known_hosts -o GlobalKnownHostsFile=/dev/null"
        " -o StrictHostKeyChecking=yes")
    assert first["cloudnorm_known_hosts"] == [f"203.0.113.7 {HOST_KEY}"]
    assert second["cloudnorm_known_hosts"] == [f"[198.51.100.4]:2222 {HOST_KEY}"]
    groups = inventory.get_groups_dict()
    assert groups["cloud_one"] == ["web1"] and groups["cloud_two"] == ["web1.two"]
    assert groups["region_RegionOne"] == ["web1"]
    assert groups["region_us_east_1"] == ["web1.two"]
    assert groups["os_ubuntu"] == ["web1"] and groups["os_ubuntu_22_04"] == ["web1"]
    assert sorted(groups["tag_role_web"]) == ["web1", "web1.two"]
    assert not any(g.startswith("tag_cloudnorm") for g in groups)
    for cloud in clouds.values():
        cloud.close.assert_called_once_with()

"""Real Nova records, with the Neutron context they were read in, through cloudnorm.

The records and what openstacksdk answers for them come from openstacksdk's own unit
tests and the Compute API reference; tests/unit/corpus/openstack/SOURCES.md names each
source, and servers.yaml says per case where cloudnorm answers differently and why.
Every case runs the real connect() → openstacksdk → driver path over requests-mock.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cloudnorm import errors

from .conftest import NOVA, nova_server

CORPUS = yaml.safe_load(
    (Path(__file__).parent / "corpus" / "openstack" / "servers.yaml").read_text())


def _serve(fake_os, case):
    record = nova_server(**{k: v for k, v in case["server"].items()})
    fake_os.nova(f"/servers/{record['id']}", json={"server": record})
    fake_os.nova("/servers/detail", json={"servers": [record]})
    if "networks_status" in case:
        fake_os.neutron("/networks", status_code=case["networks_status"],
                        json={"NeutronError": {"message": "not here"}})
        for path in ("/subnets", "/routers", "/ports", "/floatingips"):
            fake_os.neutron(path, status_code=case["networks_status"], json={})
    elif "networks" in case:
        fake_os.neutron("/networks", json={"networks": case["networks"]})
        fake_os.neutron("/subnets", json={"subnets": case.get("subnets", [])})
        fake_os.neutron("/routers", json={"routers": case.get("routers", [])})
        fake_os.neutron("/ports?device_owner=network:router_interface", json={"ports": []})
        fake_os.neutron(f"/ports?device_id={record['id']}",
                        json={"ports": case.get("neutron_ports", [])})
        fake_os.neutron("/floatingips",
                        json={"floatingips": case.get("neutron_floatingips", [])})
    else:
        fake_os.services = ["compute", "image"]
    return record


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
@pytest.mark.parametrize("lookup", ["get_server", "list_servers"])
def test_real_records(connect, fake_os, case, lookup):
    record = _serve(fake_os, case)
    cloud = connect(networks=case["hints"]) if "hints" in case else connect()
    server = (cloud.get_server(record["id"]) if lookup == "get_server"
              else cloud.list_servers()[0])
    for field, want in case["expect"].items():
        assert getattr(server, field) == want, (field, server.addresses)
    # Where cloudnorm agrees with openstacksdk, the fields it names are the same.
    if "differs" not in case:
        for field, want in case["openstacksdk"].items():
            assert getattr(server, field) == want, field


def test_corpus_cases_that_differ_say_why():
    for case in CORPUS:
        disagree = [f for f, v in case["openstacksdk"].items()
                    if f in case["expect"] and case["expect"][f] != v]
        assert not disagree or case.get("differs"), case["name"]


def test_neutron_floating_ip_is_reported_with_its_reason(connect, fake_os):
    [case] = [c for c in CORPUS if c["name"].startswith("missing_fips")]
    _serve(fake_os, case)
    server = connect().get_server("test-id")
    [fip] = [a for a in server.addresses if a.ip == "192.0.2.99"]
    assert fip.kind == "floating" and fip.public
    assert "Neutron" in fip.reason and "Nova" in fip.reason
    # Nova's own record is left as it came.
    assert len(server.raw["addresses"]["test_pnztt_net"]) == 2
    assert len(fake_os.m.request_history) > 0


def test_no_neutron_lookup_when_nova_lists_a_floating_ip(connect, fake_os):
    [case] = [c for c in CORPUS if c["name"].startswith("missing_fips")]
    case = {**case, "server": {**case["server"], "addresses": {"test_pnztt_net": [
        {"addr": "198.51.100.3", "version": 4, "OS-EXT-IPS:type": "fixed"},
        {"addr": "192.0.2.99", "version": 4, "OS-EXT-IPS:type": "floating"}]}}}
    _serve(fake_os, case)
    connect().get_server("test-id")
    lookups = [r for r in fake_os.m.request_history
               if r.path.endswith("/floatingips") and "fields" not in r.qs]
    assert lookups == []


def test_no_neutron_lookup_while_the_server_builds(connect, fake_os):
    [case] = [c for c in CORPUS if c["name"].startswith("missing_fips")]
    case = {**case, "server": {**case["server"], "status": "BUILD"}}
    _serve(fake_os, case)
    server = connect().get_server("test-id")
    assert server.public_v4 == "198.51.100.3"  # Nova's record, as it stands


def test_port_details_spare_the_port_listing(connect, fake_os):
    [case] = [c for c in CORPUS if c["name"].startswith("missing_fips")]
    fips = [{**f, "port_details": {"device_id": "test-id"}}
            for f in case["neutron_floatingips"]]
    _serve(fake_os, {**case, "neutron_floatingips": fips})
    assert connect().get_server("test-id").public_v4 == "192.0.2.99"
    assert not [r for r in fake_os.m.request_history if "device_id" in r.qs]


def test_a_floating_ip_of_another_server_is_not_taken(connect, fake_os):
    [case] = [c for c in CORPUS if c["name"].startswith("missing_fips")]
    fips = [{**f, "port_details": {"device_id": "someone-else"}}
            for f in case["neutron_floatingips"]]
    _serve(fake_os, {**case, "neutron_floatingips": fips})
    assert connect().get_server("test-id").public_v4 == "198.51.100.3"


def test_refused_network_service_is_said_and_skipped(connect, fake_os):
    [case] = [c for c in CORPUS if c["name"].startswith("external_ipv4_neutron_exception")]
    _serve(fake_os, case)
    cloud = connect()
    assert cloud.list_networks() == []
    assert "answered 404 to GET /networks" in cloud._driver.network_service_note
    assert cloud._driver.capabilities.security_groups is False


def test_network_service_403_is_refused_too(connect, fake_os):
    [case] = [c for c in CORPUS if c["name"].startswith("external_ipv4_neutron_exception")]
    _serve(fake_os, {**case, "networks_status": 403})
    assert connect().get_server("test-id").interface_ip == "192.0.2.99"


def test_network_service_500_is_still_an_error(connect, fake_os):
    [case] = [c for c in CORPUS if c["name"].startswith("external_ipv4_neutron_exception")]
    _serve(fake_os, {**case, "networks_status": 400})
    with pytest.raises(errors.ProviderError):
        connect().list_networks()


def test_access_ip_of_the_wrong_version_is_a_malformed_record(connect, fake_os):
    fake_os.services = ["compute", "image"]
    fake_os.nova("/servers/srv-1", json={"server": nova_server(accessIPv4="2001:db8::1")})
    with pytest.raises(errors.ProviderError, match="malformed server record"):
        connect().get_server("srv-1")


@pytest.mark.parametrize("bad", [167772161, "garbage", "not-an-ip", "10.0.0.0/8"])
def test_address_that_is_no_address_is_a_malformed_record(connect, fake_os, bad):
    fake_os.services = ["compute", "image"]
    fake_os.nova("/servers/srv-1", json={"server": nova_server(
        addresses={"private": [{"addr": bad, "version": 4}]})})
    with pytest.raises(errors.ProviderError, match="malformed server record"):
        connect().get_server("srv-1")


def test_nova_endpoint_is_the_one_asked():
    assert NOVA.startswith("http")

"""Whatever a GCE record holds, the GCE normalizers raise nothing but cloudnorm's errors, and
anything they give back as an address is one IP address of the version it claims."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudnorm import errors
from cloudnorm.drivers.gce.hostkeys import host_key_line, published_host_keys
from cloudnorm.drivers.gce.normalize import (
    firewall_record,
    network_record,
    normalize_flavors,
    normalize_image,
    normalize_server,
    server_state,
    server_tags,
    subnetwork_record,
)
from cloudnorm.models import Location
from cloudnorm.state import PHASES, ServerState

from . import fuzzing

LOCATION = Location(cloud="fuzz", region="us-central1", zone="us-central1-a", project="p")

json_values = fuzzing.json_values(max_size=3, max_leaves=10)

# Texts an address field may hold: addresses of both versions (mapped, scoped, private,
# public), and what is no address at all.
address_texts = st.sampled_from([
    "10.128.0.2", "34.88.182.23", "198.51.100.7", "192.168.0.42", "::ffff:10.0.0.5",
    "::ffff:34.88.182.23", "2600:1900:4150:ba95::", "2001:0000:130F:0000:0000:09C0:876A:130B",
    "fd20:1:2:3::", "fe80::1%eth0", "garbage", "test-network_ip", "10.0.0.0/24", "", " 10.0.0.1",
    "999.1.1.1", "1.2.3",
]) | st.integers() | st.none() | st.text(max_size=12) | st.ip_addresses().map(str)

access_configs = st.lists(st.fixed_dictionaries(
    {}, optional={"natIP": address_texts, "name": st.text(max_size=5) | json_values,
                  "type": st.sampled_from(["ONE_TO_ONE_NAT"]) | json_values}), max_size=2)
ipv6_access_configs = st.lists(st.fixed_dictionaries(
    {}, optional={"externalIpv6": address_texts, "name": st.text(max_size=5),
                  "externalIpv6PrefixLength": st.integers()}), max_size=2)
nics = st.fixed_dictionaries({}, optional={
    "networkIP": address_texts, "ipv6Address": address_texts,
    "network": st.sampled_from(["global/networks/default"]) | json_values,
    "subnetwork": st.text(max_size=20) | json_values, "name": st.text(max_size=5),
    "accessConfigs": access_configs | json_values,
    "ipv6AccessConfigs": ipv6_access_configs | json_values})
instances = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["web", ""]) | json_values, "id": st.text(max_size=5) | json_values,
    "status": st.sampled_from(["RUNNING", "TERMINATED", "STAGING"]) | json_values,
    "networkInterfaces": st.lists(nics, max_size=3) | st.dictionaries(
        st.text(max_size=4), nics, max_size=2) | json_values,
    "labels": st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=2)
    | json_values,
    "metadata": st.fixed_dictionaries({}, optional={"items": st.lists(st.fixed_dictionaries(
        {}, optional={"key": st.text(max_size=6) | json_values,
                      "value": st.text(max_size=6) | json_values}), max_size=3) | json_values})
    | json_values,
    "zone": st.text(max_size=10) | json_values, "machineType": st.text(max_size=10) | json_values,
    "selfLink": st.text(max_size=10) | json_values, "statusMessage": json_values,
    "creationTimestamp": st.text(max_size=10) | json_values,
}) | json_values


def refused_only_by_cloudnorm(call: Any) -> Any:
    try:
        return call()
    except errors.CloudnormError:
        return None
    except Exception as exc:  # noqa: BLE001 - the point is that nothing else escapes
        pytest.fail(f"{type(exc).__name__} escaped: {exc}")


@fuzzing.FUZZ
@given(instances, st.booleans())
def test_instances_are_read_or_refused(instance, terminating):
    state = refused_only_by_cloudnorm(lambda: server_state(instance, terminating=terminating))
    refused_only_by_cloudnorm(lambda: server_tags(instance))
    states = [state] if state is not None else []
    if state is not None:
        assert state.phase in PHASES and state.id == state.name == instance["name"]
    if isinstance(instance, dict):
        # a state whose record server_state never read: normalize_server checks it alone
        states.append(ServerState(id="web", name="web", phase="running", status="RUNNING",
                                  raw=instance))
    for one in states:
        server = refused_only_by_cloudnorm(
            lambda one=one: normalize_server(one, LOCATION, []))
        if server is None:
            continue
        for address in server.addresses:
            assert ipaddress.ip_address(address.ip).version == address.version
        for field, version in (("public_v4", 4), ("private_v4", 4), ("public_v6", 6)):
            value = getattr(server, field)
            assert value is None or ipaddress.ip_address(value).version == version
        if server.interface_ip is not None:
            assert server.interface_ip in {a.ip for a in server.addresses}


@fuzzing.FUZZ
@given(st.lists(json_values | st.fixed_dictionaries({}, optional={
    "name": st.text(max_size=6) | json_values, "memoryMb": json_values,
    "guestCpus": json_values, "deprecated": json_values, "isSharedCpu": json_values}),
    max_size=3))
def test_machine_types_are_read_or_refused(records):
    refused_only_by_cloudnorm(lambda: normalize_flavors(records, ("e2", "n2")))


@fuzzing.FUZZ
@given(json_values | st.fixed_dictionaries({}, optional={
    "name": st.text(max_size=6) | json_values, "selfLink": json_values,
    "architecture": json_values, "deprecated": json_values, "status": json_values,
    "creationTimestamp": json_values}), st.none() | st.just(
        {"distro": "debian", "version": "12", "owner": "debian-cloud"}))
def test_images_are_read_or_refused(record, entry):
    refused_only_by_cloudnorm(lambda: normalize_image(record, entry))


@fuzzing.FUZZ
@given(json_values | st.fixed_dictionaries({}, optional={
    "name": st.text(max_size=6) | json_values, "network": json_values,
    "ipCidrRange": st.sampled_from(["10.0.0.0/24", "10.0.0.1", "garbage", "::/0"])
    | json_values, "externalIpv6Prefix": json_values, "IPv4Range": json_values,
    "priority": json_values, "sourceRanges": json_values, "allowed": json_values,
    "denied": json_values, "targetTags": json_values, "direction": json_values}))
def test_network_records_are_read_or_refused(record):
    for check in (network_record, subnetwork_record, firewall_record):
        refused_only_by_cloudnorm(lambda check=check: check(record))


blobs = st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode()) | st.sampled_from([
    "AAAAC3NzaC1lZDI1NTE5AAAAIDnmHn8IWL3gUGtXDzNb3+4mIiszPnjjbH2eVwvYX6sg",
    "AAAAB3NzaC1yc2EAAAADAQABAAABAQCo4bTdpLeTwhpAOmHe"]) | st.text(max_size=30)
key_types = st.sampled_from(["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "rdp",
                             "sk-ssh-ed25519@openssh.com"]) | st.text(max_size=12)


@fuzzing.FUZZ
@given(st.lists(st.fixed_dictionaries({}, optional={
    "namespace": st.sampled_from(["hostkeys", "guestInventory"]) | json_values,
    "key": key_types | json_values, "value": blobs | json_values}), max_size=4) | json_values)
def test_guest_attribute_replies_give_whole_keys_only(items):
    found = refused_only_by_cloudnorm(
        lambda: published_host_keys({"queryPath": "hostkeys/", "queryValue": {"items": items}}))
    if found is None:
        return
    keys, _ = found
    for line in keys:
        key_type, blob = line.split(" ")
        assert host_key_line(key_type, blob) == line
        wire = base64.b64decode(blob, validate=True)
        assert wire[4:4 + len(key_type)] == key_type.encode()


@fuzzing.FUZZ
@given(key_types, blobs | st.text(max_size=60))
def test_host_key_line_raises_only_value_error(key_type, value):
    try:
        line = host_key_line(key_type, value)
    except ValueError:
        return
    assert line.split(" ")[0] == key_type

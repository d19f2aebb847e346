"""Whatever EC2 (or something posing as it) sends, the AWS normalizers raise nothing but
cloudnorm's errors, and whatever they return as an address is one, of the right version."""

from __future__ import annotations

import copy
import datetime
import json
import pathlib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cloudnorm import errors, networks
from cloudnorm.drivers.aws.normalize import (
    normalize_flavors,
    normalize_image,
    normalize_server,
    reservation_states,
    server_state,
)
from cloudnorm.models import Location, Network, Server
from cloudnorm.state import PHASES, ServerState

from . import fuzzing

json_values = fuzzing.json_values()

# Address texts EC2 sends, and things that are not addresses or of the other family.
ipv4 = st.sampled_from(["10.0.0.5", "172.31.0.4", "198.51.100.7", "54.194.252.215",
                        "0.0.0.0", ""])
ipv6 = st.sampled_from(["2600:1f18::5", "2001:db8:1234:1a2b::123", "fd00::1", "fe80::1%eth0",
                        "::ffff:10.0.0.5", "::ffff:54.194.252.215", "::", ""])
odd_addresses = st.sampled_from([
    "not-an-ip", "garbage", "10.0.0.5/24", "010.0.0.5", " 10.0.0.5", "2600::1::5", "1.2.3",
    "256.1.1.1"]) | st.integers() | json_values
words = st.sampled_from(["", "i-1", "subnet-a", "amazon", "123456789012", "us-east-1a"])
state_names = st.sampled_from(["pending", "running", "stopping", "stopped", "shutting-down",
                               "terminated", "rebooting"])


def instance_records(noise: bool) -> st.SearchStrategy[Any]:
    """DescribeInstances records: with ``noise``, any field may hold anything at all (and
    most such records are refused); without, every field has EC2's shape and only some
    addresses are not addresses, so the address paths are walked through."""
    def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(strategy, json_values) if noise else strategy

    def fields(**optional: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return maybe(st.fixed_dictionaries({}, optional=optional))

    def entry(key: str, value: st.SearchStrategy[Any],
              **others: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        """A mapping that always holds ``key`` in EC2's replies (noise may leave it out)."""
        if noise:
            return fields(**{key: value}, **others)
        return st.fixed_dictionaries({key: value}, optional=others)

    v4 = st.one_of(*[ipv4] * 7, odd_addresses | ipv6)
    v6 = st.one_of(*[ipv6] * 7, odd_addresses | ipv4)
    association = fields(PublicIp=v4, IpOwnerId=maybe(words), CarrierIp=v4)
    private_entry = entry("PrivateIpAddress", v4, Primary=maybe(st.booleans()),
                          Association=association)
    v6_entry = entry("Ipv6Address", v6, IsPrimaryIpv6=maybe(st.booleans()))
    nic = fields(
        SubnetId=maybe(st.sampled_from(["subnet-a", "subnet-b", ""])),
        Attachment=fields(DeviceIndex=maybe(st.integers(-1, 3))),
        PrivateIpAddress=v4,
        PrivateIpAddresses=maybe(st.lists(private_entry, max_size=3)),
        Association=association,
        Ipv6Addresses=maybe(st.lists(v6_entry, max_size=3)))
    keys = st.sampled_from(["Name", "cloudnorm_owner", ""])
    tag = entry("Key", maybe(keys), Value=maybe(words))
    optional = {
        "StateReason": fields(Code=maybe(st.sampled_from(["Client.UserInitiatedShutdown",
                                                          "Server.InternalError"])),
                              Message=maybe(words)),
        "StateTransitionReason": maybe(words),
        "Tags": maybe(st.lists(tag, max_size=3)),
        "NetworkInterfaces": maybe(st.lists(nic, max_size=3)),
        "PublicIpAddress": v4, "PrivateIpAddress": v4, "Ipv6Address": v6,
        "SubnetId": maybe(st.sampled_from(["subnet-a", ""])),
        "Placement": fields(AvailabilityZone=maybe(words)),
        "ImageId": maybe(words), "InstanceType": maybe(words), "KeyName": maybe(words),
        "OwnerId": maybe(words),
        "LaunchTime": maybe(st.sampled_from(["2018-05-08T16:46:19.000Z",
                                             "YYYY-MM-DDTHH:MM:SS+0000", "20240101"])
                            | st.datetimes()),
        "status": maybe(st.sampled_from(["ERROR", "ACTIVE"])),
    }
    if not noise:
        return st.fixed_dictionaries({"InstanceId": st.just("i-0123456789abcdef0"),
                                      "State": st.fixed_dictionaries({"Name": state_names})},
                                     optional=optional)
    return fields(InstanceId=maybe(st.sampled_from(["i-0123456789abcdef0", "i-1", ""])),
                  State=fields(Name=maybe(state_names | st.just("")),
                               Code=maybe(st.integers(0, 80))),
                  **optional)


instances = instance_records(noise=False) | instance_records(noise=True)

# The real records of tests/unit/corpus/aws, each to be broken at one place.
CORPUS_INSTANCES = [
    instance
    for path in sorted((pathlib.Path(__file__).parent / "corpus" / "aws").glob("*.json"))
    for reservation in (lambda doc: doc.get("Reservations", [doc]))(json.loads(path.read_text()))
    for instance in reservation["Instances"]]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


@st.composite
def broken_corpus_records(draw: st.DrawFn) -> Any:
    record = copy.deepcopy(draw(st.sampled_from(CORPUS_INSTANCES)))
    path = draw(st.sampled_from(_paths(record)))
    value = draw(ipv4 | ipv6 | odd_addresses | json_values)
    if not path:
        return value
    parent = record
    for step in path[:-1]:
        parent = parent[step]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return record


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The field as EC2 shapes it, or anything at all."""
    return strategy | json_values

NETS = [Network(id="subnet-a", name="web", public=True, reason="x", subnets=("10.0.0.0/24",))]
LOCATION = Location(cloud="c", region="r")


def _refused_or(call: Any) -> Any:
    try:
        return call()
    except errors.CloudnormError:
        return None  # a record this broken may be refused, but only by cloudnorm's errors


def _check_addresses(server: Server) -> None:
    for address in server.addresses:
        assert networks.address_facts(address.ip)[0] == address.version, address
    by_ip = {a.ip: a for a in server.addresses}
    for ip, public, version in ((server.public_v4, True, 4), (server.public_v6, True, 6),
                                (server.private_v4, False, 4)):
        if ip is not None:
            assert (by_ip[ip].public, by_ip[ip].version) == (public, version)
    assert server.interface_ip is None or server.interface_ip in by_ip
    assert type(server.id) is str and server.id


def _through_the_flow(record: Any, terminating: bool) -> None:
    state = _refused_or(lambda: server_state(record, account_id="123456789012",
                                             terminating=terminating))
    if state is not None:
        assert state.id == record["InstanceId"]
        assert state.phase in PHASES
        if state.fault is not None:  # only a failure has the cloud's explanation
            assert state.phase == "error"
        if state.quota:
            assert state.fault is not None and "quota" in state.fault.lower()
        server = _refused_or(lambda: normalize_server(state, LOCATION, NETS))
        if server is not None:
            _check_addresses(server)


@fuzzing.FUZZ
@given(instances, st.booleans())
def test_server_state_and_normalize_server_never_crash(record, terminating):
    _through_the_flow(record, terminating)


@fuzzing.FUZZ
@given(broken_corpus_records(), st.booleans())
def test_real_records_broken_at_one_place_never_crash(record, terminating):
    _through_the_flow(record, terminating)


@fuzzing.FUZZ
@given(instances, st.sampled_from(PHASES))
def test_normalize_server_never_crashes_on_records_that_skipped_server_state(record, phase):
    # A state's raw is a mapping whatever the cloud sent; anything in it may be odd.
    state = ServerState(id="i-0123456789abcdef0", name="", phase=phase, status="x",
                        raw=record if isinstance(record, dict) else {})
    server = _refused_or(lambda: normalize_server(state, LOCATION, NETS))
    if server is not None:
        _check_addresses(server)


@fuzzing.FUZZ
@given(maybe(st.fixed_dictionaries({}, optional={
    "ReservationId": maybe(words), "OwnerId": maybe(words),
    "Instances": maybe(st.lists(instances, max_size=3))})))
def test_reservation_states_never_crash(reservation):
    states = _refused_or(lambda: reservation_states(reservation, {"i-1"}))
    for state in states or ():
        assert type(state.id) is str


@fuzzing.FUZZ
@given(maybe(st.fixed_dictionaries({}, optional={
    "ImageId": maybe(st.sampled_from(["ami-1", ""])), "Name": maybe(st.sampled_from([
        "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240301", "debian-12-arm64"])),
    "State": maybe(st.sampled_from(["available", "pending", "deregistered"])),
    "Public": maybe(st.booleans()), "Architecture": maybe(st.sampled_from(["x86_64", "arm64"])),
    "CreationDate": maybe(st.sampled_from(["2024-05-01T08:00:00.000Z"])),
    "DeprecationTime": maybe(st.sampled_from(["2020-01-01T00:00:00.000Z"])
                             | st.datetimes(timezones=st.just(datetime.timezone.utc))),
})))
def test_normalize_image_never_crashes(record):
    image = _refused_or(lambda: normalize_image(record))
    if image is not None:
        assert type(image.id) is str and image.id and type(image.name) is str
        assert image.visibility in ("public", "private")


@fuzzing.FUZZ
@given(maybe(st.lists(maybe(st.fixed_dictionaries({}, optional={
    "InstanceType": maybe(st.sampled_from(["t3.micro", "m5.large", ""])),
    "MemoryInfo": maybe(st.fixed_dictionaries({}, optional={"SizeInMiB": maybe(st.integers())})),
    "VCpuInfo": maybe(st.fixed_dictionaries({}, optional={
        "DefaultVCpus": maybe(st.integers())})),
})), max_size=4)))
def test_normalize_flavors_never_crashes(records):
    flavors = _refused_or(lambda: normalize_flavors(records, ("t3", "m5")))
    for flavor in flavors or ():
        assert type(flavor.ram) is int and flavor.ram >= 0 and flavor.vcpus >= 0

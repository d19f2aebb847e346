"""Real EC2 instance records (tests/unit/corpus/aws/, sources in SOURCES.md) through the
driver's normalizers: what cloudnorm must make of each, written out record by record.

The records are botocore's parsed shape (the XML replies were read with botocore's own
EC2 parser); times stay ISO text, as JSON holds them. Malformed variants of these records
are in test_aws_driver.py.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from cloudnorm import networks
from cloudnorm.drivers.aws.normalize import normalize_server, reservation_states
from cloudnorm.models import Location, Network

CORPUS = pathlib.Path(__file__).parent / "corpus" / "aws"
LOCATION = Location(cloud="aws-corpus", region="us-east-1", project="000000000000")

# (file, InstanceId) -> (public_v4, private_v4, public_v6, interface_ip, status, phase)
EXPECTED: dict[tuple[str, str], tuple[str | None, str | None, str | None, str | None, str,
                                      str]] = {
    # aws/aws-cli awscli/examples/ec2/describe-instances.rst (commit 987e2bbf), Example 1:
    # a pending instance in a VPC subnet without a public address.
    ("awscli-describe-instances-example1", "i-1234567890abcdef0"):
        (None, "10.0.0.157", None, "10.0.0.157", "pending", "pending"),
    # boto/botocore tests/unit/response_parsing/xml/responses/ec2-describe-instances.xml:
    # a stopped instance with no address at all (and a tag whose value is empty) ...
    ("botocore-ec2-describe-instances", "i-fde9cece"):
        (None, None, None, None, "stopped", "stopped"),
    # ... and a running EC2-Classic Windows instance: ipAddress + privateIpAddress, no NIC.
    ("botocore-ec2-describe-instances", "i-78f1b94a"):
        ("54.245.16.142", "10.253.17.74", None, "54.245.16.142", "running", "running"),
    # EC2 API Reference 2012-12-01, DescribeInstances VPC example: two private addresses
    # on one NIC, each with an Elastic IP of account 111122223333.
    ("ec2-apiref-2012-vpc-elastic-ips", "i-1a2b3c4d"):
        ("46.51.219.63", "10.0.0.12", None, "46.51.219.63", "running", "running"),
    # EC2 API Reference, DescribeInstances Example 2: public IPv4 assigned at launch
    # (ipOwnerId amazon), private 192.168.1.88, IPv6 2001:db8:1234:1a2b::123.
    ("ec2-apiref-describe-instances-example2", "i-1234567890abcdef0"):
        ("54.194.252.215", "192.168.1.88", "2001:db8:1234:1a2b::123", "54.194.252.215",
         "running", "running"),
    # EC2 User Guide, "Instance terminates immediately": the StateReason EC2 gives an
    # instance it ended on launch (Server.InternalError, volume limit exceeded).
    ("ec2-userguide-terminated-fragment", "i-1234567890abcdef0"):
        (None, None, None, None, "error", "error"),
    # go-amz/amz ec2/responses_test.go, DescribeInstancesExample1 (EC2 API Reference
    # 2011-12-15): two running spot instances, EC2-Classic.
    ("goamz-describe-instances-example1", "i-c5cd56af"):
        ("174.129.165.232", "10.198.85.190", None, "174.129.165.232", "running", "running"),
    ("goamz-describe-instances-example1", "i-d9cd56b3"):
        ("184.73.58.78", "10.198.87.19", None, "184.73.58.78", "running", "running"),
    # go-amz/amz DescribeInstancesExample2: tags, one with an empty value.
    ("goamz-describe-instances-example2", "i-c7cd56ad"):
        ("72.44.52.124", "10.255.121.240", None, "72.44.52.124", "running", "running"),
    # go-amz/amz RunInstancesExample (EC2 API Reference): two NICs (device 0 and 1, the
    # second with a secondary private address) and two instances with no address yet.
    ("goamz-run-instances-example", "i-2ba64342"):
        (None, "10.0.0.25", None, "10.0.0.25", "pending", "pending"),
    ("goamz-run-instances-example", "i-2bc64242"):
        (None, None, None, None, "pending", "pending"),
    ("goamz-run-instances-example", "i-2be64332"):
        (None, None, None, None, "pending", "pending"),
    # apache/libcloud libcloud/test/compute/fixtures/ec2/describe_instances.xml: two
    # stopped instances, the second in a VPC whose NIC lists another private address
    # (172.16.4.139) than the instance (172.16.9.139).
    ("libcloud-describe_instances", "i-4382922a"):
        ("1.2.3.4", "10.211.11.211", None, "1.2.3.4", "stopped", "stopped"),
    ("libcloud-describe_instances", "i-8474834a"):
        ("1.2.3.5", "172.16.4.139", None, "1.2.3.5", "stopped", "stopped"),
    # apache/libcloud .../ec2/describe_instances_with_tags.xml: privateIpAddress and
    # ipAddress are the same public address, which is reported once, as public.
    ("libcloud-describe_instances_with_tags", "i-8474834a"):
        ("1.2.3.5", None, None, "1.2.3.5", "pending", "pending"),
}


def _reservations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    # A RunInstances reply (and the aws-cli example) is one reservation, not a list.
    return doc["Reservations"] if "Reservations" in doc else [doc]


def _records() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    found = []
    for path in sorted(CORPUS.glob("*.json")):
        for reservation in _reservations(json.loads(path.read_text())):
            for instance in reservation["Instances"]:
                found.append((path.stem, reservation, instance))
    return found


RECORDS = _records()


def test_every_record_has_an_expectation_and_a_source():
    assert {(stem, i["InstanceId"]) for stem, _, i in RECORDS} == set(EXPECTED)
    sources = (CORPUS / "SOURCES.md").read_text()
    for path in CORPUS.glob("*.json"):
        assert f"`{path.name}`" in sources, path.name


@pytest.mark.parametrize(("stem", "reservation", "instance"), RECORDS,
                         ids=[f"{stem}:{i['InstanceId']}" for stem, _, i in RECORDS])
def test_corpus_record_normalizes_as_expected(stem, reservation, instance):
    only = {**reservation, "Instances": [instance]}
    (state,) = reservation_states(only)
    server = normalize_server(state, LOCATION, [])
    assert (server.public_v4, server.private_v4, server.public_v6, server.interface_ip,
            server.status, state.phase) == EXPECTED[(stem, instance["InstanceId"])]
    assert server.id == state.id == instance["InstanceId"]
    assert state.status == instance["State"]["Name"]
    for address in server.addresses:
        assert networks.address_facts(address.ip)[0] == address.version
    if reservation.get("OwnerId"):
        assert server.location.project == reservation["OwnerId"]


def test_elastic_ips_of_the_2012_example_say_whose_they_are():
    (state,) = reservation_states(json.loads(
        (CORPUS / "ec2-apiref-2012-vpc-elastic-ips.json").read_text())["Reservations"][0])
    subnet = Network(id="subnet-1a2b3c4d", name="app", public=True, reason="x",
                     subnets=("10.0.0.0/24",))
    server = normalize_server(state, LOCATION, [subnet])
    by_ip = {a.ip: a for a in server.addresses}
    assert set(by_ip) == {"10.0.0.12", "46.51.219.63", "10.0.0.14", "46.51.221.177"}
    for elastic in ("46.51.219.63", "46.51.221.177"):
        assert by_ip[elastic].public and by_ip[elastic].kind == "floating"
        assert "account 111122223333 (an Elastic IP)" in by_ip[elastic].reason
    assert "10.0.0.0/24" in by_ip["10.0.0.14"].reason and by_ip["10.0.0.14"].network == "app"
    assert (server.name, server.tags) == ("Windows Instance", {"Name": "Windows Instance"})


def test_second_nic_of_the_run_instances_example_comes_after_the_first():
    doc = json.loads((CORPUS / "goamz-run-instances-example.json").read_text())
    # Listed primary-first in the reply; cloudnorm must order by DeviceIndex regardless.
    first = doc["Instances"][0]
    first["NetworkInterfaces"] = list(reversed(first["NetworkInterfaces"]))
    (state, *_) = reservation_states(doc)
    server = normalize_server(state, LOCATION, [])
    assert [a.ip for a in server.addresses] == ["10.0.0.25", "10.0.1.10", "10.0.1.20"]
    assert server.private_v4 == "10.0.0.25"


def test_terminated_on_launch_carries_ec2s_reason():
    doc = json.loads((CORPUS / "ec2-userguide-terminated-fragment.json").read_text())
    (state,) = reservation_states(doc["Reservations"][0])
    assert state.fault == "Client.VolumeLimitExceeded: Volume limit exceeded"
    assert (state.phase, state.status, state.quota) == ("error", "terminated", False)
    (asked,) = reservation_states(doc["Reservations"][0], {"i-1234567890abcdef0"})
    assert asked.phase == "terminated" and not asked.fault


def test_user_stopped_records_keep_their_words():
    doc = json.loads((CORPUS / "libcloud-describe_instances.json").read_text())
    states = [s for r in doc["Reservations"] for s in reservation_states(r)]
    assert [s.phase for s in states] == ["stopped", "stopped"]
    assert [s.name for s in states] == ["", "Test Server 2"]
    assert states[1].tags == {"Name": "Test Server 2", "Group": "VPC Test"}
    assert all(not s.fault for s in states)


def test_empty_tag_values_are_kept_as_empty():
    doc = json.loads((CORPUS / "goamz-describe-instances-example2.json").read_text())
    (state,) = reservation_states(doc["Reservations"][0])
    assert state.tags == {"webserver": "", "stack": "Production"}

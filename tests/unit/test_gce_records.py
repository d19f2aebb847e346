"""The GCE normalizers over real records: every instance of tests/unit/corpus/gce/instances
(REST JSON as recorded by public projects, see SOURCES.md there) gives the addresses
expected.yaml states, read both as JSON and as the compute_v1.Instance messages the driver
receives; every guest attributes reply of corpus/gce/guest_attributes gives the host keys
it holds, and only those."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud import compute_v1

from cloudnorm import errors
from cloudnorm.drivers.gce.hostkeys import published_host_keys
from cloudnorm.drivers.gce.normalize import normalize_server, server_state
from cloudnorm.drivers.gce.transport import as_dict
from cloudnorm.models import Location

CORPUS = Path(__file__).parent / "corpus" / "gce"
EXPECTED = yaml.safe_load((CORPUS / "expected.yaml").read_text())
LOCATION = Location(cloud="corpus", region="us-central1", zone="us-central1-a", project="p")


def instances_of(document: Any) -> list[dict[str, Any]]:
    """The Instance resources a file holds: one record, a list or aggregatedList reply, or
    a Cloud Asset Inventory export (the resource under ``resource.data``)."""
    if isinstance(document, list):
        return [asset["resource"]["data"] for asset in document]
    kind = document.get("kind", "")
    if kind.endswith("instanceAggregatedList"):
        return [i for scope in document["items"].values() for i in scope.get("instances", [])]
    if kind.endswith("instanceList"):
        return list(document["items"])
    return [document]


CASES = [(path.name, record) for path in sorted((CORPUS / "instances").glob("*.json"))
         for record in instances_of(json.loads(path.read_text()))]


def test_every_record_has_an_expectation_and_every_expectation_a_record():
    assert sorted((f, r["name"]) for f, r in CASES) == sorted(
        (f, name) for f, names in EXPECTED.items() for name in names)
    assert len(CASES) == 21


def as_message(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the driver sees it: parsed into compute_v1.Instance by the client
    library, then turned back into the REST shape."""
    message = compute_v1.Instance.from_json(json.dumps(record), ignore_unknown_fields=True)
    return as_dict(message)


@pytest.mark.parametrize("shape", ["json", "compute_v1"])
@pytest.mark.parametrize("file, record", CASES, ids=[f"{f}:{r['name']}" for f, r in CASES])
def test_corpus_instance(file, record, shape):
    want = EXPECTED[file][record["name"]]
    raw = record if shape == "json" else as_message(record)
    if "error" in want:
        with pytest.raises(errors.ProviderError, match=want["error"]) as info:
            normalize_server(server_state(raw), LOCATION, [])
        assert record["name"] in str(info.value)  # the record is named
        return
    server = normalize_server(server_state(raw), LOCATION, [])
    got = {key: getattr(server, key) for key in
           ("status", "public_v4", "private_v4", "public_v6", "interface_ip")}
    assert got == {key: want[key] for key in got}
    for address in server.addresses:
        assert address.reason  # every address says why it is public or not


def test_corpus_counts_agreement_with_earlier_behaviour():
    before = [want.get("before") for names in EXPECTED.values() for want in names.values()]
    assert before.count("same") == 20
    assert [b for b in before if b != "same"] == [{
        "public_v4": "192.168.0.42", "private_v4": "test-network_ip",
        "public_v6": "2001:0000:130F:0000:0000:09C0:876A:130B",
        "interface_ip": "192.168.0.42"}]


# -- guest attributes ---------------------------------------------------------------------------
def reply(name: str) -> dict[str, Any]:
    return json.loads((CORPUS / "guest_attributes" / name).read_text())  # type: ignore


def test_guest_agent_keys_are_read_whole():
    keys, skipped = published_host_keys(reply("guest-agent-first-boot.json"))
    assert [k.split()[0] for k in keys] == ["ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"]
    assert skipped == ()
    items = reply("guest-agent-first-boot.json")["queryValue"]["items"]
    assert keys == tuple(f"{i['key']} {i['value']}" for i in items)


def test_windows_thumbprints_are_no_ssh_keys():
    keys, skipped = published_host_keys(reply("windows-instance-setup.json"))
    assert keys == ()
    assert [s.split(":")[0] for s in skipped] == ["hostkeys/rdp", "hostkeys/winrm"]
    assert all("not an SSH key type" in s for s in skipped)


@pytest.mark.parametrize("fixture, why", [
    # gcloud takes these two (it checks base64 only); the RSA key inside is cut short.
    ("GUEST_ATTRIBUTES_CONTENTS", "cut short"),
    ("GUEST_ATTRIBUTES_CONTENTS_NEWLINE", "cut short"),
    ("GUEST_ATTRIBUTES_CONTENTS_INVALID_KEY", "not base64"),
    ("GUEST_ATTRIBUTES_CONTENTS_INVALID_KEY_TYPE", "not of type ssh-badtype"),
])
def test_gcloud_fixtures_are_refused(fixture, why):
    keys, skipped = published_host_keys(reply("gcloud-ssh-fixtures.json")[fixture])
    assert keys == ()
    assert len(skipped) == 1 and re.search(why, skipped[0]), skipped


def test_guest_attribute_replies_survive_the_client_library():
    message = compute_v1.GuestAttributes.from_json(
        json.dumps(reply("guest-agent-first-boot.json")), ignore_unknown_fields=True)
    assert published_host_keys(as_dict(message)) == published_host_keys(
        reply("guest-agent-first-boot.json"))

"""The GCE driver (cloudnorm/drivers/gce/): its pure parts, its configuration and
credentials, error mapping, and a few calls against the local compute v1 endpoint on
127.0.0.1 (cloudnorm.testing.gce). Nothing here looks for real Google credentials or
leaves the machine."""

from __future__ import annotations

import base64
import json
import os
import re
import time
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials

from cloudnorm import config, errors, profiles
from cloudnorm.drivers import driver_class
from cloudnorm.drivers.base import Created
from cloudnorm.drivers.gce.driver import GceDriver
from cloudnorm.drivers.gce.hostkeys import host_key_line, published_host_keys
from cloudnorm.drivers.gce.network import ssh_verdict
from cloudnorm.drivers.gce.normalize import (
    OWNER_LABEL,
    firewall_record,
    instance_metadata,
    metadata_key,
    network_record,
    normalize_flavors,
    normalize_image,
    normalize_server,
    project_metadata,
    server_state,
    server_tags,
    ssh_keys_line,
    subnetwork_record,
)
from cloudnorm.drivers.gce.transport import api_error, operation_error
from cloudnorm.models import OWNER_KEY, Location
from cloudnorm.state import Capabilities, ServerState
from cloudnorm.testing.gce import GceSandbox
from cloudnorm.testing.gce.api import ApiError, compile_filter
from cloudnorm.testing.gce_dataplane import login_from_metadata, ssh_open
from cloudnorm.userdata import SizeLimit

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q node"


@pytest.fixture(autouse=True)
def _no_google_environment(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith(("GOOGLE_", "CLOUDSDK_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))


def make_driver(**options: Any) -> GceDriver:
    merged = {"provider": "gce", "project": "p", "zone": "us-central1-a",
              "endpoint_url": "http://127.0.0.1:9", "credentials": "anonymous", **options}
    merged = {k: v for k, v in merged.items() if v is not None}
    settings = config.CloudSettings(name="gce-test", provider="gce", region=None, profile=None,
                                    options=merged, cache=config.CacheSettings())
    return GceDriver(settings, profiles.load("gce"))


# -- configuration and credentials ----------------------------------------------------------
def test_registry_names_the_driver():
    assert driver_class("gce") is GceDriver


def test_clouds_yaml_entry_is_accepted(write_clouds):
    import cloudnorm

    path = write_clouds({"g": {"cloudnorm": {
        "provider": "gce", "project": "p", "zone": "europe-west1-b", "network": "vpc",
        "endpoint_url": "http://127.0.0.1:9", "credentials": "anonymous"}}})
    cloud = cloudnorm.connect("g", config_files=[path])
    assert cloud.provider == "gce"
    assert cloud.location.region == "europe-west1" and cloud.location.zone == "europe-west1-b"


@pytest.mark.parametrize("options, match", [
    ({"credentials": "anonymous", "endpoint_url": None}, "only a local endpoint accepts"),
    ({"credentials": "token"}, "can only be 'anonymous'"),
    ({"credentials_file": "/x.json"}, "both credentials: anonymous and a credentials_file"),
    ({"zone": None}, "names no zone"),
    ({"region": "europe-west1"}, "is not in region"),
])
def test_configuration_errors(options, match):
    with pytest.raises(errors.ConfigError, match=match):
        if "region" in options:
            settings = config.CloudSettings(
                name="gce-test", provider="gce", region=options["region"], profile=None,
                options={"zone": "us-central1-a", "credentials": "anonymous",
                         "endpoint_url": "http://127.0.0.1:9"}, cache=config.CacheSettings())
            GceDriver(settings, profiles.load("gce"))
        else:
            make_driver(**options)


def test_missing_credentials_file_is_a_config_error(tmp_path):
    driver = make_driver(credentials=None, credentials_file=str(tmp_path / "nope.json"))
    with pytest.raises(errors.ConfigError, match="does not exist"):
        driver.transport.client("instances")


def test_credentials_file_gives_credentials_and_project(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "from-file", "private_key_id": "k1",
        "private_key": pem, "client_email": "cn@from-file.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "http://127.0.0.1:9/token"}))
    driver = make_driver(credentials=None, project=None, credentials_file=str(path))
    client = driver.transport.client("instances")
    assert driver.project == "from-file"
    credentials = client._transport._credentials
    assert isinstance(credentials, service_account.Credentials)
    assert credentials.service_account_email == "cn@from-file.iam.gserviceaccount.com"


@pytest.mark.parametrize("content, match", [
    ('{"type": "external_account"}', "GOOGLE_APPLICATION_CREDENTIALS"),
    ('{"type": "service_account"}', "not a usable service_account file"),
    ("not json", "cannot read credentials_file"),
])
def test_unusable_credentials_files(tmp_path, content, match):
    path = tmp_path / "creds.json"
    path.write_text(content)
    driver = make_driver(credentials=None, credentials_file=str(path))
    with pytest.raises(errors.ConfigError, match=match):
        driver.transport.client("instances")


def test_application_default_credentials_are_resolved_once_and_passed(monkeypatch):
    import google.auth

    calls = []
    found = AnonymousCredentials()

    def default(scopes=None, **kwargs):
        calls.append(scopes)
        return found, "adc-project"

    monkeypatch.setattr(google.auth, "default", default)
    driver = make_driver(credentials=None, endpoint_url=None, project=None)
    for kind in ("instances", "firewalls", "zone_operations", "global_operations"):
        assert driver.transport.client(kind)._transport._credentials is found
    assert calls == [["https://www.googleapis.com/auth/compute"]]
    assert driver.project == "adc-project"


def test_no_application_default_credentials_is_an_auth_error(monkeypatch):
    import google.auth
    from google.auth import exceptions as gauth

    def default(**kwargs):
        raise gauth.DefaultCredentialsError("none found")

    monkeypatch.setattr(google.auth, "default", default)
    with pytest.raises(errors.AuthError, match="gcloud auth application-default login"):
        make_driver(credentials=None, endpoint_url=None).transport.client("instances")


def test_operations_clients_use_the_configured_endpoint():
    driver = make_driver(endpoint_url="http://127.0.0.1:8123")
    for kind in ("zone_operations", "global_operations", "instances"):
        assert driver.transport.client(kind)._transport._host == "http://127.0.0.1:8123"


# -- normalization ----------------------------------------------------------------------------
IMAGE = {"name": "ubuntu-2204-jammy-v20240501", "status": "READY", "architecture": "X86_64",
         "creationTimestamp": "2024-05-01T11:20:05.923-07:00", "diskSizeGb": "10",
         "selfLink": "https://compute.example/compute/v1/projects/ubuntu-os-cloud/global/"
                     "images/ubuntu-2204-jammy-v20240501"}
ENTRY = {"distro": "ubuntu", "version": "22.04", "owner": "ubuntu-os-cloud",
         "family": "ubuntu-2204-lts"}


def test_normalize_image_of_a_family():
    image = normalize_image(IMAGE, ENTRY, "family ubuntu-2204-lts")
    assert image.id == "projects/ubuntu-os-cloud/global/images/ubuntu-2204-jammy-v20240501"
    assert (image.os_distro, image.os_version, image.architecture) == ("ubuntu", "22.04",
                                                                        "x86_64")
    assert image.created.isoformat() == "2024-05-01T11:20:05.923000-07:00"
    assert (image.min_disk, image.status, image.hidden) == (0, "active", False)


def test_deprecated_and_arm_images_are_not_chosen():
    from cloudnorm import images

    old = normalize_image({**IMAGE, "name": "ubuntu-2204-jammy-v20240101",
                           "deprecated": {"state": "DEPRECATED"}}, ENTRY)
    arm = normalize_image({**IMAGE, "name": "ubuntu-2204-jammy-arm64-v20240601",
                           "architecture": "ARM64"}, ENTRY)
    current = normalize_image(IMAGE, ENTRY)
    assert old.hidden and arm.architecture == "aarch64"
    chosen, decision = images.choose_image([old, arm, current], "ubuntu-22.04")
    assert chosen is current
    assert "hidden" in decision.reason and "aarch64" in decision.reason


def machine(name: str, cpus: int, memory: int, shared: bool = False, **extra: Any) -> dict:
    return {"name": name, "guestCpus": cpus, "memoryMb": memory, "isSharedCpu": shared,
            **extra}


def test_flavors_prefer_cheaper_families_and_shared_cores():
    raw = [machine("n2-standard-2", 2, 8192), machine("e2-standard-2", 2, 8192),
           machine("e2-highcpu-2", 2, 2048), machine("e2-small", 2, 2048, True),
           machine("n1-standard-1", 1, 3840), machine("e2-medium", 2, 4096, True),
           machine("n2-standard-64", 64, 262144),
           machine("e2-old", 2, 512, deprecated={"state": "OBSOLETE"})]
    by_name = {f.name: f for f in normalize_flavors(raw, ("e2", "n2d", "n2", "n1"))}
    usable = sorted(n for n, f in by_name.items() if not f.disabled)
    assert usable == ["e2-medium", "e2-small", "e2-standard-2", "n2-standard-64"]
    assert "shared-core 'e2-small'" in by_name["e2-highcpu-2"].raw["cloudnorm:passed_over"]
    assert "cheaper family 'e2'" in by_name["n2-standard-2"].raw["cloudnorm:passed_over"]
    assert "'e2-medium'" in by_name["n1-standard-1"].raw["cloudnorm:passed_over"]
    assert "obsolete" in by_name["e2-old"].raw["cloudnorm:passed_over"]


INSTANCE = {
    "id": "4242", "name": "web", "status": "RUNNING",
    "creationTimestamp": "2024-06-01T10:00:00.000-07:00",
    "zone": "https://x/compute/v1/projects/p/zones/us-central1-a",
    "selfLink": "https://x/compute/v1/projects/p/zones/us-central1-a/instances/web",
    "machineType": "https://x/compute/v1/projects/p/zones/us-central1-a/machineTypes/e2-small",
    "labels": {OWNER_LABEL: "abc123", "team": "qa"},
    "metadata": {"fingerprint": "f", "items": [
        {"key": "ssh-keys", "value": "ubuntu:" + KEY},
        {"key": "cloudnorm--ssh", "value": "ubuntu@198.51.100.7:22"},
        {"key": "role", "value": "web"}]},
    "networkInterfaces": [{
        "name": "nic0", "network": "https://x/compute/v1/projects/p/global/networks/default",
        "subnetwork": "https://x/compute/v1/projects/p/regions/us-central1/subnetworks/default",
        "networkIP": "10.128.0.2",
        "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT",
                           "natIP": "198.51.100.7"}]}],
}


def test_server_state_and_server():
    state = server_state(INSTANCE)
    assert (state.id, state.name, state.phase, state.status) == ("web", "web", "running",
                                                                 "RUNNING")
    assert state.tags == {OWNER_KEY: "abc123", "team": "qa", "role": "web",
                          "cloudnorm:ssh": "ubuntu@198.51.100.7:22"}
    assert state.owner == "abc123"
    assert (state.fault, state.quota) == (None, False)
    assert state.raw == INSTANCE
    server = normalize_server(state, Location(cloud="c", region="us-central1",
                                              zone="us-central1-a", project="p"), [])
    assert server.raw == INSTANCE
    assert (server.id, server.status, server.flavor) == ("web", "running", "e2-small")
    assert (server.public_v4, server.private_v4, server.interface_ip) == (
        "198.51.100.7", "10.128.0.2", "198.51.100.7")
    public = next(a for a in server.addresses if a.public)
    assert public.kind == "floating" and "ONE_TO_ONE_NAT" in public.reason
    private = next(a for a in server.addresses if not a.public)
    assert "never routes it from outside" in private.reason


@pytest.mark.parametrize("state, phase, status", [
    ("PROVISIONING", "pending", "pending"), ("STAGING", "pending", "pending"),
    ("REPAIRING", "pending", "pending"), ("RUNNING", "running", "running"),
    ("STOPPING", "stopping", "stopping"), ("SUSPENDING", "stopping", "stopping"),
    ("TERMINATED", "stopped", "stopped"), ("STOPPED", "stopped", "stopped"),
    ("SUSPENDED", "stopped", "stopped"), ("HIBERNATING", "error", "error")])
def test_states(state, phase, status):
    found = server_state({**INSTANCE, "status": state})
    assert (found.phase, found.status) == (phase, state)
    assert normalize_server(found, Location(cloud="c"), []).status == status


def test_a_record_without_status_is_provisioning():
    found = server_state({k: v for k, v in INSTANCE.items() if k != "status"})
    assert (found.phase, found.status) == ("pending", "PROVISIONING")


@pytest.mark.parametrize("state", ["STOPPING", "TERMINATED"])
def test_a_deleted_instance_stopping_is_terminating(state):
    found = server_state({**INSTANCE, "status": state}, terminating=True)
    assert found.phase == "deleting"
    assert normalize_server(found, Location(cloud="c"), []).status == "terminated"
    # a running instance asked to go is still running until GCE stops it
    assert server_state(INSTANCE, terminating=True).phase == "running"


def test_the_status_message_of_an_error_is_its_fault():
    broken = server_state({**INSTANCE, "status": "UNKNOWN_STATE",
                           "statusMessage": "Quota 'CPUS' exceeded"})
    assert (broken.phase, broken.fault, broken.quota) == ("error", "Quota 'CPUS' exceeded",
                                                          True)
    other = server_state({**INSTANCE, "status": "UNKNOWN_STATE", "statusMessage": "boom"})
    assert (other.fault, other.quota) == ("boom", False)
    running = server_state({**INSTANCE, "statusMessage": "quota"})
    assert (running.fault, running.quota) == (None, False)


def test_capabilities():
    assert make_driver().capabilities == Capabilities(
        security_groups=True, server_metadata=True, prebuilt_ports=False,
        port_forwarding=False, published_host_keys=True,
        user_data_limit=SizeLimit(262144, "text", "GCE's limit on a metadata value"),
        block_storage=True, root_is_volume=True)


def test_metadata_keys_and_ssh_keys_line():
    assert ssh_keys_line("ubuntu", KEY) == "ubuntu:" + " ".join(KEY.split()[:2]) + " ubuntu"
    assert metadata_key("cloudnorm:host_key:ssh-ed25519") == "cloudnorm--host_key--ssh-ed25519"
    assert metadata_key("team") == "team"
    tags = server_tags({"metadata": {"items": [
        {"key": "cloudnorm--host_key--ssh-ed25519", "value": "AAAA"}]}})
    assert tags == {"cloudnorm:host_key:ssh-ed25519": "AAAA"}
    for bad in ("ssh-keys", "a.b", "x" * 129):
        with pytest.raises(errors.ConfigError):
            metadata_key(bad)
    with pytest.raises(errors.ConfigError):
        ssh_keys_line("ubuntu", "not-a-key")


# -- firewall rules -------------------------------------------------------------------------
def rule(name: str, network: str = "default", **fields: Any) -> dict[str, Any]:
    return {"name": name, "network": f"https://x/projects/p/global/networks/{network}",
            "direction": "INGRESS", "priority": 1000, "sourceRanges": ["0.0.0.0/0"],
            "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}], **fields}


@pytest.mark.parametrize("rules, tags, allowed, words", [
    ([rule("default-allow-ssh", priority=65534)], set(), True, "default-allow-ssh"),
    ([rule("iap", sourceRanges=["35.235.240.0/20"])], set(), False, "no firewall rule"),
    ([rule("bastion", targetTags=["bastion"])], set(), False, "no firewall rule"),
    ([rule("bastion", targetTags=["bastion"])], {"bastion"}, True, "to tag(s) bastion"),
    ([rule("other", network="vpc")], set(), False, "no firewall rule"),
    ([rule("off", disabled=True)], set(), False, "no firewall rule"),
    ([rule("egress", direction="EGRESS")], set(), False, "no firewall rule"),
    ([rule("web", allowed=[{"IPProtocol": "tcp", "ports": ["80", "443"]}])], set(), False,
     "no firewall rule"),
    ([rule("range", allowed=[{"IPProtocol": "tcp", "ports": ["20-30"]}])], set(), True, ""),
    ([rule("any", allowed=[{"IPProtocol": "all"}])], set(), True, ""),
    ([rule("sa", targetServiceAccounts=["x@y"])], set(), False, "no firewall rule"),
    ([rule("allow", priority=1000), rule("deny", priority=900, allowed=None,
                                         denied=[{"IPProtocol": "tcp"}])], set(), False,
     "rule 'deny' (priority 900)"),
    ([rule("allow", priority=900), rule("deny", priority=900, allowed=None,
                                        denied=[{"IPProtocol": "tcp"}])], set(), False,
     "denies"),
])
def test_ssh_verdict(rules, tags, allowed, words):
    verdict, _, why = ssh_verdict(rules, "default", tags)
    assert verdict is allowed and words in why
    # the data plane's own reading agrees
    assert ssh_open(rules, "https://x/projects/p/global/networks/default", tags) is allowed


# -- errors ---------------------------------------------------------------------------------
def google_error(cls: type, reason: str, message: str = "boom") -> Exception:
    return cls(message, errors=[{"reason": reason, "message": message}])


@pytest.mark.parametrize("exc, kind, extra", [
    (google_error(gexc.Forbidden, "rateLimitExceeded", "Rate Limit Exceeded"),
     errors.QuotaExceeded, "API request rate"),
    (google_error(gexc.Forbidden, "quotaExceeded", "Quota 'CPUS' exceeded.  Limit: 24.0"),
     errors.QuotaExceeded, "CPUS"),
    (google_error(gexc.Forbidden, "accessNotConfigured", "Compute Engine API has not been used"),
     errors.ConfigError, "enable the Compute Engine API"),
    (google_error(gexc.Forbidden, "forbidden", "Required 'compute.instances.create'"),
     errors.AuthError, "lack a permission"),
    (google_error(gexc.Unauthorized, "authError"), errors.AuthError, "credentials"),
    (google_error(gexc.NotFound, "notFound", "The resource 'x' was not found"),
     errors.NotFound, "was not found"),
    (google_error(gexc.Conflict, "alreadyExists", "already exists"), errors.ProviderError,
     "already exists"),
])
def test_api_errors_are_typed(exc, kind, extra):
    error = api_error("c", "creating instance web", exc)
    assert type(error) is kind
    text = str(error) + getattr(error, "resource", "")
    assert extra in text and "creating instance web" in text


@pytest.mark.parametrize("code, kind, resource", [
    ("ZONE_RESOURCE_POOL_EXHAUSTED", errors.QuotaExceeded, "capacity"),
    ("QUOTA_EXCEEDED", errors.QuotaExceeded, "CPUS"),
    ("RESOURCE_NOT_FOUND", errors.NotFound, None),
    ("INTERNAL_ERROR", errors.ProviderError, None),
])
def test_operation_errors_are_typed(code, kind, resource):
    error = operation_error("c", "creating instance web", {
        "name": "operation-1", "httpErrorStatusCode": 403,
        "error": {"errors": [{"code": code, "message": "Quota 'CPUS' exceeded."
                              if code == "QUOTA_EXCEEDED" else "it failed"}]}})
    assert type(error) is kind
    if resource:
        assert error.resource == resource


# -- the local endpoint -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sandbox():
    with GceSandbox() as running:
        yield running


def sandbox_driver(sandbox: GceSandbox, **options: Any) -> GceDriver:
    return make_driver(**{"project": "cloudnorm-sandbox", "endpoint_url": sandbox.endpoint_url,
                          **options})


def test_oslogin_project_refuses_key_registration(sandbox):
    driver = sandbox_driver(sandbox, project="cloudnorm-oslogin")
    with pytest.raises(errors.ConfigError, match="enable-oslogin=TRUE"):
        driver.create_keypair("cloudnorm-abc", KEY)
    assert driver.list_keypairs() == []


def test_keys_are_held_not_sent(sandbox):
    driver = sandbox_driver(sandbox)
    pair = driver.create_keypair("cloudnorm-0123456789ab", KEY)
    assert pair.fingerprint.startswith("SHA256:")
    assert [k.name for k in driver.list_keypairs()] == ["cloudnorm-0123456789ab"]
    owned = driver.owned_resources("0123456789ab")
    assert [(c.kind, c.owner) for c in owned] == [("keypair", "0123456789ab")]
    assert owned[0].created is not None
    assert driver.delete_keypair("cloudnorm-0123456789ab") is True
    assert driver.delete_keypair("cloudnorm-0123456789ab") is False


def test_ssh_rule_is_made_waited_for_and_removed(sandbox):
    driver = sandbox_driver(sandbox, network="custom-vpc")
    mark = sandbox.requests()[-1]["t"] if sandbox.requests() else 0
    made = driver.create_ssh_access("feedc0ffee00")
    rules = driver.ssh_rules.rules()
    ours = next(r for r in rules if r["name"] == "cloudnorm-feedc0ffee00")
    assert ours["targetTags"] == ["cloudnorm-feedc0ffee00"]
    assert ours["description"] == f"{OWNER_KEY}=feedc0ffee00 ssh access"
    assert [(c.kind, c.owner) for c in driver.owned_resources(None)] == [
        ("firewall", "feedc0ffee00")]
    driver.delete(made)
    assert all(r["name"] != made.id for r in driver.ssh_rules.rules())
    # Both operations were waited for with the wait call, never polled with get.
    sent = [r["path"] for r in sandbox.requests() if r["t"] > mark]
    operations = [p for p in sent if "/global/operations/" in p]
    assert len(operations) == 2 and all(p.endswith("/wait") for p in operations)


def test_deleting_a_rule_cloudnorm_never_made_sends_nothing(sandbox):
    driver = sandbox_driver(sandbox)  # the default network: default-allow-ssh lets SSH in
    made = driver.create_ssh_access("0badc0de0000")
    assert made.description.startswith("no rule of cloudnorm's needed")
    before = len(sandbox.requests())
    driver.delete(made)
    assert len(sandbox.requests()) == before


def test_set_server_metadata_keeps_the_login_keys(sandbox):
    from google.cloud import compute_v1

    instances = sandbox.client("InstancesClient")
    body = {"name": "meta", "machineType": "zones/us-central1-a/machineTypes/e2-micro",
            "metadata": {"items": [{"key": "ssh-keys", "value": "ubuntu:" + KEY}]},
            "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
                "sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
            "networkInterfaces": [{"network": "global/networks/default"}]}
    operation = instances.insert_unary(project="cloudnorm-sandbox", zone="us-central1-a",
                                       instance_resource=compute_v1.Instance.from_json(
                                           json.dumps(body)))
    sandbox.client("ZoneOperationsClient").wait(project="cloudnorm-sandbox",
                                                zone="us-central1-a", operation=operation.name)
    driver = sandbox_driver(sandbox)
    try:
        driver.set_server_metadata("meta", {"cloudnorm:ssh": "ubuntu@198.51.100.9:22"})
        state = driver.poll_servers({"meta"})["meta"]
        assert isinstance(state, ServerState)
        assert state.tags["cloudnorm:ssh"] == "ubuntu@198.51.100.9:22"
        items = {i["key"] for i in state.raw["metadata"]["items"]}
        assert items == {"ssh-keys", "cloudnorm--ssh"}
        # several servers are polled with one list call
        assert set(driver.poll_servers({"meta", "absent"})) == {"meta"}
    finally:
        driver.delete(Created("server", "meta"))


def test_endpoint_refuses_what_gce_refuses(sandbox):
    from google.cloud import compute_v1

    instances = sandbox.client("InstancesClient")

    def insert(**changes: Any) -> None:
        body = {"name": "refused", "machineType": "zones/us-central1-a/machineTypes/e2-micro",
                "disks": [{"boot": True, "initializeParams": {
                    "sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
                "networkInterfaces": [{"network": "global/networks/default"}], **changes}
        instances.insert_unary(project="cloudnorm-sandbox", zone="us-central1-a",
                               instance_resource=compute_v1.Instance.from_json(json.dumps(body)))

    with pytest.raises(gexc.BadRequest, match="Subnetwork should be specified"):
        insert(networkInterfaces=[{"network": "global/networks/custom-vpc"}])
    with pytest.raises(gexc.BadRequest, match="does not exist in zone"):
        insert(machineType="zones/us-central1-a/machineTypes/e2-huge")
    with pytest.raises(gexc.NotFound, match="was not found"):
        insert(disks=[{"boot": True, "initializeParams": {
            "sourceImage": "projects/debian-cloud/global/images/debian-99"}}])
    with pytest.raises(gexc.BadRequest, match="Label keys"):
        insert(labels={"Cloudnorm:Owner": "x"})
    with pytest.raises(gexc.BadRequest, match="regex"):
        insert(name="Refused_1")


@pytest.mark.parametrize("expression, matches", [
    ('labels.cloudnorm-owner = "abc"', True), ("labels.cloudnorm-owner:*", True),
    ("labels.team:*", False), ("name eq 'we.*'", True), ("name ne 'we.*'", False),
    ('(name = "web") OR (name = "db")', True), ('(name = "db") (status = "RUNNING")', False),
    ('NOT (name = "db")', True), ("id = 4242", True),
])
def test_filters(expression, matches):
    assert compile_filter(expression)(INSTANCE | {"labels": {"cloudnorm-owner": "abc"}}) \
        is matches


def test_bad_filter_is_refused():
    with pytest.raises(ApiError, match="Invalid"):
        compile_filter('name = "a" OR')


def test_dataplane_reads_the_guest_agent_login():
    assert login_from_metadata(INSTANCE) == ("ubuntu", " ".join(KEY.split()[:2]))
    expired = {"metadata": {"items": [{"key": "ssh-keys", "value": (
        "old:" + " ".join(KEY.split()[:2]) + ' google-ssh {"userName":"old","expireOn":'
        '"2001-01-01T00:00:00+0000"}\nnew:' + KEY)}]}}
    assert login_from_metadata(expired)[0] == "new"
    assert login_from_metadata({"metadata": {"items": []}}) is None


# -- malformed records ----------------------------------------------------------------------
LOCATION = Location(cloud="c", region="us-central1", zone="us-central1-a", project="p")
NIC = INSTANCE["networkInterfaces"][0]


def with_nic(**changes: Any) -> dict[str, Any]:
    return {**INSTANCE, "networkInterfaces": [{**NIC, **changes}]}


def server_of(record: dict[str, Any]) -> Any:
    return normalize_server(server_state(record), LOCATION, [])


@pytest.mark.parametrize("record, words", [
    ({k: v for k, v in INSTANCE.items() if k != "name"}, "KeyError: 'name'"),
    ({**INSTANCE, "name": 42}, "not a name"),
    ({**INSTANCE, "networkInterfaces": {"nic0": NIC}}, "networkInterfaces is .*not a list"),
    ({**INSTANCE, "networkInterfaces": ["nic0"]}, r"networkInterfaces\[0\]"),
    (with_nic(accessConfigs={"natIP": "198.51.100.7"}), "accessConfigs is"),
    (with_nic(accessConfigs=[["198.51.100.7"]]), r"accessConfigs\[0\] is"),
    (with_nic(ipv6AccessConfigs="2600:1900::1"), "ipv6AccessConfigs is"),
    (with_nic(networkIP=167772162), r"networkIP: 167772162 is not an IP address"),
    (with_nic(networkIP="garbage"), "networkIP: 'garbage'"),
    (with_nic(networkIP="10.128.0.0/20"), "networkIP"),
    (with_nic(accessConfigs=[{"natIP": "garbage"}]), r"accessConfigs\[0\].natIP"),
    (with_nic(accessConfigs=[{"natIP": 3325256711}]), "natIP"),
    # an IPv6 address where GCE puts its external IPv4 (natIP) is no public_v4
    (with_nic(accessConfigs=[{"natIP": "2600:1900:4150:ba95::"}]),
     "is an IPv6 address, where GCE puts an IPv4 one"),
    (with_nic(ipv6Address="10.128.0.9"), "is an IPv4 address, where GCE puts an IPv6 one"),
    (with_nic(ipv6AccessConfigs=[{"externalIpv6": "not-an-ip"}]), "externalIpv6"),
    ({**INSTANCE, "metadata": {"items": {"ssh-keys": "x"}}}, "metadata.items is"),
    ({**INSTANCE, "metadata": {"items": [{"value": "no key"}]}}, r"items\[0\].key"),
    ({**INSTANCE, "metadata": {"items": [{"key": "a", "value": ["b"]}]}}, "value is"),
    ({**INSTANCE, "labels": ["team=qa"]}, "labels is"),
    ({**INSTANCE, "status": {"state": "RUNNING"}}, "status is"),
])
def test_malformed_instances_are_refused_by_name(record, words):
    with pytest.raises(errors.ProviderError, match=words) as info:
        normalize_server(server_state(record), LOCATION, [])
    assert "malformed instance record" in str(info.value)
    if record.get("name") == "web":
        assert "'web'" in str(info.value)
    # the state reads no addresses: refused alike, or passed on
    try:
        server_state(record)
    except errors.ProviderError as exc:
        assert "malformed instance record" in str(exc)


def test_a_malformed_record_without_name_is_named_by_id():
    record = {k: v for k, v in INSTANCE.items() if k != "name"}
    with pytest.raises(errors.ProviderError, match=r"\('4242'\)"):
        server_state(record)


def test_addresses_are_classified_by_what_they_are():
    mapped = server_of(with_nic(networkIP="::ffff:10.128.0.2", accessConfigs=[
        {"name": "External NAT", "natIP": "::ffff:198.51.100.7"}]))
    # IPv4-mapped IPv6 in an IPv4 field is the IPv4 address inside it
    assert (mapped.public_v4, mapped.private_v4) == ("198.51.100.7", "10.128.0.2")
    private = server_of(with_nic(accessConfigs=[{"name": "x", "natIP": "192.168.0.42"}]))
    # a private-range natIP reaches nothing: not public, and not what to SSH to
    assert private.public_v4 is None and private.interface_ip == "10.128.0.2"
    assert "private-range" in next(a.reason for a in private.addresses
                                   if a.ip == "192.168.0.42")
    dual = server_of(with_nic(ipv6AccessConfigs=[
        {"name": "external-ipv6", "type": "DIRECT_IPV6", "externalIpv6": "2600:1900:4150:ba95::",
         "externalIpv6PrefixLength": 96}], ipv6Address="fd20:1:2:3::"))
    assert dual.public_v6 == "2600:1900:4150:ba95::" and dual.public_v4 == "198.51.100.7"
    assert [a.public for a in dual.addresses if a.ip == "fd20:1:2:3::"] == [False]
    # an empty or missing address field is no address, and no error
    empty = server_of(with_nic(networkIP="", accessConfigs=[{"name": "x"}]))
    assert empty.addresses == () and empty.interface_ip is None


@pytest.mark.parametrize("call, words", [
    (lambda: normalize_image({"selfLink": "x"}), "malformed image record .*'name'"),
    (lambda: normalize_image({**IMAGE, "deprecated": "DEPRECATED"}), "deprecated is"),
    (lambda: normalize_flavors([machine("e2-small", 2, "lots")], ("e2",)),
     "malformed machine type record \\('e2-small'\\)"),
    (lambda: normalize_flavors([machine("e2-small", -2, 2048)], ("e2",)), "negative"),
    (lambda: normalize_flavors([{"memoryMb": 1}], ("e2",)), "machine type"),
    (lambda: network_record({"name": "n", "IPv4Range": "garbage"}), "malformed network"),
    (lambda: subnetwork_record({"name": "s", "ipCidrRange": "10.0.0.1/33"}), "subnetwork"),
    (lambda: subnetwork_record({"name": "s", "ipCidrRange": "fd20::/64"}), "not an IPv4"),
    (lambda: firewall_record(rule("r", priority="high")), "malformed firewall rule"),
    (lambda: firewall_record(rule("r", priority=70000)), "outside 0-65535"),
    (lambda: firewall_record(rule("r", sourceRanges="0.0.0.0/0")), "sourceRanges is"),
    (lambda: firewall_record(rule("r", allowed=[{"IPProtocol": "tcp", "ports": 22}])),
     "ports is"),
    (lambda: project_metadata({"name": "p", "commonInstanceMetadata": {"items": "x"}}),
     "malformed project record"),
])
def test_other_malformed_records_are_refused(call, words):
    with pytest.raises(errors.ProviderError, match=words):
        call()


def test_well_formed_network_records_pass():
    assert firewall_record(rule("default-allow-ssh", priority=65534))["name"] == \
        "default-allow-ssh"
    assert subnetwork_record({"name": "s", "ipCidrRange": "10.0.0.0/24",
                              "externalIpv6Prefix": "2600:1900:4000:318::/64"})
    assert project_metadata({"commonInstanceMetadata": {"items": [
        {"key": "enable-oslogin", "value": "TRUE"}, {"key": "empty"}]}}) == {
        "enable-oslogin": "TRUE", "empty": ""}


def test_guest_settings_are_no_tags():
    record = {**INSTANCE, "metadata": {"items": [
        *INSTANCE["metadata"]["items"], {"key": "enable-guest-attributes", "value": "TRUE"}]}}
    assert "enable-guest-attributes" not in server_tags(record)
    with pytest.raises(errors.ConfigError, match="guest"):
        metadata_key("enable-guest-attributes")


# -- the missing extra ----------------------------------------------------------------------
@pytest.mark.parametrize("provider, module, extra", [
    ("gce", "google.cloud.compute_v1", "gce"), ("aws", "boto3", "aws")])
def test_a_provider_without_its_extra_is_a_config_error(monkeypatch, write_clouds, provider,
                                                        module, extra):
    import sys

    import cloudnorm

    monkeypatch.setitem(sys.modules, module, None)  # "import <module>" fails
    with pytest.raises(errors.ConfigError, match=re.escape(f"pip install 'cloudnorm[{extra}]'")):
        driver_class(provider)
    entry = {"cloudnorm": {"provider": "gce", "project": "p", "zone": "us-central1-a",
                           "endpoint_url": "http://127.0.0.1:9", "credentials": "anonymous"}}
    if provider == "aws":
        entry = {"cloudnorm": {"provider": "aws"}, "region_name": "us-east-1"}
    path = write_clouds({"c": entry})
    with pytest.raises(errors.ConfigError, match=re.escape(f"cloudnorm[{extra}]")):
        cloudnorm.connect("c", config_files=[path])


def test_a_broken_driver_import_names_the_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cloudnorm.drivers.gce.driver", None)
    with pytest.raises(errors.ConfigError, match="google-cloud-compute"):
        driver_class("gce")


# -- host keys in guest attributes ------------------------------------------------------------
# Made with ssh-keygen for these tests (ed25519, ecdsa nistp256, rsa 3072).
ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIDnmHn8IWL3gUGtXDzNb3+4mIiszPnjjbH2eVwvYX6sg"
ECDSA = ("AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBAGXyVGX5FKKakIfjoFxKKmZpGRyQ8vs"
         "S3ALnIAvyWhTcR38j3xRkLqMOxR38HL6KW18k43RI3Gjjg4SFSUjDo0=")


@pytest.mark.parametrize("key_type, value, line", [
    # the guest agent's and cloud-init's value: the base64 blob alone
    ("ssh-ed25519", ED25519, f"ssh-ed25519 {ED25519}"),
    ("ecdsa-sha2-nistp256", ECDSA, f"ecdsa-sha2-nistp256 {ECDSA}"),
    # "TYPE BLOB [comment]", and a trailing line (gcloud keeps the first word only)
    ("ssh-ed25519", f"ssh-ed25519 {ED25519} root@web", f"ssh-ed25519 {ED25519}"),
    ("ssh-ed25519", f"{ED25519}\ncompute.1234 ssh-rsa AAAA", f"ssh-ed25519 {ED25519}"),
])
def test_host_key_line_accepts_whole_keys(key_type, value, line):
    assert host_key_line(key_type, value) == line


@pytest.mark.parametrize("key_type, value, words", [
    ("ssh-rsa", ED25519, "not of type ssh-rsa"),  # the key inside is another type
    ("ssh-ed25519", f"ssh-rsa {ED25519}", "not base64|not of type"),
    ("ssh-ed25519", ED25519[:-8], "not encode one key exactly|cut short|not base64"),
    ("ssh-ed25519", base64.b64encode(base64.b64decode(ED25519) + b"\0\0\0\1x").decode(),
     "1 field"),
    ("ecdsa-sha2-nistp384", base64.b64encode(
        b"\0\0\0\x13ecdsa-sha2-nistp384\0\0\0\x08nistp256\0\0\0\1\4").decode(), "curve"),
    ("rdp", "0C25B0C9F04839C53CDFB7472E140B7A9CDC0CF2", "not an SSH key type"),
    ("ssh-ed25519", "", "empty"),
    ("ssh-ed25519", "AAAA C3Nz", "not of type|cut short"),
])
def test_host_key_line_refuses_what_is_no_whole_key(key_type, value, words):
    with pytest.raises(ValueError, match=words):
        host_key_line(key_type, value)


def test_malformed_guest_attribute_replies_are_refused():
    with pytest.raises(errors.ProviderError, match="malformed guest attributes record"):
        published_host_keys({"queryValue": {"items": {"hostkeys": ED25519}}})
    with pytest.raises(errors.ProviderError, match="value is"):
        published_host_keys({"queryValue": {"items": [
            {"namespace": "hostkeys", "key": "ssh-ed25519", "value": 7}]}})
    assert published_host_keys({"queryPath": "hostkeys/"}) == ((), ())


def insert_instance(sandbox: GceSandbox, name: str, *extra_items: dict[str, str]) -> None:
    from google.cloud import compute_v1

    body = {"name": name, "machineType": "zones/us-central1-a/machineTypes/e2-micro",
            "metadata": {"items": [{"key": "ssh-keys", "value": "debian:" + KEY},
                                   *extra_items]},
            "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
                "sourceImage": "projects/debian-cloud/global/images/family/debian-12"}}],
            "networkInterfaces": [{"network": "global/networks/default"}]}
    operation = sandbox.client("InstancesClient").insert_unary(
        project="cloudnorm-sandbox", zone="us-central1-a",
        instance_resource=compute_v1.Instance.from_json(json.dumps(body)))
    sandbox.client("ZoneOperationsClient").wait(project="cloudnorm-sandbox",
                                                zone="us-central1-a", operation=operation.name)


def guest_put(sandbox: GceSandbox, name: str, key: str, value: str) -> int:
    """The guest's own write to its metadata server, as the data plane makes it."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{sandbox.endpoint_url}/compute/v1/projects/cloudnorm-sandbox/zones/us-central1-a/"
        f"instances/{name}/guest-attributes/hostkeys/{key}", method="PUT",
        data=json.dumps({"value": value}).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_endpoint_serves_guest_attributes_as_gce_does(sandbox):
    instances = sandbox.client("InstancesClient")
    where = {"project": "cloudnorm-sandbox", "zone": "us-central1-a"}
    insert_instance(sandbox, "ga-on", {"key": "enable-guest-attributes", "value": "TRUE"})
    insert_instance(sandbox, "ga-off")
    driver = sandbox_driver(sandbox)
    try:
        # Off (neither the instance nor the project says TRUE): the guest's write is refused,
        # and so is the read.
        assert guest_put(sandbox, "ga-off", "ssh-ed25519", ED25519) == 403
        with pytest.raises(gexc.Forbidden, match="disabled"):
            instances.get_guest_attributes(request={"instance": "ga-off",
                                                     "query_path": "hostkeys/", **where})
        # On, but nothing written yet: gcloud's "not found" wording.
        with pytest.raises(gexc.NotFound, match="The resource 'hostkeys/' of type 'Guest "
                                                 "Attribute' was not found."):
            instances.get_guest_attributes(request={"instance": "ga-on",
                                                     "query_path": "hostkeys/", **where})
        assert guest_put(sandbox, "ga-on", "ssh-ed25519", ED25519) == 200
        assert guest_put(sandbox, "ga-on", "bad.key", ED25519) == 400
        reply = instances.get_guest_attributes(request={"instance": "ga-on",
                                                        "query_path": "hostkeys/", **where})
        assert [(e.namespace, e.key, e.value) for e in reply.query_value.items] == [
            ("hostkeys", "ssh-ed25519", ED25519)]
        one = instances.get_guest_attributes(request={
            "instance": "ga-on", "variable_key": "hostkeys/ssh-ed25519", **where})
        assert one.variable_value == ED25519
        # the project's setting counts where the instance says nothing
        sandbox.set_project_metadata("cloudnorm-sandbox", "enable-guest-attributes", "true")
        assert guest_put(sandbox, "ga-off", "ssh-ed25519", ED25519) == 200
        # the driver's verb
        assert driver.published_host_keys("ga-on") == (f"ssh-ed25519 {ED25519}",)
        before = len(sandbox.requests())
        assert driver.published_host_keys("ga-on") == ()  # asked too recently: not sent
        assert len(sandbox.requests()) == before
        driver.guest_attribute_interval = 0
        assert driver.published_host_keys("ga-on") == (f"ssh-ed25519 {ED25519}",)
        sandbox.set_project_metadata("cloudnorm-sandbox", "enable-guest-attributes", None)
        assert driver.published_host_keys("ga-off") == ()  # 403: off, not an error
        assert driver.published_host_keys("absent") == ()  # 404
        guest_put(sandbox, "ga-on", "ssh-rsa", "AAAAB3NzaC1yc2EAAAADAQABAAABAQCo4bTdpLeTwhpAOmHe")
        assert driver.published_host_keys("ga-on") == (f"ssh-ed25519 {ED25519}",)
    finally:
        sandbox.set_project_metadata("cloudnorm-sandbox", "enable-guest-attributes", None)
        driver.delete(Created("server", "ga-on"))
        driver.delete(Created("server", "ga-off"))


def test_boot_turns_guest_attributes_on(sandbox):
    from cloudnorm.drivers.base import BootSpec
    from cloudnorm.models import Flavor

    driver = sandbox_driver(sandbox)
    driver.create_keypair("cloudnorm-0ddba11", KEY)
    image = normalize_image({"name": "debian-12-bookworm-v20240415", "selfLink":
                             "https://x/compute/v1/projects/debian-cloud/global/images/x"},
                            {"distro": "debian", "version": "12", "owner": "debian-cloud"})
    flavor = Flavor(id="e2-micro", name="e2-micro", ram=1024, vcpus=2, disk=0,
                    is_public=True, disabled=False, raw={})
    created = driver.boot(BootSpec(name="ga-boot", image=image, flavor=flavor, network=None,
                                   key_name="cloudnorm-0ddba11", owner="0ddba11",
                                   metadata={"team": "qa"}))
    try:
        (state,) = driver.get_server("ga-boot")
        instance = dict(state.raw)
        assert instance_metadata(instance)["enable-guest-attributes"] == "TRUE"
        assert server_tags(instance) == {OWNER_KEY: "0ddba11", "team": "qa"}
    finally:
        driver.delete(created)


def test_a_plain_boot_leaves_out_the_firewall_tag(sandbox):
    from cloudnorm.drivers.base import BootSpec
    from cloudnorm.models import Flavor, Network

    driver = sandbox_driver(sandbox, network="custom-vpc")
    driver.create_keypair("cloudnorm-0ddba12", KEY)
    rule = driver.create_ssh_access("0ddba12")  # custom-vpc lets no SSH in: a rule is made
    facts, _ = driver.network_facts()
    vpc = next(f for f in facts if f.name == "custom-vpc")
    attach = Network(id=vpc.id, name=vpc.name, public=True, reason="test", raw=vpc.raw)
    image = normalize_image({"name": "debian-12-bookworm-v20240415", "selfLink":
                             "https://x/compute/v1/projects/debian-cloud/global/images/x"},
                            {"distro": "debian", "version": "12", "owner": "debian-cloud"})
    flavor = Flavor(id="e2-micro", name="e2-micro", ram=1024, vcpus=2, disk=0,
                    is_public=True, disabled=False, raw={})
    made = []
    try:
        for plain, tags in ((True, []), (False, ["cloudnorm-0ddba12"])):
            made.append(driver.boot(BootSpec(
                name=f"plain-{str(plain).lower()}", image=image, flavor=flavor, network=attach,
                key_name="cloudnorm-0ddba12", owner="0ddba12", security_group=rule.id,
                plain=plain)))
            (state,) = driver.get_server(made[-1].id)
            assert (state.raw.get("tags") or {}).get("items", []) == tags
            assert state.owner == "0ddba12"
    finally:
        for created in made:
            driver.delete(created)
        driver.delete(rule)


# -- the provisioning flow asks the published keys first --------------------------------------
class KeysDriver:
    provider = "gce"
    capabilities = Capabilities(security_groups=True, published_host_keys=True)

    def __init__(self, published=(), console="", fail=False):
        self.published, self.console, self.fail = published, console, fail
        self.calls: list[str] = []

    def published_host_keys(self, server_id):
        self.calls.append("published")
        if self.fail:
            raise errors.AuthError("no permission")
        return self.published

    def console_output(self, server_id):
        self.calls.append("console")
        return self.console


CONSOLE = ("-----BEGIN SSH HOST KEY KEYS-----\n"
           f"ssh-ed25519 {ED25519} root@web\n-----END SSH HOST KEY KEYS-----\n")


def announced(driver, deadline=2.0):
    import time

    from cloudnorm.provision.ledger import Reporter
    from cloudnorm.provision.login import announced_host_keys

    report = Reporter(None, "web")
    keys, console, _ = announced_host_keys(driver, "web", time.monotonic() + deadline,
                                           True, report)
    return keys, console, {d.step: d for d in report.decisions}


def test_published_keys_come_first_and_the_console_is_still_read():
    driver = KeysDriver(published=(f"ecdsa-sha2-nistp256 {ECDSA}",), console="ci-info: ...")
    keys, console, decisions = announced(driver)
    assert keys.keys == (f"ecdsa-sha2-nistp256 {ECDSA}",) and console == "ci-info: ..."
    assert driver.calls == ["published", "console"]
    assert decisions["host_keys"].choice == "1 published"
    assert "guest attributes" in decisions["host_keys"].reason


def test_the_console_is_the_fallback():
    for driver in (KeysDriver(console=CONSOLE), KeysDriver(console=CONSOLE, fail=True)):
        keys, _, decisions = announced(driver)
        assert keys.keys == (f"ssh-ed25519 {ED25519}",)
        assert "console" in decisions["host_keys"].reason


def test_the_console_is_read_a_second_after_sshd_answers_then_less_often(monkeypatch):
    # cloud-init prints the keys in its final stage, after sshd started (init stage):
    # a read as sshd answers would miss them, so the first comes a second later.
    import time

    class LateConsole(KeysDriver):
        def console_output(self, server_id):
            super().console_output(server_id)
            return CONSOLE if len(self.calls) >= 3 else "Cloud-init v. 22.4.2 running"

    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    driver = LateConsole()
    driver.capabilities = Capabilities(security_groups=True, published_host_keys=False)
    keys, _, _ = announced(driver, deadline=60.0)
    assert keys.keys == (f"ssh-ed25519 {ED25519}",)
    assert driver.calls == ["console"] * 3 and slept == [1.0, 0.5, 0.75]


def test_neither_channel_times_out_naming_both():
    driver = GceDriver.__new__(GceDriver)  # only its verbs are called
    driver.published_host_keys = lambda server_id: ()  # type: ignore[method-assign]
    driver.console_output = lambda server_id: ""  # type: ignore[method-assign]
    with pytest.raises(errors.Timeout, match="never printed its SSH host keys on the console "
                                             "nor published them"):
        announced(driver, deadline=0.2)


def _debian_boot(**extra: Any):
    from cloudnorm.drivers.base import BootSpec
    from cloudnorm.models import Flavor

    image = normalize_image({"name": "debian-12-bookworm-v20240415", "selfLink":
                             "https://x/compute/v1/projects/debian-cloud/global/images/x"},
                            {"distro": "debian", "version": "12", "owner": "debian-cloud"})
    flavor = Flavor(id="e2-micro", name="e2-micro", ram=1024, vcpus=2, disk=0,
                    is_public=True, disabled=False, raw={})
    return BootSpec(image=image, flavor=flavor, network=None, key_name="cloudnorm-0ddba13",
                    owner="0ddba13", **extra)


def test_boot_passes_user_data_as_metadata_and_the_callers_tags(sandbox):
    # cloud-init's GCE datasource reads the user-data metadata key, base64-decoded where
    # user-data-encoding says base64 (cloud-init docs, datasource GCE).
    import gzip

    driver = sandbox_driver(sandbox)
    driver.create_keypair("cloudnorm-0ddba13", KEY)
    packed = gzip.compress(b"#cloud-config\nruncmd: [true]\n")
    made = []
    try:
        for name, data in (("ud-text", b"#!/bin/sh\ntrue\n"), ("ud-gzip", packed)):
            made.append(driver.boot(_debian_boot(name=name, user_data=data,
                                                 security_groups=("web", "db"))))
            (state,) = driver.get_server(name)
            items = instance_metadata(dict(state.raw))
            if data == packed:
                assert items["user-data-encoding"] == "base64"
                assert base64.b64decode(items["user-data"]) == packed
            else:
                assert items["user-data"] == "#!/bin/sh\ntrue\n"
                assert "user-data-encoding" not in items
            assert (state.raw.get("tags") or {}).get("items", []) == ["web", "db"]
    finally:
        for created in made:
            driver.delete(created)


def test_boot_sizes_the_boot_disk_and_adds_data_disks_that_go_with_the_instance(sandbox):
    # instances.insert: disks[].initializeParams.diskSizeGb, blank disks without
    # sourceImage, autoDelete (Compute Engine API reference, AttachedDisk).
    driver = sandbox_driver(sandbox)
    driver.create_keypair("cloudnorm-0ddba13", KEY)
    made = driver.boot(_debian_boot(name="disks", root_size=20, data_volumes=(1, 2)))
    (state,) = driver.get_server("disks")
    server = driver.normalize_server(state, [])
    assert [(v.id, v.size, v.device, v.root, v.delete_on_termination)
            for v in server.volumes] == [
        ("disks", 20, "persistent-disk-0", True, True),
        ("disks-data-1", 1, "data-1", False, True), ("disks-data-2", 2, "data-2", False, True)]
    compute = sandbox.client("DisksClient")
    labels = {d.name: dict(d.labels) for d in compute.list(project="cloudnorm-sandbox",
                                                            zone="us-central1-a")}
    assert all(labels[name].get("cloudnorm-owner") == "0ddba13"
               for name in ("disks", "disks-data-1", "disks-data-2")), labels
    driver.delete(made)
    deadline = time.monotonic() + 10
    while driver.get_server("disks") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert {d.name for d in compute.list(project="cloudnorm-sandbox", zone="us-central1-a")
            } & {"disks", "disks-data-1", "disks-data-2"} == set()


def test_private_access_boots_without_an_access_config(sandbox):
    # An instance whose interface has no accessConfigs has no external IP (Compute
    # Engine docs, "Create a VM without an external IP address").
    driver = sandbox_driver(sandbox)
    driver.create_keypair("cloudnorm-0ddba13", KEY)
    made = driver.boot(_debian_boot(name="inside", public_address=False))
    try:
        (state,) = driver.get_server("inside")
        (nic,) = state.raw["networkInterfaces"]
        assert not nic.get("accessConfigs") and nic.get("networkIP")
        server = driver.normalize_server(state, [])
        assert [a.public for a in server.addresses] == [False]
    finally:
        driver.delete(made)


@pytest.mark.parametrize("extra, field", [
    ({"availability_zone": "europe-west1-b"}, "availability_zone"),
    ({"security_groups": ("Not_A_Tag",)}, "security_groups"),
])
def test_what_gce_cannot_do_is_refused_before_insert(sandbox, extra, field):
    driver = sandbox_driver(sandbox)
    driver.create_keypair("cloudnorm-0ddba13", KEY)
    with pytest.raises(errors.InvalidRequest) as info:
        driver.check_options(extra.get("availability_zone"), extra.get("security_groups", ()))
    assert info.value.field == field
    with pytest.raises(errors.InvalidRequest):
        driver.boot(_debian_boot(name="refused", **extra))
    assert driver.get_server("refused") == []


def test_refused_connections_give_up_after_a_few_tries():
    # google-api-core's default predicate retries ConnectionError for its whole 120 s
    # deadline; an endpoint that refuses every connection is not passing, and the person
    # should learn so in seconds (botocore's standard mode: 3 attempts).
    import requests
    from google.api_core import exceptions as gexc

    from cloudnorm.drivers.gce.transport import CONNECTION_ATTEMPTS

    driver = make_driver()
    driver.transport.retry_initial = 0.001
    tries = []

    def call():
        tries.append(1)
        raise requests.ConnectionError("[Errno 111] Connection refused")

    with pytest.raises(errors.ServiceUnavailable, match="after retries with backoff"):
        with driver.transport.translate("listing machine types"):
            driver.transport.retry()(call)()
    assert len(tries) == CONNECTION_ATTEMPTS

    # A server's passing fault keeps the longer patience.
    replies = [gexc.ServiceUnavailable("busy")] * (CONNECTION_ATTEMPTS + 1) + ["done"]

    def busy():
        reply = replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    assert driver.transport.retry()(busy)() == "done"

"""Shared helpers for cloudnorm's unit tests.

Nothing here touches the network: the OpenStack cloud is a set of
requests-mock replies on 127.0.0.1 (Keystone v3 with a service catalog,
Nova, Glance, Neutron), and clouds.yaml files are written to ``tmp_path``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import yaml

import cloudnorm
from cloudnorm.models import Image, Network
from cloudnorm.networks import NetworkFacts, Subnet

KEYSTONE = "http://127.0.0.1:35357"
AUTH_URL = f"{KEYSTONE}/v3"
TOKEN_URL = f"{AUTH_URL}/auth/tokens"
NOVA = "http://127.0.0.1:38774/v2.1"
GLANCE = "http://127.0.0.1:39292"
NEUTRON = "http://127.0.0.1:39696"
CINDER = "http://127.0.0.1:38776/v3/demo"
REGION = "RegionOne"
PASSWORD = "pw-Xq7-very-secret-9f2"
CLOUD = "testcloud"

ENDPOINTS = {"compute": NOVA, "image": GLANCE, "network": NEUTRON, "volumev3": CINDER}


# -- environment ------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _no_os_environment(monkeypatch):
    """OS_CLOUD, OS_CLIENT_CONFIG_FILE, OS_AUTH_URL... of the person running the tests
    must not leak into openstack.config."""
    for key in list(os.environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)


# -- clouds.yaml ------------------------------------------------------------------------------
def cloud_entry(**extra: Any) -> dict[str, Any]:
    """A clouds.yaml entry pointing at the fake Keystone; ``extra`` keys are merged in."""
    entry: dict[str, Any] = {
        "auth": {
            "auth_url": AUTH_URL,
            "username": "alice",
            "password": PASSWORD,
            "project_name": "demo",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": REGION,
    }
    entry.update(extra)
    return entry


@pytest.fixture
def write_clouds(tmp_path):
    """Write a clouds.yaml (mapping of clouds, or raw text) and return its path."""

    def write(clouds: dict[str, Any] | str, *, top: dict[str, Any] | None = None,
              filename: str = "clouds.yaml") -> str:
        path = tmp_path / filename
        if isinstance(clouds, str):
            path.write_text(clouds, encoding="utf-8")
        else:
            path.write_text(yaml.safe_dump({**(top or {}), "clouds": clouds}), encoding="utf-8")
        return str(path)

    return write


# -- fake OpenStack ---------------------------------------------------------------------------
class FakeOpenStack:
    """Keystone + service discovery on requests-mock; tests add the API replies they need.

    ``services`` (changeable before the first call) is what the token's catalog lists.
    """

    def __init__(self, mocker: Any) -> None:
        self.m = mocker
        self.services = ["compute", "image", "network"]
        self.compute_max_version = "2.90"
        mocker.get(AUTH_URL, json={"version": {
            "id": "v3.14", "status": "stable", "media-types": [],
            "links": [{"rel": "self", "href": AUTH_URL + "/"}]}})
        mocker.post(TOKEN_URL, status_code=201, json=self._token,
                    headers={"X-Subject-Token": "tok-1234"})
        mocker.get(NOVA, json=lambda request, context: {"version": {
            "id": "v2.1", "status": "CURRENT", "version": self.compute_max_version,
            "min_version": "2.1", "links": [{"rel": "self", "href": NOVA + "/"}]}})
        mocker.get(GLANCE + "/", json={"versions": [{
            "id": "v2.9", "status": "CURRENT",
            "links": [{"rel": "self", "href": GLANCE + "/v2/"}]}]})
        mocker.get(NEUTRON + "/", json={"versions": [{
            "id": "v2.0", "status": "CURRENT",
            "links": [{"rel": "self", "href": NEUTRON + "/v2.0/"}]}]})

    def _token(self, request: Any, context: Any) -> dict[str, Any]:
        catalog = [{"type": kind, "name": kind, "id": kind, "endpoints": [{
            "id": f"{kind}-public", "interface": "public", "region": REGION,
            "region_id": REGION, "url": ENDPOINTS[kind]}]} for kind in self.services]
        return {"token": {
            "methods": ["password"], "expires_at": "2099-01-01T00:00:00.000000Z",
            "issued_at": "2024-01-01T00:00:00.000000Z",
            "user": {"id": "u-1", "name": "alice", "domain": {"id": "default", "name": "Default"}},
            "project": {"id": "p-1", "name": "demo",
                        "domain": {"id": "default", "name": "Default"}},
            "roles": [{"id": "r-1", "name": "member"}],
            "catalog": catalog}}

    # Replies of the three APIs; ``path`` is relative to the API's versioned root.
    def nova(self, path: str, method: str = "GET", **reply: Any) -> Any:
        return self.m.register_uri(method, NOVA + path, **reply)

    def glance(self, path: str, method: str = "GET", **reply: Any) -> Any:
        return self.m.register_uri(method, GLANCE + "/v2" + path, **reply)

    def neutron(self, path: str, method: str = "GET", **reply: Any) -> Any:
        return self.m.register_uri(method, NEUTRON + "/v2.0" + path, **reply)

    def requests_to(self, prefix: str) -> list[Any]:
        return [r for r in self.m.request_history if r.url.startswith(prefix)]


@pytest.fixture
def fake_os(requests_mock):
    return FakeOpenStack(requests_mock)


@pytest.fixture
def connect(write_clouds, fake_os):
    """Open a cloud through the real config loader and OpenStackDriver, against ``fake_os``."""

    def _connect(name: str = CLOUD, *, top: dict[str, Any] | None = None,
                 **entry: Any) -> cloudnorm.Cloud:
        path = write_clouds({name: cloud_entry(**entry)}, top=top)
        return cloudnorm.connect(name, config_files=[path])

    return _connect


# -- model builders ---------------------------------------------------------------------------
def subnet(network_id: str, cidr: str, *, service_types: tuple[str, ...] = ()) -> Subnet:
    version = 6 if ":" in cidr else 4
    return Subnet(id=f"{network_id}-{cidr}", network_id=network_id, cidr=cidr,
                  ip_version=version, service_types=service_types)


def net_facts(name: str, *cidrs: str, id: str | None = None, external: bool = False,
              shared: bool = False, has_floating_ips: bool = False,
              service_types: tuple[str, ...] = ()) -> NetworkFacts:
    net_id = id or f"id-{name.lower().replace(' ', '-')}"
    return NetworkFacts(id=net_id, name=name, router_external=external, shared=shared,
                        subnets=tuple(subnet(net_id, c, service_types=service_types)
                                      for c in cidrs),
                        has_floating_ips=has_floating_ips)


def by_name(nets: list[Network]) -> dict[str, Network]:
    return {n.name: n for n in nets}


def glance_image(name: str, *, id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A Glance v2 image record as the API returns it."""
    record = {"id": id or f"img-{name.lower().replace(' ', '-')}", "name": name,
              "status": "active", "visibility": "public", "os_hidden": False,
              "container_format": "bare", "disk_format": "qcow2", "min_ram": 0, "min_disk": 0,
              "created_at": "2024-01-01T00:00:00Z"}
    record.update(fields)
    return record


def image(name: str, **fields: Any) -> Image:
    from cloudnorm.drivers.openstack.normalize import normalize_image

    return normalize_image(glance_image(name, **fields))


def nova_server(id: str = "srv-1", name: str = "web-1", *, status: str = "ACTIVE",
                task_state: str | None = None, addresses: dict | None = None,
                **fields: Any) -> dict[str, Any]:
    """A Nova server record (microversion 2.79 shape)."""
    record = {
        "id": id, "name": name, "status": status, "tenant_id": "p-1",
        "OS-EXT-STS:task_state": task_state, "OS-EXT-STS:vm_state": "active",
        "OS-EXT-AZ:availability_zone": "nova", "key_name": "deploy",
        "image": {"id": "img-ubuntu"}, "metadata": {"role": "web"},
        "flavor": {"original_name": "m1.small", "ram": 2048, "vcpus": 1, "disk": 20},
        "created": "2024-03-01T12:00:00Z", "addresses": addresses or {},
    }
    record.update(fields)
    return record


def nova_address(ip: str, kind: str = "fixed") -> dict[str, Any]:
    return {"addr": ip, "version": 6 if ":" in ip else 4, "OS-EXT-IPS:type": kind,
            "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"}


def pytest_configure(config):
    # openstacksdk's own deprecation notice about its optional InfluxDB support.
    config.addinivalue_line("filterwarnings", "ignore:Support for InfluxDB")
    config.addinivalue_line("filterwarnings", "ignore:The 'service_type' parameter is unnec")

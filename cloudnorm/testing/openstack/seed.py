"""Apply quirk profiles to a running sandbox, as its admin, through openstacksdk.

Each profile gets its own project and user, and sees only what its profile defines:

* external networks are created non-external and made external to that one project with
  an ``access_as_external`` RBAC policy (creating them ``router:external=True`` would
  make them external to every project);
* provider and tenant networks, subnets and routers are owned by the project;
* flavors are private, with access for the project;
* images are ``shared`` with the project as an accepted member; snapshots are private
  images owned by the project;
* floating IPs a profile lists are created by the admin in the project, before any router
  takes its gateway address, so that a pool sized to the last address comes out the same;
* block storage is in every project's catalog unless its profile says
  ``block_storage: false`` (the project's catalog then leaves it out, see
  :func:`catalog.hide_block_storage`); ``volume_quotas`` become the project's Cinder quotas.

Networks, flavors and images live in different services with separate databases, so each
kind is seeded by its own worker; within a service, requests go one at a time (SQLite).
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cloudnorm.testing.openstack import catalog

IMAGE_BYTES = 4096
# Glance's created_at has one-second resolution; rounds further apart than this sort strictly.
ROUND_SPACING_SECONDS = 1.1
MEMBER_ROLES = ("member", "reader")


class SeedError(RuntimeError):
    """A profile could not be applied; the message names the resource and the answer."""


def project_name(profile: str) -> str:
    return f"sandbox-{profile}"


def seed(connect: Callable[[], Any], profiles: list[dict[str, Any]],
         passwords: dict[str, str],
         compute_ready: Callable[[], None] = lambda: None,
         block_storage_ready: Callable[[], None] = lambda: None,
         ) -> dict[str, dict[str, Any]]:
    """Create every profile's resources; return what was created, by profile name.

    ``connect`` returns a new admin connection; each worker thread uses its own.
    ``compute_ready`` returns once Nova answers, so that seeding can begin while it starts;
    ``block_storage_ready`` likewise for Cinder, when the catalog has it.
    """
    admin = connect()
    roles = [admin.identity.find_role(name, ignore_missing=False) for name in MEMBER_ROLES]
    states = {profile["name"]: _identity(admin, profile, passwords[profile["name"]], roles)
              for profile in profiles}
    cloud_has_block_storage = any(s.type == "block-storage" for s in admin.identity.services())
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="seed") as pool:
        jobs = [
            pool.submit(_networks_worker, connect, profiles, states),
            pool.submit(_flavors_worker, connect, profiles, states, compute_ready),
            pool.submit(_images_worker, connect, profiles, states),
        ]
        if cloud_has_block_storage:
            jobs.append(pool.submit(_block_storage_worker, connect, profiles, states,
                                    block_storage_ready))
        for job in jobs:
            job.result()
    return states


def _identity(conn: Any, profile: dict[str, Any], password: str,
              roles: list[Any]) -> dict[str, Any]:
    name = project_name(profile["name"])
    project = conn.identity.create_project(
        name=name, domain_id="default", description=profile.get("description", ""))
    user = conn.identity.create_user(
        name=name, password=password, domain_id="default", default_project_id=project.id)
    for role in roles:
        conn.identity.assign_project_role_to_user(project, user, role)
    return {
        "project_id": project.id, "project_name": name,
        "user_id": user.id, "username": name, "password": password,
        "region": profile.get("region", "RegionOne"),
        # What the SSH data plane needs to play the cloud's servers: without a metadata
        # service, a key reaches a server only on a config drive.
        "metadata_service": profile.get("metadata_service", True),
        # Whether the project's catalog lists block storage (Cinder).
        "block_storage": profile.get("block_storage", True),
        "networks": {}, "subnets": {}, "routers": {}, "flavors": {}, "images": {},
        "floating_ips": {},
    }


def _networks_worker(connect, profiles, states) -> None:
    conn = connect()
    for profile in profiles:
        _networks(conn, profile, states[profile["name"]])


def _networks(conn: Any, profile: dict[str, Any], state: dict[str, Any]) -> None:
    project_id = state["project_id"]
    for index, spec in enumerate(profile["networks"]):
        attrs: dict[str, Any] = {"name": spec["name"], "is_shared": False}
        if spec["kind"] in ("provider", "external"):
            attrs.update(provider_network_type="flat",
                         provider_physical_network=f"{profile['name']}-{index}")
        if spec["kind"] == "external":
            attrs["is_router_external"] = False
        else:
            attrs["project_id"] = project_id
        if spec.get("port_security") is False:
            # A cloud without security groups filters nothing: ports here pass all traffic.
            attrs["is_port_security_enabled"] = False
        network = conn.network.create_network(**attrs)
        if spec["kind"] == "external":
            conn.network.create_rbac_policy(
                object_type="network", object_id=network.id, action="access_as_external",
                target_project_id=project_id)
        state["networks"][spec["name"]] = network.id
        routed = {name for router in profile.get("routers", [])
                  for name in router.get("interfaces", [])}
        for subnet in spec.get("subnets", []):
            state["subnets"][subnet["name"]] = _subnet(
                conn, network.id, subnet, None if spec["kind"] == "external" else project_id,
                routed=subnet["name"] in routed).id
    for spec in profile.get("floating_ips", []):
        floating_ip = conn.network.create_ip(
            floating_network_id=state["networks"][spec["network"]], project_id=project_id,
            floating_ip_address=spec["address"], description=spec.get("description", ""))
        state["floating_ips"][spec["address"]] = floating_ip.id
    for router_spec in profile.get("routers", []):
        router = conn.network.create_router(
            name=router_spec["name"], project_id=project_id,
            external_gateway_info={"network_id": state["networks"][router_spec["gateway"]]})
        for subnet_name in router_spec.get("interfaces", []):
            conn.network.add_interface_to_router(router, subnet_id=state["subnets"][subnet_name])
        state["routers"][router_spec["name"]] = router.id


def _subnet(conn: Any, network_id: str, spec: dict[str, Any], project_id: str | None,
            routed: bool) -> Any:
    cidr = ipaddress.ip_network(spec["cidr"])
    attrs: dict[str, Any] = {
        "network_id": network_id, "name": spec["name"], "cidr": str(cidr),
        "ip_version": cidr.version, "is_dhcp_enabled": spec.get("enable_dhcp", True),
    }
    if project_id is not None:
        attrs["project_id"] = project_id
    if cidr.version == 6:
        # Addresses from the prefix and the port's MAC, as on clouds announcing via RA;
        # Neutron's router sends the announcements only on routed subnets.
        attrs["ipv6_address_mode"] = "slaac"
        if routed:
            attrs["ipv6_ra_mode"] = "slaac"
    if "service_types" in spec:
        attrs["service_types"] = list(spec["service_types"])
    if "gateway_ip" in spec:
        attrs["gateway_ip"] = spec["gateway_ip"]
    if "allocation_pools" in spec:
        attrs["allocation_pools"] = [dict(pool) for pool in spec["allocation_pools"]]
    return conn.network.create_subnet(**attrs)


def _flavors_worker(connect, profiles, states, compute_ready) -> None:
    compute_ready()
    conn = connect()
    for profile in profiles:
        state = states[profile["name"]]
        for spec in profile["flavors"]:
            flavor = conn.compute.create_flavor(
                name=spec["name"], ram=spec["ram"], vcpus=spec["vcpus"], disk=spec["disk"],
                is_public=False)
            conn.compute.flavor_add_tenant_access(flavor, state["project_id"])
            state["flavors"][spec["name"]] = flavor.id


def _block_storage_worker(connect, profiles, states, block_storage_ready) -> None:
    conn = connect()
    catalog.hide_block_storage(conn, [states[p["name"]]["project_id"] for p in profiles
                                      if not states[p["name"]]["block_storage"]])
    block_storage_ready()
    for profile in profiles:
        quotas = profile.get("volume_quotas")
        if quotas and states[profile["name"]]["block_storage"]:
            set_volume_quotas(conn, states[profile["name"]]["project_id"], quotas)


def set_volume_quotas(conn: Any, project_id: str, quotas: dict[str, int]) -> None:
    """Set the project's Cinder quotas (``volumes``, ``gigabytes``, ``snapshots``...)."""
    response = conn.block_storage.put(f"/os-quota-sets/{project_id}",
                                      json={"quota_set": dict(quotas)})
    _check(response, f"set the volume quotas of project {project_id}")


def _images_worker(connect, profiles, states) -> None:
    conn = connect()
    last_created = 0.0
    for upload_round in (1, 2, 3):
        batch = [(profile, spec) for profile in profiles for spec in profile["images"]
                 if spec.get("upload_round", 1) == upload_round]
        if not batch:
            continue
        if last_created:
            time.sleep(max(0.0, last_created + ROUND_SPACING_SECONDS - time.time()))
        for profile, spec in batch:
            state = states[profile["name"]]
            state["images"][spec["key"]] = _image(conn, profile["name"], spec, state["project_id"])
            last_created = time.time()


def _image(conn: Any, profile: str, spec: dict[str, Any], project_id: str) -> str:
    body: dict[str, Any] = {
        "name": spec["name"], "disk_format": "raw", "container_format": "bare",
        "visibility": "private" if spec.get("private") else "shared",
    }
    if spec.get("private"):
        body["owner"] = project_id
    if spec.get("hidden"):
        body["os_hidden"] = True
    if "min_disk" in spec:
        # GiB a server's root disk needs: Nova refuses a smaller flavor disk or volume.
        body["min_disk"] = int(spec["min_disk"])
    body.update({key: str(value) for key, value in spec.get("properties", {}).items()})
    image = _json(conn.image.post("/images", json=body), f"create image {spec['name']!r}")
    image_id = image["id"]
    _check(conn.image.put(f"/images/{image_id}/file", data=_image_data(profile, spec["key"]),
                          headers={"Content-Type": "application/octet-stream"}),
           f"upload image {spec['name']!r}")
    if not spec.get("private"):
        _check(conn.image.post(f"/images/{image_id}/members", json={"member": project_id}),
               f"share image {spec['name']!r}")
        _check(conn.image.put(f"/images/{image_id}/members/{project_id}",
                              json={"status": "accepted"}),
               f"accept image {spec['name']!r}")
    if spec.get("deactivated"):
        _check(conn.image.post(f"/images/{image_id}/actions/deactivate"),
               f"deactivate image {spec['name']!r}")
    return image_id


def _image_data(profile: str, key: str) -> bytes:
    # Distinct, reproducible contents, so checksums differ as they do between real images.
    seed_bytes = hashlib.sha256(f"{profile}/{key}".encode()).digest()
    return (seed_bytes * (IMAGE_BYTES // len(seed_bytes) + 1))[:IMAGE_BYTES]


def _check(response: Any, what: str) -> Any:
    if response.status_code >= 400:
        raise SeedError(f"could not {what}: HTTP {response.status_code} {response.text[:500]}")
    return response


def _json(response: Any, what: str) -> dict[str, Any]:
    return _check(response, what).json()


def expected(profile: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """The profile's expectations with the ids of what they name, for tests to compare."""
    expect = profile["expect"]
    return dict(
        expect,
        image=dict(expect["image"], id=state["images"][expect["image"]["key"]]),
        flavor=dict(expect["flavor"], id=state["flavors"][expect["flavor"]["name"]]),
        default_network_id=state["networks"][expect["default_network"]],
        networks={name: dict(value, id=state["networks"][name])
                  for name, value in expect["networks"].items()},
    )

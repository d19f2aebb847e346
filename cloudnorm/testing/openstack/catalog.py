"""Keystone catalog of the sandbox: services, endpoints, regions and the service role."""

from __future__ import annotations

from typing import Any

INTERFACES = ("public", "internal", "admin")
# The region whose catalog has no network endpoint, for clients of no-neutron clouds.
REGION_WITHOUT_NETWORK = "RegionNoNet"
# Cinder's v3 API under both types clouds publish it as: ``block-storage`` is the official
# type (openstacksdk, Nova's catalog_info here), ``volumev3`` the older one many clouds and
# clients still use. Both name the same endpoints.
BLOCK_STORAGE_TYPES = {"block-storage": "cinder", "volumev3": "cinderv3"}
NAMES = {"image": "glance", "compute": "nova", "network": "neutron", "placement": "placement",
         **BLOCK_STORAGE_TYPES}
# Services a project sees in every region, with or without a network service.
EVERYWHERE = ("image", "compute", *BLOCK_STORAGE_TYPES)


def register(conn: Any, region: str, identity_url: str, urls: dict[str, str]) -> None:
    """Publish every service in ``region`` and, without Neutron, in the second region.

    ``urls`` maps service type (image, compute, network, placement, block-storage) to its
    endpoint; block storage is published under each of :data:`BLOCK_STORAGE_TYPES`.
    Keystonemiddleware looks up the *internal* identity endpoint and Nova the internal
    ones of its peers, so each service gets all three interfaces, as real deployments do.
    """
    # Nova sends its own token as X-Service-Token with calls made for a user; Neutron,
    # Glance and Cinder accept that only from a user holding the service role.
    service_role = conn.identity.find_role("service") or conn.identity.create_role(name="service")
    admin_project = conn.identity.find_project("admin", domain_id="default")
    admin_user = conn.identity.find_user("admin", domain_id="default")
    conn.identity.assign_project_role_to_user(admin_project, admin_user, service_role)

    conn.identity.create_region(id=REGION_WITHOUT_NETWORK,
                                description="sandbox region without a network service")
    identity = next(conn.identity.services(type="identity"))
    _endpoints(conn, identity.id, REGION_WITHOUT_NETWORK, identity_url)
    published = dict(urls)
    if "block-storage" in published:
        url = published.pop("block-storage")
        published.update({service_type: url for service_type in BLOCK_STORAGE_TYPES})
    for service_type, url in published.items():
        service = conn.identity.create_service(name=NAMES[service_type], type=service_type)
        _endpoints(conn, service.id, region, url)
        if service_type in EVERYWHERE:
            _endpoints(conn, service.id, REGION_WITHOUT_NETWORK, url)


def hide_block_storage(conn: Any, project_ids: list[str]) -> None:
    """Leave block storage out of the catalog of each of ``project_ids``.

    The catalog is global: what one project must not see is taken out with Keystone's
    endpoint filtering (OS-EP-FILTER). A project associated with endpoint groups sees only
    their endpoints, so one group per other service, each associated with the project,
    leaves exactly the block storage endpoints out. (Cinder still runs: a client that
    knew its address could use it, as with any service a cloud does not publish.)
    """
    if not project_ids:
        return
    hidden = set(BLOCK_STORAGE_TYPES)
    groups = []
    for service in conn.identity.services():
        if service.type in hidden:
            continue
        response = conn.identity.post("/OS-EP-FILTER/endpoint_groups", json={"endpoint_group": {
            "name": f"sandbox-{service.type}", "filters": {"service_id": service.id},
            "description": "every endpoint of one service; for projects without block storage",
        }})
        _raise_for(response, f"create the endpoint group of {service.type}")
        groups.append(response.json()["endpoint_group"]["id"])
    for project_id in project_ids:
        for group in groups:
            response = conn.identity.put(
                f"/OS-EP-FILTER/endpoint_groups/{group}/projects/{project_id}")
            _raise_for(response, f"associate endpoint group {group} with {project_id}")


def _raise_for(response: Any, what: str) -> None:
    if response.status_code >= 400:
        raise RuntimeError(f"could not {what}: HTTP {response.status_code} "
                           f"{response.text[:300]}")


def _endpoints(conn: Any, service_id: str, region: str, url: str) -> None:
    for interface in INTERFACES:
        conn.identity.create_endpoint(service_id=service_id, interface=interface, url=url,
                                      region_id=region)

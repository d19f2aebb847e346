"""Keystone catalog of the sandbox: services, endpoints, regions and the service role."""

from __future__ import annotations

from typing import Any

INTERFACES = ("public", "internal", "admin")
# The region whose catalog has no network endpoint, for clients of no-neutron clouds.
REGION_WITHOUT_NETWORK = "RegionNoNet"


def register(conn: Any, region: str, identity_url: str, urls: dict[str, str]) -> None:
    """Publish every service in ``region`` and, without Neutron, in the second region.

    ``urls`` maps service type (image, compute, network, placement) to its endpoint.
    Keystonemiddleware looks up the *internal* identity endpoint and Nova the internal
    ones of its peers, so each service gets all three interfaces, as real deployments do.
    """
    # Nova sends its own token as X-Service-Token with calls made for a user; Neutron
    # and Glance accept that only from a user holding the service role.
    service_role = conn.identity.find_role("service") or conn.identity.create_role(name="service")
    admin_project = conn.identity.find_project("admin", domain_id="default")
    admin_user = conn.identity.find_user("admin", domain_id="default")
    conn.identity.assign_project_role_to_user(admin_project, admin_user, service_role)

    conn.identity.create_region(id=REGION_WITHOUT_NETWORK,
                                description="sandbox region without a network service")
    identity = next(conn.identity.services(type="identity"))
    _endpoints(conn, identity.id, REGION_WITHOUT_NETWORK, identity_url)
    names = {"image": "glance", "compute": "nova", "network": "neutron", "placement": "placement"}
    for service_type, url in urls.items():
        service = conn.identity.create_service(name=names[service_type], type=service_type)
        _endpoints(conn, service.id, region, url)
        if service_type in ("image", "compute"):
            _endpoints(conn, service.id, REGION_WITHOUT_NETWORK, url)


def _endpoints(conn: Any, service_id: str, region: str, url: str) -> None:
    for interface in INTERFACES:
        conn.identity.create_endpoint(service_id=service_id, interface=interface, url=url,
                                      region_id=region)

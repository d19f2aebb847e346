"""Quota changes a test makes to a sandbox project, undone after it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

#: Neutron's default, which the sandbox projects keep.
FLOATING_IPS = 50


def _set_floating_ips(admin: Any, project_id: str, limit: int) -> None:
    # ``force``: Neutron refuses a limit below what it counts as used, and that count
    # includes reservations. On SQLite a finished create's reservation is sometimes
    # kept (its removal met a locked database, and Neutron skips that error) until it
    # expires 120 s later: without force, setting 0 would fail on a project that holds
    # no floating IP at all. openstacksdk's Quota has no ``force`` field.
    response = admin.network.put(f"/quotas/{project_id}",
                                 json={"quota": {"floatingip": limit, "force": True}})
    from openstack import exceptions

    exceptions.raise_from_response(response)


@contextlib.contextmanager
def no_floating_ips(sandbox: Any, project: str) -> Iterator[None]:
    """The project named ``project`` may allocate no floating IP inside the block."""
    admin = sandbox.connect_admin()
    try:
        project_id = admin.identity.find_project(project, ignore_missing=False).id
        _set_floating_ips(admin, project_id, 0)
        try:
            yield
        finally:
            _set_floating_ips(admin, project_id, FLOATING_IPS)
    finally:
        admin.close()


@contextlib.contextmanager
def volume_quotas(sandbox: Any, project: str, **limits: int) -> Iterator[None]:
    """The project named ``project`` has these Cinder quotas inside the block.

    ``limits``: Cinder quota names (``volumes``, ``gigabytes``, ``snapshots``...); what
    they were before is restored after. Cinder answers 413 to a create past a limit.
    """
    from openstack import exceptions

    from cloudnorm.testing.openstack.seed import set_volume_quotas

    admin = sandbox.connect_admin()
    try:
        project_id = admin.identity.find_project(project, ignore_missing=False).id
        current = admin.block_storage.get(f"/os-quota-sets/{project_id}")
        exceptions.raise_from_response(current)
        before = {name: current.json()["quota_set"][name] for name in limits}
        set_volume_quotas(admin, project_id, limits)
        try:
            yield
        finally:
            set_volume_quotas(admin, project_id, before)
    finally:
        admin.close()

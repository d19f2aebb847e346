"""Cinder volumes cloudnorm makes for a server, marked from birth.

Nova can make a server's volumes itself (block device mapping with ``source_type``
``image`` or ``blank``), but it marks them with nothing of the caller's: a root volume
made from an image has no name at all (nova/virt/block_device.py names only blank ones,
``<server id>-blank-vol``), so one that outlives its server can be told from anyone
else's by no one. So cloudnorm makes them first through Cinder's API, with its owner
marker in their metadata (as Terraform users do with a volume resource and
``source_type = "volume"``, and as gardener's machine-controller-manager tags EC2
volumes like their instances, PR #408), and boots from them (``source_type`` ``volume``,
``delete_on_termination``): whatever happens after, :meth:`owned` finds them.

Nova deletes such a volume itself once the server is gone, so a removal may find it
``deleting`` (kcli PR #845 hit that error); :meth:`delete` waits for it instead.

Cinder's block storage API v3 reference: "Create a volume" (``imageRef``,
``metadata``), "List accessible volumes with details" (the ``metadata`` filter, a JSON
object), volume statuses (``creating``, ``downloading``, ``available``, ``in-use``,
``error``, ``deleting``, ``error_deleting``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from cloudnorm import errors
from cloudnorm.drivers.base import BootSpec, Created
from cloudnorm.drivers.openstack import normalize
from cloudnorm.drivers.openstack.transport import Transport
from cloudnorm.models import OWNER_KEY

LOG = logging.getLogger(__name__)

SERVICE = "block_storage"
#: Seconds a removal waits for a volume Nova is still letting go of.
LEAVE_WAIT = 60.0


class Volumes:
    """The volumes of cloudnorm's servers on one OpenStack cloud."""

    def __init__(self, transport: Transport, cloud: str) -> None:
        self.transport = transport
        self.cloud = cloud

    def make(self, spec: BootSpec, made: Callable[[Created], object],
             deadline: float) -> tuple[str, ...]:
        """The root volume (from the image) and the data volumes (blank) ``spec`` asks
        for, each marked with its owner and passed to ``made`` once Cinder accepted it;
        returns their ids once every one is ``available``."""
        wanted: list[tuple[str, int, str | None]] = (
            [("root", spec.root_size or spec.image.min_disk or 1, spec.image.id)]
            if spec.boot_from_volume else [])
        wanted += [(f"data-{n}", size, None) for n, size in enumerate(spec.data_volumes, 1)]
        ids = []
        for role, size, image_id in wanted:
            body: dict[str, Any] = {
                "size": size, "name": f"cloudnorm-{spec.owner}-{role}",
                "description": f"{OWNER_KEY}={spec.owner} {role} volume of {spec.name}",
                "metadata": {OWNER_KEY: spec.owner}}
            if image_id:
                body["imageRef"] = image_id
            reply = self.transport.request(SERVICE, "POST", "/volumes", json={"volume": body})
            volume_id = str(reply["volume"]["id"])
            made(Created("volume", volume_id, body["name"], spec.owner))
            ids.append(volume_id)
        self._wait_available(spec.owner, ids, deadline)
        return tuple(ids)

    def _wait_available(self, owner: str, ids: list[str], deadline: float) -> None:
        """Until every volume is ``available``: one list per interval for all of them
        (filtered by the owner's marker), more often at first."""
        interval = 0.3
        pending = set(ids)
        while pending:
            for record in self._records(owner):
                if record.get("id") not in pending:
                    continue
                status = str(record.get("status") or "")
                if status == "available":
                    pending.discard(record["id"])
                elif status.startswith("error"):
                    raise errors.ProviderError(
                        f"cloud '{self.cloud}': volume {record['id']} "
                        f"({record.get('size')} GiB) went to {status} while being made; "
                        "Cinder keeps the reason in its user messages (openstack volume "
                        "message list)", cloud=self.cloud, endpoint="block_storage POST /volumes")
            if not pending:
                return
            if time.monotonic() + interval > deadline:
                raise errors.Timeout(
                    f"cloud '{self.cloud}': volume(s) {', '.join(sorted(pending))} not "
                    "available before the deadline (a root volume is a copy of the image: "
                    "large images take a while; pass a larger timeout)", cloud=self.cloud)
            time.sleep(interval)
            interval = min(interval * 1.5, 5.0)

    def _records(self, owner: str | None) -> list[dict[str, Any]]:
        marker = {OWNER_KEY: owner} if owner else None
        query = f"?metadata={quote(json.dumps(marker))}" if marker else ""
        return self.transport.paged(SERVICE, f"/volumes/detail{query}", "volumes")

    def owned(self, owner: str | None) -> list[Created]:
        """Volumes carrying ``owner``'s marker (anyone's marker when None), but those
        already being deleted."""
        found = []
        for record in self._records(owner):
            mark = (record.get("metadata") or {}).get(OWNER_KEY)
            if not mark or record.get("status") in ("deleting",):
                continue
            found.append(Created("volume", str(record["id"]), str(record.get("name") or ""),
                                 str(mark), normalize.parse_time(record.get("created_at"))))
        return found

    def delete(self, volume_id: str) -> None:
        """Delete the volume and wait (bounded) until it is gone; a volume still
        attached to a server being deleted is waited for first (Nova detaches it, and
        deletes it itself when it was mapped with ``delete_on_termination``)."""
        give_up = time.monotonic() + LEAVE_WAIT
        asked = False
        while True:
            try:
                record = self.transport.request(SERVICE, "GET", f"/volumes/{volume_id}")["volume"]
            except errors.NotFound:
                return
            status = str(record.get("status") or "")
            if not asked and (status == "available" or status.startswith("error")
                              and status != "error_deleting"):
                with contextlib.suppress(errors.NotFound):
                    self.transport.request(SERVICE, "DELETE", f"/volumes/{volume_id}")
                asked = True
            elif status == "error_deleting":
                raise errors.ProviderError(
                    f"cloud '{self.cloud}': Cinder failed to delete volume {volume_id} "
                    "(error_deleting); an operator must reset its state", cloud=self.cloud)
            if time.monotonic() > give_up:
                raise errors.Timeout(
                    f"cloud '{self.cloud}': volume {volume_id} still {status} after "
                    f"{LEAVE_WAIT:.0f} s", cloud=self.cloud)
            LOG.debug("volume %s is %s; waiting for it to go", volume_id, status)
            time.sleep(0.5)

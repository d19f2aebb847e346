"""Images (the public ones, seeded from :mod:`.catalog` with their deprecation states) and
machine types: lookups, and an instance's ``sourceImage`` resolved."""

from __future__ import annotations

import re
from typing import Any

from cloudnorm.testing.gce import catalog
from cloudnorm.testing.gce.common import ApiError, invalid, not_found
from cloudnorm.testing.gce.state import ComputeState


class ImagesMixin(ComputeState):
    """Images and machine types of a :class:`.state.ComputeState`."""

    # -- seeding -----------------------------------------------------------------------
    def seed_images(self, project: str,
                    entries: list[tuple[str, str, str, int, str]]) -> None:
        """Store a publisher's images; per family the newest is current, the others are
        deprecated in its favour."""
        newest: dict[str, str] = {}
        for name, created, family, size, arch in sorted(entries, key=lambda e: e[1]):
            newest[family] = name
            self.images[project][name] = {
                "kind": "compute#image", "id": self.new_id(), "creationTimestamp": created,
                "name": name, "description": f"{family}, built on {created[:10]}",
                "sourceType": "RAW", "status": "READY", "archiveSizeBytes": "3100000000",
                "diskSizeGb": str(size), "family": family, "architecture": arch,
                "licenses": [self.link(project, "global", "licenses", family)],
                "guestOsFeatures": [{"type": "VIRTIO_SCSI_MULTIQUEUE"}, {"type": "GVNIC"},
                                    {"type": "UEFI_COMPATIBLE"}],
                "selfLink": self.link(project, "global", "images", name),
                "labelFingerprint": "42WmSpB8rSM=", "storageLocations": ["us", "eu"]}
        for record in self.images[project].values():
            current = newest[record["family"]]
            if record["name"] != current:
                record["deprecated"] = {
                    "state": "DEPRECATED",
                    "replacement": self.link(project, "global", "images", current)}

    # -- lookups -----------------------------------------------------------------------
    def machine_types(self, project: str, zone: str) -> list[dict[str, Any]]:
        self.zone(project, zone)
        return [{"kind": "compute#machineType", "id": str(1000 + n), "creationTimestamp":
                 "1969-12-31T16:00:00.000-08:00", "name": name,
                 "description": f"{cpus} vCPU{'s' if cpus > 1 else ''}"
                 + (" (shared core)" if shared else "") + f", {memory / 1024:g} GB RAM",
                 "guestCpus": cpus, "memoryMb": memory, "imageSpaceGb": 0,
                 "maximumPersistentDisks": 16 if shared else 128,
                 "maximumPersistentDisksSizeGb": "3072" if shared else "263168",
                 "zone": zone, "isSharedCpu": shared, "architecture": "X86_64",
                 "selfLink": self.link(project, "zones", zone, "machineTypes", name)}
                for n, (name, cpus, memory, shared) in enumerate(catalog.MACHINE_TYPES)]

    def image(self, project: str, name: str) -> dict[str, Any]:
        self.project(project)
        if name not in self.images[project]:
            raise not_found(f"projects/{project}/global/images/{name}")
        return self.images[project][name]

    def image_from_family(self, project: str, family: str) -> dict[str, Any]:
        self.project(project)
        members = [i for i in self.images[project].values() if i.get("family") == family
                   and (i.get("deprecated") or {}).get("state", "ACTIVE") == "ACTIVE"]
        if not members:
            raise not_found(f"projects/{project}/global/images/family/{family}")
        return max(members, key=lambda i: i["creationTimestamp"])

    def resolve_image(self, project: str, source: str) -> dict[str, Any]:
        """An instance's ``sourceImage``: full or partial URL, of an image or a family."""
        match = re.search(r"(?:projects/([^/]+)/)?global/images/(family/)?([^/]+)$", source)
        if not match:
            raise invalid("resource.disks[0].initializeParams.sourceImage", source,
                          "The URL is malformed.")
        owner, family, name = match.groups()
        owner = owner or project
        image = (self.image_from_family(owner, name) if family else self.image(owner, name))
        state = (image.get("deprecated") or {}).get("state", "ACTIVE")
        if state in ("OBSOLETE", "DELETED"):
            raise ApiError(400, "resourceNotReady",
                           f"The image '{image['selfLink']}' is {state.lower()}")
        return image

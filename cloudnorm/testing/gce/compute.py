"""The local Compute Engine's state as one object: :class:`Compute`, the stores of
:mod:`.state` with the behaviour of :mod:`.images`, :mod:`.networks`, :mod:`.instances` and
:mod:`.guest_attributes`, seeded from :mod:`.catalog`."""

from __future__ import annotations

from pathlib import Path

from cloudnorm.testing.gce import catalog
from cloudnorm.testing.gce.common import new_fingerprint, timestamp
from cloudnorm.testing.gce.guest_attributes import GuestAttributesMixin


class Compute(GuestAttributesMixin):
    """The state of the local Compute Engine. Every call holds one lock."""

    def __init__(self, base_url: str, console_dir: Path, boot_seconds: float = 0.6,
                 delete_seconds: float = 0.4, firewall_seconds: float = 0.2) -> None:
        super().__init__(base_url, console_dir, boot_seconds, delete_seconds, firewall_seconds)
        self.seed()

    # -- seeding -----------------------------------------------------------------------
    def seed(self) -> None:
        for project in (catalog.PROJECT, catalog.OSLOGIN_PROJECT, *catalog.IMAGE_PROJECTS):
            self.projects[project] = {"id": self.new_id(), "metadata": {},
                                      "fingerprint": new_fingerprint(), "created": timestamp()}
            self.images[project] = {}
            self.networks[project] = {}
            self.subnetworks[project] = {}
            self.firewalls[project] = {}
            self.instances[project] = {}
            self.disks[project] = {}
        self.projects[catalog.OSLOGIN_PROJECT]["metadata"] = {"enable-oslogin": "TRUE"}
        for project, entries in catalog.IMAGES.items():
            self.seed_images(project, entries)
        for project in (catalog.PROJECT, catalog.OSLOGIN_PROJECT):
            self.seed_network(project, "default", True,
                              {f"default-{r}": (r, c) for r, c in catalog.DEFAULT_SUBNETS.items()},
                              catalog.default_firewalls)
            self.seed_network(project, catalog.CUSTOM_NETWORK, False, catalog.CUSTOM_SUBNETS,
                              catalog.custom_firewalls)

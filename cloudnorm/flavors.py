"""Choosing a server size by what it must hold, whatever the cloud calls its sizes."""

from __future__ import annotations

from collections.abc import Sequence

from cloudnorm import errors
from cloudnorm.models import Decision, Flavor


def choose_flavor(flavors: Sequence[Flavor], *, min_ram: int | None = None,
                  min_vcpus: int | None = None, min_disk: int | None = None
                  ) -> tuple[Flavor, Decision]:
    """The smallest flavor that fits: least RAM, then vCPUs, then disk, then name.

    ``min_ram`` is in MiB, ``min_disk`` in GiB. A flavor with disk 0 (root disk
    sized from the image) only fits when no ``min_disk`` is asked.
    """
    asks = [f"{name} >= {value}" for name, value in
            (("ram", min_ram), ("vcpus", min_vcpus), ("disk", min_disk)) if value]
    fits = [f for f in flavors if not f.disabled
            and f.ram >= (min_ram or 0) and f.vcpus >= (min_vcpus or 0)
            and (not min_disk or f.disk >= min_disk)]
    if not fits:
        biggest = max(flavors, key=lambda f: (f.ram, f.vcpus, f.disk), default=None)
        raise errors.NotFound(
            f"no flavor has {', '.join(asks) or 'any size'}"
            + (f"; the largest is '{biggest.name}' ({biggest.ram} MiB, {biggest.vcpus} vCPUs,"
               f" {biggest.disk} GiB)" if biggest else "; the cloud lists no flavors")
            + ". Ask for less")
    fits.sort(key=lambda f: (f.ram, f.vcpus, f.disk, f.name, f.id))
    best = fits[0]
    ties = [f.name for f in fits[1:] if (f.ram, f.vcpus, f.disk) == (best.ram, best.vcpus,
                                                                       best.disk)]
    reason = (f"'{best.name}' ({best.ram} MiB, {best.vcpus} vCPUs, {best.disk} GiB) is the "
              f"smallest of {len(fits)} flavor(s) with {', '.join(asks) or 'no size asked'}")
    if ties:
        reason += f"; same size as {', '.join(ties)}, first by name"
    return best, Decision("flavor", best.name, reason)

"""Choosing a server size by what it must hold, whatever the cloud calls its sizes."""

from __future__ import annotations

from collections.abc import Sequence

from cloudnorm import errors
from cloudnorm.models import Decision, Flavor

#: Where the new server's root disk will be, which decides what a flavor's disk means:
#: ``local`` (the hypervisor's disk: the flavor's must hold it, and a flavor with disk 0
#: is for volume-backed servers only -- Nova refuses anything else to non-admins),
#: ``volume`` (a block storage volume: the flavor's disk does not matter; EBS, GCE
#: persistent disks, or boot from volume asked for) or ``either`` (local where the
#: flavor has a disk, a volume where its disk is 0).
ROOTS = ("local", "volume", "either")


def root_mode(*, root_is_volume: bool, block_storage: bool,
              boot_from_volume: bool | None) -> tuple[str, str]:
    """Which of :data:`ROOTS` a server's root disk can be on this cloud, and, when only
    ``local``, why no volume: every root disk is a volume (EBS, GCE persistent disks),
    boot from volume was asked for or refused, or the cloud has no block storage."""
    if root_is_volume or (boot_from_volume and block_storage):
        return "volume", ""
    if boot_from_volume is False:
        return "local", "boot_from_volume=False"
    if not block_storage:
        return "local", "the cloud has no block storage"
    return "either", ""


def choose_flavor(flavors: Sequence[Flavor], *, min_ram: int | None = None,
                  min_vcpus: int | None = None, min_disk: int | None = None,
                  root: str = "either", no_volume: str = "") -> tuple[Flavor, Decision]:
    """The smallest flavor that fits: least RAM, then vCPUs, then disk, then name.

    ``min_ram`` is in MiB, ``min_disk`` in GiB; ``root`` is one of :data:`ROOTS`, and
    ``no_volume`` says why a root volume is not possible when ``root`` is ``local``.
    """
    if root not in ROOTS:
        raise ValueError(f"root must be one of {ROOTS}, not {root!r}")
    asks = [f"{name} >= {value}" for name, value in
            (("ram", min_ram), ("vcpus", min_vcpus), ("disk", min_disk)) if value]
    sized = [f for f in flavors if not f.disabled
             and f.ram >= (min_ram or 0) and f.vcpus >= (min_vcpus or 0)]
    volume_only = [f for f in sized if f.disk == 0] if root == "local" else []

    def holds(f: Flavor) -> bool:
        if root == "volume" or (root == "either" and f.disk == 0):
            return True  # the volume is sized to the ask
        return f.disk > 0 and f.disk >= (min_disk or 0)

    fits = [f for f in sized if holds(f)]
    if not fits:
        biggest = max(flavors, key=lambda f: (f.ram, f.vcpus, f.disk), default=None)
        raise errors.NotFound(
            f"no flavor has {', '.join(asks) or 'any size'}"
            + (f"; the largest is '{biggest.name}' ({biggest.ram} MiB, {biggest.vcpus} vCPUs,"
               f" {biggest.disk} GiB)" if biggest else "; the cloud lists no flavors")
            + (f"; {_passed_over(volume_only, no_volume)}" if volume_only else "")
            + ". Ask for less")
    fits.sort(key=lambda f: (f.ram, f.vcpus, f.disk, f.name, f.id))
    best = fits[0]
    ties = [f.name for f in fits[1:] if (f.ram, f.vcpus, f.disk) == (best.ram, best.vcpus,
                                                                       best.disk)]
    reason = (f"'{best.name}' ({best.ram} MiB, {best.vcpus} vCPUs, {best.disk} GiB) is the "
              f"smallest of {len(fits)} flavor(s) with {', '.join(asks) or 'no size asked'}")
    if ties:
        reason += f"; same size as {', '.join(ties)}, first by name"
    if root == "either" and best.disk == 0:
        reason += "; its disk is 0, so the server boots from a volume"
    smaller = [f for f in volume_only if (f.ram, f.vcpus) <= (best.ram, best.vcpus)]
    if smaller:
        reason += f"; {_passed_over(smaller, no_volume)}"
    return best, Decision("flavor", best.name, reason)


def _passed_over(flavors: Sequence[Flavor], no_volume: str) -> str:
    names = ", ".join(sorted(f.name for f in flavors)[:3]) + (", ..." if len(flavors) > 3
                                                               else "")
    return (f"passed over {len(flavors)} flavor(s) with disk 0 ({names}): they boot only from a "
            f"volume, and {no_volume or 'no volume is made here'}")

"""Leftovers: what cloudnorm made for servers that are gone.

A create killed half-way, an interrupted delete, a server deleted with another tool:
each can leave floating or Elastic IPs, port forwardings, security groups (with their
rules), key pairs, volumes, or a server in ERROR or still marked as being created
(:data:`~cloudnorm.models.CREATE_KEY`) behind, all carrying the ``cloudnorm:owner``
marker. :func:`find` groups everything that carries the marker by owner; an owner with
no running server, whose newest resource is older than the age asked for, is a
leftover. The age keeps a create that is still under way out of reach: its node key is
registered first, so until its server runs the key is its newest resource. Resources
the cloud gives no creation time for count as old.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs

from cloudnorm.drivers.base import Created
from cloudnorm.models import CREATE_KEY, OWNER_KEY, Server
from cloudnorm.provision.delete import ORDER
from cloudnorm.state import gone

if TYPE_CHECKING:
    from cloudnorm.cloud import Cloud

__all__ = ["ORDER", "Leftover", "find", "group", "live_owners", "parse_age", "remove"]
_GONE = ("error", "terminated")
DELETE_WAIT = 120.0


@attrs.frozen
class Leftover:
    """The resources of one owner whose server is gone, and why they count as left over."""

    owner: str
    resources: tuple[Created, ...]
    newest: datetime.datetime | None
    reason: str


def live_owners(servers: Sequence[Server]) -> set[str]:
    """Owner markers of servers that still run; neither a server in ERROR counts nor
    one whose create never finished (still marked ``in-progress``: its process died)."""
    return {s.tags[OWNER_KEY] for s in servers if s.tags.get(OWNER_KEY)
            and s.status not in _GONE and s.tags.get(CREATE_KEY) != "in-progress"}


def group(resources: Sequence[Created], live: set[str], older_than: datetime.timedelta,
          now: datetime.datetime) -> tuple[list[Leftover], list[str]]:
    """Leftovers among ``resources`` (owned_resources(None)), and why the others stay."""
    by_owner: dict[str, list[Created]] = {}
    for resource in resources:
        if resource.owner:
            by_owner.setdefault(resource.owner, []).append(resource)
    found, kept = [], []
    for owner, items in sorted(by_owner.items()):
        times = [r.created for r in items if r.created is not None]
        newest = max(times) if times else None
        if owner in live:
            kept.append(f"{owner}: its server runs")
            continue
        if newest is not None and now - newest < older_than:
            kept.append(f"{owner}: newest resource made {_age(now - newest)} ago, "
                        f"under {_age(older_than)}")
            continue
        servers = [r for r in items if r.kind == "server"]
        reason = ("its server is in ERROR or its create never finished" if servers
                  else "no server carries its marker")
        reason += (f"; newest resource made {_age(now - newest)} ago" if newest
                   else "; the cloud gives no creation time")
        found.append(Leftover(owner, tuple(sorted(items, key=lambda r: ORDER.get(r.kind, 9))),
                              newest, reason))
    return found, kept


def find(cloud: Cloud, older_than: datetime.timedelta,
         now: datetime.datetime | None = None) -> tuple[list[Leftover], list[str]]:
    """Leftovers on ``cloud`` older than ``older_than``, and why other owners were kept."""
    resources = cloud.owned_resources(None)
    live = live_owners(cloud.list_servers())
    return group(resources, live, older_than,
                 now or datetime.datetime.now(datetime.timezone.utc))


def remove(cloud: Cloud, leftovers: Sequence[Leftover],
           progress: Callable[[str], None] | None = None) -> list[str]:
    """Delete the leftovers (servers waited for, so their groups can go); returns what
    could not be removed."""
    driver = cloud.driver
    failed = []
    for leftover in leftovers:
        for resource in leftover.resources:
            if progress is not None:
                progress(f"removing {resource.kind} {resource.description or resource.id}")
            try:
                driver.delete(resource)
                if resource.kind == "server":
                    cloud.watcher.wait(resource.id, gone, time.monotonic() + DELETE_WAIT)
            except Exception as exc:  # keep going: remove as much as possible
                failed.append(f"{resource.kind} {resource.id}: {exc}")
    cloud.refresh("network")
    return failed


def parse_age(text: str) -> datetime.timedelta:
    """``90s``, ``30m``, ``1h``, ``2d`` (or a bare number of seconds) as a duration."""
    text = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"'{text}' is not a duration such as 30m, 1h or 2d") from None
    if value < 0:
        raise ValueError(f"'{text}' is negative")
    return datetime.timedelta(seconds=value * units[unit])


def _age(delta: datetime.timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}".replace(".0", "")
    return f"{seconds}s"

"""What a create made so far, and the reporter that tells the caller how it goes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import attrs

from cloudnorm import errors
from cloudnorm.drivers.base import Created, Driver
from cloudnorm.models import Decision

LOG = logging.getLogger(__name__)

STEPS = ("node_key", "discovery", "choice", "boot", "public_address", "login", "bootstrap",
         "remove_key")


@attrs.frozen
class StepEvent:
    """Progress of one step: ``status`` is ``started``, ``done``, ``skipped``, ``waiting``
    or ``failed``."""

    step: str
    status: str
    detail: str
    elapsed: float


StepCallback = Callable[[StepEvent], None]


class Reporter:
    """Sends step events to the caller and the log, and keeps the decisions made."""

    def __init__(self, callback: StepCallback | None, name: str) -> None:
        self._callback = callback
        self._name = name
        self._started = time.monotonic()
        self.decisions: list[Decision] = []

    def emit(self, step: str, status: str, detail: str) -> None:
        event = StepEvent(step, status, detail, round(time.monotonic() - self._started, 3))
        LOG.info("%s: %s %s: %s", self._name, step, status, detail)
        if self._callback is not None:
            self._callback(event)

    def decide(self, decision: Decision) -> None:
        self.decisions.append(decision)


class Ledger:
    """What a create made so far, to undo in reverse order when it fails."""

    #: Tries per item: a rollback usually runs because the cloud is misbehaving, and a
    #: delete lost to one more 503 would leave the item behind.
    attempts = 3
    #: Seconds before the second try; doubled before each further one.
    retry_delay = 0.5

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self.items: list[Created] = []

    def add(self, item: Created) -> Created:
        self.items.append(item)
        return item

    def forget(self, kind: str) -> None:
        """Stop tracking items of ``kind`` (removed by the flow itself)."""
        self.items = [i for i in self.items if i.kind != kind]

    def rollback(self, wait_server: Callable[[str], None]) -> list[str]:
        """Remove everything; returns what could not be removed (never raises)."""
        leftovers = []
        for item in reversed(self.items):
            for attempt in range(self.attempts):
                try:
                    self._driver.delete(item)
                    if item.kind == "server":
                        wait_server(item.id)
                    break
                except errors.NotFound:
                    break  # already gone
                except Exception as exc:  # keep going: remove as much as possible
                    if attempt + 1 < self.attempts:
                        LOG.warning("rollback: removing %s %s failed (%s); trying again",
                                    item.kind, item.id, exc)
                        time.sleep(self.retry_delay * 2 ** attempt)
                        continue
                    LOG.error("rollback: could not remove %s %s: %s", item.kind, item.id, exc)
                    leftovers.append(f"{item.kind} {item.id} ({exc})")
        self.items.clear()
        return leftovers

"""The loop every cloud's data plane watcher runs: look at the cloud, make the fleet
match, wait, again -- in a background thread, until stopped."""

from __future__ import annotations

import abc
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

LOG = logging.getLogger(__name__)

T = TypeVar("T")

#: Servers a watcher brings in line at once. A cloud boots many servers side by side;
#: one after another, the fiftieth of a batch would wait for forty-nine first boots.
PARALLEL = 8


class Watcher(abc.ABC):
    """Calls :meth:`sync_once` every ``interval`` seconds in a thread.

    An error in one round is logged and kept in ``errors`` (the last 20) and the
    next round runs anyway: a passing failure of the cloud must not stop the
    data plane. ``rounds`` counts completed rounds.
    """

    name = "dataplane-watch"

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.errors: list[str] = []
        self.rounds = 0

    @abc.abstractmethod
    def sync_once(self) -> None:
        """One round: read the cloud, steer the fleet."""

    def each(self, items: Iterable[T], work: Callable[[T], None]) -> None:
        """Call ``work`` for every item, up to :data:`PARALLEL` at once, and wait for all.

        A failure for one item is logged and kept in ``errors`` while the others go on,
        as one server that fails to boot does not hold up the rest of a batch.
        """
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                PARALLEL, thread_name_prefix=self.name)
        futures = {self._pool.submit(work, item): item for item in items}
        for future in concurrent.futures.as_completed(futures):
            exc = future.exception()
            if exc is not None:
                self.record_error(f"{futures[future]}: {exc}")

    def record_error(self, message: str) -> None:
        LOG.warning("%s failed: %s", self.name, message)
        self.errors.append(message)
        del self.errors[:-20]

    def start(self) -> Watcher:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
            except Exception as exc:  # keep watching: a passing error must not kill the plane
                self.record_error(str(exc))
            self._stop.wait(self._interval)

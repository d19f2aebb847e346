"""The loop every cloud's data plane watcher runs: look at the cloud, make the fleet
match, wait, again -- in a background thread, until stopped."""

from __future__ import annotations

import abc
import logging
import threading

LOG = logging.getLogger(__name__)


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
        self.errors: list[str] = []
        self.rounds = 0

    @abc.abstractmethod
    def sync_once(self) -> None:
        """One round: read the cloud, steer the fleet."""

    def start(self) -> Watcher:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
            except Exception as exc:  # keep watching: a passing error must not kill the plane
                LOG.warning("%s failed: %s", self.name, exc)
                self.errors.append(str(exc))
                del self.errors[:-20]
            self._stop.wait(self._interval)

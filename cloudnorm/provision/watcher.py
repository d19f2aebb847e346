"""Waiting for servers: one poll a round for every server any thread waits for."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cloudnorm import errors
from cloudnorm.drivers.base import Driver
from cloudnorm.state import ServerState


class ServerWatcher:
    """Waits for servers of one cloud with one list call per interval for all of them.

    Many threads creating servers on the same :class:`Cloud` share the polls:
    whichever waiter's turn comes fetches every pending server at once.
    """

    def __init__(self, driver: Driver, interval: float = 2.0, early_interval: float | None = None,
                 early: float = 10.0) -> None:
        self._driver = driver
        self.interval = interval
        #: Most servers are ready seconds after they are asked for: while any waiter is
        #: younger than ``early`` seconds, polls come every ``early_interval`` instead.
        self.early_interval = min(interval, 1.0) if early_interval is None else early_interval
        self.early = early
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._since: dict[str, float] = {}
        self._latest: dict[str, ServerState | None] = {}
        self._polling = False
        self._last_poll = 0.0
        self.polls = 0

    def wait(self, server_id: str, done: Callable[[ServerState | None], bool],
             deadline: float) -> ServerState | None:
        """Poll until ``done(record)`` (record None: the server is missing) or the deadline."""
        with self._cond:
            self._pending.add(server_id)
            self._since[server_id] = time.monotonic()
            self._latest.pop(server_id, None)
        last = "not polled yet"
        try:
            while True:
                with self._cond:
                    fresh = server_id in self._latest
                    state = self._latest.pop(server_id, None)
                if fresh:
                    if done(state):
                        return state
                    last = (f"{state.status} ({state.phase})" if state is not None
                            else "no such server")
                if time.monotonic() >= deadline:
                    raise errors.Timeout(
                        f"server {server_id} did not reach the wanted state in time; last "
                        f"status: {last}")
                self._poll_or_wait(deadline)
        finally:
            with self._cond:
                self._pending.discard(server_id)
                self._since.pop(server_id, None)

    def _poll_or_wait(self, deadline: float) -> None:
        with self._cond:
            now = time.monotonic()
            interval = (self.early_interval
                        if any(now - t < self.early for t in self._since.values())
                        else self.interval)
            due = self._last_poll + interval - now
            if self._polling or due > 0:
                self._cond.wait(timeout=max(0.05, min(due if due > 0 else interval,
                                                      deadline - now)))
                return
            self._polling = True
            ids = set(self._pending)
        # A failed poll raises in the waiter that made it (its driver's typed error); the
        # other waiters saw nothing new and poll again when the interval comes round.
        found: dict[str, ServerState] | None = None
        try:
            found = self._driver.poll_servers(ids)
        finally:
            with self._cond:
                self._polling = False
                self._last_poll = time.monotonic()
                self.polls += 1
                if found is not None:
                    for sid in ids:
                        self._latest[sid] = found.get(sid)
                self._cond.notify_all()

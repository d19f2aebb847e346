"""The loop every cloud's data plane watcher runs: look at the cloud, make the fleet
match, wait, again -- in a background thread, until stopped."""

from __future__ import annotations

import abc
import concurrent.futures
import functools
import logging
import threading
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any, TypeVar

LOG = logging.getLogger(__name__)

#: Servers a watcher brings in line at once. A cloud boots many servers side by side;
#: one after another, the fiftieth of a batch would wait for forty-nine first boots.
PARALLEL = 8
Key = TypeVar("Key", bound=Hashable)
#: Seconds between two copies of the nodes' consoles to where the cloud shows them.
CONSOLE_INTERVAL = 0.25
#: Seconds between rounds at least while nodes are being brought up: a round reads the
#: whole project from the cloud, whose API the creates under way need more.
BUSY_INTERVAL = 1.0


class Watcher(abc.ABC):
    """Calls :meth:`sync_once` every ``interval`` seconds in a thread.

    An error in one round is logged and kept in ``errors`` (the last 20) and the
    next round runs anyway: a passing failure of the cloud must not stop the
    data plane. ``rounds`` counts completed rounds.
    """

    name = "dataplane-watch"

    def __init__(self, interval: float, fleet: Any) -> None:
        self._interval = interval
        #: The data plane's nodes (a Fleet), which this watcher keeps in line.
        self.fleet = fleet
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._console_lock = threading.Lock()
        self._consoles: dict[str, Callable[[], str]] = {}  # node id -> its console's text
        self._shown: dict[str, str] = {}  # node id -> the text the cloud shows now
        self._busy: set[Hashable] = set()  # items whose work is queued or under way
        self._busy_lock = threading.Lock()
        #: Nodes this watcher runs (it brought them up and has not removed them).
        self.known: set[str] = set()
        self.errors: list[str] = []
        self.rounds = 0

    @abc.abstractmethod
    def sync_once(self) -> None:
        """One round: read the cloud, steer the fleet."""

    @abc.abstractmethod
    def write_console(self, node_id: str, text: str | None) -> None:
        """Put ``text`` where the cloud's console API reads node ``node_id``'s console
        (None: the node is gone, and so is its console)."""

    def show_console(self, node_id: str, source: Callable[[], str]) -> None:
        """From now on the cloud shows what ``source()`` returns as the node's console,
        copied as it grows (every :data:`CONSOLE_INTERVAL` seconds), not once a round:
        a round busy booting other servers must not hold back what this one printed."""
        with self._console_lock:
            self._consoles[node_id] = source
        self._copy_console(node_id)

    def hide_console(self, node_id: str) -> None:
        with self._console_lock:
            self._consoles.pop(node_id, None)
            self._shown.pop(node_id, None)
            self.write_console(node_id, None)

    def _copy_console(self, node_id: str) -> None:
        # One copy at a time, and none while a node's console is taken away: the hide
        # comes before the node stops, so no copy reads a stopped node or brings the
        # console of a gone one back.
        with self._console_lock:
            source = self._consoles.get(node_id)
            text = source() if source is not None else ""
            if text and self._shown.get(node_id) != text:
                self.write_console(node_id, text)
                self._shown[node_id] = text

    def _copy_consoles(self) -> None:
        while not self._stop.wait(CONSOLE_INTERVAL):
            with self._console_lock:
                nodes = list(self._consoles)
            for node_id in nodes:
                try:
                    self._copy_console(node_id)
                except Exception as exc:  # one console's trouble must not stop the others
                    self.record_error(f"console of {node_id}: {exc}")

    def each(self, items: Iterable[Key], work: Callable[[Key], None]) -> None:
        """Start ``work`` for every item whose work is not already under way, up to
        :data:`PARALLEL` at once, and return without waiting for it.

        The next round finds the items still under way busy and leaves them be: a round
        does not wait for its slowest first boot, as a cloud starts the servers that
        became ready meanwhile without waiting for the others. A failure for one item is
        logged and kept in ``errors`` while the others go on.
        """
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                PARALLEL, thread_name_prefix=self.name)
        for item in items:
            with self._busy_lock:
                if item in self._busy:
                    continue
                self._busy.add(item)
            try:
                future = self._pool.submit(work, item)
            except RuntimeError:  # stopping: the pool takes no more work
                self._done(item, None)
                return
            future.add_done_callback(functools.partial(self._done, item))

    def _done(self, item: Hashable, future: concurrent.futures.Future[None] | None) -> None:
        with self._busy_lock:
            self._busy.discard(item)
        if future is not None and not future.cancelled() and future.exception() is not None:
            self.record_error(f"{item}: {future.exception()}")

    def busy(self, item: Hashable) -> bool:
        """Whether work started by :meth:`each` for ``item`` is queued or under way."""
        with self._busy_lock:
            return item in self._busy

    def retire(self, alive: Iterable[str],
               forget: Callable[[str], None] | None = None) -> None:
        """Take down the nodes of servers no longer alive: console hidden, node removed,
        then ``forget(node_id)`` for what the watcher kept about it. A node whose work is
        under way is left to the next round, so a removal never races its bring-up."""
        for gone in self.known - set(alive):
            if not self.busy(gone):
                self.take_down(gone)
                if forget is not None:
                    forget(gone)

    def take_down(self, node_id: str) -> None:
        """Hide the node's console and remove the node, if this watcher runs it."""
        if node_id in self.known:
            self.hide_console(node_id)
            self.fleet.remove(node_id)
            self.known.discard(node_id)

    def record_error(self, message: str) -> None:
        LOG.warning("%s failed: %s", self.name, message)
        self.errors.append(message)
        del self.errors[:-20]

    def start(self) -> Watcher:
        self._threads = [
            threading.Thread(target=self._run, name=self.name, daemon=True),
            threading.Thread(target=self._copy_consoles, name=f"{self.name}-consoles",
                             daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
            except Exception as exc:  # keep watching: a passing error must not kill the plane
                self.record_error(str(exc))
            with self._busy_lock:
                busy = bool(self._busy)
            self._stop.wait(max(self._interval, BUSY_INTERVAL) if busy else self._interval)


def write_console_file(folder: Path, node_id: str, text: str | None) -> None:
    """A console kept as ``<folder>/<node id>.log``, replaced whole so that a reader never
    sees half of it (None removes it)."""
    console = folder / f"{node_id}.log"
    if text is None:
        console.unlink(missing_ok=True)
        return
    tmp = console.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(console)

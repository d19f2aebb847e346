"""The set of nodes behind a local test cloud, kept in line with what the cloud reports.

A cloud's reconciler calls :meth:`Fleet.ensure` with what a server should look
like right now (running, its reachable addresses, its login) and the fleet
starts, changes or stops nodes to match. Calls for different nodes may come
from different threads and run concurrently.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from cloudnorm.testing.dataplane.node import Node, check_addresses


class Fleet:
    def __init__(self, workdir: Path | str, **node_options: object) -> None:
        """``node_options`` are passed to every :class:`Node` (e.g. ``host_key_types``)."""
        self.workdir = Path(workdir).absolute()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.node_options = node_options
        self._lock = threading.Lock()
        self._nodes: dict[str, Node] = {}
        self._node_locks: dict[str, threading.Lock] = {}
        self._owners: dict[str, str] = {}
        self._serial = 0
        self._closed = False
        #: Networks (a cloud's own names or ids) whose clients this data plane plays:
        #: servers on them also answer on their private addresses, as to a machine
        #: inside the cloud; ``"*"`` stands for every network. The clouds' watchers
        #: read it every round.
        self.inside: frozenset[str] = frozenset()

    @contextlib.contextmanager
    def inside_networks(self, *networks: str) -> Iterator[Fleet]:
        """Within the block, be inside ``networks`` too (see :attr:`inside`)."""
        saved = self.inside
        self.inside = saved | frozenset(networks)
        try:
            yield self
        finally:
            self.inside = saved

    @contextlib.contextmanager
    def options(self, **node_options: object) -> Iterator[Fleet]:
        """Nodes started inside the block also get ``node_options`` (e.g. a console
        without host keys: ``print_host_keys=False``)."""
        saved = dict(self.node_options)
        self.node_options.update(node_options)
        try:
            yield self
        finally:
            self.node_options.clear()
            self.node_options.update(saved)

    def ensure(
        self,
        node_id: str,
        addresses: Sequence[str],
        user: str,
        authorized_key: str,
        port: int = 22,
        allow_ssh: bool = True,
        *,
        hostname: str | None = None,
        console_lies: bool | None = None,
        userdata: bytes | None = None,
    ) -> Node:
        """Make node ``node_id`` a running server answering as described.

        An address another node answers on moves to this one, as a floating
        IP does when it is associated elsewhere. ``console_lies=None`` keeps
        the node's current setting. ``userdata`` is what the cloud passes the
        server; cloud-init runs it at the node's first boot. ``None`` gives a new
        node none and leaves a running node as it is.
        """
        wanted = check_addresses(addresses)
        with self._node_lock(node_id):
            self._take_over(node_id, wanted)
            node = self._nodes.get(node_id)
            # A server's login and user data are fixed at its first boot; other
            # ones mean the cloud replaced (or rebuilt) the server. A node that died is
            # brought back, since the cloud still reports it running.
            if node is not None and (
                not node.running
                or (node.user, node.authorized_key) != (user, authorized_key.strip())
                or (userdata is not None and userdata != node.userdata)
            ):
                self._drop(node_id, node, keep_claim=True)
                node = None
            if node is None:
                node = Node(
                    hostname or _hostname(node_id), wanted, user=user,
                    authorized_key=authorized_key, port=port, allow_ssh=allow_ssh,
                    console_lies=bool(console_lies), workdir=self._new_workdir(node_id),
                    userdata=userdata,
                    **self.node_options,  # type: ignore[arg-type]
                )
                # Listed before it starts, so that a node taking one of its
                # addresses meanwhile waits for the start and then takes it.
                with self._lock:
                    self._nodes[node_id] = node
                try:
                    node.start()
                except BaseException:
                    self._drop(node_id, node)
                    raise
                with self._lock:
                    closed = self._closed
                if closed:
                    self._drop(node_id, node)
                    raise RuntimeError("fleet was closed while the node started")
                return node
            try:
                if console_lies is not None:
                    node.console_lies = console_lies
                if not allow_ssh and node.allow_ssh:
                    node.stop_sshd()
                node.set_addresses(wanted, port)
                if allow_ssh and not node.allow_ssh:
                    node.start_sshd()
            except BaseException:
                # Half a change is worse than none: the next ensure starts afresh.
                self._drop(node_id, node)
                raise
            return node

    def remove(self, node_id: str) -> None:
        with self._node_lock(node_id, closing=True):
            node = self._nodes.get(node_id)
            if node is not None:
                self._drop(node_id, node)

    def get(self, node_id: str) -> Node | None:
        with self._lock:
            return self._nodes.get(node_id)

    def node_ids(self) -> list[str]:
        with self._lock:
            return list(self._nodes)

    def console_text(self, node_id: str) -> str:
        node = self.get(node_id)
        return node.console_text() if node is not None else ""

    def close(self) -> None:
        """Stop every node; the first failure is raised once all were tried."""
        with self._lock:
            self._closed = True
        error: BaseException | None = None
        for node_id in self.node_ids():
            try:
                self.remove(node_id)
            except BaseException as exc:  # keep stopping the others
                error = error or exc
        if error is not None:
            raise error

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------

    def _node_lock(self, node_id: str, closing: bool = False) -> threading.Lock:
        with self._lock:
            if self._closed and not closing:
                raise RuntimeError("fleet is closed")
            return self._node_locks.setdefault(node_id, threading.Lock())

    def _take_over(self, node_id: str, addresses: tuple[str, ...]) -> None:
        with self._lock:
            losers: dict[str, set[str]] = {}
            for address in addresses:
                owner = self._owners.get(address)
                if owner is not None and owner != node_id:
                    losers.setdefault(owner, set()).add(address)
            for address, owner in list(self._owners.items()):
                if owner == node_id and address not in addresses:
                    del self._owners[address]
            for address in addresses:
                self._owners[address] = node_id
            nodes = {owner: self._nodes.get(owner) for owner in losers}
        # Only the losing node's own lock is taken here, never its fleet
        # lock, so two nodes trading addresses cannot wait on each other.
        for owner, node in nodes.items():
            if node is not None:
                node.set_addresses([a for a in node.addresses if a not in losers[owner]])

    def _unclaim(self, node_id: str) -> None:
        with self._lock:
            for address, owner in list(self._owners.items()):
                if owner == node_id:
                    del self._owners[address]

    def _drop(self, node_id: str, node: Node, keep_claim: bool = False) -> None:
        try:
            node.stop()
        finally:
            with self._lock:
                self._nodes.pop(node_id, None)
            if not keep_claim:
                self._unclaim(node_id)

    def _new_workdir(self, node_id: str) -> Path:
        # A replaced node gets a fresh directory, so nothing of its
        # predecessor can leak into it.
        with self._lock:
            self._serial += 1
            return self.workdir / f"{_hostname(node_id)}-{self._serial}"


def _hostname(node_id: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", node_id.lower()).strip("-")
    return (name or "node")[:63]

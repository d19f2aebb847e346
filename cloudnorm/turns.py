"""Who goes first among the requests of a process waiting for the rate limit's turns.

Oldest work first: a request made inside :func:`first_come` (``create_server`` wraps
each create in one) ranks by when that work began, any other by when it asked. In a
fleet of creates the first ones make all their writes and boot while the later ones
wait, instead of every create waiting its share of turns before any server boots --
the order a person working through a list would take.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import threading
import time
from collections.abc import Iterator

from cloudnorm import errors

#: When the work this thread's requests belong to began (time.monotonic); see first_come.
_BEGAN: contextvars.ContextVar[float] = contextvars.ContextVar("cloudnorm_work_began")
#: Seconds a request waiting behind older ones checks its own deadline.
_LINE_CHECK = 0.5


@contextlib.contextmanager
def first_come(began: float | None = None) -> Iterator[float]:
    """Requests made inside rank, in their account's line for turns, by when this work
    began (``began``, time.monotonic(); now by default), not by when each one asks.
    An enclosing first_come keeps its earlier rank."""
    outer = _BEGAN.get(None)
    token = _BEGAN.set(outer if outer is not None else
                       time.monotonic() if began is None else began)
    try:
        yield _BEGAN.get()
    finally:
        _BEGAN.reset(token)


class Line:
    """The requests of one kind waiting in this process, oldest work first: one at a
    time asks the budget for a turn (and waits for it if need be), the others wait
    until it has one."""

    def __init__(self) -> None:
        self._waiting: list[tuple[float, int]] = []
        self._holder: tuple[float, int] | None = None
        self._changed = threading.Condition()
        self._tickets = itertools.count()

    @contextlib.contextmanager
    def turn(self, limit_at: float, name: str) -> Iterator[None]:
        """Held while this request asks the budget; raises Timeout, naming the limit,
        when ``limit_at`` (time.monotonic) passes before its place in line comes."""
        asked = time.monotonic()
        began = _BEGAN.get(None)
        me = (asked if began is None else began, next(self._tickets))
        with self._changed:
            heapq.heappush(self._waiting, me)
            try:
                while self._holder is not None or self._waiting[0] != me:
                    left = limit_at - time.monotonic()
                    if left <= 0:
                        raise errors.Timeout(
                            f"rate limit of {name} left no turn within {limit_at - asked:.0f}"
                            " s: older requests of this process took every turn; make fewer "
                            "calls at once, or raise cloudnorm: rate_limit: in clouds.yaml")
                    self._changed.wait(min(left, _LINE_CHECK))
            except BaseException:
                self._waiting.remove(me)
                heapq.heapify(self._waiting)
                self._changed.notify_all()
                raise
            heapq.heappop(self._waiting)
            self._holder = me
        try:
            yield
        finally:
            with self._changed:
                self._holder = None
                self._changed.notify_all()

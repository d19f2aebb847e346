"""The line of requests waiting for an account's turns: oldest work first."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from cloudnorm import errors, parallel, ratelimit, turns


def limiter(writes: float) -> ratelimit.Limiter:
    return ratelimit.Limiter(f"test|{uuid.uuid4().hex}", ratelimit.RateLimit(
        reads=100.0, writes=writes, adaptive=True))


def drained(writes: float) -> ratelimit.Limiter:
    """A limiter whose burst is spent: the next write waits a whole interval."""
    lim = limiter(writes)
    while lim.acquire(write=True) < 0.5 / writes:
        pass
    return lim


def test_the_oldest_create_goes_first_not_the_first_to_ask():
    lim = drained(2.0)  # a turn every 0.5 s
    order: list[float] = []

    def create(began: float) -> None:
        with turns.first_come(began):
            lim.acquire(write=True)
            order.append(began)

    threads = [threading.Thread(target=create, args=(began,)) for began in (9.0, 4.0, 3.0,
                                                                               2.0, 1.0)]
    for thread in threads:  # the youngest asks first, the oldest last
        thread.start()
        time.sleep(0.03)
    for thread in threads:
        thread.join(timeout=10)
    # the first to ask already waits on the budget; then oldest first
    assert order == [9.0, 1.0, 2.0, 3.0, 4.0]


def test_requests_outside_any_work_rank_by_when_they_asked():
    lim = drained(4.0)
    order: list[str] = []

    def ask(name: str, began: float | None) -> None:
        if began is None:
            lim.acquire(write=True)
        else:
            with turns.first_come(began):
                lim.acquire(write=True)
        order.append(name)

    holder = threading.Thread(target=ask, args=("holder", None))
    holder.start()
    time.sleep(0.03)
    plain = threading.Thread(target=ask, args=("plain", None))
    plain.start()
    time.sleep(0.03)
    # work that began before the plain request asked still goes first
    old = threading.Thread(target=ask, args=("old work", time.monotonic() - 60))
    old.start()
    for thread in (holder, plain, old):
        thread.join(timeout=10)
    assert order == ["holder", "old work", "plain"]


def test_a_request_whose_deadline_passes_in_line_leaves_it_with_a_timeout():
    lim = drained(1.0)
    holder = threading.Thread(target=lim.acquire, args=(True,))
    holder.start()
    time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(errors.Timeout, match=r"rate limit of test \(writes\).*older requests"):
        lim.acquire(write=True, deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 1.0
    holder.join(timeout=10)
    lim.acquire(write=True)  # the line moves on without the one that gave up


def test_work_keeps_its_rank_in_nested_calls_and_in_parallel_lists():
    with turns.first_come(5.0) as rank:
        assert rank == 5.0
        with turns.first_come() as inner:
            assert inner == 5.0

        def rank_here() -> float:
            with turns.first_come() as seen:
                return seen

        assert parallel.all_at_once([rank_here, rank_here]) == [5.0, 5.0]
    with turns.first_come() as fresh:
        assert fresh != 5.0

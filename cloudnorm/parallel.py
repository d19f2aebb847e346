"""Independent cloud calls at once: the lists of a discovery do not wait on each other."""

from __future__ import annotations

import concurrent.futures
import contextvars
from collections.abc import Callable, Sequence
from typing import Any


def all_at_once(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run each call in a thread of its own; their results, in order.

    Every call finishes before the first error (in order) is raised, so nothing is
    left running behind the caller. Each thread runs in a copy of the caller's context,
    so the calls keep the caller's place in the rate limit's line.
    """
    if len(calls) < 2:
        return [call() for call in calls]
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(calls),
                                               thread_name_prefix="cloudnorm") as pool:
        futures = [pool.submit(contextvars.copy_context().run, call) for call in calls]
        concurrent.futures.wait(futures)
    return [future.result() for future in futures]

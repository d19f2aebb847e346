"""Progress lines on stderr, with timings, for the slow steps of starting a sandbox."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

PREFIX = "[cloudnorm sandbox]"


def say(message: str) -> None:
    print(f"{PREFIX} {message}", file=sys.stderr, flush=True)


@contextmanager
def timed(what: str):
    started = time.monotonic()
    yield
    say(f"{what} ({time.monotonic() - started:.1f}s)")

"""Client-side rate limits: one budget per cloud account and region, for the whole process.

Clouds throttle per account (or per endpoint), not per connection: two ``Cloud``
objects for the same account share what the cloud allows. So the limiter lives
here, keyed by the driver's identity (provider, endpoint, account, region), and
every driver of that key draws from it. Reads (GET/HEAD, EC2 ``Describe*``) are
allowed more often than writes, as nodepool does::

    clouds:
      mycloud:
        cloudnorm:
          rate_limit: {reads: 20, writes: 2}    # requests per second; 0 = unlimited
          # window: 10 (default) -- seconds over which those rates are kept
          # rate_limit: {storage: "redis://host:6379"} shares the budget between processes

The counting is the ``limits`` library's moving window, so a budget can live in
any storage it supports (memory by default; Redis for several processes). In
a shared storage the budget's key is a digest of the account's identity, so
no user or key id is written there; when the storage stops answering, each
process keeps limiting on its own (with a warning) and tries the shared
budget again every :data:`RETRY_SHARED` seconds.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from typing import Any

import attrs

from cloudnorm import errors

LOG = logging.getLogger(__name__)

#: Reads are this many times more frequent than writes by default.
READ_FACTOR = 10
#: The longest one request waits for its turn before giving up with a Timeout.
MAX_WAIT = 300.0
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Seconds over which a rate is kept, by default: a create's handful of writes goes out
#: at once, and a fleet of creates still averages the rate (clouds throttle the same
#: way: EC2 with token buckets, GCE and API gateways with per-minute quotas).
DEFAULT_WINDOW = 10.0
#: Seconds a process limits on its own after its shared storage failed.
RETRY_SHARED = 30.0
#: Seconds one call to a shared storage may take before it counts as unreachable.
STORAGE_TIMEOUT = 2.0


@attrs.frozen
class RateLimit:
    """Requests per second allowed for reads and writes (None: unlimited), counted over a
    moving window of ``window`` seconds."""

    reads: float | None
    writes: float | None
    storage: str = "memory://"
    window: float = DEFAULT_WINDOW

    @classmethod
    def from_options(cls, writes: float, options: Any, cloud: str | None = None) -> RateLimit:
        """The ``rate_limit:`` mapping of a cloud's ``cloudnorm:`` section, validated;
        ``writes`` per second (the provider's default) when it names none."""
        default = cls(reads=writes * READ_FACTOR, writes=writes)
        if options is None:
            return default
        if not isinstance(options, dict):
            raise errors.ConfigError(
                "cloudnorm: rate_limit: must be a mapping like {reads: 10, writes: 1}",
                cloud=cloud)
        unknown = sorted(set(options) - {"reads", "writes", "storage", "window"})
        if unknown:
            raise errors.ConfigError(
                f"unknown key(s) {', '.join(map(str, unknown))} in cloudnorm: rate_limit:; "
                "known keys: reads, writes, storage, window", cloud=cloud)
        window = options.get("window", DEFAULT_WINDOW)
        if isinstance(window, bool) or not isinstance(window, (int, float)) \
                or not 1 <= window <= 3600:
            raise errors.ConfigError(
                "cloudnorm: rate_limit: window: must be the seconds (1 to 3600) over which "
                f"the rates are kept, not {window!r}", cloud=cloud)
        values = {}
        for key in ("reads", "writes"):
            if key not in options:
                continue
            value = options[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
                    or not math.isfinite(value):
                raise errors.ConfigError(
                    f"cloudnorm: rate_limit: {key}: must be a number of requests per second "
                    f"(0 for unlimited), not {value!r}", cloud=cloud)
            values[key] = float(value) or None
        writes_set = values["writes"] if "writes" in values else default.writes
        # Unless named, reads follow writes: ten times as many, unlimited with them.
        reads = values["reads"] if "reads" in values else (
            writes_set * READ_FACTOR if writes_set else None)
        storage = str(options.get("storage") or "memory://")
        return cls(reads=reads, writes=writes_set, storage=storage, window=float(window))


def _item(per_second: float, window: float) -> Any:
    """A ``limits`` item: ``per_second`` times ``window`` requests per ``window`` seconds
    (at least one request, over a longer window for rates below one per window)."""
    from limits import RateLimitItemPerSecond

    seconds = max(1, int(round(window)))
    if per_second * seconds >= 1:
        return RateLimitItemPerSecond(max(1, int(round(per_second * seconds))), seconds)
    return RateLimitItemPerSecond(1, max(1, int(round(1 / per_second))))


class Limiter:
    """The budget of one account and region. ``acquire`` blocks until a request may go."""

    def __init__(self, key: str, limit: RateLimit) -> None:
        self.key = key
        #: Where the budget is counted: the digest keeps account names out of shared storage.
        self.storage_key = hashlib.sha256(key.encode()).hexdigest()[:16]
        self._shared = _moving_window(limit.storage)
        self._local: Any = None
        self._shared_failed_at: float | None = None
        self._lock = threading.Lock()
        self._configure(limit)
        #: What went through and how long callers waited, by kind (read/write).
        self.counts = {"read": 0, "write": 0}
        self.waited = {"read": 0.0, "write": 0.0}

    def _configure(self, limit: RateLimit) -> None:
        self.limit = limit
        self._items = {"read": _item(limit.reads, limit.window) if limit.reads else None,
                       "write": _item(limit.writes, limit.window) if limit.writes else None}

    def acquire(self, write: bool, deadline: float | None = None) -> float:
        """Wait for a turn; returns the seconds waited. Raises Timeout past ``deadline``."""
        kind = "write" if write else "read"
        item = self._items[kind]
        started = time.monotonic()
        limit_at = min(deadline if deadline is not None else math.inf, started + MAX_WAIT)
        if item is not None:
            while not self._hit(item, kind):
                reset = self._window_reset(item, kind)
                # reset_time is wall-clock seconds; a small floor keeps threads from spinning.
                pause = min(max(reset - time.time(), 0.01), 1.0)
                if time.monotonic() + pause > limit_at:
                    raise errors.Timeout(
                        f"rate limit of {self.key.split('|')[0]} ({kind}s) left no turn "
                        f"within {limit_at - started:.0f} s; raise cloudnorm: rate_limit: "
                        f"{kind}s: in clouds.yaml or make fewer calls")
                time.sleep(pause)
        waited = time.monotonic() - started
        with self._lock:
            self.counts[kind] += 1
            self.waited[kind] += waited
        return waited

    def _current(self) -> Any:
        """The shared budget, or this process's own while the shared storage is away."""
        if self._shared_failed_at is None:
            return self._shared
        if time.monotonic() - self._shared_failed_at >= RETRY_SHARED:
            self._shared_failed_at = None  # one more try; a failure comes straight back here
            return self._shared
        return self._local

    def _hit(self, item: Any, kind: str) -> bool:
        strategy = self._current()
        try:
            return bool(strategy.hit(item, self.storage_key, kind))
        except Exception as exc:  # the storage's own errors: redis, memcached, ...
            if strategy is not self._shared:
                raise
            self._lose_shared(exc)
            return bool(self._local.hit(item, self.storage_key, kind))

    def _window_reset(self, item: Any, kind: str) -> float:
        strategy = self._current()
        try:
            return float(strategy.get_window_stats(item, self.storage_key, kind).reset_time)
        except Exception as exc:
            if strategy is not self._shared:
                raise
            self._lose_shared(exc)
            return time.time()

    def _lose_shared(self, exc: Exception) -> None:
        with self._lock:
            if self._local is None:
                self._local = _moving_window("memory://")
            first = self._shared_failed_at is None
            self._shared_failed_at = time.monotonic()
        if first:
            LOG.warning("rate limit storage of %s unreachable (%s); limiting in this process "
                        "only, retrying the shared budget every %.0f s",
                        self.key.split("|")[0], exc, RETRY_SHARED)


def _moving_window(storage: str) -> Any:
    """A moving-window limiter over ``storage`` (a ``limits`` storage URL)."""
    from limits import storage as limits_storage
    from limits import strategies

    options: dict[str, Any] = {}
    if storage.split(":", 1)[0].startswith(("redis", "rediss", "valkey")):
        # Bounded calls, and the storage's failures as one exception type.
        options = {"key_prefix": "cloudnorm:ratelimit", "wrap_exceptions": True,
                   "socket_timeout": STORAGE_TIMEOUT, "socket_connect_timeout": STORAGE_TIMEOUT}
    try:
        store = limits_storage.storage_from_string(storage, **options)
    except Exception as exc:  # limits raises ConfigurationError or ImportError
        raise errors.ConfigError(
            f"cloudnorm: rate_limit: storage {storage!r} cannot be used: {exc}") from exc
    return strategies.MovingWindowRateLimiter(store)


_LIMITERS: dict[str, Limiter] = {}
_LOCK = threading.Lock()


def limiter_for(key: str, limit: RateLimit) -> Limiter:
    """The process-wide limiter of ``key`` (a driver identity).

    Every cloud of one account shares it. When two entries of clouds.yaml for the
    same account ask for different rates, the lower of each wins: the cloud's
    budget is one, and the stricter setting is the one known to be safe.
    """
    with _LOCK:
        current = _LIMITERS.get(key)
        if current is not None:
            lowered = attrs.evolve(current.limit,
                                   reads=_lower(current.limit.reads, limit.reads),
                                   writes=_lower(current.limit.writes, limit.writes))
            if lowered != current.limit:
                # In place: drivers already holding this limiter must feel the change.
                LOG.info("rate limit of %s lowered to %s/s reads, %s/s writes",
                         key.split("|")[0], lowered.reads, lowered.writes)
                current._configure(lowered)
            return current
        limiter = Limiter(key, limit)
        _LIMITERS[key] = limiter
        return limiter


def _lower(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def is_read(method: str) -> bool:
    return method.upper() in READ_METHODS

"""Client-side rate limits: one budget per cloud account and region, for the whole process.

Clouds throttle per account (or per endpoint), not per connection: two ``Cloud``
objects for the same account share what the cloud allows. So the limiter lives
here, keyed by the driver's identity (provider, endpoint, account, region), and
every driver of that key draws from it. Reads (GET/HEAD, EC2 ``Describe*``) are
allowed more often than writes, as nodepool does.

Unless clouds.yaml names rates, the budget adapts: it starts at the generous rates of
the cloud's profile (``adaptive_rate_limit:``), halves when the transports report
throttling (:meth:`Limiter.throttled`), holds every request of the account until the
cloud's Retry-After, and climbs back along a cubic curve (as TCP CUBIC does)::

    clouds:
      mycloud:
        cloudnorm:
          rate_limit: {reads: 20, writes: 2}    # fixed: requests per second; 0 = unlimited
          # window: 10 (default) -- seconds over which fixed rates are kept
          # adaptive: false -- the provider's fixed default (nodepool's) instead of adapting
          # rate_limit: {storage: "redis://host:6379"} shares the budget between processes

Fixed rates are counted by the ``limits`` library's moving window in any storage it
supports; the adaptive state (rate, last slow-down, Retry-After, next turn) lives in
memory or in Redis (or Valkey), so that every process of an account slows down and
recovers together. A shared storage keys the budget by a digest of the account's
identity; when it stops answering, each process limits on its own (with a warning)
and tries it again every :data:`RETRY_SHARED` seconds.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from cloudnorm import errors
from cloudnorm.ratelimit_settings import DEFAULT_WINDOW, READ_FACTOR, RateLimit, for_cloud
from cloudnorm.turns import Line, first_come

LOG = logging.getLogger(__name__)

# The settings live in their own module; drivers and users name them from here.
__all__ = ["DEFAULT_WINDOW", "READ_FACTOR", "Limiter", "RateLimit", "first_come",
           "for_cloud", "is_read", "limiter_for"]

#: The longest one request waits for its turn before giving up with a Timeout.
MAX_WAIT = 300.0
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Seconds a process limits on its own after its shared storage failed.
RETRY_SHARED = 30.0
#: Seconds one call to a shared storage may take before it counts as unreachable.
STORAGE_TIMEOUT = 2.0

#: The adaptive budget: a throttling signal multiplies the rate by BETA; RECOVERY seconds
#: later it is back where the cloud throttled it, and climbs on to the start rate.
BETA, RECOVERY = 0.5, 10.0
#: Throttled requests sent within QUIET seconds of a slow-down (or before its Retry-After
#: ended) met the same overload: they slow down no further.
QUIET = 1.0
#: The lowest adaptive rate; the seconds' worth of it that may go out at once; the seconds
#: the sending rate is measured over; how long Redis keeps an idle account's state.
MIN_RATE, BURST, MEASURE, STATE_TTL = 0.1, 1.0, 2.0, 3600


def _item(per_second: float, window: float) -> Any:
    """A ``limits`` item: ``per_second`` times ``window`` requests per ``window`` seconds
    (at least one request, over a longer window for rates below one per window)."""
    from limits import RateLimitItemPerSecond

    seconds = max(1, int(round(window)))
    if per_second * seconds >= 1:
        return RateLimitItemPerSecond(max(1, int(round(per_second * seconds))), seconds)
    return RateLimitItemPerSecond(1, max(1, int(round(1 / per_second))))


# -- the adaptive arithmetic (pure: no clock, no storage) ----------------------------------
def adaptive_rate(start: float, peak: float, since: float) -> float:
    """The rate ``since`` seconds after a slow-down from ``peak`` requests per second (0:
    none yet): ``BETA * peak`` at once, ``peak`` after RECOVERY seconds along a cubic curve
    (fast, flat near ``peak``, then faster), never above ``start`` nor below MIN_RATE."""
    if peak <= 0:
        return start
    rate = peak * (1 - (1 - BETA) * (1 - max(0.0, since) / RECOVERY) ** 3)
    return min(start, max(MIN_RATE, rate))


def rate_of(state: Mapping[str, float], kind: str, start: float, now: float) -> float:
    """The current rate of ``kind`` (read, write) in an account's adaptive state."""
    return adaptive_rate(start, state.get(f"peak:{kind}", 0.0),
                         now - state.get(f"slowed:{kind}", 0.0))


def take_turn(state: dict[str, float], kind: str, now: float, interval: float,
              burst: float) -> float:
    """0.0 when a request of ``kind`` may go at ``now`` (``state`` then records it), else
    the seconds to wait: the generic cell rate algorithm (each request moves the next
    turn, ``due``, on by ``interval``; one goes while that is at most ``burst`` seconds
    ahead), and nothing before the Retry-After (``blocked``). ``_TAKE`` in Lua."""
    blocked = state.get("blocked", 0.0)
    if blocked > now:
        return blocked - now
    due = max(state.get(f"due:{kind}", 0.0), now)
    if due - now > burst + 1e-6:  # a microsecond's leeway for the sums of intervals
        return due - now - burst
    state[f"due:{kind}"] = due + interval
    state[f"sent:{kind}"] = state.get(f"sent:{kind}", 0.0) + 1
    return 0.0


def slow_down(state: Mapping[str, float], kind: str, start: float, now: float,
              sent_at: float, retry_after: float | None,
              measured: float | None) -> dict[str, float]:
    """The changes one throttling signal makes to an account's adaptive state: the
    Retry-After holds back every request; unless the request went before the last
    slow-down settled (the same overload), the rate halves from the lower of the current
    rate and the rate requests were ``measured`` going out at."""
    changes = {f"throttled:{kind}": state.get(f"throttled:{kind}", 0.0) + 1}
    if retry_after:
        changes["blocked"] = max(state.get("blocked", 0.0), now + retry_after)
    if sent_at < state.get(f"settled:{kind}", 0.0):
        return changes
    peak = rate_of(state, kind, start, now)
    if measured is not None:
        peak = min(peak, max(measured, MIN_RATE))
    changes.update({f"peak:{kind}": peak, f"slowed:{kind}": now,
                    f"settled:{kind}": now + max(QUIET, retry_after or 0.0),
                    f"slowdowns:{kind}": state.get(f"slowdowns:{kind}", 0.0) + 1})
    return changes


# -- where the adaptive state lives: ``take`` a turn, ``read``, ``update`` if unchanged --
class LocalState:
    """The adaptive state of accounts, in this process."""

    def __init__(self) -> None:
        self._states: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, *args: Any) -> tuple[float, dict[str, float]]:
        with self._lock:
            state = self._states.setdefault(key, {})
            return take_turn(state, *args), dict(state)

    def read(self, key: str, seed: Mapping[str, float] | None = None) -> dict[str, float]:
        with self._lock:
            return dict(self._states.setdefault(key, dict(seed or {})))

    def update(self, key: str, version: int, changes: Mapping[str, float]) -> bool:
        with self._lock:
            state = self._states.setdefault(key, {})
            if int(state.get("version", 0)) != version:
                return False  # someone changed it since it was read
            state.update(changes, version=version + 1)
            return True


# KEYS[1]: the account's hash; ARGV: now, kind, interval, burst, ttl. take_turn in Lua.
_TAKE = """
local now, kind, burst, wait = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[4]) + 1e-6, 0
local blocked = tonumber(redis.call('HGET', KEYS[1], 'blocked') or '0')
local due = math.max(tonumber(redis.call('HGET', KEYS[1], 'due:' .. kind) or '0'), now)
if blocked > now then wait = blocked - now
elseif due - now > burst then wait = due - now - burst
else
  redis.call('HSET', KEYS[1], 'due:' .. kind, string.format('%.6f', due + tonumber(ARGV[3])))
  redis.call('HINCRBY', KEYS[1], 'sent:' .. kind, 1)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
end
return {string.format('%.6f', wait), redis.call('HGETALL', KEYS[1])}
"""
# KEYS[1]; ARGV: the version the changes were computed from, ttl, then field, value...
_UPDATE = """
if (redis.call('HGET', KEYS[1], 'version') or '0') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'version', tostring(tonumber(ARGV[1]) + 1), unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


class SharedState:
    """The adaptive state of accounts in Redis (or Valkey), changed by Lua scripts."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client, self._prefix = client, f"{prefix}:adaptive:"
        self._take = client.register_script(_TAKE)
        self._update = client.register_script(_UPDATE)

    def take(self, key: str, kind: str, now: float, interval: float,
             burst: float) -> tuple[float, dict[str, float]]:
        wait, flat = self._take(keys=[self._prefix + key], args=[
            repr(now), kind, repr(interval), repr(burst), STATE_TTL])
        return float(wait), _decoded(dict(zip(flat[::2], flat[1::2], strict=True)))

    def read(self, key: str) -> dict[str, float]:
        return _decoded(self._client.hgetall(self._prefix + key))

    def update(self, key: str, version: int, changes: Mapping[str, float]) -> bool:
        args: list[Any] = [str(version), STATE_TTL]
        for field, value in changes.items():
            args += [field, repr(float(value))]
        return bool(self._update(keys=[self._prefix + key], args=args))


def _decoded(raw: Mapping[Any, Any]) -> dict[str, float]:
    return {(k.decode() if isinstance(k, bytes) else str(k)): float(v) for k, v in raw.items()}


class Limiter:
    """The budget of one account and region. ``acquire`` blocks until a request may go;
    ``throttled`` is told when the cloud refused one for the rate."""

    def __init__(self, key: str, limit: RateLimit, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.key = key
        #: Where the budget is counted: the digest keeps account names out of shared storage.
        self.storage_key = hashlib.sha256(key.encode()).hexdigest()[:16]
        self._shared = _moving_window(limit.storage)
        self._local: Any = None
        self._shared_failed_at: float | None = None
        self._lock, self._clock, self._sleep = threading.Lock(), clock, sleep
        self._own_states = LocalState()
        self._states = _adaptive_state(self._shared) or self._own_states
        #: The adaptive state as last read, the sending rate measured, the rate logged.
        self._seen: dict[str, float] = {}
        self._samples: dict[str, collections.deque[tuple[float, float]]] = {
            "read": collections.deque(), "write": collections.deque()}
        self._logged: dict[str, float] = {}
        self._mine: dict[str, float] = {}  # when this process last slowed down, by kind
        self._thread = threading.local()  # the kind and time of this thread's last turn
        self._lines = {"read": Line(), "write": Line()}
        self._configure(limit)
        if limit.adaptive and self._states is self._own_states \
                and limit.storage != "memory://":
            LOG.warning("rate limit of %s: its storage keeps no adaptive state; adapting in "
                        "this process only (a Redis storage shares it)", self.name)
        #: What went through, how long callers waited, what the cloud throttled, by kind.
        self.counts = {"read": 0, "write": 0}
        self.waited = {"read": 0.0, "write": 0.0}
        self.throttles = {"read": 0, "write": 0}

    @property
    def name(self) -> str:
        return self.key.split("|")[0]

    def _configure(self, limit: RateLimit) -> None:
        self.limit = limit
        self._items = {"read": _item(limit.reads, limit.window) if limit.reads else None,
                       "write": _item(limit.writes, limit.window) if limit.writes else None}

    def acquire(self, write: bool, deadline: float | None = None) -> float:
        """Wait for a turn, oldest work first (:mod:`cloudnorm.turns`); returns the seconds
        waited. Raises Timeout past ``deadline``."""
        kind = "write" if write else "read"
        item = self._items[kind]
        started = time.monotonic()
        limit_at = min(deadline if deadline is not None else math.inf, started + MAX_WAIT)
        if self.limit.adaptive or item is not None:
            with self._lines[kind].turn(limit_at, f"{self.name} ({kind}s)"):
                if self.limit.adaptive:
                    self._acquire_adaptive(kind, started, limit_at)
                else:
                    self._acquire_fixed(kind, item, started, limit_at)
        waited = time.monotonic() - started
        self._thread.kind = kind
        with self._lock:
            self.counts[kind] += 1
            self.waited[kind] += waited
        return waited

    def _acquire_fixed(self, kind: str, item: Any, started: float, limit_at: float) -> None:
        while not self._fixed("hit", item, kind):
            reset = float(self._fixed("get_window_stats", item, kind).reset_time)
            # reset_time is wall-clock seconds; a small floor keeps threads from spinning.
            pause = min(max(reset - time.time(), 0.01), 1.0)
            if time.monotonic() + pause > limit_at:
                raise errors.Timeout(
                    f"rate limit of {self.name} ({kind}s) left no turn "
                    f"within {limit_at - started:.0f} s; raise cloudnorm: rate_limit: "
                    f"{kind}s: in clouds.yaml or make fewer calls")
            time.sleep(pause)

    def start_rate(self, kind: str) -> float:
        return float((self.limit.writes if kind == "write" else self.limit.reads) or math.inf)

    def rate(self, kind: str, now: float | None = None) -> float:
        """The adaptive rate of ``kind`` now, as this process last saw the state."""
        return rate_of(self._seen, kind, self.start_rate(kind), now or self._clock())

    def _acquire_adaptive(self, kind: str, started: float, limit_at: float) -> None:
        slept = 0.0
        while True:  # bounded: each pass sleeps, and MAX_WAIT bounds the sleeps
            now = self._clock()
            interval = 1.0 / self.rate(kind, now)
            burst = max(0.0, BURST - interval)
            wait, state = self._adaptive("take", kind, now, interval, burst)
            self._observe(kind, state, now, sent=wait <= 0)
            if wait <= 0:
                self._thread.sent_at = now
                return
            pause = min(max(wait, 0.001), 1.0)
            if max(time.monotonic() - started, slept) + pause > limit_at - started:
                raise errors.Timeout(
                    f"rate limit of {self.name} ({kind}s) left no turn within "
                    f"{limit_at - started:.0f} s: the cloud throttles this account (adaptive "
                    f"rate now {self.rate(kind, now):.3g}/s); make fewer calls, or fix the "
                    "rates with cloudnorm: rate_limit: in clouds.yaml")
            self._sleep(pause)
            slept += pause

    def throttled(self, write: bool | None = None, retry_after: float | None = None) -> bool:
        """The cloud refused a request of this account for its rate (``write`` or not;
        None: the kind this thread last sent), asking to wait ``retry_after`` seconds.
        An adaptive budget holds the account's requests back until then and halves its
        rate, once per overload. Returns whether the rate went down."""
        kind = ("write" if write else "read") if write is not None \
            else getattr(self._thread, "kind", "write")
        with self._lock:
            self.throttles[kind] += 1
        if not self.limit.adaptive:
            LOG.debug("rate limit of %s (%ss): throttled by the cloud; the rates are fixed",
                      self.name, kind)
            return False
        now, start, measured = self._clock(), self.start_rate(kind), self._measured(kind)
        sent_at = getattr(self._thread, "sent_at", now)
        self._mine[kind] = now
        before: dict[str, float] = {}
        changes: dict[str, float] = {}
        for _ in range(8):  # bounded: each miss means another process changed the state
            before = self._adaptive("read")
            changes = slow_down(before, kind, start, now, sent_at, retry_after, measured)
            if self._adaptive("update", int(before.get("version", 0)), changes):
                self._seen = {**before, **changes, "version": before.get("version", 0.0) + 1}
                break
        else:
            changes = {}
        hold = f"; no request before {retry_after:.3g} s (Retry-After)" if retry_after else ""
        if f"slowed:{kind}" not in changes:
            LOG.debug("rate limit of %s (%ss): throttled again by the overload of %.1f s "
                      "ago; rate stays %.3g/s%s", self.name, kind,
                      now - before.get(f"slowed:{kind}", now), self.rate(kind, now), hold)
            return False
        new = self.rate(kind, now)
        self._logged[kind] = new
        LOG.info("rate limit of %s (%ss): throttled by the cloud at %.3g/s%s; slowing down "
                 "to %.3g/s%s", self.name, kind, rate_of(before, kind, start, now),
                 f" (measured {measured:.3g}/s)" if measured is not None else "", new, hold)
        return True

    def _measured(self, kind: str) -> float | None:
        """Requests of ``kind`` per second the account sent lately (every process that
        shares the state counted), or None when too few went to tell."""
        with self._lock:
            samples = list(self._samples[kind])
        if len(samples) < 3 or samples[-1][0] - samples[0][0] < MEASURE / 4:
            return None
        return (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])

    def _observe(self, kind: str, state: dict[str, float], now: float, sent: bool) -> None:
        """Remember the state a turn found; log the rate's changes."""
        before = self._seen
        if state.get("version", 0.0) >= before.get("version", 0.0):
            self._seen = state  # not a turn taken before the latest slow-down was seen
        with self._lock:
            samples = self._samples[kind]
            if sent:
                samples.append((now, state.get(f"sent:{kind}", 0.0)))
            while samples and samples[0][0] < now - MEASURE:
                samples.popleft()
        slowed, rate = state.get(f"slowed:{kind}", 0.0), self.rate(kind, now)
        logged = self._logged.setdefault(kind, rate)
        if slowed > before.get(f"slowed:{kind}", 0.0) and slowed != self._mine.get(kind):
            LOG.info("rate limit of %s (%ss): slowed down to %.3g/s by another process",
                     self.name, kind, rate)
        elif rate >= self.start_rate(kind) > logged:
            LOG.info("rate limit of %s (%ss): back at its start rate, %.3g/s, %.0f s after "
                     "the last slow-down", self.name, kind, rate, now - slowed)
        elif abs(rate - logged) < 0.25 * logged:
            return
        else:
            LOG.debug("rate limit of %s (%ss): %.3g/s, %.1f s after the last slow-down",
                      self.name, kind, rate, now - slowed)
        self._logged[kind] = rate

    def status(self) -> dict[str, Any]:
        """What the budget is now, for ``cloudnorm inspect``: mode, rates, slow-downs."""
        adaptive, now = self.limit.adaptive, self._clock()
        found: dict[str, Any] = {
            "mode": "adaptive" if adaptive else "fixed", "window": self.limit.window,
            "shared": self.limit.storage != "memory://" and self._shared_failed_at is None
            and not (adaptive and self._states is self._own_states),
            "sent": dict(self.counts), "throttled": dict(self.throttles)}
        state = self._adaptive("read") if adaptive else {}
        for kind in ("write", "read"):
            slowed = state.get(f"slowed:{kind}")
            found[f"{kind}s"] = {
                "rate": rate_of(state, kind, self.start_rate(kind), now) if adaptive
                else self.limit.writes if kind == "write" else self.limit.reads,
                "slowdowns": int(state.get(f"slowdowns:{kind}", 0)),
                "throttled": int(state.get(f"throttled:{kind}", 0)),
                "since_slowdown": now - slowed if slowed else None,
                "start": self.start_rate(kind) if adaptive else None}
        found["held_for"] = max(0.0, state.get("blocked", 0.0) - now)
        return found

    def _adaptive(self, method: str, *args: Any) -> Any:
        """``method`` of the adaptive state for this account: the shared state, or this
        process's own while the shared storage is away."""
        if self._states is self._own_states or self._current() is not self._shared:
            return getattr(self._own_states, method)(self.storage_key, *args)
        try:
            return getattr(self._states, method)(self.storage_key, *args)
        except Exception as exc:  # the storage's own errors: redis, valkey, ...
            self._lose_shared(exc)
            self._own_states.read(self.storage_key, self._seen)  # go on from the last seen
            return getattr(self._own_states, method)(self.storage_key, *args)

    def _current(self) -> Any:
        """The shared budget, or this process's own while the shared storage is away."""
        if self._shared_failed_at is None:
            return self._shared
        if time.monotonic() - self._shared_failed_at >= RETRY_SHARED:
            self._shared_failed_at = None  # one more try; a failure comes straight back here
            return self._shared
        return self._local

    def _fixed(self, method: str, item: Any, kind: str) -> Any:
        """``method`` of the moving window (hit, get_window_stats) for a fixed rate."""
        strategy = self._current()
        try:
            return getattr(strategy, method)(item, self.storage_key, kind)
        except Exception as exc:  # the storage's own errors: redis, memcached, ...
            if strategy is not self._shared:
                raise
            self._lose_shared(exc)
            return getattr(self._local, method)(item, self.storage_key, kind)

    def _lose_shared(self, exc: Exception) -> None:
        with self._lock:
            if self._local is None:
                self._local = _moving_window("memory://")
            first = self._shared_failed_at is None
            self._shared_failed_at = time.monotonic()
        if first:
            LOG.warning("rate limit storage of %s unreachable (%s); limiting in this process "
                        "only, retrying the shared budget every %.0f s",
                        self.name, exc, RETRY_SHARED)


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


def _adaptive_state(strategy: Any) -> SharedState | None:
    """The Redis (or Valkey) server of a shared storage, to keep the adaptive state in;
    None: this process keeps it."""
    store = strategy.storage
    connection = getattr(store, "get_connection", None)
    if connection is None:
        return None
    return SharedState(connection(), str(getattr(store, "key_prefix", "cloudnorm:ratelimit")))


_LIMITERS: dict[str, Limiter] = {}
_LOCK = threading.Lock()


def limiter_for(key: str, limit: RateLimit) -> Limiter:
    """The process-wide limiter of ``key`` (a driver identity), shared by every cloud of
    one account. When two entries for it differ, fixed rates beat adaptive ones, and of
    two alike the lower of each wins: the stricter setting is the one known to be safe."""
    with _LOCK:
        current = _LIMITERS.get(key)
        if current is not None:
            merged = _merged(current.limit, limit)
            if merged != current.limit:
                # In place: drivers already holding this limiter must feel the change.
                LOG.info("rate limit of %s %s to %s/s reads, %s/s writes", key.split("|")[0],
                         "lowered" if merged.adaptive == current.limit.adaptive
                         else "fixed by clouds.yaml", merged.reads, merged.writes)
                current._configure(merged)
            return current
        limiter = Limiter(key, limit)
        _LIMITERS[key] = limiter
        return limiter


def _merged(current: RateLimit, new: RateLimit) -> RateLimit:
    if current.adaptive and not new.adaptive:
        return attrs.evolve(current, reads=new.reads, writes=new.writes, adaptive=False)
    if new.adaptive and not current.adaptive:
        return current
    return attrs.evolve(current, reads=_lower(current.reads, new.reads),
                        writes=_lower(current.writes, new.writes))


def _lower(a: float | None, b: float | None) -> float | None:
    return min((x for x in (a, b) if x is not None), default=None)


def is_read(method: str) -> bool:
    return method.upper() in READ_METHODS

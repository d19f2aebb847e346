"""A cloud's rate limit as clouds.yaml (``cloudnorm: rate_limit:``) and its profile set it.

:mod:`cloudnorm.ratelimit` applies it; see there for what the settings mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from cloudnorm import errors

#: Reads are this many times more frequent than writes by default.
READ_FACTOR = 10
#: Seconds over which a rate is kept, by default: a create's handful of writes goes out
#: at once, and a fleet of creates still averages the rate (clouds throttle the same
#: way: EC2 with token buckets, GCE and API gateways with per-minute quotas).
DEFAULT_WINDOW = 10.0


@attrs.frozen
class RateLimit:
    """Requests per second allowed for reads and writes (None: unlimited), counted over a
    moving window of ``window`` seconds; ``adaptive``: the rates are where an adaptive
    budget starts and the most it climbs back to."""

    reads: float | None
    writes: float | None
    storage: str = "memory://"
    window: float = DEFAULT_WINDOW
    adaptive: bool = False

    @classmethod
    def from_options(cls, writes: float, options: Any, cloud: str | None = None,
                     adaptive: Mapping[str, float] | None = None) -> RateLimit:
        """The ``rate_limit:`` mapping of a cloud's ``cloudnorm:`` section, validated;
        ``writes`` per second (the provider's fixed default) when it names none. With
        ``adaptive`` (a profile's start rates: ``writes``, optionally ``reads``), a
        section that names no rates (or says ``adaptive: true``) gets an adaptive budget."""
        if options is not None and not isinstance(options, dict):
            raise errors.ConfigError(
                "cloudnorm: rate_limit: must be a mapping like {reads: 10, writes: 1}",
                cloud=cloud)
        options = options or {}
        unknown = sorted(set(options) - {"reads", "writes", "storage", "window", "adaptive"})
        if unknown:
            raise errors.ConfigError(
                f"unknown key(s) {', '.join(map(str, unknown))} in cloudnorm: rate_limit:; "
                "known keys: reads, writes, storage, window, adaptive", cloud=cloud)
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
        wanted = options.get("adaptive")
        if wanted is not None and not isinstance(wanted, bool):
            raise errors.ConfigError("cloudnorm: rate_limit: adaptive: must be true or false, "
                                     f"not {wanted!r}", cloud=cloud)
        storage = str(options.get("storage") or "memory://")
        if wanted if wanted is not None else (adaptive and not values):
            # Rates named here are where it starts; the others come from the profile
            # (reads: ten times the writes unless it says).
            if None in values.values():
                raise errors.ConfigError(
                    "cloudnorm: rate_limit: an adaptive rate limit starts from rates above "
                    "0: name them (reads:, writes:) or leave adaptive: out", cloud=cloud)
            start_writes = values.get("writes") or (adaptive or {}).get("writes") or writes
            start_reads = values.get("reads") or (
                (adaptive or {}).get("reads") if "writes" not in values else None)
            return cls(reads=float(start_reads or start_writes * READ_FACTOR),
                       writes=float(start_writes), storage=storage, window=float(window),
                       adaptive=True)
        writes_set = values["writes"] if "writes" in values else writes
        # Unless named, reads follow writes: ten times as many, unlimited with them.
        reads = values["reads"] if "reads" in values else (
            writes_set * READ_FACTOR if writes_set else None)
        return cls(reads=reads, writes=writes_set, storage=storage, window=float(window))


def for_cloud(settings: Any, writes: float) -> RateLimit:
    """The rate limit of a cloud (``CloudSettings``): adaptive from its profile's
    ``adaptive_rate_limit:`` unless ``rate_limit:`` fixes rates (default: ``writes``)."""
    from cloudnorm import profiles

    start = profiles.load(settings.profile or settings.provider).adaptive_rate_limit
    return RateLimit.from_options(writes, settings.options.get("rate_limit"), settings.name,
                                  adaptive=start or None)

"""Reading records a cloud sent: a malformed one becomes a typed error naming it.

Every normalizer of every driver reads its provider's records through
:func:`guarded`: a record of the wrong shape (a list where a mapping belongs, a
word where a number belongs, a missing id, an address that is no address) is
refused with a :class:`~cloudnorm.errors.ProviderError` that names the record,
never with a bare ``KeyError`` or ``TypeError`` from deep inside cloudnorm.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from cloudnorm import errors

F = TypeVar("F", bound=Callable[..., Any])

#: What a malformed record raises on its way through a normalizer.
_SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, OverflowError, IndexError)


def record_name(raw: Any, id_keys: Sequence[str] = ("id", "name")) -> str | None:
    """A short printable name for a record: the first of ``id_keys`` it holds."""
    if not isinstance(raw, dict):
        return None
    for key in id_keys:
        value = raw.get(key)
        if value is not None and value != "":
            return errors.describe(value)
    return None


def guarded(kind: str, id_keys: Sequence[str] = ("id", "name")) -> Callable[[F], F]:
    """Decorate a normalizer whose first argument is a raw ``kind`` record."""
    def wrap(normalize: F) -> F:
        @functools.wraps(normalize)
        def guard(raw: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return normalize(raw, *args, **kwargs)
            except _SHAPE_ERRORS as exc:
                name = record_name(raw, id_keys)
                raise errors.ProviderError(
                    f"the cloud sent a malformed {kind} record"
                    + (f" ({name})" if name is not None else "")
                    + f": {type(exc).__name__}: {exc}") from exc
        return guard  # type: ignore[return-value]
    return wrap


# Readers of one field of a record. They raise TypeError on a field of the wrong shape,
# which the guard of the normalizer reading them turns into a ProviderError naming the
# record. Absent (None) reads as empty.
def mapping(value: Any, field: str) -> dict[str, Any]:
    """An optional mapping field ({} when absent)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{field} is {errors.describe(value)}, not a mapping")
    return value


def mappings(value: Any, field: str) -> list[dict[str, Any]]:
    """An optional list-of-mappings field ([] when absent)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{field} is {errors.describe(value)}, not a list")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise TypeError(f"{field}[{index}] is {errors.describe(item)}, not a mapping")
    return value


def parse_time(value: Any) -> datetime.datetime | None:
    """A time a cloud sent (ISO 8601 text with ``Z``, an offset or no zone, or a
    datetime botocore already parsed) as an aware datetime, UTC where it names no zone;
    None when absent or unreadable. Only text is read: a number would pass for a
    compact ISO date (20240101)."""
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    if type(value) is not str or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)

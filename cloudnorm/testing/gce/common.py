"""What every part of the local Compute Engine shares: Google's error answer
(:class:`ApiError`) and its usual shapes, resource-name rules, timestamps, fingerprints and
address pools."""

from __future__ import annotations

import base64
import datetime
import re
import secrets
from typing import Any

#: A resource name as GCE accepts it (RFC 1035 label).
NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
_PACIFIC = datetime.timezone(datetime.timedelta(hours=-7))


class ApiError(Exception):
    """An error answer: HTTP ``code``, Google's ``reason`` and ``message``."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "errors": [
            {"message": self.message, "domain": "global", "reason": self.reason}]}}


def not_found(path: str) -> ApiError:
    return ApiError(404, "notFound", f"The resource '{path}' was not found")


def invalid(field: str, value: Any, why: str) -> ApiError:
    return ApiError(400, "invalid", f"Invalid value for field '{field}': '{value}'. {why}")


def timestamp() -> str:
    return datetime.datetime.now(_PACIFIC).isoformat(timespec="milliseconds")


def new_fingerprint() -> str:
    return base64.b64encode(secrets.token_bytes(8)).decode()


def last_part(link: Any) -> str:
    return str(link or "").rstrip("/").rsplit("/", 1)[-1]


class Pool:
    """Addresses of a range handed out in order, skipping those in use."""

    def __init__(self, hosts: list[str]) -> None:
        self._hosts = hosts
        self._next = 0

    def take(self, in_use: set[str], what: str) -> str:
        for _ in range(len(self._hosts)):
            candidate = self._hosts[self._next % len(self._hosts)]
            self._next += 1
            if candidate not in in_use:
                return candidate
        raise ApiError(403, "quotaExceeded", f"Quota exceeded: no free {what} left")

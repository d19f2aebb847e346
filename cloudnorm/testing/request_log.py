"""Reading the sandbox's request log: one JSON object per line, appended by every service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_requests(path: Path, since: float | None = None, service: str | None = None,
                  project: str | None = None) -> list[dict[str, Any]]:
    """Requests in the order they were logged, filtered by start time, service and project.

    ``project`` is the Keystone project name the request was authenticated for.
    """
    entries = []
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        return []
    with handle:
        for line in handle:
            if not line.endswith("\n"):
                break  # a line still being written
            entry = json.loads(line)
            if since is not None and entry["t"] < since:
                continue
            if service is not None and entry["service"] != service:
                continue
            if project is not None and entry.get("project") != project:
                continue
            entries.append(entry)
    return entries

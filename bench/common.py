"""Small things every scenario uses: the time budget, keys, progress, request shapes."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RAW = RESULTS / "raw"


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Budget:
    """The whole run's wall-clock budget; scenarios ask before each repetition."""

    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + seconds

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.deadline - time.monotonic()


def make_key(directory: Path, name: str) -> tuple[Path, str]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name,
                        "-f", str(path)], check=True, timeout=30)
    return path, path.with_suffix(".pub").read_text().strip()


_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}"
                 r"|(?<=os-keypairs/)[^/?]+")


def endpoint(request: dict[str, Any]) -> str:
    """``service METHOD /path`` with ids replaced by ``{id}``."""
    path = _ID.sub("{id}", request.get("path") or "/") or "/"
    return f"{request['service']} {request['method']} {path}"


def breakdown(requests: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(endpoint(r) for r in requests)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def is_status_poll(request: dict[str, Any]) -> bool:
    """A request that asks Nova how a server is doing (one server or the whole list)."""
    if request["service"] != "nova" or request["method"] != "GET":
        return False
    path = request.get("path") or ""
    return bool(re.fullmatch(r"/v2\.1/servers/(detail|[0-9a-f-]{36})", path))


def peak_in_window(times: list[float], width: float) -> int:
    """The largest number of events inside any window of ``width`` seconds."""
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best

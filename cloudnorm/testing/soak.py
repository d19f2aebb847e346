"""How long the create/delete soaks run, and where a long run leaves its results.

The test suite runs a fixed number of cycles per provider (``SOAK_CYCLES``, 4 unless
set): each meets faults of several kinds, and a CI run stays under 30 minutes; the
long soaks meet every kind many times.
``bash scripts/soak`` runs the 100-cycle soaks and writes each provider's record to
``bench/results/soak-<provider>.json`` (``SOAK_RESULTS`` names the folder).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

#: Create/delete cycles per provider.
CYCLES = int(os.environ.get("SOAK_CYCLES", "4"))
#: Seconds of cycles per provider at most: a bound, not the length (cycles end first).
BUDGET = float(os.environ.get("SOAK_BUDGET", "600"))


def write_result(provider: str, record: dict[str, Any]) -> Path | None:
    """Save a soak's record where ``SOAK_RESULTS`` says; None when it says nowhere."""
    folder = os.environ.get("SOAK_RESULTS")
    if not folder:
        return None
    path = Path(folder) / f"soak-{provider}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "provider": provider, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cycles_asked": CYCLES, "budget_s": BUDGET, "cpus": os.cpu_count(),
        "python": platform.python_version(), **record}, indent=2, sort_keys=True) + "\n")
    return path

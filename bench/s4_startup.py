"""Scenario 4: start-up cost, ``python -c "import X"`` in fresh processes.

The commands take turns (round robin) so that a slow moment of the machine hits all of
them alike; one untimed round first fills the bytecode caches.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from typing import Any

from bench.common import RAW, ROOT, Budget, say
from bench.stats import ratio, summary

COMMANDS = {
    "python": "pass",
    "cloudnorm": "import cloudnorm",
    "openstacksdk": "import openstack",
    "libcloud": "import libcloud.compute.providers",
    # not a target: what opening an OpenStack cloud with cloudnorm adds (its driver and SDK)
    "cloudnorm+openstack driver": "import cloudnorm.cloud, cloudnorm.drivers.openstack.driver, "
                                  "openstack.connection",
}
CLI_STARTUP = ROOT / "bench" / "cli_startup.py"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "OS_"))}
    return env


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(code: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one fresh interpreter running ``code``."""
    cpu = _cpu_children()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], cwd="/", env=_env(),
                            stdout=subprocess.DEVNULL)
    # A blocking wait: Popen.wait(timeout=...) polls with sleeps of up to 50 ms, which
    # would round every time up by as much. A timer bounds it instead.
    watchdog = threading.Timer(60.0, proc.kill)
    watchdog.start()
    try:
        code_ = proc.wait()
    finally:
        watchdog.cancel()
    elapsed = time.perf_counter() - started
    if code_ != 0:
        raise RuntimeError(f"python -c {code!r} exited {code_}")
    return elapsed, _cpu_children() - cpu


def run(budget: Budget, reps: int, reserve: float) -> dict[str, Any]:
    for code in COMMANDS.values():
        _time(code)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpu: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(reps):
        if budget.left() < reserve:
            break
        for name, code in COMMANDS.items():
            wall, used = _time(code)
            times[name].append(wall)
            cpu[name].append(used)
    out: dict[str, Any] = {name: summary(values) for name, values in times.items()}
    out["cpu"] = {name: summary(values) for name, values in cpu.items()}
    base = out["python"]["median"] or 0.0
    for name in COMMANDS:
        s = out[name]
        s["net_of_interpreter"] = (s["median"] - base) if s["median"] is not None else None
    out["cloudnorm_vs_openstacksdk"] = ratio(out["cloudnorm"], out["openstacksdk"])
    out["libcloud_vs_openstacksdk"] = ratio(out["libcloud"], out["openstacksdk"])
    out["cpu_cloudnorm_vs_openstacksdk"] = ratio(out["cpu"]["cloudnorm"],
                                                 out["cpu"]["openstacksdk"])
    out["commands"] = COMMANDS
    say("start-up: " + ", ".join(f"{n} {out[n]['median'] * 1000:.0f} ms" for n in COMMANDS))
    return out


def cli_startup(budget: Budget) -> dict[str, Any] | None:
    """The result of ``bench/cli_startup.py`` (``cloudnorm --help``; written by someone
    else), if that file exists. Its JSON goes to raw/, not over its own results file."""
    if not CLI_STARTUP.exists():
        return None
    if budget.left() < 15:
        return {"skipped": "not enough time left in the budget"}
    RAW.mkdir(parents=True, exist_ok=True)
    output = RAW / "cli_startup.json"
    output.unlink(missing_ok=True)
    reps = 15
    try:
        proc = subprocess.run([sys.executable, str(CLI_STARTUP), "--reps", str(reps),
                               "--output", str(output)], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return {"error": "bench/cli_startup.py did not finish in time"}
    data: Any = None
    if output.exists():
        try:
            data = json.loads(output.read_text())
        except ValueError:
            data = None
    return {"returncode": proc.returncode, "data": data, "text": proc.stdout.strip()[-3000:],
            "stderr": proc.stderr.strip()[-1000:]}

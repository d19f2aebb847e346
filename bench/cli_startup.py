"""How long ``cloudnorm --help`` and ``cloudnorm list --help`` take, start to exit.

``python bench/cli_startup.py [--reps N] [--limit-ms 300]`` runs each command N times as
a fresh process (the installed console script), prints min / median / max in
milliseconds beside a bare ``python -c pass`` for scale, writes the numbers to
``bench/results/cli_startup.json``, and exits 1 when a median is over the limit.
Provider SDKs must stay unloaded for help: the script also records which of them a
help run imports (there should be none).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "cli_startup.json"
SDKS = ("openstack", "keystoneauth1", "boto3", "botocore", "google", "asyncssh")
TIMEOUT = 30.0  # seconds one timed command may take before it is killed


def command() -> list[str]:
    script = Path(sys.executable).with_name("cloudnorm")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cloudnorm.cli"]


def run_once(argv: list[str], env: dict[str, str], timeout: float = TIMEOUT) -> float:
    """Milliseconds from starting ``argv`` until it exited (raises if it failed).

    A blocking wait, not ``subprocess.run(timeout=...)``: waiting with a timeout polls
    the child with sleeps of up to 50 ms, which would add as much to a measurement. A
    timer that kills the child bounds the wait instead.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.daemon = True
    watchdog.start()
    try:
        code = proc.wait()  # waitpid without WNOHANG: returns the moment the child exits
    finally:
        watchdog.cancel()
    elapsed = (time.perf_counter() - started) * 1000
    if code == -signal.SIGKILL and elapsed >= timeout * 1000:
        raise subprocess.TimeoutExpired(argv, timeout)
    if code != 0:
        raise subprocess.CalledProcessError(code, argv)
    return elapsed


def timed(argv: list[str], reps: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    return [run_once(argv, env) for _ in range(reps)]


def sdks_loaded(args: list[str]) -> list[str]:
    code = "\n".join([
        "import json, sys", "from cloudnorm.cli import main", "try:", f"    main({args!r})",
        "except SystemExit:", "    pass",
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(SDKS)!r})))"])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=30)
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--limit-ms", type=float, default=300.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    cases = {"python -c pass": [sys.executable, "-c", "pass"],
             "cloudnorm --help": [*command(), "--help"],
             "cloudnorm list --help": [*command(), "list", "--help"]}
    timed(cases["cloudnorm --help"], 2)  # warm the file cache; not counted
    results = {}
    for name, argv in cases.items():
        runs = timed(argv, args.reps)
        results[name] = {"min_ms": round(min(runs), 1),
                         "median_ms": round(statistics.median(runs), 1),
                         "max_ms": round(max(runs), 1), "runs": len(runs)}
    loaded = {"cloudnorm --help": sdks_loaded(["--help"]),
              "cloudnorm list --help": sdks_loaded(["list", "--help"])}
    over = [n for n in ("cloudnorm --help", "cloudnorm list --help")
            if results[n]["median_ms"] > args.limit_ms]
    data = {"limit_ms": args.limit_ms, "results": results, "sdks_imported": loaded,
            "ok": not over and not any(loaded.values()),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "platform": platform.platform()},
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    for name, r in results.items():
        print(f"{name:<24} min {r['min_ms']:6.1f} ms  median {r['median_ms']:6.1f} ms  "
              f"max {r['max_ms']:6.1f} ms  ({r['runs']} runs)")
    print(f"provider SDKs imported by help: {loaded}")
    print(f"limit {args.limit_ms:.0f} ms: {'met' if data['ok'] else 'NOT met'}; "
          f"written to {args.output}")
    return 0 if data["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bench``: start the sandbox clouds, run every scenario for cloudnorm and its
peers on the same backend in the same run, write ``bench/results/report.{md,json}``,
``fleet.png`` and ``processes.png``, stop everything.

A run of some scenarios only (``--only``) merges its results into the existing
``report.json``: the other scenarios' results stay, and the report says which run each
scenario's results come from.

As root the run moves itself into a private network namespace (after installing what
needs the network), as ``python -m cloudnorm.testing run`` does: the sandbox's services,
its SSH nodes and all the bench's traffic stay on that namespace's loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench import env
from bench.common import RAW, RESULTS, Budget, say

# In the order they run: start-up first, on a machine the sandbox is not yet loading;
# bfv (boot from a volume) while the SSH data plane still runs.
SCENARIOS = ("startup", "create", "concurrent", "bfv", "processes", "login", "normalize")
# What a run of only some scenarios keeps of earlier runs (bench/results/report.json).
PARTIAL_RUNS_KEPT = 10
STARTED_VARIABLE = "CLOUDNORM_BENCH_STARTED"
# The default budget (s): installs, the backend's start and every scenario but the fleets;
# the fleets (scenario "concurrent", N = 1 to 50 for two libraries: about 14 minutes
# here); and the installs and the backend's start alone, for a run of the fleets only.
BUDGET = 585.0
FLEET_BUDGET = 1000.0
START_BUDGET = 100.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated scenarios to run (default: all of {SCENARIOS})")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"seconds for the whole run, installs included (default "
                             f"{BUDGET:.0f}, and {FLEET_BUDGET:.0f} more when scenario "
                             f"'concurrent' runs; {START_BUDGET + FLEET_BUDGET:.0f} for "
                             "--only concurrent)")
    parser.add_argument("--reps", type=int, default=3,
                        help="cold+warm creates per library in scenario 1, and create+delete "
                             "rounds per library in scenario bfv (default 3)")
    parser.add_argument("--sizes", default="1,10,25,50",
                        help="N for the fleet scenario 'concurrent': N servers created at "
                             "once by N threads sharing one client, for cloudnorm and "
                             "openstacksdk (default 1,10,25,50)")
    parser.add_argument("--login-reps", type=int, default=10)
    parser.add_argument("--startup-reps", type=int, default=12)
    parser.add_argument("--normalize-processes", type=int, default=3)
    parser.add_argument("--process-sizes", default="1,4,8,16",
                        help="N worker processes discovering one cloud at once, with and "
                             "without the shared Redis cache (default 1,4,8,16)")
    parser.add_argument("--process-reps", type=int, default=3,
                        help="repetitions of every N and cache in scenario 'processes', "
                             "as far as the budget allows (default 3)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="where report.md, report.json and the PNG go")
    parser.add_argument("--workdir", type=Path,
                        help="sandbox state and logs (default: a temporary directory)")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild report.md and the PNG from report.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.report_only:
        from bench import report

        data = json.loads((args.results / "report.json").read_text())
        report.write(data, args.results)
        return 0
    if not env.inside():
        os.environ.setdefault(STARTED_VARIABLE, str(time.time()))
        if os.geteuid() != 0:
            print("python -m bench needs root: the SSH data plane runs real sshd nodes in a "
                  "private network namespace (as the functional tests do)", file=sys.stderr)
            return 2
        env.prepare()
        return env.reexec_in_private_netns(argv)
    return _run(args)


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("cloudnorm", "openstacksdk", "apache-libcloud", "asyncssh", "keystoneauth1",
                 "matplotlib"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def _run(args: argparse.Namespace) -> int:
    started_at = float(os.environ.get(STARTED_VARIABLE) or time.time())
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(wanted) - set(SCENARIOS)
    if unknown:
        print(f"unknown scenarios: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if args.budget is None:
        others = BUDGET if set(wanted) - {"concurrent"} else START_BUDGET
        args.budget = others + (FLEET_BUDGET if "concurrent" in wanted else 0.0)
    budget = Budget(args.budget - (time.time() - started_at))
    sizes = sorted({int(n) for n in args.sizes.split(",") if n.strip()})
    if not sizes or min(sizes) < 1:
        print("--sizes: positive numbers, e.g. 1,10,25,50", file=sys.stderr)
        return 2
    process_sizes = [int(n) for n in args.process_sizes.split(",") if n.strip()]
    if not process_sizes or min(process_sizes) < 1:
        print("--process-sizes: positive numbers, e.g. 1,4,8,16", file=sys.stderr)
        return 2
    RAW.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cloudnorm-bench-"))
    data: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started_at)),
        "machine": {"cpus": os.cpu_count(), "load_at_start": os.getloadavg(),
                    "platform": platform.platform()},
        "versions": _versions(), "budget_s": args.budget, "scenarios": {}, "errors": [],
        "options": {"reps": args.reps, "sizes": sizes, "login_reps": args.login_reps,
                    "startup_reps": args.startup_reps,
                    "normalize_processes": args.normalize_processes,
                    "process_sizes": process_sizes, "process_reps": args.process_reps},
    }
    # What the later scenarios need at least, kept back from the earlier ones (s).
    # processes: its forking process and one repetition of every N (~13 s here).
    reserve = dict.fromkeys(SCENARIOS, 0.0)
    # bfv: one cloudnorm and one openstacksdk create and delete (~60 s here).
    later = {"create": 0.0, "concurrent": 300.0, "bfv": 60.0, "processes": 15.0,
             "login": 20.0, "normalize": 45.0}
    for i, name in enumerate(SCENARIOS):
        reserve[name] = sum(later.get(n, 0.0) for n in SCENARIOS[i + 1:] if n in wanted)

    def save() -> None:
        data["elapsed_s"] = time.time() - started_at
        (RAW / "partial.json").write_text(json.dumps(data, indent=1, default=str))

    def attempt(name: str, fn: Any) -> None:
        if name not in wanted:
            return
        began = time.monotonic()
        say(f"== {name} (budget left {budget.left():.0f}s)")
        try:
            data["scenarios"][name] = fn()
        except Exception as exc:
            data["errors"].append(f"{name}: {type(exc).__name__}: {exc}")
            traceback.print_exc()
        data.setdefault("durations_s", {})[name] = time.monotonic() - began
        save()

    backend = None
    needs_cloud = {"create", "concurrent", "bfv", "processes", "normalize"} & set(wanted)
    try:
        from bench import s4_startup

        attempt("startup", lambda: s4_startup.run(budget, args.startup_reps, 0.0))
        if "startup" in wanted:
            data["cli_startup"] = s4_startup.cli_startup(budget)
        if needs_cloud:
            from bench.sandbox import BFV_PROFILE, Backend

            extra = (BFV_PROFILE,) if "bfv" in wanted else ()
            dataplane = bool({"create", "concurrent", "bfv"} & set(wanted))
            say(f"starting the local OpenStack ({', '.join(('fip-required', *extra))})"
                + (" and its SSH data plane" if dataplane else ""))
            backend = Backend(workdir, dataplane=dataplane, extra_profiles=extra)
            backend.start()
            data["backend"] = {"profile": "fip-required", "profiles": backend.profiles,
                               "started_in_s": backend.started_in,
                               "stack_timings": backend.stack.timings}
            say(f"backend ready in {backend.started_in:.1f}s")
        if backend is not None:
            from bench import s1_create, s2_concurrent

            attempt("create", lambda: s1_create.run(backend, budget, args.reps,
                                                    reserve["create"]))
            attempt("concurrent", lambda: s2_concurrent.run(
                backend, budget, sizes, reserve["concurrent"]))
            if "bfv" in wanted:
                from bench import s7_boot_from_volume

                attempt("bfv", lambda: s7_boot_from_volume.run(backend, budget, args.reps,
                                                               reserve["bfv"]))
            backend.stop_dataplane()  # its reconciling loop would compete for the CPU
            from bench import s6_processes

            attempt("processes", lambda: s6_processes.run(
                backend, budget, process_sizes, args.process_reps, reserve["processes"]))
        from bench import s5_login

        attempt("login", lambda: s5_login.run(workdir, budget, args.login_reps,
                                              reserve["login"]))
        if backend is not None:
            from bench import s3_normalize

            attempt("normalize", lambda: s3_normalize.run(backend, budget,
                                                          args.normalize_processes,
                                                          reserve["normalize"]))
            backend.stop()
            backend = None
    finally:
        if backend is not None:
            backend.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    data["machine"]["load_at_end"] = os.getloadavg()
    data["elapsed_s"] = time.time() - started_at
    save()
    errors = bool(data["errors"])
    if set(wanted) != set(SCENARIOS):
        data = merge(args.results / "report.json", data, wanted)
    from bench import report

    report.write(data, args.results)
    say(f"done in {time.time() - started_at:.0f}s: {args.results / 'report.md'}")
    return 1 if errors else 0


# What earlier runs recorded about things the bench no longer does: the proxy that let one
# write at a time through to Nova, Neutron and Placement (before the sandbox ran on
# PostgreSQL and took concurrent writes). A merge drops them.
RETIRED_KEYS = ("write_serialization",)
RETIRED_OPTIONS = ("writes_serialized",)


def _without_retired(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if k not in RETIRED_KEYS}
    if isinstance(out.get("options"), dict):
        out["options"] = {k: v for k, v in out["options"].items() if k not in RETIRED_OPTIONS}
    if isinstance(out.get("partial_runs"), list):
        out["partial_runs"] = [_without_retired(p) if isinstance(p, dict) else p
                               for p in out["partial_runs"]]
    return out


def merge(previous_path: Path, new: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
    """A run of some scenarios (``new``, those of ``wanted``) merged into the results of
    earlier runs: each scenario it ran replaces the earlier results of that scenario, the
    others stay as they were. The earlier run's header (start, machine, versions, options,
    backend) stays; this run's own go to ``partial_runs``, and ``scenario_runs`` says
    which run each scenario's results come from. A scenario that failed this time keeps
    its earlier results (its error is listed)."""
    try:
        previous = json.loads(previous_path.read_text())
    except (OSError, ValueError):
        return new
    if not isinstance(previous, dict) or not isinstance(previous.get("scenarios"), dict):
        return new
    merged = _without_retired(previous)
    ran = [name for name in wanted if name in new["scenarios"]]
    merged["scenarios"] = {**previous["scenarios"],
                           **{name: new["scenarios"][name] for name in ran}}
    runs = dict(previous.get("scenario_runs") or {})
    for name in previous["scenarios"]:
        runs.setdefault(name, previous.get("started"))
    runs.update(dict.fromkeys(ran, new.get("started")))
    merged["scenario_runs"] = runs
    merged["durations_s"] = {**(previous.get("durations_s") or {}),
                             **{k: v for k, v in (new.get("durations_s") or {}).items()
                                if k in ran}}
    # Earlier errors of the scenarios run again are superseded; this run's are added.
    merged["errors"] = [e for e in previous.get("errors") or []
                        if e.split(":", 1)[0] not in wanted] + [
        e if e.split(":", 1)[0] in SCENARIOS else f"run of {new.get('started')}: {e}"
        for e in new.get("errors") or []]
    if "startup" in ran and "cli_startup" in new:
        merged["cli_startup"] = new["cli_startup"]
    if "backend" not in merged and "backend" in new:
        merged["backend"] = new["backend"]
    partial = {key: new.get(key) for key in ("started", "elapsed_s", "budget_s", "machine",
                                             "versions", "options", "backend", "errors")}
    partial["only"] = list(wanted)
    merged["partial_runs"] = [*(merged.get("partial_runs") or []), partial][
        -PARTIAL_RUNS_KEPT:]
    return merged


if __name__ == "__main__":
    sys.exit(main())

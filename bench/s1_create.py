"""Scenario 1: API requests (and wall time) per create -> reachable node, cold and warm."""

from __future__ import annotations

import contextlib
import time
import traceback
from typing import Any

from bench import flows
from bench.common import RAW, Budget, breakdown, is_status_poll, make_key, peak_in_window, say
from bench.sandbox import Backend
from bench.stats import summary

LIBRARIES = ("cloudnorm", "openstacksdk", "libcloud")
# Each library's own interval between status polls (ServerWatcher; wait_for_server;
# wait_until_running's wait_period).
POLL_INTERVAL = {"cloudnorm": 2.0, "openstacksdk": 5.0, "libcloud": 5.0}
# A cold+warm pair of each library costs about this much (create, SSH, sweep), in s.
PAIR_COST = {"cloudnorm": 26.0, "openstacksdk": 32.0, "libcloud": 22.0}


def _one(backend: Backend, lib: str, state: dict[str, Any] | None, name: str, tag: str,
         operator_key: str) -> dict[str, Any]:
    since = backend.mark()
    if lib == "cloudnorm":
        out = flows.cloudnorm_create(backend, state and state["cloud"], name, operator_key)
    elif lib == "openstacksdk":
        out = flows.sdk_create(backend, state and state["conn"], state and state["access"],
                               name, operator_key, tag)
    else:
        out = flows.libcloud_create(backend, state and state["driver"], state and state["access"],
                                    state and state["lookups"], name, operator_key, tag)
    until = backend.mark()
    client = backend.client_requests(lib, since, until)
    project = backend.project_requests(since, until)
    out["requests"] = len(client)
    out["project_requests"] = len(project) + sum(1 for r in client if r.get("project") is None)
    out["breakdown"] = breakdown(client)
    # Status polls, counted as scenario 2 counts them.
    interval = POLL_INTERVAL[lib]
    polls = [r["t"] for r in client if is_status_poll(r)]
    out["status_polls"] = len(polls)
    out["peak_polls_per_interval"] = peak_in_window(polls, interval)
    out["peak_requests_per_5s"] = peak_in_window([r["t"] for r in client], 5.0)
    out["poll_interval"] = interval
    out["project_only_requests"] = len(project)
    return out


def _public(out: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in out.items() if k not in ("cloud", "conn", "driver", "access",
                                                        "lookups")}


def run(backend: Backend, budget: Budget, reps: int, reserve: float) -> dict[str, Any]:
    """``reserve``: seconds to leave in the budget for the scenarios after this one."""
    _, operator_key = make_key(RAW / "keys", "operator")
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        lib: {"cold": [], "warm": []} for lib in LIBRARIES}
    errors: list[str] = []
    skipped: list[str] = []
    for rep in range(reps):
        order = LIBRARIES[rep % 3:] + LIBRARIES[:rep % 3]  # no library always goes first
        # Every library's cold create, then every library's warm one: a library's two
        # creates are the others' creates apart (well over the 10 s over which cloudnorm
        # keeps its write rate), so a warm create measures the warm cache, not a write
        # budget the cold one just spent (scenario 2 measures creates back to back).
        states: dict[str, dict[str, Any] | None] = {}
        for mode in ("cold", "warm"):
            for lib in order:
                if mode == "cold" and budget.left() - reserve < PAIR_COST[lib]:
                    skipped.append(f"{lib} repetition {rep + 1}")
                    continue
                if mode == "warm" and not states.get(lib):
                    continue
                name = f"bench-{lib}-{mode}-{rep}"
                try:
                    out = _one(backend, lib, states.get(lib), name, f"{rep}", operator_key)
                except Exception as exc:
                    errors.append(f"{lib} {mode} {rep + 1}: {type(exc).__name__}: {exc}")
                    say(errors[-1])
                    traceback.print_exc()
                    backend.sweep(keep_access=True)
                    states[lib] = None
                    continue
                say(f"create {lib:12s} {mode}: {out['requests']:3d} requests, "
                    f"{out['wall']:5.1f}s to SSH-ready")
                runs[lib][mode].append(_public(out))
                states[lib] = out
                backend.sweep(keep_access=True)
        for state in states.values():
            if state and state.get("conn") is not None:
                with contextlib.suppress(Exception):
                    state["conn"].close()
            if state and state.get("cloud") is not None:
                with contextlib.suppress(Exception):
                    state["cloud"].close()
    backend.sweep()
    return {"runs": runs, "summary": _summarize(runs), "errors": errors, "skipped": skipped,
            "finished_at": time.time()}


def _summarize(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for lib, modes in runs.items():
        out[lib] = {}
        for mode, items in modes.items():
            out[lib][mode] = {
                "requests": summary([i["requests"] for i in items]),
                "project_requests": summary([i["project_requests"] for i in items]),
                "wall": summary([i["wall"] for i in items]),
                "ssh_ready": summary([i.get("ssh_ready") for i in items]),
                "active_and_fip": summary([i.get("active_and_fip") or i.get("address_ready")
                                           for i in items]),
                "reported": items[0]["reported"] if items else None,
                "address_source": items[0].get("address_source") if items else None,
                "breakdown": items[-1]["breakdown"] if items else {},
                "steps": _steps(items),
                "rate_limit_wait": summary([(i.get("rate_limit") or {}).get("write_wait_s")
                                            for i in items if i.get("rate_limit")]),
                "rate_limit": next((i["rate_limit"] for i in items if i.get("rate_limit")),
                                   None),
            }
    return out


def _steps(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    """cloudnorm's median time spent in each of its eight steps."""
    if not items or not items[0].get("steps"):
        return None
    from cloudnorm.provision import STEPS

    out: dict[str, Any] = {}
    for step in STEPS:
        spans = []
        for item in items:
            st = item["steps"]
            began, done = st.get(f"{step}:started"), st.get(f"{step}:done")
            if began is not None and done is not None:
                spans.append(done - began)
        out[step] = summary(spans)
    return out

"""Scenario 2: N creates at once from threads sharing one client.

cloudnorm: N threads call ``create_server`` on one :class:`~cloudnorm.cloud.Cloud`
(its ServerWatcher is meant to serve every waiter with one list call per interval).
openstacksdk: N threads call ``create_server(auto_ip=True, wait=True)`` on one
Connection, after the one key pair and security group they all use. Both clients are
fresh, so everything from the first token on is counted.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from typing import Any

from bench import flows
from bench.common import RAW, Budget, breakdown, is_status_poll, make_key, peak_in_window, say
from bench.sandbox import Backend

SDK_POLL_INTERVAL = 5.0  # openstacksdk's wait_for_server: wait=min(5, timeout)


def _cost(lib: str, n: int) -> float:
    """Rough seconds one run takes here (create, wait, sweep), to stay in the budget."""
    # cloudnorm waits for every server's SSH node (the data plane starts them one at a
    # time) and hardens it; openstacksdk stops at ACTIVE + floating IP.
    return 12.0 + 8.0 * n if lib == "cloudnorm" else 18.0 + 1.5 * n


def _threads(n: int, work: Any, timeout: float) -> tuple[list[Any], float]:
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # recorded, not raised: one failure must not hide the rest
            results[i] = exc
            traceback.print_exc()

    # Daemon threads, joined against one deadline: a hung backend cannot hang the bench.
    threads = [threading.Thread(target=run, args=(i,), name=f"create-{i}", daemon=True)
               for i in range(n)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.1, started + timeout - time.monotonic()))
    for i, t in enumerate(threads):
        if t.is_alive():
            results[i] = TimeoutError(f"create {i} still running after {timeout:.0f}s")
    return results, time.monotonic() - started


def _measure(backend: Backend, lib: str, n: int, operator_key: str,
             timeout: float = 240.0) -> dict[str, Any]:
    queued = {k: v["write_wait_s"] for k, v in backend.proxy_stats().items()}
    steps: list[dict[str, float]] = [{} for _ in range(n)]
    since = backend.mark()
    interval = SDK_POLL_INTERVAL
    if lib == "cloudnorm":
        cloud = flows.cloudnorm_connect(backend)
        interval = float(cloud.watcher.interval)
        began = time.monotonic()

        def note(i: int) -> Any:
            return lambda e: steps[i].setdefault(f"{e.step}:{e.status}",
                                                 time.monotonic() - began)

        before = flows._limiter_state(cloud)
        results, wall = _threads(n, lambda i: cloud.create_server(
            f"bench-n{n}-cn-{i}", image="ubuntu-22.04", min_ram=2048,
            authorized_keys=[operator_key], timeout=timeout, on_step=note(i)), timeout + 10)
        polls_made = cloud.watcher.polls
        rate_limit = flows._limiter_delta(before, flows._limiter_state(cloud))
        cloud.close()
    else:
        conn = flows.sdk_connect(backend)
        access = flows.sdk_access(conn, f"n{n}", operator_key)
        results, wall = _threads(n, lambda i: conn.create_server(
            f"bench-n{n}-sdk-{i}", image=backend.image_id(), flavor=flows.FLAVOR,
            network=flows.NETWORK, key_name=access["key_name"],
            security_groups=[access["security_group"]], auto_ip=True, wait=True,
            timeout=timeout), timeout + 10)
        polls_made = None
        rate_limit = None
        conn.close()
    until = backend.mark()
    client = backend.client_requests(lib, since, until)
    polls = [r["t"] for r in client if is_status_poll(r)]
    failures = [f"{type(r).__name__}: {r}"[:300] for r in results if isinstance(r, Exception)
                or r is None]
    span = (max(polls) - min(polls)) if len(polls) > 1 else 0.0
    return {
        "n": n, "library": lib, "wall": wall, "ok": n - len(failures), "failures": failures,
        "requests": len(client), "requests_per_create": len(client) / n,
        "project_requests": len(backend.project_requests(since, until)),
        "status_polls": len(polls), "poll_interval": interval,
        "peak_polls_per_interval": peak_in_window(polls, interval),
        "mean_polls_per_interval": (len(polls) / max(1.0, span / interval)) if polls else 0.0,
        "peak_requests_per_5s": peak_in_window([r["t"] for r in client], 5.0),
        "watcher_polls": polls_made,
        "rate_limit": rate_limit,
        "write_queue_s": {k: round(v["write_wait_s"] - queued.get(k, 0.0), 2)
                          for k, v in backend.proxy_stats().items()},
        "breakdown": breakdown(client),
        "timeline": [round(r["t"] - since, 3) for r in client if is_status_poll(r)],
        "last_step_done": _last_done(steps) if lib == "cloudnorm" else None,
    }


def from_single_creates(create: dict[str, Any] | None) -> list[dict[str, Any]]:
    """N = 1 is scenario 1's cold create (a fresh client, every request counted): the
    run with the median request count of each library."""
    out = []
    for lib in ("cloudnorm", "openstacksdk"):
        cold = ((create or {}).get("runs") or {}).get(lib, {}).get("cold") or []
        if not cold:
            continue
        run = sorted(cold, key=lambda r: r["requests"])[len(cold) // 2]
        out.append({
            "n": 1, "library": lib, "wall": run.get("active_and_fip") if lib != "cloudnorm"
            else run["wall"], "ok": 1, "failures": [], "requests": run["requests"],
            "requests_per_create": float(run["requests"]),
            "project_requests": run.get("project_only_requests"),
            "status_polls": run.get("status_polls"), "poll_interval": run.get("poll_interval"),
            "peak_polls_per_interval": run.get("peak_polls_per_interval"),
            "peak_requests_per_5s": run.get("peak_requests_per_5s"),
            "breakdown": run.get("breakdown"), "write_queue_s": {},
            "rate_limit": run.get("rate_limit"),
            "source": "scenario 1, cold run with the median request count",
        })
    return out


def run(backend: Backend, budget: Budget, sizes: list[int], reserve: float,
        create: dict[str, Any] | None = None) -> dict[str, Any]:
    _, operator_key = make_key(RAW / "keys", "operator")
    runs: list[dict[str, Any]] = []
    skipped: list[str] = []
    if 1 not in sizes:
        runs += from_single_creates(create)
    for n in sorted(sizes, reverse=True):  # the largest N first: it matters most
        for lib in ("cloudnorm", "openstacksdk"):
            if budget.left() - reserve < _cost(lib, n):
                skipped.append(f"{lib} N={n}: not enough time left in the budget")
                say(f"skipping {skipped[-1]}")
                continue
            say(f"concurrent: {lib} N={n} ...")
            try:
                timeout = max(60.0, min(200.0, budget.left() - reserve - 20))
                out = _measure(backend, lib, n, operator_key, timeout=timeout)
            except Exception as exc:
                skipped.append(f"{lib} N={n}: {type(exc).__name__}: {exc}")
                traceback.print_exc()
                with contextlib.suppress(Exception):
                    backend.sweep()
                continue
            say(f"concurrent: {lib} N={n}: {out['ok']}/{n} ok, {out['requests']} requests, "
                f"peak {out['peak_polls_per_interval']} status polls per "
                f"{out['poll_interval']:.0f}s, {out['wall']:.1f}s")
            runs.append(out)
            backend.sweep(timeout=120)
    return {"runs": runs, "skipped": skipped}


def _last_done(steps: list[dict[str, float]]) -> dict[str, float]:
    """When the last of the N creates finished each step (s after the threads started)."""
    out: dict[str, float] = {}
    for per_thread in steps:
        for key, at in per_thread.items():
            if key.endswith(":done"):
                step = key.split(":")[0]
                out[step] = round(max(out.get(step, 0.0), at), 2)
    return out

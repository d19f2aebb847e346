"""One fresh process: a fleet of N servers created at once by one library (scenario 2).

    python -m bench.fleet_worker SPEC.json OUT.json

SPEC names the library (cloudnorm or openstacksdk), N, the sandbox's clouds.yaml and
cloud, the image id and the operator's key, and the seconds every server gets until its
key login. The worker imports its library first, then starts the clock, makes the one
shared client, and releases N threads at once:

* cloudnorm: each calls ``create_server`` on the one ``Cloud``; it returns after a key
  login with a verified host key.
* openstacksdk: the key pair and security group all servers use, then each thread calls
  ``create_server(auto_ip=True, wait=True)`` on the one ``Connection``, waits for the
  SSH banner on the address openstacksdk reports and logs in with the key.

A process of its own for each run, so that its peak RSS (``resource.getrusage``'s
``ru_maxrss``) is this library's fleet's alone. The requests are counted by the bench
from the services' own log.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

FLAVOR = "m1.small"
NETWORK = "private"


class _Backend:
    """What bench.flows needs of the backend, from the spec."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.clouds_yaml = Path(spec["clouds_yaml"])
        self.cloud = spec["cloud"]
        self._image_id = spec["image_id"]

    def image_id(self) -> str:
        return str(self._image_id)


def _vm_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _threads(n: int, work: Any, timeout: float, began: float
             ) -> tuple[list[Any], list[float | None], float]:
    """Run ``work(i)`` in N threads released together; returns each result (or the
    exception), when each finished (s after ``began``) and when the last one did."""
    results: list[Any] = [None] * n
    finished: list[float | None] = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # recorded, not raised: one failure must not hide the rest
            results[i] = exc
            _say(f"create {i}: {type(exc).__name__}: {str(exc)[:200]}")
        finished[i] = time.monotonic() - began

    # Daemon threads, joined against one deadline: a hung backend cannot hang the bench.
    threads = [threading.Thread(target=run, args=(i,), name=f"create-{i}", daemon=True)
               for i in range(n)]
    deadline = time.monotonic() + timeout
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.1, deadline - time.monotonic()))
    for i, t in enumerate(threads):
        if t.is_alive():
            results[i] = TimeoutError(f"create {i} still running after {timeout:.0f} s")
    return results, finished, time.monotonic() - began


def _sdk_create_and_login(flows: Any, backend: _Backend, conn: Any, access: dict[str, str],
                          name: str, user: str, key_path: Path, timeout: float, began: float
                          ) -> dict[str, Any]:
    """One openstacksdk thread: create (ACTIVE + floating IP), then the SSH banner on the
    address it reports, then a key login; everything within ``timeout`` s. Times are s
    after ``began`` (the fleet's start)."""
    deadline = time.monotonic() + timeout

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 1:
            raise TimeoutError(f"{name}: no time left of its {timeout:.0f} s")
        return remaining

    server = conn.create_server(
        name, image=backend.image_id(), flavor=FLAVOR, network=NETWORK,
        key_name=access["key_name"], security_groups=[access["security_group"]],
        auto_ip=True, wait=True, timeout=left())
    created = time.monotonic() - began
    address = server.public_v4 or server.interface_ip or flows._floating_of(server)
    if not address:
        raise RuntimeError(f"{name}: openstacksdk reported no address to log in to")
    flows.wait_for_banner(address, timeout=left())
    banner = time.monotonic() - began
    _, attempts = flows.wait_for_key_login(address, user, key_path, timeout=left())
    return {"id": server.id, "active_and_fip": created, "banner": banner,
            "logged_in": time.monotonic() - began, "login_attempts": attempts}


def _last_done(steps: list[dict[str, float]]) -> dict[str, float]:
    """When the last of the N creates finished each step (s after the threads started)."""
    out: dict[str, float] = {}
    for per_thread in steps:
        for key, at in per_thread.items():
            if key.endswith(":done"):
                step = key.split(":")[0]
                out[step] = round(max(out.get(step, 0.0), at), 2)
    return out


def fleet(spec: dict[str, Any]) -> dict[str, Any]:
    lib, n, timeout = spec["library"], int(spec["n"]), float(spec["timeout"])
    backend = _Backend(spec)
    key_path = Path(spec["key_path"])
    # Everything either library loads on first use, loaded before the clock starts.
    warnings.filterwarnings("ignore", message="DSA is deprecated")  # asyncssh's import
    import asyncssh  # noqa: F401
    import openstack.connection  # noqa: F401

    import cloudnorm.drivers.openstack  # noqa: F401
    import cloudnorm.ssh  # noqa: F401
    from bench import flows

    rss_before = _vm_rss_kib()
    out: dict[str, Any] = {}
    steps: list[dict[str, float]] = [{} for _ in range(n)]
    began = time.monotonic()
    if lib == "cloudnorm":
        cloud = flows.cloudnorm_connect(backend)
        out["poll_interval"] = float(getattr(cloud.watcher, "interval", 2.0))
        out["early_poll_interval"] = getattr(cloud.watcher, "early_interval", None)

        def note(i: int) -> Any:
            return lambda e: steps[i].setdefault(f"{e.step}:{e.status}",
                                                 time.monotonic() - began)

        before = flows._limiter_state(cloud)
        results, finished, wall = _threads(n, lambda i: cloud.create_server(
            f"bench-n{n}-cn-{i}", image="ubuntu-22.04", min_ram=2048,
            authorized_keys=[spec["operator_key"]], timeout=timeout, on_step=note(i)),
            timeout + 30, began)
        out["watcher_polls"] = getattr(cloud.watcher, "polls", None)
        out["rate_limit"] = flows._limiter_delta(before, flows._limiter_state(cloud))
        out["last_step_done"] = _last_done(steps)
        cloud.close()
    else:
        out["poll_interval"] = 5.0  # wait_for_server: wait=min(5, timeout)
        conn = flows.sdk_connect(backend)
        access = flows.sdk_access(conn, f"n{n}", spec["operator_key"])
        results, finished, wall = _threads(n, lambda i: _sdk_create_and_login(
            flows, backend, conn, access, f"bench-n{n}-sdk-{i}", spec["login_user"],
            key_path, timeout, began), timeout + 30, began)
        done = [r for r in results if isinstance(r, dict)]
        for key in ("active_and_fip", "banner", "logged_in"):
            out[f"last_{key}"] = round(max((r[key] for r in done), default=0.0), 2)
        out["login_attempts"] = sum(r["login_attempts"] for r in done)
        conn.close()
    failures = [f"{type(r).__name__}: {r}"[:300] for r in results
                if isinstance(r, Exception) or r is None]
    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    out.update({
        "ok": n - len(failures), "failures": failures, "wall_until_all_returned": wall,
        "finished": sorted(round(f, 2) for f in finished if f is not None),
        "rss": {"method": "resource.getrusage(RUSAGE_SELF).ru_maxrss of the worker "
                          "process (a fresh one per library and N)",
                "before_mib": round(rss_before / 1024, 1), "peak_mib": round(peak / 1024, 1),
                "growth_mib": round((peak - rss_before) / 1024, 1)},
    })
    return out


def main(argv: list[str]) -> int:
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text())
    try:
        result = fleet(spec)
    except Exception as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    out_path.write_text(json.dumps(result, default=str))
    sys.stderr.flush()
    # Threads still hung on the backend (daemon threads past their deadline) must not keep
    # the process: the result is written.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])

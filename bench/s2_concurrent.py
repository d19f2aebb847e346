"""Scenario 2 ("concurrent"): a fleet of N servers made at once, N = 1, 10, 25, 50.

cloudnorm: N threads call ``create_server`` on one shared :class:`~cloudnorm.cloud.Cloud`,
as ``doc/source/usage.rst`` ("Many servers at once") prescribes; it returns after a key
login with a verified host key (and hardening). openstacksdk: N threads call
``create_server(auto_ip=True, wait=True)`` on one shared Connection, after the one key
pair and security group they all use; once a create returns, its thread waits for the
SSH banner on the reported address and logs in with the operator's key (OpenSSH's
client, :func:`bench.flows.wait_for_key_login`), as a person's script would. Libcloud is
left out of the fleets (scenario 1 measures it alone). Each fleet runs in a worker
process of its own (``bench/fleet_worker.py``), so that its peak RSS is its own.

Per library and N, in the same run on the same backend: the wall time from the fresh
client until every server has accepted a key login; the client's requests (from the
services' own request log, by user agent) per server; status polls (``GET
/servers/detail``, ``GET /servers/{id}``) per poll interval of the library, most and mean
over the wait; the worker's peak RSS; errors. Everything is deleted afterwards and the
project checked for leftovers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import yaml

from bench.common import RAW, ROOT, Budget, breakdown, is_status_poll, make_key, peak_in_window, say
from bench.sandbox import Backend

LIBRARIES = ("cloudnorm", "openstacksdk")
# Each library's own interval between status polls: cloudnorm's ServerWatcher (the worker
# reads it from the Cloud; 1 s while a server is younger than 10 s), openstacksdk's
# wait_for_server (wait=min(5, timeout)).
SDK_POLL_INTERVAL = 5.0
CN_POLL_INTERVAL = 2.0
LOGIN_USER = "ubuntu"  # the image's user: a person hard-codes it, as the image id
SWEEP_TIMEOUT = 240.0
# Seconds past its own deadline a worker may take (imports, joining its threads, the
# result) before it is killed.
WORKER_GRACE = 90.0


def create_timeout(n: int) -> float:
    """Seconds every server of a fleet of N gets, until its key login: the data plane
    starts the servers' SSH nodes (cloud-init's first stages each) eight at a time on
    two cores, so the last node of a large fleet comes up a while after its server is
    ACTIVE."""
    return 90.0 + 4.0 * n


def _cost(lib: str, n: int) -> float:
    """Rough seconds one run takes here (worker, creates, logins, sweep, leftovers
    check), to stay in the budget: N = 50 about 230 s, N = 1 about 15 s."""
    return 10.0 + 4.4 * n


def _per_interval(times: list[float], interval: float) -> dict[str, Any]:
    """Status polls per poll interval over the wait (from the first poll to the last, cut
    into intervals of the library's own length): the most in one and the mean."""
    if not times:
        return {"max": 0, "mean": 0.0, "intervals": 0}
    first = min(times)
    count = int((max(times) - first) // interval) + 1
    bins = [0] * count
    for t in times:
        bins[int((t - first) // interval)] += 1
    return {"max": max(bins), "mean": round(len(times) / count, 2), "intervals": count}


def _measure(backend: Backend, lib: str, n: int, key_path: Path, operator_key: str,
             timeout: float, keeping: Keeping | None = None, tag: str = "") -> dict[str, Any]:
    """One fleet in a worker process of its own (``bench/fleet_worker.py``); its requests
    counted from the services' log, by user agent. ``keeping``: what this process may
    find of an earlier one (its clouds.yaml and keyring)."""
    scratch = RAW / "fleet"
    scratch.mkdir(parents=True, exist_ok=True)
    name = f"{lib}-{n}{tag}"
    spec_path, out_path = scratch / f"{name}.spec.json", scratch / f"{name}.out.json"
    out_path.unlink(missing_ok=True)
    clouds_yaml = keeping.clouds_yaml if keeping else backend.clouds_yaml
    spec_path.write_text(json.dumps({
        "library": lib, "n": n, "timeout": timeout, "clouds_yaml": str(clouds_yaml),
        "cloud": backend.cloud, "image_id": backend.image_id(), "key_path": str(key_path),
        "operator_key": operator_key, "login_user": LOGIN_USER}))
    sync = backend.dataplane.sync if backend.dataplane else None
    errors_before = len(sync.errors) if sync else 0
    since = backend.mark()
    rounds: list[tuple[float, int]] = []  # (s after since, the data plane's rounds so far)
    proc = subprocess.Popen([sys.executable, "-m", "bench.fleet_worker", str(spec_path),
                             str(out_path)], cwd=ROOT, stdin=subprocess.DEVNULL,
                            env={**os.environ, **(keeping.env if keeping else {})})
    deadline = time.monotonic() + timeout + WORKER_GRACE
    while proc.poll() is None:
        if time.monotonic() > deadline:  # its servers are swept afterwards
            proc.kill()
            proc.wait(timeout=30)
            break
        if sync is not None and (not rounds or rounds[-1][1] != sync.rounds):
            rounds.append((time.time() - since, sync.rounds))
        time.sleep(0.1)
    until = backend.mark()
    nodes = _node_starts(backend, since)
    try:
        worker = json.loads(out_path.read_text())
    except (OSError, ValueError):
        worker = {"error": f"the worker left no result within {timeout + WORKER_GRACE:.0f} s"}
    if "error" in worker:
        raise RuntimeError(f"fleet worker: {worker['error']}")
    client = backend.client_requests(lib, since, until)
    interval = float(worker.get("poll_interval")
                     or (CN_POLL_INTERVAL if lib == "cloudnorm" else SDK_POLL_INTERVAL))
    polls = [r["t"] for r in client if is_status_poll(r)]
    per_interval = _per_interval(polls, interval)
    dataplane_errors = (backend.dataplane.sync.errors[errors_before:]
                        if backend.dataplane else [])
    return {
        "n": n, "library": lib, **worker,
        # Until every server accepted a key login (None when not every one did).
        "wall": worker["wall_until_all_returned"] if worker["ok"] == n else None,
        "requests": len(client), "requests_per_server": len(client) / n,
        "requests_per_create": len(client) / n,  # the name earlier reports used
        "project_requests": len(backend.project_requests(since, until)),
        "status_polls": len(polls), "poll_interval": interval,
        "polls_per_interval_max": per_interval["max"],
        "polls_per_interval_mean": per_interval["mean"],
        "poll_intervals": per_interval["intervals"],
        "peak_polls_per_interval": peak_in_window(polls, interval),  # sliding window
        "peak_requests_per_5s": peak_in_window([r["t"] for r in client], 5.0),
        "breakdown": breakdown(client),
        "timeline": [round(t - since, 3) for t in polls],
        "dataplane_errors": dataplane_errors[-5:],
        "dataplane": {
            "rounds": (rounds[-1][1] - rounds[0][1]) if rounds else None,
            "longest_round_s": round(max((b[0] - a[0] for a, b in
                                          zip(rounds, rounds[1:], strict=False)),
                                         default=0.0), 1),
            **nodes},
    }


def _one_fleet(backend: Backend, label: str, skipped: list[str], **measure: Any
               ) -> dict[str, Any] | None:
    """One measured fleet and the sweep after it; None, said in ``skipped``, when the
    fleet failed (its servers are swept all the same)."""
    try:
        out = _measure(backend, **measure)
    except Exception as exc:
        skipped.append(f"{label}: {type(exc).__name__}: {exc}")
        traceback.print_exc()
        with contextlib.suppress(Exception):
            _clean_up(backend)
        return None
    out["cleanup"] = _clean_up(backend)
    return out


class Keeping:
    """What a library keeps between its processes when told to, as the docs show
    ("A process after another"): openstack.config's ``cache: auth: true`` keeps the
    token in the keyring (a file keyring here, in the bench's own directory) for both
    libraries; cloudnorm's discovery goes to a file (``dogpile.cache.dbm``).
    openstacksdk's own reply cache stays off, as in a person's script."""

    def __init__(self, backend: Backend, lib: str) -> None:
        root = RAW / "fleet" / f"kept-{lib}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        data = yaml.safe_load(Path(backend.clouds_yaml).read_text())
        cache: dict[str, Any] = {"auth": True}
        if lib == "cloudnorm":
            cache.update({"class": "dogpile.cache.dbm",
                          "arguments": {"filename": str(root / "discovery.dbm")}})
        data["cache"] = cache
        self.clouds_yaml = root / "clouds.yaml"
        self.clouds_yaml.write_text(yaml.safe_dump(data))
        self.env = {"PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
                    "XDG_DATA_HOME": str(root / "keyring")}


def _next_process(backend: Backend, key_path: Path, operator_key: str,
                  budget: Budget, reserve: float) -> tuple[list[dict[str, Any]], list[str]]:
    """N = 1 twice per library with what it keeps between processes: the first process
    fills the cache and the keyring, the second is what every later one costs."""
    runs: list[dict[str, Any]] = []
    skipped: list[str] = []
    for lib in LIBRARIES:
        keeping = Keeping(backend, lib)
        for start in ("first process", "next process"):
            if budget.left() - reserve < _cost(lib, 1):
                skipped.append(f"{lib} N=1 ({start}): not enough time left in the budget")
                continue
            say(f"fleet: {lib} N=1, {start}, token and discovery kept ...")
            out = _one_fleet(backend, f"{lib} N=1 ({start})", skipped, lib=lib, n=1,
                             key_path=key_path, operator_key=operator_key,
                             timeout=create_timeout(1), keeping=keeping,
                             tag="-" + start.split()[0])
            if out is None:
                break
            out["start"] = start
            say(f"fleet: {lib} N=1, {start}: {out['requests']} requests, "
                f"{out['wall_until_all_returned']:.1f} s")
            runs.append(out)
    return runs, skipped


def _node_starts(backend: Backend, since: float) -> dict[str, Any]:
    """When the SSH data plane started the nodes it runs now (s after ``since``): the
    fleet's, before the sweep."""
    if backend.dataplane is None:
        return {}
    fleet = backend.dataplane.fleet
    starts = sorted(t - since for t in (getattr(fleet.get(i), "started_at", None)
                                         for i in fleet.node_ids()) if t is not None)
    if not starts:
        return {"nodes": 0}
    return {"nodes": len(starts), "first_node_s": round(starts[0], 1),
            "last_node_s": round(starts[-1], 1)}


def _clean_up(backend: Backend) -> dict[str, Any]:
    """Delete everything the run made (the bench's sweep, through its own uncounted
    connection) and check that nothing is left, the data plane's nodes included; a
    second sweep if the first left something (said so)."""
    began = time.monotonic()
    left: dict[str, int] = {}
    sweeps = 0
    while sweeps < 2:
        sweeps += 1
        backend.sweep(timeout=SWEEP_TIMEOUT)
        # The data plane removes a deleted server's node on its next round.
        deadline = time.monotonic() + 30
        while True:
            left = backend.leftovers()
            if not any(left.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if not any(left.values()):
            break
    return {"leftovers": {k: v for k, v in left.items() if v}, "sweeps": sweeps,
            "cleanup_s": round(time.monotonic() - began, 1)}


def run(backend: Backend, budget: Budget, sizes: list[int], reserve: float) -> dict[str, Any]:
    key_path, operator_key = make_key(RAW / "keys", "operator")
    runs: list[dict[str, Any]] = []
    skipped: list[str] = []
    errors: list[str] = []
    capacity = None
    with contextlib.suppress(Exception):
        capacity = backend.floating_ip_capacity()
    start_state = _clean_up(backend)  # an empty project to start from
    if start_state["leftovers"]:
        errors.append(f"the project was not empty before the fleets: {start_state}")
    # The largest N first (it matters most); at each N the other library goes first than
    # at the N before, so neither always meets the machine in the same state.
    for index, n in enumerate(sorted(set(sizes), reverse=True)):
        order = LIBRARIES if index % 2 == 0 else LIBRARIES[::-1]
        for lib in order:
            if budget.left() - reserve < _cost(lib, n):
                skipped.append(f"{lib} N={n}: not enough time left in the budget")
                say(f"skipping {skipped[-1]}")
                continue
            timeout = max(60.0, min(create_timeout(n), budget.left() - reserve - 60))
            say(f"fleet: {lib} N={n} (every create within {timeout:.0f} s) ...")
            out = _one_fleet(backend, f"{lib} N={n}", skipped, lib=lib, n=n,
                             key_path=key_path, operator_key=operator_key, timeout=timeout)
            if out is None:
                continue
            say(f"fleet: {lib} N={n}: {out['ok']}/{n} logged in, "
                f"{out['wall_until_all_returned']:.1f} s, "
                f"{out['requests_per_server']:.1f} requests/server, status polls per "
                f"{out['poll_interval']:.0f} s max {out['polls_per_interval_max']} mean "
                f"{out['polls_per_interval_mean']}, peak RSS {out['rss']['peak_mib']} MiB, "
                f"left {out['cleanup']['leftovers'] or 'nothing'}")
            runs.append(out)
    kept, kept_skipped = _next_process(backend, key_path, operator_key, budget, reserve)
    skipped += kept_skipped
    return {"runs": runs, "kept_runs": kept, "skipped": skipped, "errors": errors,
            "sizes": sorted(set(sizes)),
            "floating_ip_capacity": capacity, "login_user": LOGIN_USER,
            "finished_at": time.time()}

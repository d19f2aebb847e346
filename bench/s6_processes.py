"""Scenario 7: N processes discover the same cloud account at once.

For the issue "Many processes, one cloud account": N worker processes (N = 1, 4, 8, 16
by default) each open the same sandbox cloud and run the same discovery
(``list_images``, ``list_flavors``, ``list_networks``, ``find_image("ubuntu-22.04")``,
``find_flavor(min_ram=512)``) at the same moment, with the default per-process
in-memory cache and with the discovery cache on Redis (``dogpile.cache.redis`` with
``distributed_lock``; a fresh redis-server for each run, so every run starts cold).

Measured: the discovery requests the cloud saw (from its own request log; Keystone's
token and version requests are counted apart), the wall time from the go signal until
the last worker finished its discovery, and each worker's own time.

How the workers are made: one *zygote* interpreter imports cloudnorm, openstacksdk and
the Redis client and discovers once, untimed (openstacksdk imports its service proxies
on first use), then forks the N workers of every run, as a pre-forking server (gunicorn,
Celery) makes its workers. So interpreter start-up and imports are never timed, and
every run's workers are new processes: each opens a *new* ``Cloud`` from that run's
clouds.yaml (its own cache, keystoneauth session and token), says it is ready and blocks
on a read of a pipe. The go signal is one byte per worker written to that pipe: no
polling delay is counted. Workers stamp start and end with the system-wide monotonic
clock, the zygote stamps the go signal with the same clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import RAW, ROOT, Budget, breakdown, say
from bench.sandbox import AGENTS, CLOUD, SETTLE, Backend
from bench.stats import summary

MODES = ("memory", "redis")
MODE_NAMES = {"memory": "per-process cache", "redis": "shared cache (Redis)"}
STEP_TIMEOUT = 60.0  # one step of a run (fork and connect, discover), bounded
START_TIMEOUT = 90.0  # the zygote's imports and its untimed discovery

# The zygote. Commands on stdin, answers on stdout, one JSON object a line:
# "run N PATH" forks N workers that open a new Cloud from PATH (answer "ready" when all
# are), "go" lets them discover (answer "done" with every worker's times), "exit".
# Workers report to the zygote through one pipe, a line each (shorter than PIPE_BUF,
# so lines of different workers never mix).
ZYGOTE = r"""
import json, logging, os, select, sys, threading, time

warnings = []

class Collect(logging.Handler):
    def emit(self, record):
        warnings.append(f"{record.levelname} {record.name}: {record.getMessage()}"[:200])

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
logging.getLogger().addHandler(Collect(level=logging.WARNING))

import cloudnorm, cloudnorm.cloud, cloudnorm.drivers.openstack.driver, openstack.connection
import redis, dogpile.cache.backends.redis

cloud_name, warm_yaml = sys.argv[1:3]
STEP = float(sys.argv[3])

def answer(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()

def discover(cloud):
    cloud.list_images(), cloud.list_flavors(), cloud.list_networks()
    image = cloud.find_image("ubuntu-22.04")
    flavor = cloud.find_flavor(min_ram=512)
    return image, flavor

def line(fd, msg):
    data = json.dumps(msg)
    if len(data) > 3500:
        msg["warnings"] = msg.get("warnings", [])[:1]
        data = json.dumps(msg)[:3500]
    os.write(fd, (data + "\n").encode())

def worker(i, path, go_r, out_w):
    # A forked worker never returns into the zygote's loop, whatever happens.
    code = 1
    try:
        del warnings[:]
        try:
            cloud = cloudnorm.connect(cloud_name, config_files=[path])
            line(out_w, {"event": "ready", "i": i})
            if os.read(go_r, 1) != b"g":  # the zygote is gone
                os._exit(3)
            started = time.monotonic()
            image, flavor = discover(cloud)
            ended = time.monotonic()
            cloud.close()
            line(out_w, {"event": "done", "i": i, "start": started, "end": ended,
                         "image": image.id, "flavor": flavor.id, "warnings": warnings[:5]})
            code = 0
        except Exception as exc:
            line(out_w, {"event": "error", "i": i,
                         "error": f"{type(exc).__name__}: {exc}"[:400]})
    finally:
        os._exit(code)

class Lines:
    def __init__(self, fd):
        self.fd, self.buffer = fd, b""

    def collect(self, event, n, timeout):
        got, deadline = {}, time.monotonic() + timeout
        while len(got) < n:
            while b"\n" in self.buffer:
                raw, _, self.buffer = self.buffer.partition(b"\n")
                msg = json.loads(raw)
                if msg["event"] == "error":
                    raise RuntimeError(f"worker {msg['i']}: {msg['error']}")
                got[msg["i"]] = msg
            if len(got) >= n:
                break
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise TimeoutError(f"{n - len(got)} of {n} workers not {event} in {timeout:.0f}s")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise RuntimeError(f"workers gone before {event}")
            self.buffer += chunk
        return [got[i] for i in sorted(got)]

started = time.monotonic()
cloud = cloudnorm.connect(cloud_name, config_files=[warm_yaml])
discover(cloud)
cloud.close()
del cloud
warm = time.monotonic() - started
time.sleep(1.1)  # the rate limit's one-second window of the warm-up is over before any run
answer(event="warm", seconds=warm, threads=threading.active_count(),
       warnings=warnings[:5])

while True:
    cmd = sys.stdin.readline().split()
    if not cmd or cmd[0] == "exit":
        break
    if cmd[0] != "run":
        answer(event="error", error=f"unknown command {cmd!r}")
        continue
    n, path = int(cmd[1]), cmd[2]
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pids = []
    try:
        for i in range(n):
            pid = os.fork()
            if pid == 0:
                os.close(go_w)
                os.close(out_r)
                worker(i, path, go_r, out_w)
            pids.append(pid)
        os.close(go_r)
        os.close(out_w)
        lines = Lines(out_r)
        lines.collect("ready", n, STEP)
        answer(event="ready")
        if sys.stdin.readline().strip() != "go":
            raise RuntimeError("expected go")
        go = time.monotonic()
        os.write(go_w, b"g" * n)
        done = lines.collect("done", n, STEP)
        answer(event="done", go=go, workers=done)
    except Exception as exc:
        answer(event="error", error=f"{type(exc).__name__}: {exc}"[:400])
    finally:
        for fd in (go_w, out_r):
            try:
                os.close(fd)
            except OSError:
                pass
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
"""


class Zygote:
    """The zygote process, spoken to line by line with bounded waits."""

    def __init__(self, warm_yaml: Path, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        self.log = log
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", ZYGOTE, CLOUD, str(warm_yaml), str(STEP_TIMEOUT)],
                cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        self._buffer = b""

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def answer(self, event: str, timeout: float = STEP_TIMEOUT + 10) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"no '{event}' from the workers within {timeout:.0f}s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"the zygote exited ({self.proc.wait()}): "
                                   f"{self.stderr_tail()}")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\n")
        msg: dict[str, Any] = json.loads(raw)
        if msg.get("event") != event:
            raise RuntimeError(f"workers: {msg.get('error') or msg}")
        return msg

    def stderr_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-800:]
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.send("exit")
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def clouds_yaml(backend: Backend, path: Path, cache: dict[str, Any] | None) -> Path:
    """The sandbox's entry for CLOUD, with a ``cloudnorm: cache:`` section when given."""
    import yaml

    entry = yaml.safe_load(backend.clouds_yaml.read_text())["clouds"][CLOUD]
    if cache is not None:
        entry.setdefault("cloudnorm", {})["cache"] = cache
    path.write_text(yaml.safe_dump({"clouds": {CLOUD: entry}}))
    path.chmod(0o600)
    return path


def redis_cache(url: str) -> dict[str, Any]:
    return {"class": "dogpile.cache.redis", "expiration_time": 300,
            "arguments": {"url": url, "distributed_lock": True,
                          "redis_expiration_time": 600}}


def _one_run(zygote: Zygote, n: int, config: Path) -> dict[str, Any]:
    """Fork N workers on ``config``, let them go at once; the request window for the log."""
    zygote.send(f"run {n} {config}")
    zygote.answer("ready")
    since = time.time()
    time.sleep(0.05)  # nothing of this run is logged before ``since``
    zygote.send("go")
    done = zygote.answer("done")
    until = time.time()
    workers = done["workers"]
    return {
        "since": since, "until": until,
        "wall": max(w["end"] for w in workers) - done["go"],
        "per_process": [w["end"] - w["start"] for w in workers],
        "go_latency_max": max(w["start"] for w in workers) - done["go"],
        "answers": len({(w["image"], w["flavor"]) for w in workers}),
        "warnings": sorted({x for w in workers for x in w.get("warnings") or []})[:10],
    }


def _count(backend: Backend, runs: list[dict[str, Any]]) -> None:
    """Fill in each run's requests from the request log, read once for all of them."""
    if not runs:
        return
    time.sleep(SETTLE)  # the services log a request once they answered it
    ours = AGENTS["cloudnorm"]
    log = [r for r in backend.stack.requests(since=min(r["since"] for r in runs))
           if ours(r.get("user_agent") or "") and r.get("project") in (backend.project, None)]
    for run in runs:
        mine = [r for r in log if run["since"] <= r["t"] <= run["until"]]
        discovery = [r for r in mine if r["service"] != "keystone"]
        identity = [r for r in mine if r["service"] == "keystone"]
        run.update(requests=len(discovery), identity_requests=len(identity),
                   breakdown=breakdown(discovery), identity_breakdown=breakdown(identity))


def run(backend: Backend, budget: Budget, sizes: list[int], reps: int,
        reserve: float) -> dict[str, Any]:
    from cloudnorm.testing.redis import RedisServer

    began = time.monotonic()
    RAW.mkdir(parents=True, exist_ok=True)
    sizes = sorted(set(sizes))
    memory_yaml = clouds_yaml(backend, backend.workdir / "processes-memory.yaml", None)
    runs: list[dict[str, Any]] = []
    skipped: list[str] = []
    out: dict[str, Any] = {"sizes": sizes, "runs": runs, "skipped": skipped}
    zygote = Zygote(memory_yaml, RAW / "processes-zygote.log")
    try:
        warm = zygote.answer("warm", timeout=START_TIMEOUT)
        out["zygote_ready_s"] = time.monotonic() - began
        out["zygote_warm_discovery_s"] = warm["seconds"]
        out["zygote_threads"] = warm["threads"]
        say(f"processes: zygote ready in {out['zygote_ready_s']:.1f}s (its untimed discovery "
            f"{warm['seconds']:.2f}s, {warm['threads']} thread(s) when forking)")
        rep_cost = 0.0
        for rep in range(reps):
            # after the first repetition its own duration says what one more costs
            estimate = rep_cost * 1.1 if rep_cost else 2.0 * len(sizes) * len(MODES)
            if rep and budget.left() - reserve < estimate:
                skipped.append(f"repetitions {rep + 1}-{reps}: not enough time left in the "
                               "budget")
                say(f"processes: skipping {skipped[-1]}")
                break
            rep_started = time.monotonic()
            these: list[dict[str, Any]] = []
            for n in sorted(sizes, reverse=True):  # the largest N first: it matters most
                for mode in MODES:
                    if budget.left() - reserve < 3.0:
                        skipped.append(f"{MODE_NAMES[mode]} N={n} rep {rep + 1}: not enough "
                                       "time left in the budget")
                        continue
                    if mode == "redis":
                        with RedisServer(backend.workdir / f"redis-{n}-{rep}") as server:
                            config = clouds_yaml(backend,
                                                 backend.workdir / "processes-redis.yaml",
                                                 redis_cache(server.url))
                            result = _one_run(zygote, n, config)
                    else:
                        result = _one_run(zygote, n, memory_yaml)
                    result.update(n=n, mode=mode, rep=rep + 1)
                    these.append(result)
            _count(backend, these)
            for r in these:
                say(f"processes: N={r['n']:2d} {r['mode']:6s}: {r['requests']:3d} discovery "
                    f"requests (+{r['identity_requests']} keystone), {r['wall']:.2f}s wall, "
                    f"per process {statistics.median(r['per_process']):.2f}s median")
            runs.extend(these)
            rep_cost = time.monotonic() - rep_started
    finally:
        zygote.stop()
    out["summary"] = _summarize(runs, sizes)
    out["duration_s"] = time.monotonic() - began
    say(f"processes: done in {out['duration_s']:.0f}s")
    return out


def _summarize(runs: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """Per mode and N: requests, wall and per-process time over the repetitions, and
    whether the counts are what sharing should give (N x one process / one process)."""
    table: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        table[mode] = {}
        for n in sizes:
            mine = [r for r in runs if r["mode"] == mode and r["n"] == n]
            if not mine:
                continue
            table[mode][str(n)] = {
                "reps": len(mine),
                "requests": summary([r["requests"] for r in mine]),
                "identity_requests": summary([r["identity_requests"] for r in mine]),
                "wall": summary([r["wall"] for r in mine]),
                "per_process": summary([t for r in mine for t in r["per_process"]]),
                "per_process_max": summary([max(r["per_process"]) for r in mine]),
                "go_latency_max": max(r["go_latency_max"] for r in mine),
                "answers": max(r["answers"] for r in mine),
                "warnings": sorted({w for r in mine for w in r["warnings"]})[:10],
                "breakdown": mine[0]["breakdown"],
            }
    out: dict[str, Any] = {"by_mode": table}
    one = (table.get("memory") or {}).get("1")
    if one and one["requests"]["median"]:
        base = one["requests"]["median"]
        out["one_process_requests"] = base
        out["as_expected"] = all(
            r["requests"] == (r["n"] * base if r["mode"] == "memory" else base) for r in runs)
    return out

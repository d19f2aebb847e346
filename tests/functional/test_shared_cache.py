"""Several processes share one cloud's discovery and rate limit through Redis.

Eight worker processes discover the same sandbox cloud at once; with the
cache on Redis (``distributed_lock: true``) the cloud sees one process's
discovery requests, not eight. With the rate limit's storage on Redis, eight
processes together stay within one budget. Redis killed under running
workers costs a warning and per-process caching or limiting, never a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from cloudnorm.cache import DiscoveryCache
from cloudnorm.config import CacheSettings
from cloudnorm.testing.redis import RedisServer

pytestmark = pytest.mark.functional
PROFILE = "fip-required"
CLOUD = f"sandbox-{PROFILE}"
WORKERS = 8
WAIT = 120.0
UNREACHABLE = "cache backend dogpile.cache.redis unreachable"

# One worker: connect, say so, wait for the go signal, discover; then, when
# asked, wait for a second signal and discover again.
WORKER = r"""
import json, logging, os, sys, time
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
import cloudnorm

clouds_yaml, cloud_name, signals, me, phases = sys.argv[1:6]

def wait_for(name):
    deadline = time.monotonic() + 120
    while not os.path.exists(os.path.join(signals, name)):
        if time.monotonic() > deadline:
            sys.exit(f"worker {me}: no {name} signal within 120 s")
        time.sleep(0.02)

def touch(name):
    open(os.path.join(signals, f"{name}-{me}"), "w").close()

def discover(cloud):
    cloud.list_images(), cloud.list_flavors(), cloud.list_networks()
    image = cloud.find_image("ubuntu-22.04")
    flavor = cloud.find_flavor(min_ram=512)
    return image, flavor

cloud = cloudnorm.connect(cloud_name, config_files=[clouds_yaml])
touch("ready")
wait_for("go")
started = time.monotonic()
image, flavor = discover(cloud)
result = {"image": image.id, "flavor": flavor.id, "seconds": time.monotonic() - started}
if phases == "2":
    touch("done")
    wait_for("go2")
    image, flavor = discover(cloud)
    result["image2"], result["flavor2"] = image.id, flavor.id
if os.environ.get("LEARN_LOGIN_USER"):
    cloud.remember_login_user(image, os.environ["LEARN_LOGIN_USER"])
result["login_user"] = cloud.learned_login_user(image)
cloud.close()
print(json.dumps(result))
"""


# One worker asking the cloud (past the cache) as fast as its rate limit lets it, for
# a while.
LIMITED_WORKER = r"""
import json, logging, os, sys, time
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
import cloudnorm

clouds_yaml, cloud_name, signals, me, _, seconds = sys.argv[1:7]

def wait_for(name):
    deadline = time.monotonic() + 120
    while not os.path.exists(os.path.join(signals, name)):
        if time.monotonic() > deadline:
            sys.exit(f"worker {me}: no {name} signal within 120 s")
        time.sleep(0.02)

cloud = cloudnorm.connect(cloud_name, config_files=[clouds_yaml])
cloud.driver.list_flavors()  # the token and version discovery, before the clock starts
open(os.path.join(signals, f"ready-{me}"), "w").close()
wait_for("go")
calls = 0
end = time.monotonic() + float(seconds)
while time.monotonic() < end:
    cloud.driver.list_flavors()
    calls += 1
cloud.close()
print(json.dumps({"calls": calls}))
"""


class Workers:
    """N worker processes over one clouds.yaml, started together."""

    def __init__(self, tmp: Path, clouds_yaml: Path, count: int, phases: int = 1,
                 env: dict[str, str] | None = None, script: str = WORKER,
                 extra: tuple[str, ...] = ()) -> None:
        self.signals = tmp / f"signals-{time.monotonic_ns()}"
        self.signals.mkdir()
        self.count = count
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(clouds_yaml), CLOUD, str(self.signals),
                 str(i), str(phases), *extra],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env={**os.environ, **(env or {})})
            for i in range(count)]

    def wait_for(self, name: str) -> None:
        deadline = time.monotonic() + WAIT
        while len(list(self.signals.glob(f"{name}-*"))) < self.count:
            dead = [p for p in self.procs if p.poll() not in (None, 0)]
            if dead:
                _, err = dead[0].communicate()
                pytest.fail(f"a worker failed before '{name}':\n{err}")
            assert time.monotonic() < deadline, f"workers not '{name}' within {WAIT:.0f}s"
            time.sleep(0.02)

    def signal(self, name: str) -> None:
        (self.signals / name).touch()

    def finish(self) -> list[tuple[dict, str]]:
        results = []
        for proc in self.procs:
            try:
                out, err = proc.communicate(timeout=WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                pytest.fail(f"a worker did not finish within {WAIT:.0f}s:\n{err}")
            assert proc.returncode == 0, f"worker failed ({proc.returncode}):\n{err}"
            results.append((json.loads(out.strip().splitlines()[-1]), err))
        return results


def clouds_yaml_with(sandbox, path: Path, cache: dict | None,
                     rate_limit: dict | None = None) -> Path:
    """The sandbox's entry for CLOUD, with ``cloudnorm: cache:`` and ``rate_limit:``
    sections when given."""
    data = yaml.safe_load(Path(sandbox.clouds_yaml).read_text())
    entry = data["clouds"][CLOUD]
    if cache is not None:
        entry.setdefault("cloudnorm", {})["cache"] = cache
    if rate_limit is not None:
        entry.setdefault("cloudnorm", {})["rate_limit"] = rate_limit
    path.write_text(yaml.safe_dump({"clouds": {CLOUD: entry}}))
    return path


def redis_cache(server: RedisServer) -> dict:
    return {"class": "dogpile.cache.redis", "expiration_time": 300,
            "arguments": {"url": server.url, "distributed_lock": True,
                          "redis_expiration_time": 600}}


def discovery(sandbox, since: float) -> Counter:
    """The cloud API requests made for the project since ``since`` (authentication aside)."""
    time.sleep(0.3)  # the services write the request log after they answer
    return Counter(f"{r['service']} {r['method']} {r['path']}"
                   for r in sandbox.requests(since=since, project=CLOUD)
                   if r["service"] != "keystone")


def run(sandbox, tmp: Path, clouds_yaml: Path, count: int, **kwargs) -> tuple[Counter, float,
                                                                             list]:
    workers = Workers(tmp, clouds_yaml, count, **kwargs)
    workers.wait_for("ready")
    mark = time.time()
    time.sleep(0.05)
    started = time.monotonic()
    workers.signal("go")
    results = workers.finish()
    return discovery(sandbox, mark), time.monotonic() - started, results


def test_eight_processes_cost_the_discovery_of_one(openstack_sandbox, tmp_path):
    with RedisServer(tmp_path / "redis-one") as server:
        one_yaml = clouds_yaml_with(openstack_sandbox, tmp_path / "one.yaml",
                                    redis_cache(server))
        one, one_time, _ = run(openstack_sandbox, tmp_path, one_yaml, 1)
    assert one, "one process made no discovery request: nothing was measured"

    apart_yaml = clouds_yaml_with(openstack_sandbox, tmp_path / "apart.yaml", None)
    apart, apart_time, _ = run(openstack_sandbox, tmp_path, apart_yaml, WORKERS)

    with RedisServer(tmp_path / "redis-shared") as server:
        shared_yaml = clouds_yaml_with(openstack_sandbox, tmp_path / "shared.yaml",
                                       redis_cache(server))
        shared, shared_time, results = run(openstack_sandbox, tmp_path, shared_yaml, WORKERS)
        stored = _stored_values(server)

    print(f"\ndiscovery requests: 1 process {sum(one.values())} ({one_time:.2f}s); "
          f"{WORKERS} processes, per-process cache {sum(apart.values())} ({apart_time:.2f}s); "
          f"{WORKERS} processes, shared cache {sum(shared.values())} ({shared_time:.2f}s)")
    # without sharing every process discovers for itself ...
    assert apart == Counter({k: v * WORKERS for k, v in one.items()})
    # ... with Redis the cloud sees the requests of one process
    assert shared == one
    assert len({(r["image"], r["flavor"]) for r, _ in results}) == 1
    for _, err in results:
        assert "Traceback" not in err and "WARNING" not in err, err

    # what is stored is plain data without secrets
    password = yaml.safe_load(shared_yaml.read_text())["clouds"][CLOUD]["auth"]["password"]
    assert stored, "nothing was stored in Redis"
    for key, value in stored.items():
        assert key.startswith(b"cloudnorm:v2:"), key
        assert password.encode() not in value and b"token" not in value.lower(), key
        json.loads(value.partition(b"|")[2])  # dogpile's metadata, then JSON, never a pickle


def test_a_process_after_another_starts_warm(openstack_sandbox, tmp_path):
    """Discovery kept in a file (``cache: class: dogpile.cache.dbm``) and the token in
    the keyring (openstack.config's own ``cache: auth: true``): the next process on
    the machine asks the cloud nothing before its first real call -- no token, no
    version documents, no lists. Counted in the services' own request log, Keystone
    included, by cloudnorm's user agent."""
    entry = yaml.safe_load(Path(openstack_sandbox.clouds_yaml).read_text())["clouds"][CLOUD]
    path = tmp_path / "warm.yaml"
    path.write_text(yaml.safe_dump({
        "cache": {"class": "dogpile.cache.dbm", "auth": True,
                  "arguments": {"filename": str(tmp_path / "discovery.dbm")}},
        "clouds": {CLOUD: entry}}))
    # A file keyring in this test's own directory (a desktop would use its own).
    env = {"PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
           "XDG_DATA_HOME": str(tmp_path / "data")}

    def one_process() -> tuple[Counter, dict]:
        mark = time.time()
        workers = Workers(tmp_path, path, 1, env=env)
        workers.wait_for("ready")
        workers.signal("go")
        [(result, err)] = workers.finish()
        assert "Traceback" not in err and "WARNING" not in err, err
        time.sleep(0.3)  # the services write the request log after they answer
        return Counter(f"{r['service']} {r['method']} {r['path']}"
                       for r in openstack_sandbox.requests(since=mark)
                       if "cloudnorm" in (r.get("user_agent") or "")), result

    first, first_result = one_process()
    assert first["keystone POST /v3/auth/tokens"] == 1, first
    assert sum(first.values()) >= 8, first   # token, versions, images, flavors, networks...
    second, second_result = one_process()
    print(f"\nrequests before the first real call: first process {sum(first.values())}, "
          f"next process {sum(second.values())}")
    assert second == Counter(), f"the next process asked the cloud: {dict(second)}"
    assert (second_result["image"], second_result["flavor"]) == \
        (first_result["image"], first_result["flavor"])
    # The token is in the keyring, never in the discovery file.
    password = entry["auth"]["password"]
    for stored in tmp_path.glob("discovery.dbm*"):
        data = stored.read_bytes()
        assert password.encode() not in data and b"gAAAAA" not in data, stored


def _stored_values(server: RedisServer) -> dict[bytes, bytes]:
    import redis

    client = redis.Redis.from_url(server.url, socket_timeout=5)
    try:
        return {key: client.get(key) for key in client.scan_iter("*")
                if not key.startswith(b"_lock")}
    finally:
        client.close()


def test_login_user_learned_by_one_process_is_known_to_the_next(openstack_sandbox, tmp_path):
    with RedisServer(tmp_path / "redis") as server:
        path = clouds_yaml_with(openstack_sandbox, tmp_path / "clouds.yaml",
                                redis_cache(server))
        _, _, first = run(openstack_sandbox, tmp_path, path, 1,
                          env={"LEARN_LOGIN_USER": "ubuntu"})
        _, _, second = run(openstack_sandbox, tmp_path, path, 1)
    assert first[0][0]["login_user"] == "ubuntu"
    assert second[0][0]["login_user"] == "ubuntu"

    # without a shared backend the second process has to find out again
    path = clouds_yaml_with(openstack_sandbox, tmp_path / "memory.yaml", None)
    _, _, alone = run(openstack_sandbox, tmp_path, path, 1)
    assert alone[0][0]["login_user"] is None


def test_redis_killed_mid_run_degrades_to_per_process_caching(openstack_sandbox, tmp_path):
    with RedisServer(tmp_path / "redis") as server:
        path = clouds_yaml_with(openstack_sandbox, tmp_path / "clouds.yaml",
                                redis_cache(server))
        workers = Workers(tmp_path, path, WORKERS, phases=2)
        workers.wait_for("ready")
        mark = time.time()
        time.sleep(0.05)
        workers.signal("go")
        workers.wait_for("done")
        before = discovery(openstack_sandbox, mark)
        server.kill()
        mark = time.time()
        time.sleep(0.05)
        started = time.monotonic()
        workers.signal("go2")
        results = workers.finish()
        elapsed = time.monotonic() - started
    after = discovery(openstack_sandbox, mark)
    print(f"\nRedis killed: {sum(before.values())} discovery requests before, "
          f"{sum(after.values())} after ({elapsed:.2f}s for the second round)")
    for result, err in results:
        assert result["image2"] == result["image"] and result["flavor2"] == result["flavor"]
        assert err.count(UNREACHABLE) == 1, err
        assert "caching in this process only" in err and "Traceback" not in err, err
    # each process now discovers for itself, once
    assert after == Counter({k: v * WORKERS for k, v in before.items()})


def test_while_one_process_refreshes_the_others_wait_or_reuse_the_old_value(tmp_path):
    """dogpile's distributed lock through cloudnorm's cache: two caches stand for two
    processes (each has its own Redis connections; the lock lives in Redis)."""
    with RedisServer(tmp_path / "redis") as server:
        settings = CacheSettings(backend="dogpile.cache.redis", expiration_time=1, arguments={
            "url": server.url, "distributed_lock": True, "redis_expiration_time": 60})
        refresher, other = (DiscoveryCache(settings, "one cloud") for _ in range(2))

        def never():
            raise AssertionError("a second process asked the cloud")

        def in_background(creator):
            out: list = []
            thread = threading.Thread(
                target=lambda: out.append(refresher.get_or_create("flavor", "all", creator)))
            thread.start()
            return thread, out

        started, finish = threading.Event(), threading.Event()

        def slow(value):
            def creator():
                started.set()
                assert finish.wait(20)
                return value
            return creator

        # expired but present: the other process gets the old value at once
        refresher.get_or_create("flavor", "all", lambda: ["old"])
        time.sleep(1.2)
        thread, out = in_background(slow(["new"]))
        assert started.wait(20)
        began = time.monotonic()
        assert other.get_or_create("flavor", "all", never) == ["old"]
        assert time.monotonic() - began < 1.0
        finish.set()
        thread.join(20)
        assert out == [["new"]]
        assert other.get_or_create("flavor", "all", never) == ["new"]

        # missing: the other process waits for the refresher's answer
        refresher.invalidate("flavor")
        started.clear(), finish.clear()
        thread, out = in_background(slow(["newer"]))
        assert started.wait(20)
        threading.Timer(0.5, finish.set).start()
        began = time.monotonic()
        assert other.get_or_create("flavor", "all", never) == ["newer"]
        assert time.monotonic() - began >= 0.4
        thread.join(20)


# -- one rate limit for many processes --------------------------------------------------------
READS = 6  # requests per second for the account, all processes together
LIMIT_SECONDS = 5.0
STORAGE_UNREACHABLE = "rate limit storage of openstack unreachable"


def flavor_lists(sandbox, since: float) -> list[float]:
    """Start times of the flavor listings the cloud answered since ``since``."""
    time.sleep(0.3)
    return sorted(r["t"] for r in sandbox.requests(since=since, project=CLOUD)
                  if r["service"] == "nova" and r["path"].endswith("/flavors/detail"))


def busiest_second(times: list[float], seconds: float = 1.0) -> int:
    """The most requests that started within any ``seconds`` (one by default)."""
    most, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= seconds:
            first += 1
        most = max(most, last - first + 1)
    return most


def limited_run(sandbox, tmp: Path, path: Path,
                halfway=None) -> tuple[list[float], list[tuple[dict, str]]]:
    workers = Workers(tmp, path, WORKERS, script=LIMITED_WORKER, extra=(str(LIMIT_SECONDS),))
    workers.wait_for("ready")
    mark = time.time()
    time.sleep(0.05)
    workers.signal("go")
    if halfway is not None:
        time.sleep(LIMIT_SECONDS / 2)
        halfway()
    results = workers.finish()
    return flavor_lists(sandbox, mark), results


def test_eight_processes_share_one_rate_limit(openstack_sandbox, tmp_path):
    limit = {"reads": READS, "writes": 1, "window": 1}  # held to the second
    apart, _ = limited_run(openstack_sandbox, tmp_path, clouds_yaml_with(
        openstack_sandbox, tmp_path / "apart.yaml", None, rate_limit=limit))
    with RedisServer(tmp_path / "redis") as server:
        path = clouds_yaml_with(openstack_sandbox, tmp_path / "shared.yaml", None,
                                rate_limit={**limit, "storage": server.url})
        keys: list[str] = []  # read while the workers run: a window's keys expire with it
        shared, results = limited_run(
            openstack_sandbox, tmp_path, path,
            halfway=lambda: keys.extend(k.decode() for k in _stored_keys(server)))
    seconds = shared[-1] - shared[0] if len(shared) > 1 else 0.0
    print(f"\n{WORKERS} processes asking as fast as {READS} reads/s allow, "
          f"{LIMIT_SECONDS:.0f} s: own limit each {len(apart)} requests (busiest second "
          f"{busiest_second(apart)}); shared limit {len(shared)} requests over {seconds:.1f} s "
          f"(busiest second {busiest_second(shared)})")
    # apart, each process has the whole budget ...
    assert busiest_second(apart) > 2 * READS
    # ... shared, all of them together stay within it, as the cloud saw it
    assert sum(r["calls"] for r, _ in results) == len(shared)
    assert READS * LIMIT_SECONDS / 2 <= len(shared) <= READS * (seconds + 1)
    # the cloud logs when it started a request, not when the limiter let it go, and
    # eight processes on two cores reach it with varying delay: counted over two
    # seconds, a request or two of that jitter at the edges
    assert busiest_second(shared, 2.0) <= 2 * READS + 2
    for _, err in results:
        assert "Traceback" not in err and "WARNING" not in err, err
    # the account appears only as a digest
    assert keys and all(k.startswith("cloudnorm:ratelimit") for k in keys), keys
    auth = yaml.safe_load(path.read_text())["clouds"][CLOUD]["auth"]
    assert not any(auth["username"] in k or auth["project_name"] in k for k in keys), keys


def test_rate_limit_storage_killed_mid_run_limits_each_process(openstack_sandbox, tmp_path):
    with RedisServer(tmp_path / "redis") as server:
        path = clouds_yaml_with(openstack_sandbox, tmp_path / "clouds.yaml", None,
                                rate_limit={"reads": READS, "writes": 1, "window": 1,
                                            "storage": server.url})
        killed: list[float] = []

        def kill() -> None:
            killed.append(time.time())
            server.kill()

        times, results = limited_run(openstack_sandbox, tmp_path, path, halfway=kill)
    before = [t for t in times if t < killed[0]]
    after = [t for t in times if t > killed[0] + 0.5]
    print(f"\nkilled at {killed[0] - times[0]:.2f} s of {times[-1] - times[0]:.2f} s; "
          f"busiest second {busiest_second(before)} before, "
          f"{busiest_second(after)} after")
    for _, err in results:
        assert err.count(STORAGE_UNREACHABLE) == 1, err
        assert "limiting in this process only" in err and "Traceback" not in err, err
    assert busiest_second(before, 2.0) <= 2 * READS + 2
    # each process now has its own budget: more in all, but each still limited
    assert READS + 1 < busiest_second(after) <= WORKERS * (READS + 1)


def _stored_keys(server: RedisServer) -> list[bytes]:
    import redis

    client = redis.Redis.from_url(server.url, socket_timeout=5)
    try:
        return list(client.scan_iter("*"))
    finally:
        client.close()


# -- what one process learned about servers, used by another ---------------------------------
SECOND_PROCESS = r"""
import json, sys, time
import cloudnorm
from cloudnorm import hostkeys, ssh

clouds_yaml, cloud_name, server_name, operator_private = sys.argv[1:5]
cloud = cloudnorm.connect(cloud_name, config_files=[clouds_yaml])
mark = time.time()
server = cloud.get_server(server_name)
target = ssh.Target(server.interface_ip, server.ssh_port, open(operator_private).read(),
                    hostkeys.HostKeys(keys=server.host_keys))
status, out, _ = ssh.run(target, "root", "id -un")
logged_in = time.time()
second = cloud.create_server(server_name + "-again", image=server.image, min_ram=2048,
                             timeout=240)
why = {d.step: d.reason for d in second.decisions}["login_user"]
cloud.delete_server(second)
cloud.close()
print(json.dumps({"user": server.ssh_user, "host_keys": list(server.host_keys),
                  "root": [status, out.strip()], "mark": mark, "logged_in": logged_in,
                  "second_user": second.ssh_user, "why": why}))
"""


def test_login_and_host_keys_learned_by_one_process_serve_another(
        openstack_sandbox, openstack_dataplane, tmp_path):
    import cloudnorm
    from cloudnorm import keys

    operator = keys.generate("operator")
    private = tmp_path / "operator"
    private.write_text(operator.private_key)
    private.chmod(0o600)
    with RedisServer(tmp_path / "redis") as server:
        path = clouds_yaml_with(openstack_sandbox, tmp_path / "clouds.yaml",
                                redis_cache(server))
        first = cloudnorm.connect(CLOUD, config_files=[str(path)])
        made = first.create_server("cn-shared", min_ram=2048, timeout=240,
                                   authorized_keys=[operator.public_key])
        try:
            proc = subprocess.run(
                [sys.executable, "-c", SECOND_PROCESS, str(path), CLOUD, "cn-shared",
                 str(private)], capture_output=True, text=True, timeout=300,
                stdin=subprocess.DEVNULL)
            assert proc.returncode == 0, proc.stderr
            seen = json.loads(proc.stdout.strip().splitlines()[-1])
        finally:
            assert first.delete_server(made)
            first.close()
    # the second process knew the login and the verified host keys without asking the
    # console, and logged in as root with them checked
    assert seen["user"] == made.ssh_user == "ubuntu"
    # (an RSA key is too long for a metadata value: it travels as its fingerprint)
    assert seen["host_keys"] and set(seen["host_keys"]) <= set(made.host_keys)
    assert seen["root"] == [0, "root"]
    time.sleep(0.3)
    asked = [r for r in openstack_sandbox.requests(since=seen["mark"], project=CLOUD)
             if r["t"] < seen["logged_in"] and r["path"].endswith("/action")]
    assert asked == [], asked
    # ... and its own create started from the user the first process learned
    assert seen["second_user"] == "ubuntu"
    assert "learned on an earlier login to this image" in seen["why"], seen["why"]

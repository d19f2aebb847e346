"""One fresh process: turn N raw Nova server records into one library's server objects,
classify their addresses, hold them all, and report throughput and memory.

    python -m bench.normalize_worker LIBRARY RECORDS.json CLOUDS.yaml CLOUD OUT.json

cloudnorm: ``normalize_server`` of its OpenStack driver (what ``Cloud.list_servers``
does per record) against the cloud's classified networks.
openstacksdk: the ``Server`` resource built the way its compute proxy builds listed
servers (``Server.existing(connection=..., **record)``), then the cloud layer's address
helpers (``openstack.cloud.meta.add_server_interfaces``: public_v4, private_v4,
public_v6, interface_ip), as ``Connection.list_servers`` does.
Both first make the one-off discovery calls they need (networks), outside the timing.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
from typing import Any

CHUNKS = 5


def _rss_kib() -> int:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def _peak_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _cloudnorm(clouds_yaml: str, cloud_name: str) -> tuple[Any, Any, Any]:
    import cloudnorm
    from cloudnorm.offline import server_state

    cloud = cloudnorm.connect(cloud_name, config_files=[clouds_yaml])
    nets = cloud.list_networks()
    driver = cloud.driver  # Cloud.list_servers does this per record

    def convert(raw: dict[str, Any]) -> Any:
        return driver.normalize_server(server_state("openstack", raw), nets)

    def classify(server: Any) -> tuple[Any, Any, Any]:
        return server.public_v4, server.private_v4, server.interface_ip

    return cloud, convert, classify


def _openstacksdk(clouds_yaml: str, cloud_name: str) -> tuple[Any, Any, Any]:
    import openstack.config
    import openstack.connection
    from openstack.cloud import meta
    from openstack.compute.v2.server import Server

    config = openstack.config.OpenStackConfig(config_files=[clouds_yaml], load_envvars=False)
    conn = openstack.connection.Connection(config=config.get_one(cloud=cloud_name))

    def convert(raw: dict[str, Any]) -> Any:
        server = Server.existing(connection=conn, **raw)
        return meta.add_server_interfaces(conn, server)

    def classify(server: Any) -> tuple[Any, Any, Any]:
        return server["public_v4"] or None, server["private_v4"] or None, \
            server["interface_ip"] or None

    return conn, convert, classify


def main(argv: list[str]) -> int:
    library, records_path, clouds_yaml, cloud_name, out_path = argv
    began = time.perf_counter()
    client, convert, classify = (_cloudnorm if library == "cloudnorm" else _openstacksdk)(
        clouds_yaml, cloud_name)
    with open(records_path) as handle:
        records = json.load(handle)
    # One record first: lazy imports and the one-off network discovery happen here.
    discovery_started = time.time()
    classify(convert(json.loads(json.dumps(records[0]))))
    discovery_ended = time.time()
    set_up = time.perf_counter() - began
    gc.collect()
    baseline_rss = _rss_kib()
    baseline_peak = _peak_kib()
    held: list[Any] = []
    chunk_times: list[tuple[int, float]] = []
    chunk_cpu: list[float] = []
    size = max(1, len(records) // CHUNKS)
    timed_started = time.time()
    for start in range(0, len(records), size):
        chunk = records[start:start + size]
        t0, c0 = time.perf_counter(), time.process_time()
        for raw in chunk:
            held.append(convert(raw))
        chunk_times.append((len(chunk), time.perf_counter() - t0))
        chunk_cpu.append(len(chunk) / max(1e-9, time.process_time() - c0))
    t0 = time.perf_counter()
    classified = [classify(s) for s in held]
    classify_time = time.perf_counter() - t0
    timed_ended = time.time()
    rss_after = _rss_kib()
    peak = _peak_kib()
    result = {
        "library": library, "records": len(records), "set_up_s": set_up,
        "chunk_rates": [n / t for n, t in chunk_times],
        "chunk_cpu_rates": chunk_cpu,
        "convert_s": sum(t for _, t in chunk_times), "classify_s": classify_time,
        "with_public_v4": sum(1 for c in classified if c[0]),
        "with_private_v4": sum(1 for c in classified if c[1]),
        "sample": [str(x) for x in classified[0]],
        "baseline_rss_kib": baseline_rss, "baseline_peak_kib": baseline_peak,
        "rss_after_kib": rss_after, "peak_rss_kib": peak,
        "held_kib": rss_after - baseline_rss,
        "discovery_window": [discovery_started, discovery_ended],
        "timed_window": [timed_started, timed_ended],
    }
    if os.environ.get("BENCH_PROFILE"):
        result["profile"] = _profile(convert, records[:3000])
    with open(out_path, "w") as handle:
        json.dump(result, handle)
    return 0


def _profile(convert: Any, records: list[dict[str, Any]], top: int = 8) -> list[dict[str, Any]]:
    """pyinstrument over ``records``: the functions with the largest inclusive share."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    for raw in records:
        convert(raw)
    profiler.stop()
    root = profiler.last_session.root_frame()
    total = root.time or 1.0
    inclusive: dict[tuple[str, str], float] = {}

    def walk(frame: Any, above: frozenset[tuple[str, str]]) -> None:
        name = frame.function or "?"
        if getattr(frame, "class_name", None):
            name = f"{frame.class_name}.{name}"
        key = (name, (frame.file_path_short or "").replace(os.sep, "/"))
        if key not in above and not getattr(frame, "is_synthetic", False):
            inclusive[key] = inclusive.get(key, 0.0) + frame.time
        for child in frame.children:
            walk(child, above | {key})

    walk(root, frozenset())
    wanted = [(k, t) for k, t in inclusive.items()
              if ("cloudnorm" in k[1] or "openstack" in k[1] or k[1].endswith("ipaddress.py"))
              and k[0] not in ("convert", "<module>", "main", "_profile")]
    wanted.sort(key=lambda kt: -kt[1])
    return [{"function": k[0], "file": k[1], "share": t / total} for k, t in wanted[:top]]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Scenarios 3 and 6: normalization throughput and the memory to hold the result.

10,000 raw Nova server records (microversion 2.79 shape; every server on a tenant
network with a fixed and a floating IPv4 address, a second private network and a
global IPv6 address) go through each library in a fresh process, several times.
Every record has its floating IP in Nova's record: without one, openstacksdk's
``add_server_interfaces`` asks Neutron for the server's ports and floating IPs (two
requests per server), which would measure the network, not the library.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import RAW, ROOT, Budget, say
from bench.sandbox import CLOUD, Backend
from bench.stats import summary

RECORDS = 10_000
WORKER_TIMEOUT = 240.0
# seconds one worker process takes here, to stay inside the budget
COST = {"cloudnorm": 6.0, "openstacksdk": 35.0}


def make_records(backend: Backend, count: int = RECORDS, seed: int = 9) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    state = backend.state
    project, user = state["project_id"], state["user_id"]
    image = backend.image_id()
    records = []
    for i in range(count):
        sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        mac = ":".join(f"{rng.randrange(256):02x}" for _ in range(3))
        records.append({
            "id": sid, "name": f"web-{i:05d}", "status": "ACTIVE", "tenant_id": project,
            "user_id": user, "metadata": {"role": "web", "shard": str(i % 16)},
            "hostId": f"{rng.getrandbits(224):056x}", "host_status": "UP",
            "image": {"id": image, "links": [{"rel": "bookmark",
                                             "href": f"http://nova/images/{image}"}]},
            "flavor": {"vcpus": 1, "ram": 2048, "disk": 20, "ephemeral": 0, "swap": 0,
                       "original_name": "m1.small", "extra_specs": {}},
            "created": "2026-11-24T08:00:00Z", "updated": "2026-11-24T08:01:00Z",
            "addresses": {
                "private": [
                    {"version": 4, "addr": f"10.0.{1 + i // 250 % 200}.{2 + i % 250}",
                     "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": f"fa:16:3e:{mac}"},
                    {"version": 4, "addr": f"203.0.113.{1 + i % 30}",
                     "OS-EXT-IPS:type": "floating",
                     "OS-EXT-IPS-MAC:mac_addr": f"fa:16:3e:{mac}"}],
                "storage": [
                    {"version": 4, "addr": f"172.16.{i // 250 % 250}.{2 + i % 250}",
                     "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01"}],
                "public-v6": [
                    {"version": 6, "addr": f"2001:db8:7::{i:x}", "OS-EXT-IPS:type": "fixed",
                     "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:02"}],
            },
            "accessIPv4": "", "accessIPv6": "", "key_name": "ops", "config_drive": "",
            "links": [{"rel": "self", "href": f"http://nova/v2.1/servers/{sid}"}],
            "OS-DCF:diskConfig": "MANUAL", "progress": 0, "OS-EXT-AZ:availability_zone": "nova",
            "OS-EXT-STS:task_state": None, "OS-EXT-STS:vm_state": "active",
            "OS-EXT-STS:power_state": 1, "OS-SRV-USG:launched_at": "2026-11-24T08:00:30.000000",
            "OS-SRV-USG:terminated_at": None, "security_groups": [{"name": "default"}],
            "os-extended-volumes:volumes_attached": [], "locked": False, "locked_reason": None,
            "description": None, "tags": [], "trusted_image_certificates": None,
        })
    return records


def _worker(backend: Backend, library: str, records: Path, out: Path,
            profile: bool = False) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("BENCH_PROFILE", None)
    if profile:
        env["BENCH_PROFILE"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.normalize_worker", library, str(records),
         str(backend.clouds_yaml), CLOUD, str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=WORKER_TIMEOUT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{library} worker failed ({proc.returncode}): {proc.stderr[-800:]}")
    result = json.loads(out.read_text())
    since, until = result["timed_window"]
    result["requests_while_timed"] = sum(
        1 for r in backend.requests(since, until) if r.get("project") == backend.project)
    return result


def run(backend: Backend, budget: Budget, processes: int, reserve: float) -> dict[str, Any]:
    RAW.mkdir(parents=True, exist_ok=True)
    records = RAW / f"servers-{RECORDS}.json"
    records.write_text(json.dumps(make_records(backend)))
    runs: dict[str, list[dict[str, Any]]] = {"cloudnorm": [], "openstacksdk": []}
    skipped = []
    # openstacksdk's processes take ~30 s each here: one of them (its 5 chunks give the
    # spread), against ``processes`` of cloudnorm's.
    count = {"cloudnorm": processes, "openstacksdk": 1}
    for i in range(processes):
        for library in ("cloudnorm", "openstacksdk"):
            if i >= count[library]:
                continue
            if budget.left() - reserve < COST[library]:
                skipped.append(f"{library} process {i + 1}: not enough time left")
                continue
            # The first cloudnorm process also profiles (after everything it measures).
            profile = library == "cloudnorm" and i == 0
            result = _worker(backend, library, records, RAW / f"normalize-{library}-{i}.json",
                             profile)
            runs[library].append(result)
            say(f"normalize {library:12s}: {summary(result['chunk_rates'])['median']:9,.0f} "
                f"servers/s, peak RSS {result['peak_rss_kib'] / 1024:.0f} MiB, models "
                f"{result['held_kib'] / 1024:.1f} MiB")
    out: dict[str, Any] = {"records": RECORDS, "runs": runs, "skipped": skipped}
    for library, items in runs.items():
        out[library] = {
            "rate": summary([r for item in items for r in item["chunk_rates"]]),
            "cpu_rate": summary([r for item in items for r in item["chunk_cpu_rates"]]),
            "rate_per_process": summary([summary(item["chunk_rates"])["median"]
                                         for item in items]),
            "peak_rss_mib": summary([item["peak_rss_kib"] / 1024 for item in items]),
            "held_mib": summary([item["held_kib"] / 1024 for item in items]),
            "baseline_rss_mib": summary([item["baseline_rss_kib"] / 1024 for item in items]),
            "with_public_v4": items[0]["with_public_v4"] if items else None,
            "with_private_v4": items[0]["with_private_v4"] if items else None,
            "sample": items[0]["sample"] if items else None,
            "requests_while_timed": max((i["requests_while_timed"] for i in items), default=None),
            "processes": len(items),
        }
    out["profile"] = next((r["profile"] for r in runs["cloudnorm"] if r.get("profile")), None)
    out["finished_at"] = time.time()
    return out

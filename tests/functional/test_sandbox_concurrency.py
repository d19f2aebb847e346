"""The sandbox's OpenStack serves concurrent clients as a real cloud does.

Ten threads each call openstacksdk's ``create_server(auto_ip=True, wait=True)`` on the
fip-required profile at once: every server must become ACTIVE with a floating IP, Nova's
API must keep answering meanwhile, and the deletes (also at once) must leave nothing
behind. On SQLite this stalled Nova for minutes and failed token and allocation writes
with "database is locked"; the sandbox's PostgreSQL (``cloudnorm.testing.openstack.
postgres``) is what makes it pass. Nobody logs in: no SSH, only the API.
"""

from __future__ import annotations

import ipaddress
import threading
import time
import uuid

import pytest

from cloudnorm.testing import profile_data

openstack = pytest.importorskip("openstack")

pytestmark = [pytest.mark.functional,
              pytest.mark.filterwarnings("ignore:Support for InfluxDB")]

PROFILE = "fip-required"
THREADS = 10  # Nova's default instance quota of a project
CREATE_TIMEOUT = 180.0  # one create_server's wait for ACTIVE and its floating IP
DEADLINE = 300.0  # all creates together
DELETE_TIMEOUT = 120.0
# Nova's API answered nothing for minutes on SQLite; a real cloud answers within seconds.
MAX_API_LATENCY = 20.0
PROBE_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def sandbox(openstack_sandbox):
    if PROFILE not in openstack_sandbox.profile_names:
        pytest.skip(f"the running sandbox has no profile {PROFILE}")
    return openstack_sandbox


def _run_all(target, count: int, deadline: float) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [thread for thread in threads if thread.is_alive()]


def test_ten_servers_with_floating_ips_at_once(sandbox):
    database = getattr(sandbox, "database", None) or {}
    expect = sandbox.profile(PROFILE)["expect"]
    spec = profile_data.load(PROFILE)
    public = ipaddress.ip_network(next(
        n for n in spec["networks"] if n["name"] == spec["expect"]["floating_ip_network"]
    )["subnets"][0]["cidr"])
    prefix = f"cn-concurrency-{uuid.uuid4().hex[:6]}-"
    user = sandbox.connect(PROFILE)
    fips_before = {ip.id for ip in user.network.ips()}
    # All ten fit only in an empty project (Nova's default quota is ten instances).
    assert [s.name for s in user.compute.servers()] == [], "servers left by another test"

    created: dict[int, str] = {}
    errors: dict[int, str] = {}
    latencies: list[float] = []
    done = threading.Event()

    def create(i: int) -> None:
        conn = sandbox.connect(PROFILE)
        try:
            server = conn.create_server(
                name=f"{prefix}{i}", image=expect["image"]["id"],
                flavor=expect["flavor"]["id"], network=expect["default_network_id"],
                auto_ip=True, wait=True, timeout=CREATE_TIMEOUT)
            created[i] = server.id
        except Exception as error:  # reported below, with every other thread's
            errors[i] = repr(error)
        finally:
            conn.close()

    def probe() -> None:
        # While the creates run: how long does Nova take to answer a plain request?
        conn = sandbox.connect(PROFILE)
        try:
            while not done.is_set():
                began = time.monotonic()
                conn.compute.get("/flavors", timeout=PROBE_TIMEOUT)
                latencies.append(time.monotonic() - began)
                done.wait(1.0)
        except Exception:
            latencies.append(float("inf"))
        finally:
            conn.close()

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    began = time.monotonic()
    try:
        stuck = _run_all(create, THREADS, began + DEADLINE)
        elapsed = time.monotonic() - began
        done.set()
        prober.join(PROBE_TIMEOUT + 5)

        assert not stuck, f"{len(stuck)} creates still running after {DEADLINE:.0f}s"
        assert errors == {}, errors
        assert len(created) == THREADS
        assert latencies and max(latencies) < MAX_API_LATENCY, latencies
        for server_id in created.values():
            server = user.compute.get_server(server_id)
            assert server.status == "ACTIVE"
            ports = [p.id for p in user.network.ports(device_id=server_id)]
            floating = [ip for ip in user.network.ips() if ip.port_id in ports]
            assert len(floating) == 1, (server.name, floating)
            assert ipaddress.ip_address(floating[0].floating_ip_address) in public
        print(f"{THREADS} servers ACTIVE with floating IPs in {elapsed:.1f}s; Nova answered "
              f"within {max(latencies):.1f}s meanwhile (database: "
              f"{database.get('engine', 'unknown')})")
    finally:
        done.set()
        ids = [s.id for s in user.compute.servers() if (s.name or "").startswith(prefix)]

        def delete(i: int) -> None:
            conn = sandbox.connect(PROFILE)
            try:
                conn.delete_server(ids[i], wait=True, delete_ips=True, timeout=DELETE_TIMEOUT)
            finally:
                conn.close()

        _run_all(delete, len(ids), time.monotonic() + DELETE_TIMEOUT + 30)
        # Floating IPs a create made but never attached (a failed create) go too.
        for ip in user.network.ips():
            if ip.id not in fips_before and not ip.port_id:
                user.network.delete_ip(ip)
        left = [s.name for s in user.compute.servers() if (s.name or "").startswith(prefix)]
        left_ips = [ip.floating_ip_address for ip in user.network.ips()
                    if ip.id not in fips_before]
        user.close()
    assert left == [] and left_ips == [], (left, left_ips)

"""The backend every scenario runs on: the local OpenStack (fip-required profile), its
SSH data plane, and counting requests from the services' own request log."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PROFILE = "fip-required"
CLOUD = f"sandbox-{PROFILE}"

# Who made a request, from the User-Agent every service logs. The bench's own
# housekeeping connection announces itself as "bench-cleanup" and matches none.
AGENTS: dict[str, Callable[[str], bool]] = {
    "cloudnorm": lambda ua: ua.startswith("cloudnorm "),
    "openstacksdk": lambda ua: ua.startswith("openstacksdk/"),
    "libcloud": lambda ua: ua.startswith("libcloud/"),
}
SETTLE = 0.4
# Services whose writes the bench serializes (see bench/proxy.py for why).
SERIALIZED = ("compute", "network", "placement")  # the services log a request once they answered it


class Backend:
    """Start with :meth:`start`; :meth:`stop` (or the context manager) ends everything."""

    def __init__(self, workdir: Path, dataplane: bool = True,
                 serialize_writes: bool = True) -> None:
        self.workdir = Path(workdir)
        self.want_dataplane = dataplane
        self.serialize = serialize_writes
        self.stack: Any = None
        self.dataplane: Any = None
        self.proxies: dict[str, Any] = {}
        self.started_in = 0.0
        self._cleanup_conn: Any = None

    # -- life cycle ---------------------------------------------------------------
    def start(self) -> Backend:
        from cloudnorm.testing.openstack import catalog
        from cloudnorm.testing.openstack.stack import OpenStackStack

        began = time.monotonic()
        original = catalog.register

        def register(conn: Any, region: str, identity_url: str, urls: dict[str, str]) -> None:
            from bench.proxy import SerializingProxy

            urls = dict(urls)
            for service in SERIALIZED:
                self.proxies[service] = SerializingProxy(service, urls[service])
                urls[service] = self.proxies[service].start()
            original(conn, region, identity_url, urls)

        self.stack = OpenStackStack(self.workdir / "sandbox", [PROFILE])
        if self.serialize:
            catalog.register = register  # type: ignore[assignment]
        try:
            self.stack.start()
        finally:
            catalog.register = original  # type: ignore[assignment]
        self._raise_quotas()
        if self.want_dataplane:
            self.start_dataplane()
        self.started_in = time.monotonic() - began
        return self

    def start_dataplane(self) -> None:
        from cloudnorm.testing.openstack.dataplane_sync import DataPlane

        if self.dataplane is None:
            self.dataplane = DataPlane(self.stack, self.workdir / "nodes").start()

    def stop_dataplane(self) -> None:
        if self.dataplane is not None:
            with contextlib.suppress(Exception):
                self.dataplane.stop()
            self.dataplane = None

    def stop(self) -> None:
        self.stop_dataplane()
        if self._cleanup_conn is not None:
            with contextlib.suppress(Exception):
                self._cleanup_conn.close()
            self._cleanup_conn = None
        if self.stack is not None:
            self.stack.stop()
            self.stack = None
        for proxy in self.proxies.values():
            proxy.stop()

    def proxy_stats(self) -> dict[str, Any]:
        return {name: proxy.stats() for name, proxy in self.proxies.items()}

    def __enter__(self) -> Backend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- facts --------------------------------------------------------------------
    @property
    def clouds_yaml(self) -> Path:
        return Path(self.stack.clouds_yaml)

    @property
    def state(self) -> dict[str, Any]:
        return self.stack.profile(PROFILE)  # type: ignore[no-any-return]

    @property
    def project(self) -> str:
        return str(self.state["project_name"])

    @property
    def auth(self) -> dict[str, str]:
        import yaml

        entry = yaml.safe_load(self.clouds_yaml.read_text())["clouds"][CLOUD]
        return dict(entry["auth"])

    @property
    def region(self) -> str:
        return str(self.stack.region)

    def image_id(self) -> str:
        return str(self.state["expect"]["image"]["id"])

    # -- the request log ------------------------------------------------------------
    def mark(self) -> float:
        return time.time()

    def requests(self, since: float, until: float | None = None) -> list[dict[str, Any]]:
        time.sleep(SETTLE)
        until = until if until is not None else time.time()
        return [r for r in self.stack.requests(since=since) if r["t"] <= until]

    def client_requests(self, agent: str, since: float, until: float | None = None
                        ) -> list[dict[str, Any]]:
        """What one client library sent: its requests scoped to the project plus its
        unscoped ones (token, version discovery), told apart by user agent."""
        match = AGENTS[agent]
        return [r for r in self.requests(since, until)
                if match(r.get("user_agent") or "") and r.get("project") in (self.project, None)]

    def project_requests(self, since: float, until: float | None = None
                         ) -> list[dict[str, Any]]:
        """Everything the cloud served for the project: the client's calls and the calls
        Nova made to Neutron and Glance on the user's behalf."""
        return [r for r in self.requests(since, until) if r.get("project") == self.project]

    # -- housekeeping ---------------------------------------------------------------
    def _admin(self) -> Any:
        return self.stack.connect_admin()

    def _raise_quotas(self) -> None:
        """Room for the largest concurrent run (defaults: 10 instances, 10 security groups)."""
        admin = self._admin()
        try:
            pid = self.state["project_id"]
            admin.set_compute_quotas(pid, instances=200, cores=2000, ram=2_000_000,
                                     key_pairs=1000)
            admin.network.update_quota(admin.network.get_quota(pid), security_groups=500,
                                       security_group_rules=5000, floating_ips=500,
                                       ports=2000)
        finally:
            admin.close()

    def cleanup_connection(self) -> Any:
        """The project's user, announcing itself as bench-cleanup (never counted)."""
        if self._cleanup_conn is None:
            import openstack

            self._cleanup_conn = openstack.connect(
                load_yaml_config=False, load_envvars=False, auth_type="password",
                auth=self.auth, region_name=self.region, identity_api_version="3",
                app_name="bench-cleanup")
        return self._cleanup_conn

    def sweep(self, keep_access: bool = False, timeout: float = 90.0) -> None:
        """Delete every server, floating IP, key pair, port cloudnorm made and
        non-default security group of the project, and wait until the servers are gone
        (bounded). ``keep_access`` keeps the peers' key pairs and groups (``bench-*``) for
        their warm runs."""

        def doomed(name: str | None) -> bool:
            return not keep_access or not (name or "").startswith("bench-")

        conn = self.cleanup_connection()
        for fip in list(conn.network.ips()):
            with contextlib.suppress(Exception):
                conn.network.delete_ip(fip)
        servers = list(conn.compute.servers())
        for server in servers:
            with contextlib.suppress(Exception):
                conn.compute.delete_server(server)
        deadline = time.monotonic() + timeout
        while servers and time.monotonic() < deadline:
            servers = list(conn.compute.servers())
            if servers:
                time.sleep(0.3)
        for port in list(conn.network.ports()):
            if (port.name or "").startswith("cloudnorm-"):
                with contextlib.suppress(Exception):
                    conn.network.delete_port(port)
        for key in list(conn.compute.keypairs()):
            if not doomed(key.name):
                continue
            with contextlib.suppress(Exception):
                conn.compute.delete_keypair(key)
        for group in list(conn.network.security_groups()):
            if group.name != "default" and doomed(group.name):
                with contextlib.suppress(Exception):
                    conn.network.delete_security_group(group)


@contextlib.contextmanager
def window(backend: Backend) -> Iterator[dict[str, float]]:
    """Wall-clock window of a measured action: ``since`` and ``until`` for the log."""
    span = {"since": time.time(), "until": 0.0}
    try:
        yield span
    finally:
        span["until"] = time.time()

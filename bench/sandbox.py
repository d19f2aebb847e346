"""The backend every scenario runs on: the local OpenStack (fip-required profile, and
further profiles when a scenario needs them: one stack serves each profile as a project
of its own), its SSH data plane, and counting requests from the services' own request
log."""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cloudnorm.testing.openstack.room import floating_ip_network_id, make_room

PROFILE = "fip-required"
CLOUD = f"sandbox-{PROFILE}"
# Zero-disk flavors only, images with min_disk, a real Cinder (scenario "bfv").
BFV_PROFILE = "boot-from-volume"

# Who made a request, from the User-Agent every service logs. The bench's own
# housekeeping connection announces itself as "bench-cleanup" and matches none.
AGENTS: dict[str, Callable[[str], bool]] = {
    "cloudnorm": lambda ua: ua.startswith("cloudnorm "),
    "openstacksdk": lambda ua: ua.startswith("openstacksdk/"),
    "libcloud": lambda ua: ua.startswith("libcloud/"),
}
SETTLE = 0.4  # the services log a request once they answered it
# The fleet scenario's largest N (bench/s2_concurrent.py) and some room: what the project's
# quotas and the floating IP pool must allow at once.
FLEET_ROOM = 60


class Backend:
    """Start with :meth:`start`; :meth:`stop` (or the context manager) ends everything.

    The stack is started with the fip-required profile and ``extra_profiles``; the
    project-scoped facts and helpers (state, auth, request counts, sweep) are the
    fip-required project's, and :meth:`view` gives the same for another profile's project
    on the same stack and data plane."""

    def __init__(self, workdir: Path, dataplane: bool = True,
                 extra_profiles: tuple[str, ...] = ()) -> None:
        self.workdir = Path(workdir)
        self.want_dataplane = dataplane
        self.profiles = list(dict.fromkeys([PROFILE, *extra_profiles]))
        self.profile_name = PROFILE
        self.stack: Any = None
        self.dataplane: Any = None
        self.started_in = 0.0
        self._cleanup_conn: Any = None
        self._views: dict[str, Backend] = {}
        self._parent: Backend | None = None

    # -- life cycle ---------------------------------------------------------------
    def start(self) -> Backend:
        from cloudnorm.testing.openstack.stack import OpenStackStack

        began = time.monotonic()
        self.stack = OpenStackStack(self.workdir / "sandbox", self.profiles)
        self.stack.start()
        make_room(self.stack, self.profile_name, FLEET_ROOM)
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

    def view(self, profile: str) -> Backend:
        """The same started backend, scoped to ``profile``'s project (it must have been
        started with it): its state, auth, cloud name, request counts and sweep. Stopping
        stays with the backend that started."""
        if self._parent is not None:
            return self._parent.view(profile)
        if profile == self.profile_name:
            return self
        if profile not in self.profiles:
            raise ValueError(f"the backend was started without profile {profile!r} "
                             f"(it has {', '.join(self.profiles)})")
        if profile not in self._views:
            view = copy.copy(self)
            view.profile_name = profile
            view._cleanup_conn = None
            view._views = {}
            view._parent = self
            self._views[profile] = view
        return self._views[profile]

    def _close_cleanup(self) -> None:
        if self._cleanup_conn is not None:
            with contextlib.suppress(Exception):
                self._cleanup_conn.close()
            self._cleanup_conn = None

    def stop(self) -> None:
        if self._parent is not None:  # a view: only its own connection is its to close
            self._close_cleanup()
            return
        for view in self._views.values():
            view._close_cleanup()
        self.stop_dataplane()
        self._close_cleanup()
        if self.stack is not None:
            self.stack.stop()
            self.stack = None

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
        return self.stack.profile(self.profile_name)  # type: ignore[no-any-return]

    @property
    def cloud(self) -> str:
        """The profile's cloud name in the sandbox's clouds.yaml."""
        return str(self.state.get("cloud") or f"sandbox-{self.profile_name}")

    @property
    def project(self) -> str:
        return str(self.state["project_name"])

    @property
    def auth(self) -> dict[str, str]:
        import yaml

        entry = yaml.safe_load(self.clouds_yaml.read_text())["clouds"][self.cloud]
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

    def floating_ip_capacity(self) -> int:
        """How many floating IPs the external network's IPv4 subnets hold in all (their
        allocation pools), for the report."""
        import ipaddress

        admin = self._admin()
        try:
            network = admin.network.get_network(floating_ip_network_id(self.state))
            total = 0
            for subnet in admin.network.subnets(network_id=network.id, ip_version=4):
                for pool in subnet.allocation_pools or []:
                    total += (int(ipaddress.ip_address(pool["end"]))
                              - int(ipaddress.ip_address(pool["start"])) + 1)
            return total
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

    def sweep(self, keep_access: bool = False, timeout: float = 90.0,
              volumes: bool = False) -> None:
        """Delete every server, floating IP, key pair, port cloudnorm made and
        non-default security group of the project, and wait until the servers are gone
        (bounded). ``keep_access`` keeps the peers' key pairs and groups (``bench-*``) for
        their warm runs. ``volumes``: every volume of the project too, waiting (bounded)
        until Cinder has none left."""

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
        if volumes:
            self.sweep_volumes(timeout=timeout)

    def leftovers(self) -> dict[str, int]:
        """What the project holds besides its seeded network (router ports, the DHCP
        port, the default security group), counted through the bench-cleanup connection
        (never counted as a library's requests); and the SSH data plane's nodes."""
        conn = self.cleanup_connection()
        found = {
            "servers": len(list(conn.compute.servers())),
            "floating_ips": len(list(conn.network.ips())),
            "ports": sum(1 for p in conn.network.ports()
                         if not (p.device_owner or "").startswith("network:")),
            "key_pairs": len(list(conn.compute.keypairs())),
            "security_groups": sum(1 for g in conn.network.security_groups()
                                   if g.name != "default"),
        }
        if self.dataplane is not None:
            found["dataplane_nodes"] = len(self.dataplane.fleet.node_ids())
        return found

    def volumes(self) -> list[Any]:
        """The project's volumes, listed with openstacksdk's ``block_storage.volumes()``
        through the bench-cleanup connection (never counted)."""
        return list(self.cleanup_connection().block_storage.volumes())

    def sweep_volumes(self, timeout: float = 60.0) -> int:
        """Delete every volume of the project (detached ones; attached ones once their
        server is gone) until none is left or ``timeout`` s passed; returns how many are
        left."""
        conn = self.cleanup_connection()
        deadline = time.monotonic() + timeout
        asked: set[str] = set()
        left = self.volumes()
        while left and time.monotonic() < deadline:
            for volume in left:
                if volume.id in asked or volume.status not in ("available", "error"):
                    continue
                with contextlib.suppress(Exception):
                    conn.block_storage.delete_volume(volume)
                    asked.add(volume.id)
            time.sleep(0.5)
            left = self.volumes()
        return len(left)


@contextlib.contextmanager
def window(backend: Backend) -> Iterator[dict[str, float]]:
    """Wall-clock window of a measured action: ``since`` and ``until`` for the log."""
    span = {"since": time.time(), "until": 0.0}
    try:
        yield span
    finally:
        span["until"] = time.time()

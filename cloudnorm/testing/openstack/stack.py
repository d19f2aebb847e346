"""A real OpenStack (Keystone, Glance, Neutron, Placement, Nova, Cinder) on 127.0.0.1.

    with OpenStackStack(Path("/tmp/sandbox"), ["fip-required"]) as stack:
        conn = stack.connect("fip-required")   # or any client reading stack.clouds_yaml
        conn.compute.create_server(...)

Services run from their own cached virtualenv (see ``install``), each as a child process in
its own session with its state, configuration and log under the work directory. SQLite
databases, in-process messaging, a fake hypervisor and a fake volume backend keep the
footprint to six processes (about 1 GB of memory) with nothing to install system-wide.
Cinder runs only when a profile has block storage (``block_storage``, true by default).
"""

from __future__ import annotations

import atexit
import secrets
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cloudnorm.testing import profile_data
from cloudnorm.testing.openstack import (
    catalog,
    clouds_yaml,
    configs,
    connections,
    install,
    seed,
)
from cloudnorm.testing.openstack.processes import (
    LOOPBACK,
    Service,
    Step,
    child_environment,
    free_port,
    stop_all,
    wait_ready,
    wait_steps,
)
from cloudnorm.testing.openstack.state import STATE_FILE, SandboxState
from cloudnorm.testing.progress import say, timed

SERVICES_DIR = Path(__file__).resolve().parent / "services"
REGION = "RegionOne"
SERVICE_NAMES = ("keystone", "glance", "neutron", "placement", "nova", "cinder")
MARKER = ".cloudnorm-sandbox"
# Everything this class creates in a work directory; only these are cleared on reuse.
OWNED_ENTRIES = (*SERVICE_NAMES, "logs", "console", "tmp", "clouds.yaml", STATE_FILE,
                 "requests.jsonl")
SETUP_TIMEOUT = 180.0
READY_TIMEOUT = 120.0


class OpenStackStack:
    """Start with :meth:`start` (or ``with``); :meth:`stop` leaves no process behind."""

    def __init__(self, workdir: Path, profiles: list[str] | None = None,
                 python: Path | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self._requested_profiles = list(profiles or [])
        self._python = python
        self._services: list[Service] = []
        self._steps: list[Step] = []
        self._stopped = threading.Event()
        self.state: SandboxState | None = None
        self.timings: dict[str, float] = {}

    # -- what a started stack offers ---------------------------------------------------

    @property
    def clouds_yaml(self) -> Path:
        return self._started().clouds_yaml

    @property
    def cloud_names(self) -> list[str]:
        return self._started().cloud_names

    @property
    def profile_names(self) -> list[str]:
        return self._started().profile_names

    @property
    def admin_auth(self) -> dict[str, str]:
        return self._started().admin_auth

    @property
    def region(self) -> str:
        return self._started().region

    @property
    def request_log(self) -> Path:
        return self._started().request_log

    @property
    def console_dir(self) -> Path:
        return self._started().console_dir

    def profile(self, name: str) -> dict[str, Any]:
        return self._started().profile(name)

    def project_profiles(self) -> dict[str, str]:
        return self._started().project_profiles()

    def connect(self, profile: str) -> Any:
        return self._started().connect(profile)

    def connect_admin(self) -> Any:
        return self._started().connect_admin()

    def requests(self, since: float | None = None, service: str | None = None,
                 project: str | None = None) -> list[dict[str, Any]]:
        return self._started().requests(since=since, service=service, project=project)

    def pids(self) -> list[int]:
        return [service.process.pid for service in self._services if service.process]

    def _started(self) -> SandboxState:
        if self.state is None:
            raise RuntimeError("the sandbox is not started")
        return self.state

    # -- life cycle ---------------------------------------------------------------------

    def __enter__(self) -> OpenStackStack:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> OpenStackStack:
        atexit.register(self.stop)
        self._stopped.clear()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate every process this stack started; safe to call more than once."""
        for step in self._steps:
            step.kill()
        if self._services:
            started = time.monotonic()
            stop_all(list(reversed(self._services)))
            if not self._stopped.is_set():
                say(f"OpenStack services stopped ({time.monotonic() - started:.1f}s)")
        self._stopped.set()
        atexit.unregister(self.stop)

    def _start(self) -> None:
        began = time.monotonic()
        profiles = profile_data.load_all(self._requested_profiles or None)
        block_storage = any(profile.get("block_storage", True) for profile in profiles)
        python = self._python or install.ensure_installed()
        # Importing openstacksdk takes a second; do it while the databases are created.
        sdk_import = threading.Thread(target=_import_sdk, daemon=True)
        sdk_import.start()
        layout = self._prepare_workdir()
        ports = {name: free_port() for name in SERVICE_NAMES}
        urls = {name: f"http://{LOOPBACK}:{port}" for name, port in ports.items()}
        keystone_url = urls["keystone"] + "/v3"
        password = secrets.token_hex(16)
        self._admin_auth = {
            "auth_url": keystone_url, "username": "admin", "password": password,
            "project_name": "admin", "user_domain_id": "default", "project_domain_id": "default",
        }
        configs_by_service = self._render_configs(layout, {
            "keystone_url": keystone_url, "admin_password": password, "region": REGION,
            "venv": Path(python).parent.parent, "glance_url": urls["glance"]})
        env = child_environment({"TMPDIR": str(layout["tmp"])})

        def service(name: str, *extra: str) -> Service:
            return self._service(python, name, ports[name], layout, env, *extra)

        with timed("databases and keys created"):
            self._steps = self._setup_steps(python, layout, configs_by_service, keystone_url,
                                            password, env, block_storage)
            wait_steps(self._steps)
        self.timings["setup"] = time.monotonic() - began
        with timed("keystone answering"):
            wait_ready([service("keystone")], READY_TIMEOUT)
        sdk_import.join(timeout=60)
        published = {
            "image": urls["glance"], "compute": urls["nova"] + "/v2.1",
            "network": urls["neutron"], "placement": urls["placement"],
        }
        if block_storage:
            # The project-scoped form: Keystone fills in the project of each token.
            published["block-storage"] = urls["cinder"] + "/v3/%(project_id)s"
        with timed("catalog registered"):
            catalog.register(self._admin_connection(), REGION, keystone_url, published)
        # Cinder is needed only for the projects' volume quotas: seeding need not wait.
        cinder = [service("cinder")] if block_storage else []
        with timed("glance, neutron and placement answering"):
            others = [service("glance"), service("neutron")]
            # Nova's compute host registers its resources with Placement as it starts.
            wait_ready([service("placement")], READY_TIMEOUT)
            nova = service("nova", "--console-dir", str(layout["console"]))
            wait_ready(others, READY_TIMEOUT)

        def nova_ready() -> None:
            wait_ready([nova], READY_TIMEOUT)
            self.timings["services"] = time.monotonic() - began
            say(f"nova answering ({self.timings['services']:.1f}s since start)")

        def cinder_ready() -> None:
            wait_ready(cinder, READY_TIMEOUT)
            say(f"cinder answering ({time.monotonic() - began:.1f}s since start)")

        seeding_began = time.monotonic()
        # Networks and images are seeded while Nova starts; flavors wait for it.
        with timed(f"profiles seeded: {', '.join(p['name'] for p in profiles)}"):
            passwords = {p["name"]: secrets.token_hex(16) for p in profiles}
            states = seed.seed(self._admin_connection, profiles, passwords, nova_ready,
                               cinder_ready)
        self.timings["seed"] = time.monotonic() - seeding_began
        for running in self._services:
            running.check_alive()

        self.state = self._write_state(layout, keystone_url, profiles, states)
        self.timings["total"] = time.monotonic() - began
        say(f"sandbox ready in {self.timings['total']:.1f}s: {self.state.clouds_yaml}")

    # -- pieces -------------------------------------------------------------------------

    def _prepare_workdir(self) -> dict[str, Path]:
        workdir = self.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        leftovers = [entry for entry in workdir.iterdir() if entry.name != MARKER]
        if leftovers and not (workdir / MARKER).exists():
            raise RuntimeError(f"{workdir} is not empty and was not made by a cloudnorm sandbox; "
                               "give an empty or new directory")
        for name in OWNED_ENTRIES:
            entry = workdir / name
            if entry.is_dir():
                shutil.rmtree(entry)
            elif entry.exists():
                entry.unlink()
        (workdir / MARKER).write_text("a cloudnorm sandbox: its entries are rebuilt on start\n")
        layout = {name: workdir / name for name in (*SERVICE_NAMES, "logs", "console", "tmp")}
        for path in layout.values():
            path.mkdir()
        for sub in ("images", "staging", "tasks"):
            (layout["glance"] / sub).mkdir()
        (layout["neutron"] / "lock").mkdir()
        for sub in ("conversion", "lock", "coordination"):
            (layout["cinder"] / sub).mkdir()
        layout["request_log"] = workdir / "requests.jsonl"
        layout["request_log"].touch()
        return layout

    @staticmethod
    def _render_configs(layout: dict[str, Path], values: dict[str, Any]) -> dict[str, Path]:
        def render(service: str, template: str) -> Path:
            return configs.render(template, layout[service] / "etc" / template,
                                  state_dir=layout[service], **values)

        return {
            "keystone": render("keystone", "keystone.conf"),
            "glance": render("glance", "glance-api.conf"),
            "neutron": render("neutron", "neutron.conf"),
            "placement": render("placement", "placement.conf"),
            "nova": render("nova", "nova.conf"),
            "cinder": render("cinder", "cinder.conf"),
        }

    @staticmethod
    def _setup_steps(python: Path, layout: dict[str, Path], config: dict[str, Path],
                     keystone_url: str, password: str, env: dict[str, str],
                     block_storage: bool) -> list[Step]:
        manage = [str(python), str(SERVICES_DIR / "manage.py")]
        logs = layout["logs"]
        bootstrap = [f"--bootstrap-password={password}", f"--bootstrap-region-id={REGION}",
                     f"--bootstrap-admin-url={keystone_url}",
                     f"--bootstrap-internal-url={keystone_url}",
                     f"--bootstrap-public-url={keystone_url}"]
        neutron_db = f"sqlite:///{layout['neutron'] / 'neutron.db'}?timeout=30"
        steps = [
            Step("keystone setup",
                 [[str(python), str(SERVICES_DIR / "keystone_setup.py"), str(config["keystone"]),
                   "--", *bootstrap]],
                 logs / "setup-keystone.log", env, SETUP_TIMEOUT),
            Step("glance database",
                 [[*manage, "glance", "--config-file", str(config["glance"]), "db_sync"]],
                 logs / "setup-glance.log", env, SETUP_TIMEOUT),
            Step("neutron database",
                 [[str(python), str(SERVICES_DIR / "neutron_schema.py"), "--connection",
                   neutron_db]],
                 logs / "setup-neutron.log", env, SETUP_TIMEOUT),
            Step("placement database",
                 [[*manage, "placement", "--config-file", str(config["placement"]), "db", "sync"]],
                 logs / "setup-placement.log", env, SETUP_TIMEOUT),
        ]
        if block_storage:
            # Cinder's migrations run on SQLite (unlike Neutron's).
            steps.append(Step(
                "cinder database",
                [[*manage, "cinder", "--config-file", str(config["cinder"]), "db", "sync"]],
                logs / "setup-cinder.log", env, SETUP_TIMEOUT))
        for step in steps:
            step.start()
        return steps

    def _service(self, python: Path, name: str, port: int, layout: dict[str, Path],
                 env: dict[str, str], *extra: str) -> Service:
        command = [str(python), str(SERVICES_DIR / f"run_{name}.py"),
                   "--config-dir", str(layout[name] / "etc"), "--port", str(port),
                   "--request-log", str(layout["request_log"]), *extra]
        service = Service(name, command, port, layout["logs"] / f"{name}.log", env)
        self._services.append(service)
        return service.start()

    def _write_state(self, layout: dict[str, Path], keystone_url: str,
                     profiles: list[dict[str, Any]],
                     states: dict[str, dict[str, Any]]) -> SandboxState:
        clouds_path = clouds_yaml.write(
            self.workdir / "clouds.yaml", clouds_yaml.entries(keystone_url, profiles, states))
        for profile in profiles:
            state = states[profile["name"]]
            state["cloud"] = clouds_yaml.cloud_name(profile["name"])
            state["expect"] = seed.expected(profile, state)
        sandbox = SandboxState({
            "workdir": str(self.workdir),
            "clouds_yaml": str(clouds_path),
            "request_log": str(layout["request_log"]),
            "console_dir": str(layout["console"]),
            "admin_auth": self._admin_auth,
            "region": REGION,
            "endpoints": {service.name: service.url for service in self._services},
            "pids": self.pids(),
            "profiles": states,
        })
        sandbox.save(self.workdir / STATE_FILE)
        return sandbox

    def _admin_connection(self) -> Any:
        return connections.as_admin(self._admin_auth, REGION)


def _import_sdk() -> None:
    try:
        import openstack  # noqa: F401
    except ImportError:
        print("openstacksdk is needed to run the sandbox", file=sys.stderr)

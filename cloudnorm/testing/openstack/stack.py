"""A real OpenStack (Keystone, Glance, Neutron, Placement, Nova, Cinder) on 127.0.0.1.

    with OpenStackStack(Path("/tmp/sandbox"), ["fip-required"]) as stack:
        conn = stack.connect("fip-required")   # or any client reading stack.clouds_yaml
        conn.compute.create_server(...)

Services run from their own cached virtualenv (see ``install``), each as a child process in
its own session with its state, configuration and log under the work directory. Their
databases are on a PostgreSQL server of the sandbox's own (``postgres``), as on a real
cloud; in-process messaging, a fake hypervisor and a fake volume backend keep the footprint
to six service processes and the database server. Cinder runs only when a profile has
block storage (``block_storage``, true by default).

Where PostgreSQL cannot be installed or started, or ``CLOUDNORM_SANDBOX_DATABASE=sqlite``
asks for it, the services keep their data in SQLite files instead: a fallback that stalls
under concurrent requests, announced as a warning in the log and kept in ``sandbox.json``
(``database``).
"""

from __future__ import annotations

import atexit
import hashlib
import os
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
    postgres,
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
# One PostgreSQL database per service, as devstack makes them; Nova's are its API
# database, cell0 (servers that were never scheduled) and cell1 (the compute host's cell).
DATABASES = {"keystone": "keystone", "glance": "glance", "neutron": "neutron",
             "placement": "placement", "nova_api": "nova_api", "nova_cell0": "nova_cell0",
             "nova": "nova", "cinder": "cinder"}
#: "sqlite" makes the sandbox use its SQLite fallback on purpose; "postgresql" the default.
DATABASE_VARIABLE = "CLOUDNORM_SANDBOX_DATABASE"
# The databases each setup step migrates, which a schema cache can stand in for (Keystone's
# setup also makes this start's admin and endpoints: it always runs).
SCHEMA_STEPS = {"glance": ["glance"], "neutron": ["neutron"], "placement": ["placement"],
                "nova": ["nova_api", "nova_cell0", "nova"], "cinder": ["cinder"]}
# Bump to drop every cached schema (postgres.SchemaCache) when how it is made changes.
SCHEMA_CACHE_VERSION = "1"
MARKER = ".cloudnorm-sandbox"
# Everything this class creates in a work directory; only these are cleared on reuse.
OWNED_ENTRIES = (*SERVICE_NAMES, "postgres", "logs", "console", "tmp", "clouds.yaml",
                 STATE_FILE, "requests.jsonl")
SETUP_TIMEOUT = 180.0
READY_TIMEOUT = 120.0


class OpenStackStack:
    """Start with :meth:`start` (or ``with``); :meth:`stop` leaves no process behind."""

    def __init__(self, workdir: Path, profiles: list[str] | None = None,
                 python: Path | None = None, database: str | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self._requested_profiles = list(profiles or [])
        self._python = python
        self._database_choice = (database or os.environ.get(DATABASE_VARIABLE)
                                 or "postgresql").lower()
        if self._database_choice not in ("postgresql", "sqlite"):
            raise ValueError(f"database must be 'postgresql' or 'sqlite', not "
                             f"{self._database_choice!r} (from {DATABASE_VARIABLE}?)")
        self._postgres: postgres.PostgresServer | None = None
        self._schema_cache: postgres.SchemaCache | None = None
        # Setup steps whose databases came from the schema cache, and those that migrate.
        self._schemas_loaded: set[str] = set()
        self._schemas_migrated: set[str] = set()
        #: What holds the services' data: ``engine`` ("postgresql" or "sqlite"), and for
        #: the fallback ``warning``; also in sandbox.json.
        self.database: dict[str, Any] = {}
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
        """The services' processes and the database server's."""
        pids = [service.process.pid for service in self._services if service.process]
        if self._postgres is not None and self._postgres.process is not None:
            pids.append(self._postgres.process.pid)
        return pids

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
        # The database last: the services may write until they are gone.
        if self._postgres is not None:
            self._postgres.stop()
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
        with timed("database server"):
            databases = self._start_database(layout, block_storage)
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
            "venv": Path(python).parent.parent, "glance_url": urls["glance"]}, databases)
        env = child_environment({"TMPDIR": str(layout["tmp"])})

        def service(name: str, *extra: str) -> Service:
            return self._service(python, name, ports[name], layout, env, *extra)

        with timed("databases and keys created"):
            self._steps = self._setup_steps(python, layout, configs_by_service, keystone_url,
                                            password, env, block_storage, databases)
            wait_steps(self._steps)
        self._save_schemas()
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
        if self._postgres is not None:
            self._postgres.check_alive()

        self.state = self._write_state(layout, keystone_url, profiles, states)
        self.timings["total"] = time.monotonic() - began
        say(f"sandbox ready in {self.timings['total']:.1f}s: {self.state.clouds_yaml}")
        if self.database.get("warning"):
            # Once more at the end, where a person reading the log looks.
            say(self.database["warning"])

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

    def _start_database(self, layout: dict[str, Path], block_storage: bool) -> dict[str, str]:
        """Start the database server; the SQLAlchemy URL of each database by name.

        Falls back to SQLite, loudly, when PostgreSQL cannot be had or is declined.
        """
        wanted = [name for name in DATABASES.values() if block_storage or name != "cinder"]
        reason = ""
        if self._database_choice == "sqlite":
            reason = f"{DATABASE_VARIABLE}=sqlite asked for it"
        else:
            server = postgres.PostgresServer(self.workdir / "postgres",
                                             layout["logs"] / "postgres.log")
            self._postgres = server
            try:
                server.start(wanted)
            except postgres.PostgresUnavailable as error:
                server.stop()
                self._postgres = None
                reason = str(error)
            else:
                self.database = {**server.describe(), "databases": wanted}
                say(f"PostgreSQL {server.version}: databases {', '.join(wanted)} "
                    f"(psql -h {server.socket_dir} -U {postgres.ROLE} DATABASE)")
                self._load_schemas(server, wanted)
                return {name: server.url(name) for name in wanted}
        warning = ("WARNING: the OpenStack services keep their data in SQLite, not PostgreSQL: "
                   + reason.splitlines()[0] + ". SQLite serves one writer at a time: "
                   "concurrent requests (several servers created at once) can stall for "
                   "minutes, which no real cloud does. Install PostgreSQL with `python -m "
                   f"cloudnorm.testing install` as root (apt-get install -y {postgres.PACKAGE}).")
        self.database = {"engine": "sqlite", "warning": warning, "reason": reason}
        say(warning)
        urls = {name: f"sqlite:///{layout[service] / service}.db?timeout=30"
                for service, name in (("keystone", "keystone"), ("glance", "glance"),
                                      ("neutron", "neutron"), ("placement", "placement"),
                                      ("cinder", "cinder"))}
        # Nova's harness keeps its own in-memory SQLite databases (services/run_nova.py).
        urls.update(nova_api="sqlite://", nova_cell0="sqlite://", nova="sqlite://")
        return urls

    def _load_schemas(self, server: postgres.PostgresServer, wanted: list[str]) -> None:
        """Load the migrated databases a former start kept; the rest migrate as usual."""
        cache = postgres.SchemaCache(schema_cache_dir(server.version))
        self._schema_cache = cache
        steps = {step: names for step, names in SCHEMA_STEPS.items()
                 if all(name in wanted for name in names)}
        loadable = [step for step, names in steps.items() if cache.has(names)]
        names = [name for step in loadable for name in steps[step]]
        if names:
            try:
                cache.load(server, names)
            except (OSError, postgres.PostgresUnavailable) as error:
                say(f"schema cache {cache.directory} not usable ({error}); migrating instead")
                server.run_sql("".join(f'DROP DATABASE "{name}"; CREATE DATABASE "{name}";\n'
                                       for name in names))
                loadable = []
        self._schemas_loaded = set(loadable)
        self._schemas_migrated = set(steps) - self._schemas_loaded
        self.database["schemas_from_cache"] = sorted(self._schemas_loaded)

    def _save_schemas(self) -> None:
        """Keep what this start migrated for the next (best effort)."""
        if self._postgres is None or self._schema_cache is None or not self._schemas_migrated:
            return
        names = [name for step in sorted(self._schemas_migrated) for name in SCHEMA_STEPS[step]]
        try:
            self._schema_cache.save(self._postgres, names)
        except (OSError, postgres.PostgresUnavailable) as error:
            say(f"could not keep the migrated schemas in {self._schema_cache.directory}: "
                f"{error}")

    @staticmethod
    def _render_configs(layout: dict[str, Path], values: dict[str, Any],
                        databases: dict[str, str]) -> dict[str, Path]:
        def render(service: str, template: str) -> Path:
            extra = {"database_url": databases.get(service, "")}
            if service == "nova":
                extra["nova_api_database_url"] = databases["nova_api"]
            return configs.render(template, layout[service] / "etc" / template,
                                  state_dir=layout[service], **values, **extra)

        return {
            "keystone": render("keystone", "keystone.conf"),
            "glance": render("glance", "glance-api.conf"),
            "neutron": render("neutron", "neutron.conf"),
            "placement": render("placement", "placement.conf"),
            "nova": render("nova", "nova.conf"),
            "cinder": render("cinder", "cinder.conf"),
        }

    def _setup_steps(self, python: Path, layout: dict[str, Path], config: dict[str, Path],
                     keystone_url: str, password: str, env: dict[str, str],
                     block_storage: bool, databases: dict[str, str]) -> list[Step]:
        manage = [str(python), str(SERVICES_DIR / "manage.py")]
        logs = layout["logs"]
        bootstrap = [f"--bootstrap-password={password}", f"--bootstrap-region-id={REGION}",
                     f"--bootstrap-admin-url={keystone_url}",
                     f"--bootstrap-internal-url={keystone_url}",
                     f"--bootstrap-public-url={keystone_url}"]
        steps = [
            Step("keystone setup",
                 [[str(python), str(SERVICES_DIR / "keystone_setup.py"), str(config["keystone"]),
                   "--", *bootstrap]],
                 logs / "setup-keystone.log", env, SETUP_TIMEOUT),
        ]
        schema_steps = {
            "glance": [*manage, "glance", "--config-file", str(config["glance"]), "db_sync"],
            # Neutron's migrations on PostgreSQL, its models on SQLite (see the script).
            "neutron": [str(python), str(SERVICES_DIR / "neutron_schema.py"), "--config-file",
                        str(config["neutron"])],
            "placement": [*manage, "placement", "--config-file", str(config["placement"]),
                          "db", "sync"],
        }
        if not databases["nova_api"].startswith("sqlite"):
            # On SQLite, Nova's harness makes its in-memory databases itself.
            schema_steps["nova"] = [str(python), str(SERVICES_DIR / "nova_setup.py"),
                                    str(config["nova"]), databases["nova_cell0"]]
        if block_storage:
            # Cinder's migrations run on SQLite too (unlike Neutron's).
            schema_steps["cinder"] = [*manage, "cinder", "--config-file", str(config["cinder"]),
                                      "db", "sync"]
        for name, command in schema_steps.items():
            if name not in self._schemas_loaded:
                steps.append(Step(f"{name} database", [command],
                                  logs / f"setup-{name}.log", env, SETUP_TIMEOUT))
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
            "database": self.database,
            "profiles": states,
        })
        sandbox.save(self.workdir / STATE_FILE)
        return sandbox

    def _admin_connection(self) -> Any:
        return connections.as_admin(self._admin_auth, REGION)


def schema_cache_dir(postgres_version: str) -> Path:
    """Where migrated schemas are kept: named by everything they depend on."""
    digest = hashlib.sha256()
    for part in (SCHEMA_CACHE_VERSION, install.environment_key(), postgres_version):
        digest.update(part.encode() + b"\0")
    for script in ("neutron_schema.py", "nova_setup.py"):
        digest.update((SERVICES_DIR / script).read_bytes())
    return install.cache_dir() / f"postgres-schemas-{digest.hexdigest()[:12]}"


def _import_sdk() -> None:
    try:
        import openstack  # noqa: F401
    except ImportError:
        print("openstacksdk is needed to run the sandbox", file=sys.stderr)

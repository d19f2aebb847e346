"""The sandbox's database server: a throw-away PostgreSQL cluster of its own.

Every OpenStack service keeps its data in its own database of one PostgreSQL server, as
devstack and production deployments do (SQLite cannot serve concurrent writers: a few
parallel server creates stalled Nova's API for minutes). The cluster lives in
``<workdir>/postgres``: made with ``initdb`` on every start, answering only on a unix
socket in that directory (no TCP port), stopped with the sandbox. It is a test database
and set up as one: ``fsync``, ``synchronous_commit`` and ``full_page_writes`` are off and
its buffers are small, so a crash of the machine may lose or corrupt it, which does not
matter for data that is rebuilt on every start.

PostgreSQL refuses to run as root. As root, its programs run as an unprivileged user of a
user namespace of their own (``unshare --user``): the files stay in the work directory
(which the ``postgres`` system user may not be able to enter) and the server has no
capability. Its socket directory is private (mode 0700), so only the sandbox's owner can
connect; inside, authentication is ``trust``.

The server is Debian's ``postgresql-15`` package; :func:`ensure_installed` installs it
(``python -m cloudnorm.testing install`` does, as root). Where it cannot be installed or
started the sandbox falls back to SQLite and says so (see ``stack.py``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from cloudnorm.testing.openstack.processes import log_tail

PACKAGE = "postgresql-15"
#: Where Debian's packages put each major version's programs.
LIB_DIR = Path("/usr/lib/postgresql")
#: The cluster's superuser, as which every service connects.
ROLE = "cloudnorm"
PORT = 5432  # names the socket file only: the server listens on no TCP port
#: A unix socket path longer than this does not fit in ``sockaddr_un``.
MAX_SOCKET_PATH = 100
APT_TIMEOUT = 600.0
COMMAND_TIMEOUT = 60.0
START_TIMEOUT = 30.0
STOP_GRACE = 10.0
#: An unprivileged uid and gid for the server inside its user namespace (when run as root).
NAMESPACE_ID = 1000

#: Appended to postgresql.conf: a small, fast, throw-away server.
SETTINGS = {
    # Nothing survives a crash of the machine, and nothing needs to.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    # Small: a few hundred MB of OpenStack metadata at most.
    "shared_buffers": "16MB",
    "work_mem": "4MB",
    "maintenance_work_mem": "16MB",
    # Every service process keeps a pool per database (oslo.db: 5, plus 50 overflow).
    "max_connections": "300",
    # No parallel query workers or JIT for tiny tables.
    "max_parallel_workers_per_gather": "0",
    "jit": "off",
    # The socket in the cluster's directory only; no TCP listener at all.
    "listen_addresses": "''",
    "unix_socket_permissions": "0700",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "log_line_prefix": "'%m [%p] %d '",
    "log_min_duration_statement": "-1",
    # A deadlock between services is worth a line in the log.
    "log_lock_waits": "on",
    "deadlock_timeout": "1s",
}


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed, cannot be installed, or would not start; says why."""


def bin_dir() -> Path | None:
    """The newest installed major version's program directory, or None."""
    versions = []
    for entry in LIB_DIR.glob("*/bin"):
        if (entry / "initdb").is_file() and (entry / "postgres").is_file() \
                and (entry / "psql").is_file() and entry.parent.name.isdigit():
            versions.append((int(entry.parent.name), entry))
    return max(versions)[1] if versions else None


def version() -> str:
    found = bin_dir()
    if found is None:
        return ""
    result = subprocess.run([str(found / "postgres"), "--version"], capture_output=True,
                            text=True, timeout=COMMAND_TIMEOUT, check=False)
    match = re.search(r"(\d+(?:\.\d+)*)", result.stdout)
    return match.group(1) if match else result.stdout.strip()


def ensure_installed(timeout: float = APT_TIMEOUT) -> Path:
    """The program directory of PostgreSQL, installed with apt-get if it is missing."""
    found = bin_dir()
    if found is not None:
        return found
    from cloudnorm.testing.dataplane.install import InstallError, apt_install

    try:
        apt_install([PACKAGE], timeout)
    except InstallError as error:
        raise PostgresUnavailable(f"cannot install {PACKAGE}: {error}") from error
    found = bin_dir()
    if found is None:
        raise PostgresUnavailable(f"apt-get installed {PACKAGE} but initdb/postgres are "
                                  f"still missing under {LIB_DIR}")
    return found


def _unprivileged(command: list[str]) -> list[str]:
    """``command`` as run by the server's user: itself when not root, else a user of a new
    user namespace. It receives SIGTERM if the sandbox's process dies (a smart shutdown,
    over once the services, which end with that process too, have hung up): not SIGINT,
    which a shell leaves ignored in what it starts in the background (``sandbox up &``),
    and an ignored signal stays ignored through every exec."""
    prefix = ["setpriv", "--pdeathsig", "TERM", "--"]
    if os.geteuid() != 0:
        return prefix + command
    return prefix + ["unshare", "--user", f"--map-user={NAMESPACE_ID}",
                     f"--map-group={NAMESPACE_ID}", "--", *command]


class PostgresServer:
    """One cluster in ``directory``: :meth:`start` makes and starts it, :meth:`stop` ends it.

    ``url(name)`` is the SQLAlchemy URL of database ``name`` for the services.
    """

    def __init__(self, directory: Path, log: Path) -> None:
        self.directory = Path(directory)
        self.data_dir = self.directory / "data"
        self.log = Path(log)
        self.socket_dir = self.directory
        self._own_socket_dir = False
        self.process: subprocess.Popen | None = None
        self.version = ""
        self._bin: Path | None = None

    # -- what clients use --------------------------------------------------------------

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{ROLE}@/{database}?host={self.socket_dir}"

    def psql_command(self, database: str = "postgres") -> list[str]:
        """How a person looks inside: ``psql`` on this cluster's socket."""
        assert self._bin is not None
        return [str(self._bin / "psql"), "-h", str(self.socket_dir), "-p", str(PORT),
                "-U", ROLE, "-d", database]

    def describe(self) -> dict[str, object]:
        return {
            "engine": "postgresql", "version": self.version, "directory": str(self.directory),
            "data_dir": str(self.data_dir), "socket_dir": str(self.socket_dir),
            "log": str(self.log), "role": ROLE,
            "pid": self.process.pid if self.process else None,
            "psql": " ".join(self.psql_command()),
        }

    # -- life cycle -------------------------------------------------------------------

    def start(self, databases: list[str], timeout: float = START_TIMEOUT) -> PostgresServer:
        """Make a new cluster, start it, create ``databases``; raises PostgresUnavailable."""
        self._bin = bin_dir()
        if self._bin is None:
            raise PostgresUnavailable(f"PostgreSQL is not installed (no {LIB_DIR}/*/bin/initdb);"
                                      f" run `python -m cloudnorm.testing install` as root or "
                                      f"apt-get install -y {PACKAGE}")
        self.version = self._bin.parent.name
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self._choose_socket_dir()
        deadline = time.monotonic() + timeout
        self._run("initdb", [str(self._bin / "initdb"), "--no-sync", "--auth=trust",
                             f"--username={ROLE}", "--encoding=UTF8", "--locale=C",
                             f"--pgdata={self.data_dir}"], deadline)
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# cloudnorm sandbox: a throw-away test cluster (see postgres.py)\n")
            for key, value in SETTINGS.items():
                conf.write(f"{key} = {value}\n")
            conf.write(f"port = {PORT}\n")
            conf.write(f"unix_socket_directories = '{self.socket_dir}'\n")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                _unprivileged([str(self._bin / "postgres"), "-D", str(self.data_dir)]),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self._wait_ready(deadline)
        statements = [f'CREATE DATABASE "{name}"' for name in databases]
        self._run("create the databases",
                  [*self.psql_command(), "-q", "-v", "ON_ERROR_STOP=1",
                   *[arg for statement in statements for arg in ("-c", statement)]], deadline)
        self.version = self._server_version(deadline) or self.version
        return self

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Fast shutdown (SIGINT: clients are disconnected), SIGKILL after ``grace``."""
        process = self.process
        if process is not None and process.poll() is None:
            try:
                os.kill(process.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                # Not reaped yet, so the group is still certainly ours: the server and
                # every backend it forked.
                _signal_group(process.pid, signal.SIGKILL)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        if self._own_socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self._own_socket_dir = False

    def run_sql(self, script: str, timeout: float = COMMAND_TIMEOUT) -> None:
        """Run a psql script (SQL and ``\\connect``) on this cluster; stop at an error."""
        try:
            result = subprocess.run([*self.psql_command(), "-q", "-v", "ON_ERROR_STOP=1",
                                     "-f", "-"], input=script, capture_output=True, text=True,
                                    timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise PostgresUnavailable(f"PostgreSQL: psql did not finish in {timeout:.0f}s") \
                from None
        if result.returncode != 0:
            raise PostgresUnavailable(f"PostgreSQL: psql failed: {result.stderr.strip()[-2000:]}")

    def dump(self, database: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """``pg_dump`` of one database as SQL, without owners or privileges."""
        assert self._bin is not None
        try:
            result = subprocess.run(
                [str(self._bin / "pg_dump"), "-h", str(self.socket_dir), "-p", str(PORT),
                 "-U", ROLE, "--no-owner", "--no-privileges", database],
                capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise PostgresUnavailable(f"PostgreSQL: pg_dump {database} did not finish in "
                                      f"{timeout:.0f}s") from None
        if result.returncode != 0:
            raise PostgresUnavailable(f"PostgreSQL: pg_dump {database} failed: "
                                      f"{result.stderr.strip()[-2000:]}")
        return result.stdout

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise PostgresUnavailable(f"PostgreSQL exited with status {self.process.returncode}"
                                      f":\n{log_tail(self.log)}")

    # -- pieces -----------------------------------------------------------------------

    def _choose_socket_dir(self) -> None:
        socket_path = self.directory / f".s.PGSQL.{PORT}"
        if len(str(socket_path)) <= MAX_SOCKET_PATH:
            self.socket_dir = self.directory
            return
        # A deep work directory: the socket goes to a short private directory instead.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="cloudnorm-pg-"))
        self._own_socket_dir = True

    def _run(self, what: str, command: list[str], deadline: float) -> None:
        with open(self.log, "ab") as log:
            log.write(("$ " + " ".join(command) + "\n").encode())
            log.flush()
            # Only the server must be unprivileged; initdb refuses root as well.
            if what == "initdb":
                command = _unprivileged(command)
            try:
                result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        timeout=max(1.0, deadline - time.monotonic()),
                                        check=False)
            except subprocess.TimeoutExpired:
                raise PostgresUnavailable(f"PostgreSQL: {what} did not finish in time:\n"
                                          + log_tail(self.log)) from None
            except OSError as error:
                raise PostgresUnavailable(f"PostgreSQL: cannot {what}: {error}") from error
        if result.returncode != 0:
            raise PostgresUnavailable(f"PostgreSQL: {what} failed with exit status "
                                      f"{result.returncode}:\n{log_tail(self.log)}")

    def _wait_ready(self, deadline: float) -> None:
        # postmaster.pid's eighth line is the server's state; "ready" once it takes clients.
        pid_file = self.data_dir / "postmaster.pid"
        socket_file = self.socket_dir / f".s.PGSQL.{PORT}"
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise PostgresUnavailable(
                    f"PostgreSQL exited with status {self.process.returncode} while "
                    f"starting:\n{log_tail(self.log)}")
            try:
                lines = pid_file.read_text().splitlines()
            except OSError:
                lines = []
            if len(lines) >= 8 and lines[7].strip() == "ready" and socket_file.exists():
                return
            if time.monotonic() > deadline:
                raise PostgresUnavailable("PostgreSQL did not become ready in time:\n"
                                          + log_tail(self.log))
            time.sleep(0.05)

    def _server_version(self, deadline: float) -> str:
        try:
            result = subprocess.run([*self.psql_command(), "-Atc", "SHOW server_version"],
                                    capture_output=True, text=True, check=False,
                                    timeout=max(1.0, deadline - time.monotonic()))
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return result.stdout.strip().split(" ")[0] if result.returncode == 0 else ""


class SchemaCache:
    """Migrated databases kept between starts, as plain SQL dumps, one per database.

    Running every service's migrations costs a Python process each (Nova's, Neutron's and
    Cinder's several seconds of CPU) on every start. Their result only changes with the
    services' versions, so after a start that migrated a database its dump is kept in
    ``directory`` (named by everything the schema depends on: the lock file, the
    interpreter, PostgreSQL's version and the schema scripts) and later starts load it
    instead. Keystone is never cached: its setup also creates this start's admin
    password and endpoints. The socket directory in Nova's cell mappings becomes a
    placeholder in the dump and this start's directory when loaded.
    """

    PLACEHOLDER = "@@CLOUDNORM_POSTGRES_SOCKET_DIR@@"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, database: str) -> Path:
        return self.directory / f"{database}.sql"

    def has(self, databases: list[str]) -> bool:
        return all(self._path(name).is_file() for name in databases)

    def load(self, server: PostgresServer, databases: list[str],
             timeout: float = COMMAND_TIMEOUT) -> None:
        script = []
        for name in databases:
            text = self._path(name).read_text(encoding="utf-8")
            script.append(f"\\connect {name}\n")
            script.append(text.replace(self.PLACEHOLDER, str(server.socket_dir)))
        server.run_sql("".join(script), timeout)

    def save(self, server: PostgresServer, databases: list[str],
             timeout: float = COMMAND_TIMEOUT) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in databases:
            text = server.dump(name, timeout)
            text = text.replace(str(server.socket_dir), self.PLACEHOLDER)
            fd, staging = tempfile.mkstemp(prefix=f".{name}-", suffix=".sql",
                                           dir=self.directory)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            # Whole files only: another start may be reading the cache right now.
            os.replace(staging, self._path(name))


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass

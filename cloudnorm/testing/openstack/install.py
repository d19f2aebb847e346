"""The OpenStack services' own virtualenv, built once per lock file and cached.

The services need their own environment: their pins (SQLAlchemy, eventlet, oslo.*) must not
meet the application's. The environment lives in
``${CLOUDNORM_CACHE_DIR:-~/.cache/cloudnorm}/openstack-<hash>``, where the hash covers the lock
file and the interpreter, so changing either builds a fresh one next to the old.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cloudnorm.testing.progress import say as _say

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
CONSTRAINTS = HERE / "constraints.txt"
COMPLETE_MARKER = ".cloudnorm-complete"
LOCK_WAIT_SECONDS = 20 * 60
PIP_TIMEOUT_SECONDS = 20 * 60
HEARTBEAT_SECONDS = 10


class InstallError(RuntimeError):
    """The services' environment could not be built; the message says why."""


def cache_dir() -> Path:
    configured = os.environ.get("CLOUDNORM_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "cloudnorm"


def environment_key(base_python: str = sys.executable) -> str:
    digest = hashlib.sha256()
    digest.update(REQUIREMENTS.read_bytes())
    digest.update(CONSTRAINTS.read_bytes())
    digest.update(_interpreter_tag(base_python).encode())
    return digest.hexdigest()[:12]


def venv_dir(base_python: str = sys.executable) -> Path:
    return cache_dir() / f"openstack-{environment_key(base_python)}"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def is_installed(base_python: str = sys.executable) -> bool:
    venv = venv_dir(base_python)
    return (venv / COMPLETE_MARKER).is_file() and venv_python(venv).exists()


def ensure_installed(base_python: str = sys.executable) -> Path:
    """Return the services' interpreter, building its environment first if needed."""
    venv = venv_dir(base_python)
    if is_installed(base_python):
        return venv_python(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(venv.with_name(venv.name + ".lock")):
        # Another process may have finished the build while this one waited.
        if is_installed(base_python):
            return venv_python(venv)
        _build(base_python, venv)
    return venv_python(venv)


def _build(base_python: str, venv: Path) -> None:
    started = time.monotonic()
    if venv.exists():
        # Left by a build that was killed before it finished.
        shutil.rmtree(venv)
    staging = Path(tempfile.mkdtemp(prefix=venv.name + ".building-", dir=venv.parent))
    try:
        _say(f"building the OpenStack services' environment in {venv} (about a minute, once)")
        _run([base_python, "-m", "venv", str(staging)], staging / "venv.log",
             "create the virtualenv")
        _run(
            [str(venv_python(staging)), "-m", "pip", "install", "--no-input",
             "--disable-pip-version-check", "-r", str(REQUIREMENTS), "-c", str(CONSTRAINTS)],
            staging / "pip.log",
            "install the OpenStack services with pip",
        )
        (staging / COMPLETE_MARKER).write_text(environment_key(base_python) + "\n")
        # The environment never runs its console scripts (their shebangs would name the
        # staging path); the interpreter finds its prefix from pyvenv.cfg, so a rename is safe.
        staging.rename(venv)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _say(f"OpenStack services' environment ready after {time.monotonic() - started:.0f}s")


def _run(command: list[str], log_path: Path, what: str) -> None:
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        next_heartbeat = started + HEARTBEAT_SECONDS
        while process.poll() is None:
            now = time.monotonic()
            if now - started > PIP_TIMEOUT_SECONDS:
                process.kill()
                process.wait()
                raise InstallError(f"could not {what}: gave up after {PIP_TIMEOUT_SECONDS}s\n"
                                   + _tail(log_path))
            if now >= next_heartbeat:
                _say(f"  ... {what}: {now - started:.0f}s")
                next_heartbeat = now + HEARTBEAT_SECONDS
            time.sleep(0.2)
    if process.returncode != 0:
        raise InstallError(
            f"could not {what} (exit status {process.returncode}); the last lines of its "
            f"output follow. Check network access to the package index.\n{_tail(log_path)}"
        )


class _exclusive_lock:
    """An flock held while building, so concurrent test runs build only once."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd = -1

    def __enter__(self):
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        announced = False
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self._fd)
                    raise InstallError(
                        f"another process has held {self._path} for over "
                        f"{LOCK_WAIT_SECONDS}s; if none is running, delete that file"
                    ) from None
                if not announced:
                    _say("waiting for another process that is building the same environment")
                    announced = True
                time.sleep(0.5)

    def __exit__(self, *exc_info):
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


def _interpreter_tag(base_python: str) -> str:
    if base_python == sys.executable:
        version = "{}.{}".format(*sys.version_info[:2])
    else:
        version = subprocess.run(
            [base_python, "-c", "import sys; print('{}.{}'.format(*sys.version_info[:2]))"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()
    return f"cpython-{version}-{platform.machine()}"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])

"""Child processes of the sandbox: one-shot setup commands and long-running services.

Every child gets its own session, so stopping it also stops anything it spawned; every wait
is bounded, and a failure carries the tail of the child's log.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"
# Proxy settings would route loopback traffic elsewhere; the children must never use them.
_PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


class ServiceError(RuntimeError):
    """A service or setup step failed; the message includes the end of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key.lower() not in _PROXY_VARIABLES and not key.startswith("OS_")
           and key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


class Step:
    """A one-shot command (schema creation, key setup) running in the background."""

    def __init__(self, name: str, commands: Sequence[Sequence[str]], log: Path,
                 env: dict[str, str], timeout: float) -> None:
        self.name = name
        self._commands = [list(command) for command in commands]
        self._log = log
        self._env = env
        self._timeout = timeout
        self._process: subprocess.Popen | None = None
        self._deadline = 0.0

    def start(self) -> Step:
        self._deadline = time.monotonic() + self._timeout
        self._next()
        return self

    def _next(self) -> None:
        command = self._commands.pop(0)
        with open(self._log, "ab") as log:
            log.write(("$ " + " ".join(command) + "\n").encode())
            log.flush()
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self._env, start_new_session=True,
            )

    def done(self) -> bool:
        """True once every command has succeeded; raises if one failed or overran."""
        assert self._process is not None
        while True:
            code = self._process.poll()
            if code is None:
                if time.monotonic() > self._deadline:
                    self.kill()
                    raise ServiceError(f"{self.name} did not finish within {self._timeout:.0f}s:\n"
                                       + log_tail(self._log))
                return False
            if code != 0:
                raise ServiceError(f"{self.name} failed with exit status {code}:\n"
                                   + log_tail(self._log))
            if not self._commands:
                return True
            self._next()

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            _signal_group(self._process, signal.SIGKILL)
            self._process.wait(timeout=10)


def wait_steps(steps: Sequence[Step]) -> None:
    pending = list(steps)
    try:
        while pending:
            pending = [step for step in pending if not step.done()]
            if pending:
                time.sleep(0.05)
    except BaseException:
        for step in steps:
            step.kill()
        raise


class Service:
    """A long-running HTTP service on loopback."""

    def __init__(self, name: str, command: Sequence[str], port: int, log: Path,
                 env: dict[str, str]) -> None:
        self.name = name
        self.port = port
        self.log = log
        self._command = list(command)
        self._env = env
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> Service:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self._command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self._env, start_new_session=True,
            )
        return self

    def is_ready(self) -> bool:
        """True once the service answers HTTP; raises if its process has died."""
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            raise ServiceError(f"{self.name} exited with status {code} while starting:\n"
                               + log_tail(self.log))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.url + "/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer (401, 404, 300) means it is serving
        except (OSError, urllib.error.URLError):
            return False

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ServiceError(f"{self.name} exited with status {self.process.returncode}:\n"
                               + log_tail(self.log))

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            _signal_group(self.process, signal.SIGTERM)

    def wait_or_kill(self, timeout: float) -> None:
        process = self.process
        if process is None:
            return
        try:
            process.wait(timeout=max(timeout, 0.01))
        except subprocess.TimeoutExpired:
            # The leader is not reaped yet, so the group id is still certainly ours.
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=10)


def stop_all(services: Sequence[Service], grace: float = 10.0) -> None:
    """SIGTERM every service at once, then SIGKILL whatever is still running after ``grace``."""
    for service in services:
        service.terminate()
    deadline = time.monotonic() + grace
    for service in services:
        service.wait_or_kill(deadline - time.monotonic())


def wait_ready(services: Sequence[Service], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(services)
    while pending:
        pending = [service for service in pending if not service.is_ready()]
        if not pending:
            return
        if time.monotonic() > deadline:
            service = pending[0]
            raise ServiceError(f"{service.name} did not answer on {service.url} within "
                               f"{timeout:.0f}s:\n" + log_tail(service.log))
        time.sleep(0.1)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass

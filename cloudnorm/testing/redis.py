"""A throw-away Redis server on 127.0.0.1, for tests of the shared discovery cache.

``python -m cloudnorm.testing.redis install`` installs Debian's redis-server
unless it is there; :class:`RedisServer` runs one on a free loopback port with
its own directory and no persistence, and stops it::

    with RedisServer(tmp_path) as server:
        ...  # server.url == "redis://127.0.0.1:PORT/0"
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from cloudnorm.testing.dataplane.install import apt_install

REDIS_SERVER = Path("/usr/bin/redis-server")
PACKAGE = "redis-server"
APT_TIMEOUT = 600
START_TIMEOUT = 10.0


class InstallError(RuntimeError):
    """redis-server could not be made available."""


def executable() -> str | None:
    found = shutil.which("redis-server")
    return found or (str(REDIS_SERVER) if REDIS_SERVER.exists() else None)


def ensure_redis(timeout: float = APT_TIMEOUT) -> str:
    """The path of redis-server, installed with apt-get if it is missing."""
    found = executable()
    if found:
        return found
    apt_install([PACKAGE], timeout)
    found = executable()
    if not found:
        raise InstallError("apt-get finished but redis-server is still missing")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ping(port: int, timeout: float = 1.0) -> bool:
    """True when a Redis server answers PING on 127.0.0.1:port (no client library needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """redis-server on 127.0.0.1 with a free port, its own directory, no persistence."""

    def __init__(self, workdir: Path | str | None = None) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="cloudnorm-redis-"))
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.workdir / "redis.log"

    def start(self) -> RedisServer:
        binary = ensure_redis()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Another program may take the port between choosing and binding it:
        # try a few ports before giving up.
        for _ in range(3):
            self.port = _free_port()
            self.process = subprocess.Popen(
                [binary, "--bind", "127.0.0.1", "--port", str(self.port),
                 "--dir", str(self.workdir), "--save", "", "--appendonly", "no",
                 "--daemonize", "no", "--protected-mode", "yes",
                 "--logfile", str(self.log)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and self.process.poll() is None:
                if ping(self.port):
                    return self
                time.sleep(0.05)
            self.stop()
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT:.0f}s:\n{tail}")

    def kill(self) -> None:
        """Stop the server at once (SIGKILL), as a crash or a lost host would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudnorm.testing.redis")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="install redis-server if missing")
    parser.parse_args(argv)
    try:
        path = ensure_redis()
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"redis-server is installed: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

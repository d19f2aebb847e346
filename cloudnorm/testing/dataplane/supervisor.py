"""A node's init: builds its root filesystem, holds its namespaces, runs its sshd.

Started as ``unshare -m -u -p --fork --kill-child ... python -I -S supervisor.py SPEC``
so that it is PID 1 of the node's PID namespace: when it exits, the kernel ends
every process of the node, login sessions included, and the node's mounts go
with its mount namespace. It uses only the standard library and is run by
path, because after setup it lives chrooted in the node's root.

Control: one JSON object per line on stdin, one JSON reply per line on stdout.
End of input means the owner is gone, and the node shuts down.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

SSHD_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


class Stop(Exception):
    pass


def mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"mount {' '.join(args)}: {proc.stderr.strip()}")


def build_root(spec: dict) -> None:
    root = spec["root"]
    # A copy-on-write view of the machine: the node starts as the same
    # "image", and whatever it changes lands in its own upper directory.
    mount("-t", "overlay", "overlay", "-o",
          f"lowerdir=/,upperdir={spec['upper']},workdir={spec['work']}", root)
    # A proc of its own shows only the node's processes, like a machine would.
    mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", f"{root}/proc")
    mount("--rbind", "/dev", f"{root}/dev")
    mount("-t", "tmpfs", "-o", "mode=755,nosuid,nodev", "tmpfs", f"{root}/run")
    # sshd refuses to start without its privilege separation directory.
    os.mkdir(f"{root}/run/sshd")
    os.chmod(f"{root}/run/sshd", 0o755)
    mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", f"{root}/tmp")
    for path in spec.get("hide", []):
        # The lower layer still shows the machine's files under the fleet's
        # directory, other nodes' upper directories among them.
        if os.path.isdir(root + path):
            mount("-t", "tmpfs", "-o", "ro,mode=755,size=4k", "tmpfs", root + path)


class Supervisor:
    def __init__(self, log_fd: int) -> None:
        self.log_fd = log_fd
        self.sshd_pid: int | None = None
        self.sshd_status: int | None = None
        self.buffer = b""

    def reply(self, **fields: object) -> None:
        os.write(1, (json.dumps(fields) + "\n").encode())

    def reap(self) -> None:
        # As PID 1 it inherits every orphan of the node and must collect them.
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.sshd_pid:
                self.sshd_pid = None
                self.sshd_status = os.waitstatus_to_exitcode(status)

    def start_sshd(self, argv: list[str], pidfile: str, timeout: float) -> None:
        self.reap()
        if self.sshd_pid is not None:
            self.reply(ok=True, pid=self.sshd_pid)
            return
        try:
            os.unlink(pidfile)
        except FileNotFoundError:
            pass
        self.sshd_status = None
        pid = os.posix_spawn(argv[0], argv, SSHD_ENV, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, self.log_fd, 1),
            (os.POSIX_SPAWN_DUP2, self.log_fd, 2),
        ])
        self.sshd_pid = pid
        deadline = time.monotonic() + timeout
        # sshd writes its PidFile only once every listening socket is bound.
        while time.monotonic() < deadline:
            self.reap()
            if self.sshd_pid is None:
                self.reply(ok=False, error=f"sshd exited with status {self.sshd_status}")
                return
            try:
                with open(pidfile) as f:
                    if f.read().strip() == str(pid):
                        self.reply(ok=True, pid=pid)
                        return
            except FileNotFoundError:
                pass
            time.sleep(0.005)
        self.stop_sshd(timeout=5, quiet=True)
        self.reply(ok=False, error=f"sshd did not write {pidfile} within {timeout}s")

    def stop_sshd(self, timeout: float, quiet: bool = False) -> None:
        self.reap()
        if self.sshd_pid is not None:
            pid = self.sshd_pid
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.sshd_pid is not None and time.monotonic() < deadline:
                time.sleep(0.005)
                self.reap()
            if self.sshd_pid is not None:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                self.sshd_pid = None
        if not quiet:
            self.reply(ok=True)

    def handle(self, cmd: dict) -> None:
        op = cmd.get("op")
        if op == "start-sshd":
            self.start_sshd(cmd["argv"], cmd["pidfile"], float(cmd.get("timeout", 10)))
        elif op == "stop-sshd":
            self.stop_sshd(float(cmd.get("timeout", 5)))
        elif op == "status":
            self.reap()
            self.reply(ok=True, sshd_pid=self.sshd_pid, sshd_status=self.sshd_status)
        elif op == "exit":
            raise Stop
        else:
            self.reply(ok=False, error=f"unknown operation {op!r}")

    def serve(self) -> None:
        while True:
            readable, _, _ = select.select([0], [], [], 1.0)
            self.reap()
            if not readable:
                continue
            data = os.read(0, 65536)
            if not data:
                raise Stop
            self.buffer += data
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                if line.strip():
                    self.handle(json.loads(line))


def _terminate(signum: int, frame: object) -> None:
    raise Stop


def main() -> int:
    spec = json.loads(sys.argv[1])
    log_fd = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    # PID 1 of a namespace ignores signals it has no handler for.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    supervisor = Supervisor(log_fd)
    try:
        build_root(spec)
        # The machine's proc is still mounted here, so this is our pid as the
        # owner sees it: the owner enters the node through /proc/<pid>.
        host_pid = int(os.readlink("/proc/self"))
        socket.sethostname(spec["hostname"])
        os.chroot(spec["root"])
        os.chdir("/")
    except Exception as exc:  # reported to the owner, who raises it
        supervisor.reply(ok=False, error=str(exc))
        return 1
    supervisor.reply(ok=True, host_pid=host_pid)
    try:
        supervisor.serve()
    except Stop:
        pass
    finally:
        supervisor.stop_sshd(timeout=5, quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A node's init: builds its root filesystem, holds its namespaces, runs its sshd,
and keeps its syslog.

Started as ``unshare -m -u -p --fork --kill-child ... python -I -S supervisor.py SPEC``
so that it is PID 1 of the node's PID namespace: when it exits, the kernel ends
every process of the node, login sessions included, and the node's mounts go
with its mount namespace. It uses only the standard library and is run by
path, because after setup it lives chrooted in the node's root.

Control: one JSON object per line on stdin, one JSON reply per line on stdout.
End of input means the owner is gone, and the node shuts down.

Console: the node's /dev/console is a FIFO in the node's workdir, bound over the
machine's device in the node's mount namespace only; the owner reads it (see
node.py). /dev/log is a socket this supervisor reads, for the node's syslog.

sshd: started as the node's service, and then found through its PidFile, as
sysvinit does: a ``service ssh restart`` inside the node (cloud-init's
set-passwords does one when it changes sshd's configuration) replaces it with a
daemonized sshd started from /etc/default/ssh, which this supervisor writes with
the node's listen addresses, so that it answers where the old one did.
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
SSHD = "/usr/sbin/sshd"


class Stop(Exception):
    pass


def mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"mount {' '.join(args)}: {proc.stderr.strip()}")


def build_root(spec: dict) -> None:
    root = spec["root"]
    # A copy-on-write view of the machine: the node starts as the same
    # "image", and whatever it changes lands in its own upper directory. Extra
    # lower layers (cloud-init's tree) lie over the machine's root, for nodes only.
    layers = []
    for i, source in enumerate(spec.get("lower", [])):
        # A directory under / cannot be a layer next to / itself: overlayfs refuses
        # nested layers ("overlapping lowerdir path", ELOOP). A read-only overlay
        # of it is a filesystem of its own, whose root has no ancestors to overlap.
        layer, empty = f"{spec['layers']}/{i}", f"{spec['layers']}/empty"
        os.makedirs(layer, exist_ok=True)
        os.makedirs(empty, exist_ok=True)
        mount("-t", "overlay", "overlay", "-o", f"ro,lowerdir={source}:{empty}", layer)
        layers.append(layer)
    lower = ":".join([*layers, "/"])
    mount("-t", "overlay", "overlay", "-o",
          f"lowerdir={lower},upperdir={spec['upper']},workdir={spec['work']}", root)
    # A proc of its own shows only the node's processes, like a machine would.
    mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", f"{root}/proc")
    build_dev(f"{root}/dev", spec.get("console"))
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


# Device files a node gets from the machine; /dev/tty is whichever terminal opens it.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def build_dev(dev: str, console: str | None) -> None:
    """The node's /dev, as a container runtime makes one: a tmpfs with the harmless
    devices, ptys of its own, and its own /dev/console and /dev/log. None of the
    machine's disks is there for a module to format or mount, and sockets and the
    console the node creates are the node's, not files in the machine's /dev."""
    mount("-t", "tmpfs", "-o", "mode=755,nosuid,size=1m", "tmpfs", dev)
    for name in DEVICES:
        open(f"{dev}/{name}", "w").close()
        mount("--bind", f"/dev/{name}", f"{dev}/{name}")
    os.mkdir(f"{dev}/pts")
    mount("-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=620,gid=5", "devpts",
          f"{dev}/pts")
    os.symlink("pts/ptmx", f"{dev}/ptmx")
    os.mkdir(f"{dev}/shm")
    mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", f"{dev}/shm")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")
    if console:
        open(f"{dev}/console", "w").close()
        os.chmod(f"{dev}/console", 0o600)
        mount("--bind", console, f"{dev}/console")


def syslog_socket(dev: str) -> socket.socket:
    """/dev/log: cloud-init's key fingerprints go through `logger -s`, which prints
    nothing at all when it finds no syslog to talk to. What arrives is kept in the
    node's syslog file, as a journal would keep it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(f"{dev}/log")
    os.chmod(f"{dev}/log", 0o666)
    sock.setblocking(False)
    return sock


class Supervisor:
    def __init__(self, log_fd: int, syslog_fd: int | None = None) -> None:
        self.log_fd = log_fd
        self.syslog_fd = syslog_fd
        self.syslog: socket.socket | None = None
        self.sshd_pid: int | None = None
        self.sshd_status: int | None = None
        self.sshd_wanted = False
        self.pidfile = "/run/sshd.pid"
        self.buffer = b""
        # SIGCHLD writes to this pipe, so the serve loop wakes to reap at once: an
        # init script stopping sshd waits for the process to be gone, zombie included.
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)

    def drain_syslog(self) -> None:
        # A full socket queue would block the node's loggers.
        while self.syslog is not None and self.syslog_fd is not None:
            try:
                message = self.syslog.recv(65536)
            except BlockingIOError:
                break
            os.write(self.syslog_fd, message.rstrip(b"\n") + b"\n")

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

    def running_sshd(self) -> int | None:
        """The node's sshd: the one started here, or whichever the PidFile names."""
        self.reap()
        if self.sshd_pid is not None:
            return self.sshd_pid
        pid = read_pid(self.pidfile)
        return pid if pid is not None and is_sshd(pid) else None

    def start_sshd(self, argv: list[str], pidfile: str, timeout: float) -> None:
        self.pidfile = pidfile
        self.sshd_wanted = True
        options = sshd_options(argv)
        write_sshd_defaults(options)
        running = self.running_sshd()
        if running is not None and (running == self.sshd_pid or listens_as(running, options)):
            self.reply(ok=True, pid=running)
            return
        if running is not None:
            # Restarted inside the node before the node moved: it listens elsewhere.
            self.end_process(running, timeout=5)
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
            self.drain_syslog()
            named = read_pid(pidfile)
            if named == pid and self.sshd_pid == pid:
                self.reply(ok=True, pid=pid)
                return
            if named is not None and named != pid and listens_as(named, options):
                # The node's init script restarted sshd meanwhile (cloud-init's
                # set-passwords does), with the same options: that one serves.
                self.reply(ok=True, pid=named)
                return
            if self.sshd_pid is None and named is None:
                self.reply(ok=False, error=f"sshd exited with status {self.sshd_status}")
                return
            time.sleep(0.005)
        self.stop_sshd(timeout=5, quiet=True)
        self.reply(ok=False, error=f"sshd did not write {pidfile} within {timeout}s")

    def stop_sshd(self, timeout: float, quiet: bool = False) -> None:
        self.sshd_wanted = False
        pid = self.running_sshd()
        if pid is not None:
            self.end_process(pid, timeout)
        if not quiet:
            self.reply(ok=True)

    def enforce_stopped(self) -> None:
        """A node whose SSH is blocked has no sshd, even one its init script restarted
        (cloud-init's set-passwords restarts it if it saw it running a moment before)."""
        if not self.sshd_wanted:
            pid = self.running_sshd()
            if pid is not None:
                self.end_process(pid, timeout=5)

    def end_process(self, pid: int, timeout: float) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.alive(pid) and time.monotonic() < deadline:
                time.sleep(0.005)
            if self.alive(pid):
                os.kill(pid, signal.SIGKILL)
                while self.alive(pid):
                    time.sleep(0.005)
        except ProcessLookupError:
            self.reap()
        if pid == self.sshd_pid:
            self.sshd_pid = None

    def alive(self, pid: int) -> bool:
        # Every process of the node is this PID 1's child or orphan: reaping here
        # is what makes an ended one disappear.
        self.reap()
        return os.path.exists(f"/proc/{pid}")

    def handle(self, cmd: dict) -> None:
        op = cmd.get("op")
        if op == "start-sshd":
            self.start_sshd(cmd["argv"], cmd["pidfile"], float(cmd.get("timeout", 10)))
        elif op == "stop-sshd":
            self.stop_sshd(float(cmd.get("timeout", 5)))
        elif op == "status":
            self.reply(ok=True, sshd_pid=self.running_sshd(), sshd_status=self.sshd_status)
        elif op == "exit":
            raise Stop
        else:
            self.reply(ok=False, error=f"unknown operation {op!r}")

    def serve(self) -> None:
        watched = [0, self.wake_r]
        if self.syslog is not None:
            watched.append(self.syslog.fileno())
        while True:
            readable, _, _ = select.select(watched, [], [], 1.0)
            if self.wake_r in readable:
                try:
                    os.read(self.wake_r, 4096)
                except BlockingIOError:
                    pass
            self.reap()
            self.drain_syslog()
            self.enforce_stopped()
            if 0 not in readable:
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


def is_sshd(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z" and os.readlink(f"/proc/{pid}/exe") == SSHD
    except (OSError, IndexError):
        return False


def read_pid(pidfile: str) -> int | None:
    try:
        with open(pidfile) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def sshd_options(argv: list[str]) -> str:
    """The options that place sshd (port, listen addresses), without the foreground
    and log-to-stderr flags of the supervisor's own start."""
    return " ".join(a for a in argv[1:] if a not in ("-D", "-e"))


def listens_as(pid: int, options: str) -> bool:
    # sshd shows its command line in its process title, "sshd: /usr/sbin/sshd <options>
    # [listener] ...", however it was started.
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            title = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return is_sshd(pid) and f"{SSHD} {options} " in f"{title} "


def write_sshd_defaults(options: str) -> None:
    """/etc/default/ssh with sshd's port and listen addresses, for the node's init script."""
    text = ("# Written by the node's supervisor: the node's listen addresses and port,\n"
            "# for /etc/init.d/ssh (sshd would otherwise listen on every address).\n"
            f"SSHD_OPTS='{options}'\n")
    os.makedirs("/etc/default", exist_ok=True)
    tmp = "/etc/default/.ssh.cloudnorm-tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, "/etc/default/ssh")


def main() -> int:
    spec = json.loads(sys.argv[1])
    log_fd = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    syslog_fd = os.open(spec["syslog"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                        0o600) if spec.get("syslog") else None
    # PID 1 of a namespace ignores signals it has no handler for.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    supervisor = Supervisor(log_fd, syslog_fd)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(supervisor.wake_w)
    try:
        build_root(spec)
        if syslog_fd is not None:
            supervisor.syslog = syslog_socket(f"{spec['root']}/dev")
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
        supervisor.drain_syslog()
    return 0


if __name__ == "__main__":
    sys.exit(main())

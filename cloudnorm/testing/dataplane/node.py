"""One server's data plane: its own root filesystem, real cloud-init and a real OpenSSH server.

Namespace layout. Every node shares the caller's (private) network namespace,
where its addresses sit on ``lo``. Each node gets a mount, UTS and PID
namespace of its own, created by ``unshare`` for a small supervisor that is
PID 1 there. The supervisor mounts an overlay over ``/`` (upper directory in
the node's workdir, cloud-init's unpacked tree between it and the machine's
root), gives it a /dev of its own whose console is a FIFO, chroots into the
overlay and runs ``/usr/sbin/sshd -D``. Files a bootstrap edits inside the node
(``/etc/ssh``, ``/root/.ssh``, ``/home``) are the node's; the machine's stay
untouched. Ending the supervisor ends every process of the node and releases
its mounts.

Boot, in systemd's order on a cloud image: ``cloud-init init --local``,
``cloud-init init`` (users, host keys, authorized keys), then sshd, while
``cloud-init modules --mode=config`` (passwords, runcmd) and ``--mode=final``
(user scripts, the key blocks on the console) still run: :meth:`Node.start`
returns once sshd listens, and the console grows after that, as on a real cloud.
The stages write to the node's console directly and their stdout and stderr go
there too, as the units' do; :meth:`Node.console_text` is that console.

Console. The node's /dev/console is a FIFO that this process reads (:class:`Console`),
with each stage's stdout and stderr, a pipe per stage, read alongside, as journald
would read a unit's stream. Reading them here rather than in the supervisor lets a
stage end only once its output, tee's copy included, is on the console.
"""

from __future__ import annotations

import base64
import fcntl
import ipaddress
import json
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from cloudnorm.testing.dataplane import cloudinit, install, netns
from cloudnorm.testing.dataplane.cloudinit import HostKeys

SSHD = "/usr/sbin/sshd"
CLOUD_INIT = ("/usr/bin/python3", "/usr/bin/cloud-init")
PIDFILE = "/run/sshd.pid"
DEFAULT_PASSWORD = "cloudnorm-node-password"
SUPERVISOR = Path(__file__).with_name("supervisor.py")
# Large enough for a whole boot's console between two reads.
CONSOLE_PIPE_SIZE = 1 << 20
# How long a stage's output may go on after the stage: its tee, or a child it left.
STREAM_GRACE = 2.0
NODE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}


class NodeError(RuntimeError):
    """A node could not be started, reconfigured or driven."""


class Console:
    """What a node writes to its /dev/console (a FIFO) and its cloud-init stages to
    their stdout and stderr (a pipe each), in the order it arrives."""

    def __init__(self, fifo: Path) -> None:
        self._lock = threading.Lock()
        self._data = bytearray()
        # Open for writing too: writers then never wait for a reader at open(2), and
        # reading never sees an end when the last writer closes.
        self._fifo: int | None = os.open(fifo, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self._fifo, fcntl.F_SETPIPE_SZ, CONSOLE_PIPE_SIZE)
        except OSError:
            pass  # above /proc/sys/fs/pipe-max-size: the default size still works
        self._streams: list[int] = []

    def stream(self) -> tuple[int, int]:
        """A new stream into the console: (read end, kept here; write end, for a stage)."""
        with self._lock:
            if self._fifo is None:
                raise NodeError("the node's console is closed: the node was stopped")
            read, write = os.pipe()
            os.set_blocking(read, False)
            self._streams.append(read)
        return read, write

    def open(self, stream: int) -> bool:
        """Whether the stream still has a writer (it is read until its end)."""
        with self._lock:
            return stream in self._streams

    def pump(self) -> None:
        with self._lock:
            for fd in [] if self._fifo is None else [self._fifo, *self._streams]:
                while True:
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        break
                    if not chunk:  # every writer of this stream is gone
                        self._streams.remove(fd)
                        os.close(fd)
                        break
                    self._data += chunk

    def text(self) -> str:
        self.pump()
        with self._lock:
            return self._data.decode(errors="replace")

    def close(self) -> None:
        self.pump()
        with self._lock:
            for fd in [] if self._fifo is None else [self._fifo, *self._streams]:
                os.close(fd)
            self._fifo, self._streams = None, []


class Node:
    def __init__(
        self,
        name: str,
        addresses: Sequence[str],
        *,
        user: str,
        authorized_key: str,
        workdir: Path,
        port: int = 22,
        host_key_types: Sequence[str] = cloudinit.HOST_KEY_TYPES,
        password: str = DEFAULT_PASSWORD,
        disable_root: bool = True,
        console_lies: bool = False,
        allow_ssh: bool = True,
        print_authorized_keys: bool = True,
        print_host_keys: bool = True,
        userdata: bytes | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.addresses = check_addresses(addresses)
        self.port = port
        self.user = user
        self.authorized_key = _check_key(authorized_key)
        self.host_key_types = tuple(host_key_types)
        unknown = set(self.host_key_types) - set(cloudinit.HOST_KEY_TYPES)
        if unknown or not self.host_key_types:
            raise ValueError(f"host key types must be among {cloudinit.HOST_KEY_TYPES}")
        self.password = password
        self.disable_root = disable_root
        self.console_lies = console_lies
        self.allow_ssh = allow_ssh
        # cloud-init's no_ssh_fingerprints: true leaves the authorized keys table out.
        self.print_authorized_keys = print_authorized_keys
        # cloud-init's ssh: {emit_keys_to_console: false} leaves the host key blocks out.
        self.print_host_keys = print_host_keys
        # What the cloud passes the server as user data; cloud-init runs it.
        self.userdata = userdata
        self.timeout = timeout
        self.workdir = Path(workdir).absolute()
        # The overlay mount options cannot carry these characters.
        if any(c in str(self.workdir) for c in ",:\\"):
            raise ValueError(f"workdir must not contain ',', ':' or '\\': {self.workdir}")
        self.host_keys: HostKeys | None = None
        self.started_at: float | None = None
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._pidns: str | None = None
        self._buffer = b""
        self._console: Console | None = None
        self._decoy: HostKeys | None = None
        # cloud-init's stages: exit status and seconds taken, by stage name.
        self.stage_status: dict[str, int] = {}
        self.stage_seconds: dict[str, float] = {}
        self._final_done = threading.Event()
        self._late_stages: threading.Thread | None = None
        # Only addresses this node put on lo are its to take away.
        self._on_lo: set[str] = set()

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._proc is not None:
                return
            if not os.path.exists(SSHD):
                raise NodeError(
                    f"{SSHD} is missing; install it first: "
                    "python -m cloudnorm.testing.dataplane install"
                )
            tree = install.cloud_init_root()
            if not install.cloud_init_ready(tree):
                raise NodeError(
                    f"cloud-init is not unpacked for nodes ({tree}); unpack it first: "
                    "python -m cloudnorm.testing.dataplane install"
                )
            _require_machine_root()
            netns.require_private_netns()
            self._final_done.clear()
            self.stage_status.clear()
            self.stage_seconds.clear()
            try:
                self._spawn(tree)
                self._claim(self.addresses)
                self._prepare()
                for stage in ("init-local", "init"):
                    self._stage(stage, timeout=self.timeout)
                self.host_keys = self._read_host_keys()
                self._start_sshd()
            except BaseException:
                self.stop()
                raise
            self.started_at = time.time()
            self._late_stages = threading.Thread(
                target=self._run_late_stages, name=f"cloud-init-{self.name}", daemon=True)
            self._late_stages.start()

    def stop(self) -> None:
        """End every process of the node, release its addresses and files."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                try:
                    proc.stdin.write(b'{"op": "exit"}\n')  # type: ignore[union-attr]
                    proc.stdin.close()  # type: ignore[union-attr]
                except OSError:
                    pass
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    # unshare --kill-child passes this on to the supervisor,
                    # and the kernel then ends the whole PID namespace.
                    proc.kill()
                    proc.wait(timeout=10)
                proc.stdout.close()  # type: ignore[union-attr]
            try:
                self._wait_namespace_empty()
            finally:
                # Its stage ended with the namespace; the next one finds no node.
                self._pid = None
                if self._late_stages is not None:
                    self._late_stages.join(timeout=30)
                    self._late_stages = None
                if self._console is not None:
                    self._console.close()
                self._release(set(self._on_lo))
                shutil.rmtree(self.workdir, ignore_errors=True)
                self._buffer = b""
                self.started_at = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start_sshd(self) -> None:
        with self._lock:
            self.allow_ssh = True
            if self._proc is not None:
                self._start_sshd()

    def stop_sshd(self) -> None:
        """Nothing listens any more: connections are refused, sessions stay."""
        with self._lock:
            self.allow_ssh = False
            if self._proc is not None:
                self._command({"op": "stop-sshd"})

    def sshd_pid(self) -> int | None:
        """sshd's pid as the node sees it (what its PidFile holds), if it runs."""
        with self._lock:
            if self._proc is None:
                return None
            return self._command({"op": "status"}).get("sshd_pid")

    def set_addresses(self, addresses: Sequence[str], port: int | None = None) -> None:
        """Move the node to new addresses; sshd restarts to listen on them."""
        new = check_addresses(addresses)
        with self._lock:
            port = self.port if port is None else port
            if new == self.addresses and port == self.port:
                return
            if self._proc is None:
                self.addresses, self.port = new, port
                return
            self._command({"op": "stop-sshd"})
            self._release(set(self.addresses) - set(new))
            self._claim(new)
            self.addresses, self.port = new, port
            self._start_sshd()

    # -- looking into the node -----------------------------------------------

    @property
    def root(self) -> Path:
        """The node's root filesystem as seen from outside (through /proc)."""
        if self._pid is None:
            raise NodeError(f"node {self.name} is not running")
        return Path(f"/proc/{self._pid}/root")

    def cpu_seconds(self) -> float:
        """CPU time the node's processes have used so far, finished ones included (sshd's
        connection processes end, and their time is then kept as their parent's
        children's time)."""
        if self._pid is None:
            raise NodeError(f"node {self.name} is not running")
        ticks = 0
        for pid in pids_in_pidns(os.readlink(f"/proc/{self._pid}/ns/pid")):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue  # ended meanwhile: its time is in its parent's
            # utime, stime, cutime, cstime: fields 14-17, after "(comm)" and the state.
            ticks += sum(int(v) for v in stat.rsplit(")", 1)[1].split()[11:15])
        return ticks / os.sysconf("SC_CLK_TCK")

    def exec(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command as root inside the node (its root, hostname and processes)."""
        if self._pid is None:
            raise NodeError(f"node {self.name} is not running")
        cmd = ["nsenter", "-t", str(self._pid), "-m", "-u", "-p", "-r", "-w", "--", *argv]
        return subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout,
            env=env or NODE_ENV,
        )

    def console_text(self) -> str:
        """The node's console so far (a stopped node's: as it was at the end); with
        ``console_lies`` the host keys and fingerprints on it are other keys'."""
        text = self._console.text() if self._console is not None else ""
        if not self.console_lies or self.host_keys is None:
            return text
        return cloudinit.lying_console(text, self.host_keys, self._decoy_keys())

    @property
    def booted(self) -> bool:
        """Whether cloud-init's final stage has ended."""
        return self._final_done.is_set()

    def wait_booted(self, timeout: float = 60.0) -> None:
        """Wait until cloud-init's final stage has ended: passwords, user data and the
        console's key blocks are then all there."""
        if self._late_stages is None and not self._final_done.is_set():
            raise NodeError(f"node {self.name} is not running")
        if not self._final_done.wait(timeout):
            raise NodeError(f"cloud-init of node {self.name} did not finish within {timeout}s"
                            f"\n{self.console_text()[-2000:]}")

    def processes(self) -> list[int]:
        """Pids (as seen from outside) of every process of the node."""
        if self._pidns is None:
            return []
        return pids_in_pidns(self._pidns)

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.processes():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total

    def log_text(self) -> str:
        try:
            return (self.workdir / "node.log").read_text(errors="replace")
        except OSError:
            return ""

    # -- internals -------------------------------------------------------------

    def _spawn(self, tree: Path) -> None:
        for sub in ("upper", "work", "root"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        fifo = self.workdir / "console.fifo"
        if not fifo.exists():
            os.mkfifo(fifo, 0o600)
        self._console = Console(fifo)
        if any(c in str(tree) for c in ",:\\"):
            raise NodeError(f"the cloud-init tree's path cannot be an overlay layer: {tree}")
        spec = {
            "root": str(self.workdir / "root"),
            "upper": str(self.workdir / "upper"),
            "work": str(self.workdir / "work"),
            "lower": [str(tree)],
            "layers": str(self.workdir / "layers"),
            "log": str(self.workdir / "node.log"),
            "console": str(fifo),
            "syslog": str(self.workdir / "syslog.log"),
            "hostname": self.name,
            "hide": [str(self.workdir.parent)],
        }
        argv = [
            "unshare", "-m", "-u", "-p", "--fork", "--kill-child",
            "--propagation", "private", "--",
            sys.executable, "-I", "-S", str(SUPERVISOR), json.dumps(spec),
        ]
        with open(self.workdir / "node.log", "ab") as log:
            # A session of its own keeps a Ctrl-C meant for the caller from
            # killing nodes before the caller has cleaned them up.
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                start_new_session=True,
            )
        ready = self._read_reply()
        if not ready.get("ok"):
            raise NodeError(f"node {self.name} could not start: {ready.get('error')}")
        self._pid = int(ready["host_pid"])
        self._pidns = os.readlink(f"/proc/{self._pid}/ns/pid")

    def _prepare(self) -> None:
        """The image's preparation, and cloud-init's seed and settings."""
        config = cloudinit.image_config(
            user=self.user, password=self.password, host_key_types=self.host_key_types,
            disable_root=self.disable_root, print_authorized_keys=self.print_authorized_keys,
            print_host_keys=self.print_host_keys,
        )
        env = dict(
            NODE_ENV,
            SSHD_CONFIG=cloudinit.sshd_config(self.host_key_types),
            SEED_DIR=cloudinit.SEED_DIR,
            META_DATA=cloudinit.meta_data(self.name, self.authorized_key),
            IMAGE_CONFIG=cloudinit.IMAGE_CONFIG,
            IMAGE_CFG=config,
        )
        proc = self.exec(["/bin/sh", "-c", cloudinit.PREPARE], env=env, timeout=self.timeout,
                         input=base64.b64encode(self.userdata or b"").decode())
        if proc.returncode != 0:
            raise NodeError(
                f"preparing node {self.name} failed ({proc.returncode}): "
                f"{proc.stderr.strip()[-2000:]}"
            )

    def _stage(self, stage: str, pid: int | None = None, timeout: float | None = None) -> int:
        """Run one of cloud-init's stages in the node, as its systemd unit would, its
        output to the console. Returns its exit status (a module that failed, e.g. a
        user's script, makes it 1; the boot goes on regardless, as systemd's does)."""
        pid = self._pid if pid is None else pid
        console = self._console
        if pid is None or console is None:
            raise NodeError(f"node {self.name} is not running")
        args = {"init-local": ["init", "--local"], "init": ["init"],
                "modules:config": ["modules", "--mode=config"],
                "modules:final": ["modules", "--mode=final"]}[stage]
        argv = ["nsenter", "-t", str(pid), "-m", "-u", "-p", "-r", "-w", "--",
                *CLOUD_INIT, *args]
        started = time.monotonic()
        output, write = console.stream()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=write, stderr=write,
                                    env=NODE_ENV)
        finally:
            os.close(write)
        ended: float | None = None
        while True:
            try:
                proc.wait(timeout=0.01)
            except subprocess.TimeoutExpired:
                if timeout is not None and time.monotonic() - started > timeout:
                    proc.kill()
                    proc.wait()
                    raise NodeError(f"cloud-init {stage} of node {self.name} did not finish "
                                    f"within {timeout}s") from None
            console.pump()
            if proc.returncode is not None:
                ended = ended or time.monotonic()
                # Its output is on the console once tee and the like let go of it; a
                # child it left running keeps writing there, read by later pumps.
                if not console.open(output) or time.monotonic() - ended > STREAM_GRACE:
                    break
        self.stage_seconds[stage] = time.monotonic() - started
        self.stage_status[stage] = proc.returncode
        return proc.returncode

    def _run_late_stages(self) -> None:
        pid = self._pid
        try:
            for stage in ("modules:config", "modules:final"):
                # No time limit, as systemd sets none for cloud-init's units: user data
                # may take as long as it takes; wait_booted() is where callers give up.
                self._stage(stage, pid)
        except NodeError as exc:
            if self._pid == pid:  # not just the node being stopped
                with open(self.workdir / "node.log", "a") as log:
                    log.write(f"{exc}\n")
        finally:
            self._final_done.set()

    def _read_host_keys(self) -> HostKeys:
        """The host keys cloud-init made, as the node's sshd will present them."""
        kinds = sorted(self.host_key_types, key=lambda t: f"ssh_host_{t}_key.pub")
        script = 'for t in "$@"; do cat "/etc/ssh/ssh_host_${t}_key.pub" || exit 1; done'
        proc = self.exec(["/bin/sh", "-c", script, "sh", *kinds], timeout=self.timeout)
        keys = HostKeys.from_pub_lines(proc.stdout) if proc.returncode == 0 else None
        if keys is None or len(keys.keys) != len(kinds):
            log = self.exec(["tail", "-n", "30", "/var/log/cloud-init.log"]).stdout
            raise NodeError(
                f"cloud-init made no host keys ({', '.join(kinds)}) in node {self.name} "
                f"(stages: {self.stage_status}): {proc.stderr.strip()}\n"
                f"console:\n{self.console_text()[-2000:]}\ncloud-init.log:\n{log}"
            )
        return keys

    def _start_sshd(self) -> None:
        # Without a ListenAddress sshd would answer on every address, other
        # nodes' included: a node with no reachable address has no sshd.
        if not (self.allow_ssh and self.addresses):
            return
        argv = [SSHD, "-D", "-e", "-p", str(self.port)]
        for address in self.addresses:
            argv += ["-o", f"ListenAddress={address}"]
        reply = self._command(
            {"op": "start-sshd", "argv": argv, "pidfile": PIDFILE, "timeout": self.timeout}
        )
        if not reply.get("ok"):
            tail = "\n".join(self.log_text().splitlines()[-10:])
            raise NodeError(f"sshd of node {self.name} did not start: {reply.get('error')}\n{tail}")

    def _command(self, cmd: dict) -> dict:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write((json.dumps(cmd) + "\n").encode())
            self._proc.stdin.flush()
        except OSError as exc:
            raise NodeError(f"node {self.name} is gone: {exc}") from exc
        reply = self._read_reply()
        if not reply.get("ok"):
            raise NodeError(f"node {self.name}: {cmd['op']} failed: {reply.get('error')}")
        return reply

    def _read_reply(self) -> dict:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        # The supervisor gives up on sshd after self.timeout; wait for it to say so.
        deadline = time.monotonic() + self.timeout + 10
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NodeError(f"node {self.name} did not answer in time")
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            data = os.read(fd, 65536)
            if not data:
                tail = "\n".join(self.log_text().splitlines()[-10:])
                raise NodeError(f"node {self.name} ended unexpectedly\n{tail}")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def _claim(self, addresses: Sequence[str]) -> None:
        for address in addresses:
            if address not in self._on_lo:
                netns.add_address(address)
                self._on_lo.add(address)

    def _release(self, addresses: set[str]) -> None:
        for address in addresses & self._on_lo:
            netns.remove_address(address)
            self._on_lo.discard(address)

    def _wait_namespace_empty(self) -> None:
        if self._pidns is None:
            return
        deadline = time.monotonic() + 10
        while pids_in_pidns(self._pidns):
            if time.monotonic() > deadline:
                raise NodeError(f"processes of node {self.name} outlived it")
            time.sleep(0.01)
        self._pidns = None

    def _decoy_keys(self) -> HostKeys:
        # Same types and comment as the real keys, so only the key material differs.
        if self._decoy is None:
            decoy_dir = self.workdir / "decoy"
            decoy_dir.mkdir(exist_ok=True)
            lines = []
            for kind in self.host_key_types:
                path = decoy_dir / f"ssh_host_{kind}_key"
                if not path.exists():
                    subprocess.run(
                        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"root@{self.name}",
                         "-f", str(path)], check=True, capture_output=True, timeout=60,
                    )
                lines.append(Path(f"{path}.pub").read_text())
            self._decoy = HostKeys.from_pub_lines("".join(lines))
        return self._decoy


def _require_machine_root() -> None:
    # The overlay's lower layer is the machine's root, whose submounts a user
    # namespace may not see under ("failed to clone lowerpath"): real root only.
    with open("/proc/self/uid_map") as f:
        whole_range = f.read().split() == ["0", "0", "4294967295"]
    if os.geteuid() != 0 or not whole_range:
        raise NodeError(
            "nodes need root in the machine's own user namespace "
            "(an overlay over / cannot be mounted from a user namespace)"
        )


def pids_in_pidns(pidns: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") == pidns:
                found.append(int(entry))
        except OSError:
            continue
    return found


def check_addresses(addresses: Sequence[str]) -> tuple[str, ...]:
    if isinstance(addresses, str):
        raise TypeError("addresses must be a list of addresses, not a string")
    return tuple(dict.fromkeys(str(ipaddress.ip_address(a)) for a in addresses))


def _check_key(key: str) -> str:
    key = key.strip()
    if not key or "\n" in key or len(key.split()) < 2:
        raise ValueError("authorized_key must be one OpenSSH public key line")
    return key

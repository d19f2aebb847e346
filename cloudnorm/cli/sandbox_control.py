"""``cloudnorm sandbox``: the local clouds, running in the background until stopped.

``up`` starts ``python -m cloudnorm.testing run --workdir DIR -- <waiter>`` detached:
the runner starts the OpenStack profiles and the local EC2 (and, as root, the SSH
data plane in a network namespace of its own), then runs the waiter, which writes
``ready.json`` and sleeps until it is sent SIGTERM. ``down`` sends it that signal; the
runner then stops everything it started, as it does after any command. State lives in
``$CLOUDNORM_CACHE_DIR/sandbox`` (default ``~/.cache/cloudnorm/sandbox``).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

STATE = "state.json"
READY = "ready.json"
LOG = "sandbox.log"
PROGRESS_PREFIX = "[cloudnorm sandbox]"


class SandboxError(Exception):
    """The sandbox could not be started or stopped; the message says why."""


def default_dir() -> Path:
    from cloudnorm.cli.ssh_access import cache_dir

    return cache_dir() / "sandbox"


# -- process bookkeeping --------------------------------------------------------------------
def alive(pid: int | None) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped does not count)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def _own_netns() -> str:
    try:
        return os.readlink("/proc/self/ns/net")
    except OSError:
        return ""


def _cloud_names(clouds_yaml: str | None) -> list[str]:
    if not clouds_yaml:
        return []
    try:
        import yaml

        with open(clouds_yaml, encoding="utf-8") as handle:
            return sorted((yaml.safe_load(handle) or {}).get("clouds") or {})
    except (OSError, ValueError):
        return []


def _last_progress(log: Path) -> str:
    try:
        with open(log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    said = [line[len(PROGRESS_PREFIX):].strip() for line in lines
            if line.startswith(PROGRESS_PREFIX)]
    return said[-1] if said else ""


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- status ---------------------------------------------------------------------------------
def status(directory: Path) -> dict[str, Any]:
    """What runs: ``running``, the pids, profiles, clouds.yaml, clouds, how to reach them."""
    state = _read(directory / STATE) or {}
    ready = _read(directory / READY) or {}
    running = alive(state.get("pid")) and alive(ready.get("pid_in_sandbox"))
    info: dict[str, Any] = {
        "running": running, "starting": alive(state.get("pid")) and not ready,
        "state_dir": str(directory), "pid": state.get("pid"),
        "profiles": state.get("profiles") or "all", "started": state.get("started"),
        "log": str(directory / LOG)}
    if running:
        info.update(ready)
        info["clouds"] = _cloud_names(ready.get("clouds_yaml"))
        info["netns_differs"] = bool(ready.get("netns")) and ready.get("netns") != _own_netns()
    return info


def usage(info: dict[str, Any]) -> list[str]:
    """How to use a running sandbox, as shell lines for a person."""
    lines = [f"export OS_CLIENT_CONFIG_FILE={info['clouds_yaml']}",
             "export AWS_EC2_METADATA_DISABLED=true"]
    if info.get("netns_differs"):
        enter = f"nsenter --net=/proc/{info['pid_in_sandbox']}/ns/net"
        lines += [
            "# The clouds' endpoints and their servers' addresses exist only in the sandbox's",
            "# network namespace: run commands there, e.g.",
            f"{enter} cloudnorm inspect {(info.get('clouds') or ['CLOUD'])[0]}",
            f"{enter} cloudnorm create web1 -c {(info.get('clouds') or ['CLOUD'])[0]}",
            f"{enter} cloudnorm ssh web1 -c {(info.get('clouds') or ['CLOUD'])[0]}"]
    if not info.get("dataplane"):
        lines.append("# No SSH data plane (it needs root): servers boot but answer no SSH.")
    lines.append("# Stop everything with: cloudnorm sandbox down")
    return lines


# -- up -------------------------------------------------------------------------------------
def up(directory: Path, profiles: Sequence[str], *, timeout: float = 900.0,
       on_progress: Callable[[str], None] | None = None,
       inside: Sequence[str] = ()) -> dict[str, Any]:
    """Start the sandbox in the background and return :func:`status` once it is ready.

    Servers on the ``inside`` networks also answer on their private addresses, as
    for a client running inside the cloud.

    Returns at once when one already runs. ``timeout`` bounds the start (the first one
    installs the OpenStack services, which takes minutes).
    """
    info = status(directory)
    if info["running"]:
        info["already"] = True
        return info
    if info["starting"]:
        raise SandboxError(f"a sandbox is starting (pid {info['pid']}); wait for it or run "
                           "`cloudnorm sandbox down`")
    directory.mkdir(parents=True, exist_ok=True)
    for name in (STATE, READY):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    workdir = directory / "workdir"
    log_path = directory / LOG
    argv = [sys.executable, "-m", "cloudnorm.testing", "run", "--workdir", str(workdir)]
    for profile in profiles:
        argv += ["--profile", profile]
    for network in inside:
        argv += ["--inside", network]
    argv += ["--", sys.executable, "-m", "cloudnorm.cli.sandbox_control", "wait",
             str(directory / READY)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
    _write(directory / STATE, {
        "pid": proc.pid, "argv": argv, "profiles": list(profiles) or "all",
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "workdir": str(workdir)})
    deadline = time.monotonic() + timeout
    while True:
        if (directory / READY).exists():
            info = status(directory)
            if info["running"]:
                return info
        if proc.poll() is not None:
            raise SandboxError(f"the sandbox stopped while starting (exit {proc.returncode}); "
                               f"the end of {log_path}:\n{_tail(log_path)}")
        if time.monotonic() >= deadline:
            _stop(directory, 60.0, on_progress)
            raise SandboxError(f"the sandbox was not ready after {timeout:.0f}s; stopped it. "
                               f"The end of {log_path}:\n{_tail(log_path)}")
        if on_progress is not None:
            on_progress(_last_progress(log_path) or "starting")
        time.sleep(0.5)


# -- down -----------------------------------------------------------------------------------
def down(directory: Path, *, timeout: float = 120.0,
         on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Stop the sandbox and everything it started; returns what was stopped."""
    state = _read(directory / STATE)
    if state is None:
        return {"stopped": False, "reason": "no sandbox was running"}
    stopped = _stop(directory, timeout, on_progress)
    for name in (STATE, READY):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    return {"stopped": stopped, "pid": state.get("pid")}


def _stop(directory: Path, timeout: float,
          on_progress: Callable[[str], None] | None) -> bool:
    state = _read(directory / STATE) or {}
    ready = _read(directory / READY) or {}
    runner = state.get("pid")
    services = (_read(Path(state.get("workdir", "")) / "sandbox.json") or {}).get("pids") or []
    was_running = alive(runner)
    # The waiter's end is the runner's cue to tear down; the runner inside the namespace
    # is the next one to ask, as it passes SIGTERM on and then tears down too.
    for pid, grace in ((ready.get("pid_in_sandbox"), timeout),
                       (ready.get("runner_pid"), timeout / 2), (runner, timeout / 4)):
        if not alive(runner):
            break
        if pid and alive(pid):
            if on_progress is not None:
                on_progress(f"stopping the sandbox (pid {pid})")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        _wait_gone([runner], grace, on_progress)
    left = [p for p in (runner, ready.get("runner_pid"), ready.get("pid_in_sandbox"),
                        *services) if alive(p)]
    if left:
        raise SandboxError(f"sandbox processes still run after {timeout:.0f}s: "
                           f"{', '.join(map(str, left))}; see {directory / LOG}")
    return was_running


def _wait_gone(pids: Sequence[int | None], timeout: float,
               on_progress: Callable[[str], None] | None) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)


# -- the waiter -----------------------------------------------------------------------------
def _wait(ready_path: Path) -> int:
    """Runs inside the sandbox: say how to reach it, then wait for SIGTERM."""
    stop = []

    def on_signal(signum: int, frame: object) -> None:
        stop.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    parent = os.getppid()
    _write(ready_path, {
        "pid_in_sandbox": os.getpid(), "runner_pid": parent,
        "clouds_yaml": os.environ.get("OS_CLIENT_CONFIG_FILE"),
        "dataplane": os.environ.get("CLOUDNORM_SANDBOX_DATAPLANE") == "running",
        "netns": _own_netns()})
    # Also ends when the runner is gone without asking (killed): nothing to wait for then.
    while not stop and os.getppid() == parent:
        time.sleep(1.0)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "wait":
        print("usage: python -m cloudnorm.cli.sandbox_control wait READY_FILE",
              file=sys.stderr)
        return 2
    return _wait(Path(args[1]))


if __name__ == "__main__":
    sys.exit(main())

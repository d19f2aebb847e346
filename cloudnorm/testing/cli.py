"""Command line of the local sandbox clouds.

``python -m cloudnorm.testing run [--profile NAME]... [--workdir DIR] -- COMMAND...`` starts a
local OpenStack shaped by the profiles (all when none is named), runs COMMAND with
``OS_CLIENT_CONFIG_FILE`` pointing at its clouds.yaml, stops everything and exits with
COMMAND's status. ``python -m cloudnorm.testing install`` only builds the services'
environment (cached), e.g. in a CI image.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path


class _Interrupted(BaseException):
    """SIGINT or SIGTERM arrived before COMMAND started; unwinds the start-up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.action == "install":
        return _install()
    return _run(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cloudnorm.testing",
        description="Local sandbox clouds (a real OpenStack on 127.0.0.1) for tests.")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("install", help="build the OpenStack services' environment (cached)")
    run = actions.add_parser(
        "run", help="start the sandbox, run COMMAND against it, stop the sandbox",
        usage="%(prog)s [--profile NAME]... [--workdir DIR] -- COMMAND...")
    run.add_argument("--profile", action="append", dest="profiles", metavar="NAME",
                     help="quirk profile to seed (repeatable; default: all)")
    run.add_argument("--workdir", type=Path, metavar="DIR",
                     help="where state and logs go (kept afterwards; default: a temporary "
                          "directory, removed afterwards)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="command to run, after --")
    return parser


def _install() -> int:
    from cloudnorm.testing.openstack import install

    try:
        print(install.ensure_installed())
    except install.InstallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("error: give the command to run after --", file=sys.stderr)
        return 2

    from cloudnorm.testing.openstack.install import InstallError
    from cloudnorm.testing.openstack.processes import ServiceError
    from cloudnorm.testing.openstack.stack import OpenStackStack
    from cloudnorm.testing.profile_data import ProfileError

    workdir = args.workdir
    temporary = workdir is None
    if temporary:
        workdir = Path(tempfile.mkdtemp(prefix="cloudnorm-sandbox-"))
    child: subprocess.Popen | None = None

    forwarded: list[int] = []

    def on_signal(signum, frame):
        if child is not None and child.poll() is None:
            # COMMAND decides what a signal means; the sandbox stops once it has exited.
            # Ctrl-C already reached COMMAND (same process group), so only SIGTERM is
            # passed on. A second signal means stop now.
            if forwarded:
                child.kill()
            elif signum == signal.SIGTERM:
                child.send_signal(signum)
            forwarded.append(signum)
        else:
            raise _Interrupted(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack = OpenStackStack(workdir, args.profiles)
    try:
        stack.start()
        env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(stack.clouds_yaml),
                   CLOUDNORM_SANDBOX_CLOUDS_YAML=str(stack.clouds_yaml))
        try:
            child = subprocess.Popen(command, env=env)
        except OSError as error:
            print(f"error: cannot run {command[0]}: {error}", file=sys.stderr)
            return 127
        code = child.wait()
        return code if code >= 0 else 128 - code
    except (InstallError, ServiceError, ProfileError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except _Interrupted as interrupted:
        return 128 + interrupted.signum
    finally:
        # Tearing down must not itself be interrupted half-way.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)

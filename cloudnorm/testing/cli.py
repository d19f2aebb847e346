"""Command line of the local sandbox clouds.

``python -m cloudnorm.testing run [--profile NAME]... [--inside NETWORK]... [--workdir DIR]
-- COMMAND...`` starts a local OpenStack shaped by the profiles (all when none is named),
runs COMMAND with ``OS_CLIENT_CONFIG_FILE`` pointing at its clouds.yaml, stops everything
and exits with COMMAND's status. With ``--inside`` COMMAND runs as from a machine on
those networks: their servers answer on their private addresses too.
``python -m cloudnorm.testing install`` only builds the services' environment (cached)
and, as root, installs their database server (Debian's postgresql-15), e.g. in a CI image.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from cloudnorm.testing import progress

AWS_PROFILE = "aws"
GCE_PROFILE = "gce"
PROVIDER_PROFILES = (AWS_PROFILE, GCE_PROFILE)


def _start_dataplanes(teardown: contextlib.ExitStack, workdir: Path, stack: object,
                      aws: object, gce: Any, inside: frozenset[str] = frozenset()) -> None:
    """SSH nodes for every cloud that runs: each cloud's watcher steers its own fleet.
    Servers on the ``inside`` networks also answer on their private addresses."""
    if stack is not None:
        from cloudnorm.testing.openstack.dataplane_sync import DataPlane

        plane = DataPlane(stack, workdir / "nodes")
        plane.fleet.inside = inside
        teardown.enter_context(plane)
    if aws is not None:
        from cloudnorm.testing.aws_dataplane import AwsDataPlaneSync
        from cloudnorm.testing.dataplane import Fleet

        fleet = teardown.enter_context(Fleet(workdir / "aws-nodes"))
        fleet.inside = inside
        teardown.callback(AwsDataPlaneSync(aws, fleet).start().stop)
    if gce is not None:
        from cloudnorm.testing.dataplane import Fleet

        fleet = teardown.enter_context(Fleet(workdir / "gce-nodes"))
        fleet.inside = inside
        teardown.callback(gce.dataplane(fleet).start().stop)


class _Interrupted(BaseException):
    """SIGINT or SIGTERM arrived before COMMAND started; unwinds the start-up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# Set in the copy of this command that runs inside the private network namespace.
_INSIDE = "CLOUDNORM_SANDBOX_NETNS"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.action == "install":
        return _install()
    if os.geteuid() == 0 and not os.environ.get(_INSIDE):
        # Everything that needs the network is installed first; then the sandbox, its
        # SSH servers and COMMAND run in a namespace of their own, where the public
        # addresses the cloud hands out exist and nothing else does.
        if _install() != 0:
            return 1
        from cloudnorm.testing.dataplane import InstallError, ensure_openssh
        from cloudnorm.testing.dataplane.netns import run_in_private_netns

        try:
            ensure_openssh()
        except InstallError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        env = dict(os.environ, **{_INSIDE: "1"})
        return run_in_private_netns([sys.executable, "-m", "cloudnorm.testing", *argv],
                                    env=env)
    return _run(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cloudnorm.testing",
        description="Local sandbox clouds (a real OpenStack on 127.0.0.1) for tests.")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("install", help="build the OpenStack services' environment (cached) "
                                       "and install PostgreSQL for them (as root)")
    run = actions.add_parser(
        "run", help="start the sandbox, run COMMAND against it, stop the sandbox",
        usage="%(prog)s [--profile NAME]... [--inside NETWORK]... [--workdir DIR] "
              "-- COMMAND...")
    run.add_argument("--profile", action="append", dest="profiles", metavar="NAME",
                     help="quirk profile to seed, 'aws' for the local EC2 or 'gce' for the "
                          "local compute engine (repeatable; default: all)")
    run.add_argument("--inside", action="append", default=[], metavar="NETWORK",
                     help="run COMMAND as from inside this network (an OpenStack network "
                          "name or id, an AWS VPC or subnet id, a GCE network name): "
                          "servers on it also answer SSH on their private addresses "
                          "(repeatable)")
    run.add_argument("--workdir", type=Path, metavar="DIR",
                     help="where state and logs go (kept afterwards; default: a temporary "
                          "directory, removed afterwards)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="command to run, after --")
    return parser


def _install() -> int:
    from cloudnorm.testing.openstack import install, postgres

    try:
        install.ensure_installed()
    except install.InstallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    # The services' database server (Debian's postgresql-15). Without it the sandbox still
    # runs, on SQLite, and says so on every start.
    try:
        postgres.ensure_installed()
    except postgres.PostgresUnavailable as error:
        progress.say(f"WARNING: {error}; the sandbox will keep the services' data in SQLite")
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
    # "aws" and "gce" name the local EC2 and compute endpoint; every other name is an
    # OpenStack profile.
    wanted = args.profiles
    openstack_profiles = None if wanted is None else [
        p for p in wanted if p not in PROVIDER_PROFILES]
    teardown = contextlib.ExitStack()
    try:
        clouds_yaml = workdir / "clouds.yaml"
        stack = None
        if openstack_profiles is None or openstack_profiles:
            stack = OpenStackStack(workdir, openstack_profiles)
            teardown.callback(stack.stop)
            stack.start()
            clouds_yaml = stack.clouds_yaml
        aws = None
        if wanted is None or AWS_PROFILE in wanted:
            from cloudnorm.testing.aws import MotoSandbox

            aws = MotoSandbox(workdir / "aws")
            teardown.callback(aws.stop)
            aws.start()
            aws.write_clouds_yaml(clouds_yaml)
            progress.say(f"local EC2 (moto) up: {', '.join(aws.clouds())}")
        gce = None
        if wanted is None or GCE_PROFILE in wanted:
            from cloudnorm.testing.gce import GceSandbox

            gce = GceSandbox(workdir / "gce")
            teardown.callback(gce.stop)
            gce.start()
            gce.write_clouds_yaml(clouds_yaml)
            progress.say(f"local compute engine up: {', '.join(gce.clouds())}")
        dataplane = os.environ.get(_INSIDE)
        if dataplane:
            _start_dataplanes(teardown, workdir, stack, aws, gce, frozenset(args.inside))
            progress.say("SSH data plane up: servers answer on their reachable addresses")
        else:
            progress.say("not root: no SSH data plane (servers boot but answer no SSH)")
        env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(clouds_yaml),
                   CLOUDNORM_SANDBOX_CLOUDS_YAML=str(clouds_yaml),
                   AWS_EC2_METADATA_DISABLED="true")
        env.pop(_INSIDE, None)
        if dataplane:
            env["CLOUDNORM_SANDBOX_DATAPLANE"] = "running"
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
        teardown.close()  # data planes first, then the clouds: the reverse of starting
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)

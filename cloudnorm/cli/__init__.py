"""The ``cloudnorm`` command.

Exit codes: 0 success, 1 a cloud or cloudnorm error (the message says what to fix;
also a conformance run where a step fails through cloudnorm), 2 a usage error.
Provider SDKs load only when a subcommand needs a cloud, so ``--help`` is quick.
Every command that reads takes ``--json``; progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import click

from cloudnorm import errors

F = TypeVar("F", bound=Callable[..., Any])
CLOUD_HELP = "Cloud name from clouds.yaml (default: $OS_CLOUD)."


def _fail(exc: errors.CloudnormError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


def _errors_exit_1(func: F) -> F:
    """cloudnorm's errors end the command with exit code 1 and their message."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except errors.CloudnormError as exc:
            _fail(exc)
    return wrapper  # type: ignore[return-value]


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _connect(name: str) -> Any:
    from cloudnorm.cloud import connect

    return connect(name)


def _cloud_option(func: F) -> F:
    return click.option("-c", "--cloud", "cloud_name", envvar="OS_CLOUD", required=True,
                        metavar="CLOUD", help=CLOUD_HELP)(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cloudnorm")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Every compute cloud, the way AWS behaves for the person who automates it.

    Exit codes: 0 success, 1 a cloud or cloudnorm error, 2 a usage error.
    """
    if os.environ.get("NO_COLOR"):
        ctx.color = False  # click colours on a terminal only; NO_COLOR says not even there


@main.command()
@click.argument("clouds", nargs=-1)
@click.option("--all", "all_clouds", is_flag=True, help="Inspect every cloud in clouds.yaml.")
@click.option("--os", "os_names", multiple=True,
              help="Operating system to find an image for (repeatable; default: every OS "
                   "the cloud's images hold).")
@click.option("--min-ram", default=2048, show_default=True, help="MiB the flavor must have.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect(clouds: tuple[str, ...], all_clouds: bool, os_names: tuple[str, ...],
            min_ram: int, as_json: bool) -> None:
    """Show what discovery sees on CLOUDS: networks classified with reasons, images by
    OS with their login users, flavors, and the quirks detected (profile, how servers
    are reached from outside)."""
    if all_clouds:
        from openstack.config import loader

        clouds = tuple(sorted(n for n in loader.OpenStackConfig().get_cloud_names()
                              if n != "defaults"))
    if not clouds:
        raise click.UsageError("name at least one cloud, or pass --all")
    from cloudnorm.cli import inspection as cli_inspect
    from cloudnorm.cli.progress import Progress

    reports = []
    failed = False
    with Progress(delay=1.0) as progress:
        for name in clouds:
            try:
                with progress.waiting(f"inspecting {name}", f"inspected {name}"):
                    reports.append(cli_inspect.inspect_one(name, os_names, min_ram))
            except errors.CloudnormError as exc:
                failed = True
                reports.append({"cloud": name, "error": str(exc)})
    if as_json:
        _echo_json(reports)
    else:
        for report in reports:
            if "error" in report:
                click.secho(f"cloud {report['cloud']}: error: {report['error']}", fg="red")
            else:
                cli_inspect.print_report(report)
            click.echo("")
    sys.exit(1 if failed else 0)


# -- conformance ------------------------------------------------------------------------------
@main.command()
@click.argument("clouds", nargs=-1, required=True)
@click.option("--os", "os_name", default="ubuntu-22.04", show_default=True,
              help="Operating system of the node.")
@click.option("--min-ram", default=2048, show_default=True, help="MiB the node must have.")
@click.option("--timeout", default=300.0, show_default=True,
              help="Seconds each walk (raw, then cloudnorm) may take.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--markdown", is_flag=True, help="Print a Markdown table.")
@click.option("--private/--public", "private", default=None,
              help="--private: measure private access, the node reached on its private "
                   "address with no public one made (run from inside the cloud's network); "
                   "default: the cloud's configuration.")
def conformance(clouds: tuple[str, ...], os_name: str, min_ram: int, timeout: float,
                as_json: bool, markdown: bool, private: bool | None) -> None:
    """Create one node on each of CLOUDS and compare the eight steps with AWS.

    The raw cloud is measured by registering a key pair and booting a server the plain
    way (image, flavor, key, the network cloudnorm would pick; nothing else), then
    reading the answers: the server's own record after it runs, the image's
    properties, the console. Then create_server walks the same steps. Everything
    created is deleted again. Exit code 1 when a step fails through cloudnorm.
    """
    from cloudnorm import conformance as measure
    from cloudnorm.cli.progress import Progress
    from cloudnorm.cli.render import conformance_markdown, conformance_text

    if as_json and markdown:
        raise click.UsageError("--json and --markdown exclude each other")
    reports: list[dict[str, Any]] = []
    failed = False
    for name in clouds:
        progress = Progress(name if len(clouds) > 1 else "")

        def show(what: str, detail: str, progress: Progress = progress) -> None:
            progress.status(f"{what}: {detail}")

        try:
            with _connect(name) as cloud:
                result = measure.run(cloud, os=os_name, min_ram=min_ram, timeout=timeout,
                                     on_step=progress.step, progress=show,
                                     public=None if private is None else not private)
            reports.append(measure.as_dict(result))
            failed = failed or not result.ok
        except errors.CloudnormError as exc:
            failed = True
            reports.append({"cloud": name, "error": str(exc)})
        finally:
            progress.close()
    if as_json:
        _echo_json(reports)
    elif markdown:
        click.echo(conformance_markdown([r for r in reports if "steps" in r]))
        for r in reports:
            if "steps" not in r:
                click.echo(f"cloud {r['cloud']}: error: {r['error']}")
    else:
        width = min(140, max(80, _terminal_width()))
        for r in reports:
            click.echo(conformance_text(r, width) if "steps" in r
                       else f"cloud {r['cloud']}: error: {r['error']}")
            click.echo("")
    sys.exit(1 if failed else 0)


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((120, 24)).columns


# -- servers ----------------------------------------------------------------------------------
def _default_public_keys() -> list[Path]:
    ssh_dir = Path.home() / ".ssh"
    return [p for p in (ssh_dir / f"id_{t}.pub" for t in ("ed25519", "ecdsa", "rsa"))
            if p.is_file()][:1]


#: MiB ``cloudnorm create`` asks for when neither the command nor clouds.yaml says:
#: enough for the distributions' cloud images to boot and run cloud-init.
CLI_MIN_RAM = 2048


@main.command()
@click.argument("name")
@_cloud_option
@click.option("--os", "os_name",
              help="Operating system (cloudnorm picks the image); default: the cloud's "
                   "clouds.yaml defaults: image, else ubuntu-22.04.")
@click.option("--image", help="An image name or id instead of --os.")
@click.option("--flavor", help="A flavor name or id (default: the smallest with --min-ram).")
@click.option("--min-ram", type=int, help="MiB at least (default: the cloud's clouds.yaml "
              "defaults: min_ram, else 2048).")
@click.option("--min-vcpus", type=int, help="vCPUs at least.")
@click.option("--network", help="Network name or id (default: the one cloudnorm picks).")
@click.option("--authorized-key", "key_files", multiple=True, type=click.Path(dir_okay=False),
              help="Public key file to install for root and the login user (repeatable; "
                   "default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub).")
@click.option("--user-data", "user_data_file", type=click.File("rb"),
              help="File the first boot runs (a cloud-config, a script, MIME or gzip; "
                   "sent as it is; '-' reads standard input).")
@click.option("--availability-zone", help="Zone to boot in (default: the cloud's choice).")
@click.option("--security-group", "security_groups", multiple=True,
              help="Security group (GCE: network tag) to add to cloudnorm's SSH access "
                   "(repeatable).")
@click.option("--private/--public", "private", default=None,
              help="--private: make no public address and reach the server on its private "
                   "one (from inside the cloud's network); default: the cloud's "
                   "configuration (clouds.yaml private: true), else public.")
@click.option("--boot-from-volume/--no-boot-from-volume", default=None,
              help="Root disk on a block storage volume (default: where the flavor has disk "
                   "0; always on AWS and GCE).")
@click.option("--volume-size", type=click.IntRange(min=1), metavar="GIB",
              help="GiB of the root volume (default: what the image needs).")
@click.option("--volume", "volumes", type=click.IntRange(min=1), multiple=True, metavar="GIB",
              help="A data volume of GIB, deleted with the server (repeatable).")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds for all steps.")
@click.option("--json", "as_json", is_flag=True, help="Print the server as JSON.")
@_errors_exit_1
def create(name: str, cloud_name: str, os_name: str, image: str | None, flavor: str | None,
           min_ram: int | None, min_vcpus: int | None, network: str | None,
           key_files: tuple[str, ...], user_data_file: BinaryIO | None,
           availability_zone: str | None, security_groups: tuple[str, ...],
           private: bool | None, boot_from_volume: bool | None, volume_size: int | None,
           volumes: tuple[int, ...], timeout: float, as_json: bool) -> None:
    """Create server NAME and wait until it is reachable over SSH.

    The public keys are installed for root and the login user, password logins are
    turned off, and cloudnorm's throw-away key is removed; each is checked.
    """
    from cloudnorm.cli.progress import Progress
    from cloudnorm.cli.render import server_json, server_text
    from cloudnorm.provision import CreateRequest

    paths = [Path(p).expanduser() for p in key_files] or _default_public_keys()
    if not paths:
        raise click.UsageError("no public key to install: pass --authorized-key FILE (none of "
                               "~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub exists)")
    try:
        public_keys = [p.read_text(encoding="utf-8").strip() for p in paths]
    except OSError as exc:
        raise click.UsageError(f"cannot read a public key: {exc}") from None
    with _connect(cloud_name) as cloud, Progress() as progress:
        if min_ram is None and "min_ram" not in cloud.settings.create_defaults:
            min_ram = CLI_MIN_RAM
        server = cloud.create_server(CreateRequest(
            name, image=image or os_name, flavor=flavor, min_ram=min_ram,
            min_vcpus=min_vcpus, network=network, authorized_keys=tuple(public_keys),
            userdata=user_data_file.read() if user_data_file else None,
            availability_zone=availability_zone, security_groups=security_groups,
            public=None if private is None else not private,
            boot_from_volume=boot_from_volume, volume_size=volume_size, volumes=volumes,
            timeout=timeout), on_step=progress.step)
    data = server_json(server)
    if as_json:
        _echo_json(data)
    else:
        click.echo(server_text(data))
        click.echo(f"log in with: cloudnorm ssh {server.name} -c {cloud_name}")


@main.command("list")
@_cloud_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_errors_exit_1
def list_(cloud_name: str, as_json: bool) -> None:
    """List the servers of a cloud, with the address and user to log in as."""
    from cloudnorm.cli.progress import Progress
    from cloudnorm.cli.render import server_json, servers_table

    with _connect(cloud_name) as cloud, Progress(delay=1.0) as progress, \
            progress.waiting(f"listing the servers of {cloud_name}", "listed the servers"):
        servers = [server_json(s) for s in cloud.list_servers()]
    if as_json:
        _echo_json(servers)
    elif servers:
        click.echo(servers_table(servers))
    else:
        click.echo(f"no servers in cloud {cloud_name}")


@main.command()
@click.argument("name")
@_cloud_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_errors_exit_1
def show(name: str, cloud_name: str, as_json: bool) -> None:
    """Show server NAME (name or id): addresses with reasons, login, host keys."""
    from cloudnorm.cli.progress import Progress
    from cloudnorm.cli.render import server_json, server_text

    with _connect(cloud_name) as cloud, Progress(delay=1.0) as progress, \
            progress.waiting(f"looking up {name}", f"found {name}"):
        data = server_json(cloud.get_server(name))
    if as_json:
        _echo_json(data)
    else:
        click.echo(server_text(data))


@main.command()
@click.argument("names", nargs=-1, required=True)
@_cloud_option
@click.option("--no-wait", is_flag=True, help="Return once the deletes are asked for.")
@_errors_exit_1
def delete(names: tuple[str, ...], cloud_name: str, no_wait: bool) -> None:
    """Delete servers NAMES and everything cloudnorm created for them. Exit code 1 when
    a server does not exist."""
    import time

    from cloudnorm.cli.progress import Progress

    missing = []
    with _connect(cloud_name) as cloud, Progress() as progress:
        for name in names:
            started = time.monotonic()
            progress.status(f"deleting {name}")
            if cloud.delete_server(name, wait=not no_wait):
                progress.finish(f"deleted {name} ({time.monotonic() - started:.1f}s)")
            else:
                progress.finish(f"no server {name}", "!!", "red")
                missing.append(name)
    if missing:
        click.echo(f"error: no server {', '.join(missing)} in cloud {cloud_name}", err=True)
        sys.exit(1)


@main.command()
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@_cloud_option
@click.option("-l", "--user", help="Log in as this user (default: the server's login user).")
@click.option("-i", "--identity", type=click.Path(dir_okay=False),
              help="Private key file for ssh.")
@click.option("-o", "--option", "options", multiple=True, metavar="OPTION",
              help="An ssh -o option (repeatable).")
@click.option("--print", "print_only", is_flag=True,
              help="Print the ssh command instead of running it.")
@_errors_exit_1
def ssh(name: str, command: tuple[str, ...], cloud_name: str, user: str | None,
        identity: str | None, options: tuple[str, ...], print_only: bool) -> None:
    """Log in to server NAME with the system ssh, optionally running COMMAND (put
    ``--`` before a command that has options of its own).

    The address, port and user are the ones create_server logged in with; only the
    host keys it verified then are accepted (a known_hosts file of this server's own).
    """
    import shlex

    from cloudnorm.cli.progress import Progress
    from cloudnorm.cli.ssh_access import ssh_argv, write_known_hosts

    with _connect(cloud_name) as cloud, Progress(delay=1.0) as progress, \
            progress.waiting(f"looking up {name}", f"found {name}"):
        server = cloud.get_server(name)
    known = write_known_hosts(server)
    argv = ssh_argv(server, known, user=user, identity=identity, options=options,
                    command=command)
    if print_only:
        click.echo(shlex.join(argv))
        return
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        raise errors.ConfigError(f"cannot run ssh: {exc}") from None


# -- cleanup ----------------------------------------------------------------------------------
@main.command()
@click.argument("cloud_name", metavar="CLOUD")
@click.option("--older-than", default="1h", show_default=True,
              help="Only what is older than this (30m, 1h, 2d): a create still under way "
                   "stays untouched.")
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_errors_exit_1
def cleanup(cloud_name: str, older_than: str, dry_run: bool, as_json: bool) -> None:
    """Remove what cloudnorm left behind on CLOUD for servers that are gone: floating and
    Elastic IPs, port forwardings, security groups and their rules, key pairs, servers in
    ERROR. Only resources carrying the cloudnorm:owner marker are touched."""
    from cloudnorm import cleanup as leftovers_of
    from cloudnorm.cli.progress import Progress
    from cloudnorm.cli.render import table

    try:
        age = leftovers_of.parse_age(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    with _connect(cloud_name) as cloud, Progress(delay=1.0) as progress:
        with progress.waiting("looking for leftovers", "looked for leftovers"):
            found, kept = leftovers_of.find(cloud, age)
        failed: list[str] = []
        if found and not dry_run:
            failed = leftovers_of.remove(cloud, found, progress.status)
            progress.clear()
    data = {"cloud": cloud_name, "dry_run": dry_run, "older_than": older_than,
            "leftovers": [{"owner": f.owner, "reason": f.reason,
                           "resources": [{"kind": r.kind, "id": r.id, "name": r.description,
                                          "created": r.created.isoformat() if r.created
                                          else None} for r in f.resources]} for f in found],
            "kept": kept, "failed": failed}
    if as_json:
        _echo_json(data)
    else:
        rows = [(f.owner, r.kind, r.description or r.id, f.reason)
                for f in found for r in f.resources]
        verb = "would remove" if dry_run else "removed"
        if rows:
            click.echo(f"{verb} from {cloud_name}:")
            click.echo(table(("owner", "kind", "resource", "why"), rows))
        else:
            click.echo(f"nothing left behind on {cloud_name}")
        for line in kept:
            click.echo(f"kept {line}")
        for line in failed:
            click.echo(f"error: could not remove {line}", err=True)
    sys.exit(1 if failed else 0)


# -- sandbox ----------------------------------------------------------------------------------
@main.group()
def sandbox() -> None:
    """The local clouds (OpenStack profiles, the local EC2) in the background.

    As root they run with the SSH data plane in a network namespace of their own:
    servers answer SSH there, and only there.
    """


def _state_dir_option(func: F) -> F:
    return click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
                        help="Where the sandbox keeps its state (default: "
                             "$CLOUDNORM_CACHE_DIR/sandbox or ~/.cache/cloudnorm/sandbox).")(func)


def _sandbox_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cloudnorm.cli.sandbox_control import SandboxError

        try:
            return func(*args, **kwargs)
        except SandboxError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    return wrapper  # type: ignore[return-value]


def _print_sandbox(info: dict[str, Any]) -> None:
    from cloudnorm.cli.sandbox_control import usage

    if not info["running"]:
        click.echo("sandbox is starting" if info.get("starting") else "no sandbox running")
        return
    click.echo(f"sandbox running (pid {info['pid']}, since {info['started']}); profiles: "
               f"{', '.join(info['profiles']) if isinstance(info['profiles'], list) else 'all'}")
    click.echo(f"  clouds: {', '.join(info['clouds'])}")
    click.echo(f"  SSH data plane: {'yes' if info.get('dataplane') else 'no'}; "
               f"log: {info['log']}")
    for line in usage(info):
        click.echo(f"  {line}")


@sandbox.command("up")
@click.option("--profile", "profiles", multiple=True, metavar="NAME",
              help="An OpenStack quirk profile, or 'aws' for the local EC2 (repeatable; "
                   "default: all).")
@click.option("--inside", multiple=True, metavar="NETWORK",
              help="Be inside this network (OpenStack network, AWS VPC or subnet id, GCE "
                   "network): its servers also answer SSH on their private addresses, for "
                   "trying private access (repeatable).")
@click.option("--timeout", default=900.0, show_default=True,
              help="Seconds to wait for the start (the first one installs the services).")
@_state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_sandbox_errors
def sandbox_up(profiles: tuple[str, ...], inside: tuple[str, ...], timeout: float,
               state_dir: Path | None, as_json: bool) -> None:
    """Start the local clouds in the background; prints how to use them."""
    from cloudnorm.cli import sandbox_control as cli_sandbox
    from cloudnorm.cli.progress import Progress

    directory = state_dir or cli_sandbox.default_dir()
    with Progress() as progress:
        info = cli_sandbox.up(directory, profiles, timeout=timeout, inside=inside,
                              on_progress=lambda text: progress.status(f"sandbox: {text}"))
    if as_json:
        _echo_json(info)
        return
    if info.get("already"):
        click.echo("a sandbox already runs; `cloudnorm sandbox down` stops it")
    _print_sandbox(info)


@sandbox.command("status")
@_state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sandbox_status(state_dir: Path | None, as_json: bool) -> None:
    """Show whether a sandbox runs and how to use it."""
    from cloudnorm.cli import sandbox_control as cli_sandbox

    info = cli_sandbox.status(state_dir or cli_sandbox.default_dir())
    if as_json:
        _echo_json(info)
    else:
        _print_sandbox(info)


@sandbox.command("down")
@_state_dir_option
@click.option("--timeout", default=120.0, show_default=True,
              help="Seconds to wait for everything to stop.")
@_sandbox_errors
def sandbox_down(state_dir: Path | None, timeout: float) -> None:
    """Stop the sandbox and everything it started."""
    from cloudnorm.cli import sandbox_control as cli_sandbox
    from cloudnorm.cli.progress import Progress

    with Progress() as progress:
        result = cli_sandbox.down(state_dir or cli_sandbox.default_dir(), timeout=timeout,
                                  on_progress=progress.status)
    click.echo("sandbox stopped" if result["stopped"] else result.get("reason")
               or "the sandbox had already stopped")


# -- demo -------------------------------------------------------------------------------------
@main.command()
@click.option("--cloud", "clouds", multiple=True, metavar="CLOUD",
              help="Only these sandbox clouds, e.g. sandbox-fip-required or sandbox-aws "
                   "(repeatable; default: every OpenStack profile and sandbox-aws).")
def demo(clouds: tuple[str, ...]) -> None:
    """Start the local clouds, create one server on each, log in with ssh, print how
    every cloud compares with AWS, and remove everything. Needs root (the servers'
    SSH lives in a network namespace of the sandbox's own)."""
    import subprocess
    import time

    from cloudnorm.cli import demo_run as cli_demo

    if os.environ.get(cli_demo.INSIDE):
        sys.exit(cli_demo.run_inside(list(clouds) or None))
    if os.geteuid() != 0:
        click.echo("error: the demo logs in to its servers, whose SSH runs in a network "
                   "namespace only root can make: run it as root", err=True)
        sys.exit(1)
    started = time.monotonic()
    code = subprocess.call(cli_demo.outside_argv(list(clouds)),
                           env=dict(os.environ, **{cli_demo.INSIDE: "1"}))
    click.echo(f"demo done in {time.monotonic() - started:.0f}s, sandbox start and stop "
               "included; nothing is left running")
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()

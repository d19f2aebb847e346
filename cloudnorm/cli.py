"""The ``cloudnorm`` command.

Exit codes: 0 success, 1 a cloud or cloudnorm error (the message says what to
fix), 2 a usage error. Provider SDKs load only when a subcommand needs a cloud.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import attrs
import click

from cloudnorm import errors


def _fail(exc: errors.CloudnormError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


def _inspect_one(name: str, os_names: tuple[str, ...], min_ram: int) -> dict[str, Any]:
    from cloudnorm.cloud import connect

    with connect(name) as cloud:
        report: dict[str, Any] = {"cloud": name, "provider": cloud.provider,
                                  "region": cloud.settings.region}
        report["networks"] = [
            {"name": n.name, "public": n.public, "external": n.external, "usable": n.usable,
             "reason": n.reason} for n in cloud.list_networks()]
        if cloud.has_network_service:
            try:
                decision = cloud.choose_network()
                report["default_network"] = attrs.asdict(decision) if decision else None
            except errors.CloudnormError as exc:
                report["default_network"] = {"error": str(exc)}
        else:
            report["default_network"] = {"choice": None, "reason": "the cloud has no network "
                                         "service: it places servers itself"}
        report["images"] = {}
        for os_name in os_names:
            try:
                image, decision = cloud.choose_image(os_name)
                user, why = cloud.login_user(image)
                report["images"][os_name] = {"id": image.id, **attrs.asdict(decision),
                                             "login_user": user, "login_user_reason": why}
            except errors.NotFound as exc:
                report["images"][os_name] = {"error": str(exc)}
        try:
            flavor, decision = cloud.choose_flavor(min_ram=min_ram)
            report["flavor"] = {"id": flavor.id, **attrs.asdict(decision)}
        except errors.NotFound as exc:
            report["flavor"] = {"error": str(exc)}
    return report


def _print_report(report: dict[str, Any]) -> None:
    click.secho(f"cloud {report['cloud']} ({report['provider']}, region "
                f"{report['region'] or '-'})", bold=True)
    click.echo("  networks:")
    if not report["networks"]:
        click.echo("    (no network service)")
    for net in report["networks"]:
        role = ("unusable" if not net["usable"] else
                "floating IP pool" if net["external"] else
                "public" if net["public"] else "private")
        click.echo(f"    {net['name']:<36} {role:<16} {net['reason']}")
    dn = report["default_network"] or {}
    click.echo(f"  new servers go on: {dn.get('choice') or '-'}  "
               f"({dn.get('reason') or dn.get('error')})")
    for os_name, img in report["images"].items():
        if "error" in img:
            click.echo(f"  image for {os_name}: none ({img['error']})")
        else:
            click.echo(f"  image for {os_name}: {img['choice']}  ({img['reason']})")
            click.echo(f"    login user: {img['login_user'] or 'unknown'}  "
                       f"({img['login_user_reason']})")
    fl = report["flavor"]
    click.echo(f"  flavor: {fl.get('choice', 'none')}  ({fl.get('reason') or fl.get('error')})")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cloudnorm")
def main() -> None:
    """Every compute cloud, the way AWS behaves for the person who automates it."""


@main.command()
@click.argument("clouds", nargs=-1)
@click.option("--all", "all_clouds", is_flag=True, help="Inspect every cloud in clouds.yaml.")
@click.option("--os", "os_names", multiple=True, default=("ubuntu-22.04",), show_default=True,
              help="Operating system to find an image for (repeatable).")
@click.option("--min-ram", default=2048, show_default=True, help="MiB the flavor must have.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect(clouds: tuple[str, ...], all_clouds: bool, os_names: tuple[str, ...],
            min_ram: int, as_json: bool) -> None:
    """Show what discovery sees on CLOUDS: networks classified with reasons,
    the image and flavor cloudnorm would choose, and the login user."""
    if all_clouds:
        from openstack.config import loader

        clouds = tuple(sorted(n for n in loader.OpenStackConfig().get_cloud_names()
                              if n != "defaults"))
    if not clouds:
        raise click.UsageError("name at least one cloud, or pass --all")
    reports = []
    failed = False
    for name in clouds:
        try:
            reports.append(_inspect_one(name, os_names, min_ram))
        except errors.CloudnormError as exc:
            failed = True
            reports.append({"cloud": name, "error": str(exc)})
    if as_json:
        click.echo(json.dumps(reports, indent=2, default=str))
    else:
        for report in reports:
            if "error" in report:
                click.secho(f"cloud {report['cloud']}: error: {report['error']}", fg="red")
            else:
                _print_report(report)
            click.echo("")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":  # pragma: no cover
    main()

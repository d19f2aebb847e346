"""``cloudnorm inspect``: what a cloud offers and what it needs that AWS would not."""

from __future__ import annotations

from typing import Any

import click

from cloudnorm import errors


def connect(name: str) -> Any:
    from cloudnorm.cloud import connect as open_cloud

    return open_cloud(name)


def inspect_one(name: str, os_names: tuple[str, ...], min_ram: int) -> dict[str, Any]:
    import attrs

    from cloudnorm import images, networks

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
        all_images = cloud.list_images()
        found_os = sorted({(i.os_distro, i.os_version) for i in all_images
                           if i.os_distro and i.os_version and not i.hidden
                           and not i.is_snapshot and i.status == "active"})
        wanted = os_names or tuple(f"{d}-{v}" for d, v in found_os)
        report["images"] = {}
        for os_name in wanted:
            try:
                image, decision = cloud.choose_image(os_name)
                user, why = cloud.login_user(image)
                ask = images.parse_os(os_name)
                same = [i for i in all_images if images.is_distro(ask.distro, i.os_distro)
                        and images.version_matches(ask.version, i.os_version)]
                report["images"][os_name] = {"id": image.id, **attrs.asdict(decision),
                                             "candidates": len(same),
                                             "login_user": user, "login_user_reason": why}
            except errors.NotFound as exc:
                report["images"][os_name] = {"error": str(exc)}
        report["unreadable_images"] = sorted(i.name for i in all_images if not i.os_distro)
        flavors = sorted(cloud.list_flavors(), key=lambda f: (f.ram, f.vcpus, f.disk, f.name))
        try:
            flavor, decision = cloud.choose_flavor(min_ram=min_ram)
            report["flavor"] = {"id": flavor.id, **attrs.asdict(decision)}
        except errors.NotFound as exc:
            report["flavor"] = {"error": str(exc)}
        report["flavors"] = [{"name": f.name, "ram": f.ram, "vcpus": f.vcpus, "disk": f.disk,
                              "chosen_automatically": not f.disabled,
                              "note": f.raw.get("cloudnorm:passed_over")
                              or ("disabled" if f.disabled else "")} for f in flavors]
        report["quirks"] = quirks(cloud, networks)
        report["next_process"] = next_process(cloud.settings)
        # Last: what discovery's requests taught the limiter is part of the answer.
        limiter = getattr(cloud.driver, "limiter", None)
        report["rate_limit"] = limiter.status() if limiter is not None else None
    return report


#: Cache backends that live in the process and go with it.
IN_PROCESS = ("dogpile.cache.memory", "dogpile.cache.null")


def next_process(settings: Any) -> dict[str, Any]:
    """What the next process on this cloud finds of this one: the discovery cache, and
    (OpenStack) whether openstack.config keeps the token in the keyring."""
    region = settings.openstack
    return {"cache": settings.cache.backend,
            "cache_kept": settings.cache.backend not in IN_PROCESS,
            "lifetime": settings.cache.expiration_time,
            "token_kept": None if region is None else not region.skip_auth_cache()}


def next_process_line(kept: dict[str, Any] | None) -> str:
    """One line on what a later process starts with (see :func:`next_process`)."""
    if not kept:
        return "next process: unknown"
    cache = (f"discovery kept in {kept['cache']} for {kept['lifetime']:g} s"
             if kept["cache_kept"] else
             f"discovery not kept ({kept['cache']}: this process only)")
    if kept["token_kept"] is None:
        return f"next process: {cache}"
    token = ("token kept in the keyring" if kept["token_kept"] else
             "token not kept (cache: auth: true and a keyring keep it)")
    return f"next process: {cache}; {token}"


def rate_limit_line(status: dict[str, Any] | None) -> str:
    """One line on the account's request budget (``Limiter.status()``)."""
    if not status:
        return "rate limit: none"
    where = "shared between processes" if status["shared"] else "this process"
    if status["mode"] == "fixed":
        rates = ", ".join(f"{status[k]['rate']:g} {k}/s" if status[k]["rate"] else
                          f"{k} unlimited" for k in ("writes", "reads"))
        return f"rate limit: fixed, {rates}, kept over {status['window']:g} s ({where})"
    parts = []
    for kind in ("writes", "reads"):
        now = status[kind]
        text = f"{kind} {now['rate']:.3g}/s (starts at {now['start']:.3g}/s"
        if now["slowdowns"]:
            text += (f"; slowed down {now['slowdowns']} time(s), last {now['since_slowdown']:.0f}"
                     f" s ago, {now['throttled']} throttled answer(s)")
        parts.append(text + ")")
    held = (f"; nothing goes for {status['held_for']:.1f} s (Retry-After)"
            if status["held_for"] else "")
    return f"rate limit: adaptive ({where}), {', '.join(parts)}{held}"


def quirks(cloud: Any, networks: Any) -> dict[str, Any]:
    """What this cloud needs that AWS would not, as discovery and the profile say."""
    profile = cloud.profile
    quirks: dict[str, Any] = {
        "profile": profile.name, "profile_description": profile.description,
        "network_service": cloud.has_network_service,
        "security_groups": cloud.capabilities.security_groups,
        "key_delivery": ("config drive (the cloud has no metadata service)"
                         if profile.config_drive else "metadata service"),
    }
    quirks["access"] = {"mode": cloud.settings.access,
                        "source": cloud.settings.access_source or "the default"}
    try:
        plan = cloud.plan_public_address(cloud.default_network())
        quirks["public_access"] = {"method": plan.method, "choice": plan.decision.choice,
                                   "reason": plan.decision.reason}
    except errors.CloudnormError as exc:
        quirks["public_access"] = {"method": None, "error": str(exc)}
    return quirks


def print_report(report: dict[str, Any]) -> None:
    click.secho(f"cloud {report['cloud']} ({report['provider']}, region "
                f"{report['region'] or '-'})", bold=True)
    q = report["quirks"]
    access = q["public_access"]
    click.echo(f"  profile: {q['profile']}  ({q['profile_description']})")
    mode = q.get("access") or {"mode": "public", "source": "the default"}
    click.echo(f"  access: {mode['mode']}  ({mode['source']})")
    click.echo(f"  {rate_limit_line(report.get('rate_limit'))}")
    click.echo(f"  {next_process_line(report.get('next_process'))}")
    click.echo(f"  public access: {access.get('choice') or 'none possible'}  "
               f"({access.get('reason') or access.get('error')})")
    click.echo(f"  network service: {'yes' if q['network_service'] else 'no'}; security "
               f"groups: {'yes' if q['security_groups'] else 'no'}; keys reach servers by "
               f"{q['key_delivery']}")
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
    click.echo("  images by OS:")
    for os_name, img in report["images"].items():
        if "error" in img:
            click.echo(f"    {os_name}: none ({img['error']})")
        else:
            click.echo(f"    {os_name}: {img['choice']}  ({img['reason']})")
            click.echo(f"      login user: {img['login_user'] or 'unknown'}  "
                       f"({img['login_user_reason']})")
    if report["unreadable_images"]:
        click.echo(f"    OS unknown for {len(report['unreadable_images'])} image(s): "
                   + ", ".join(report["unreadable_images"][:5])
                   + (" ..." if len(report["unreadable_images"]) > 5 else ""))
    fl = report["flavor"]
    chosen = fl.get("choice")
    click.echo(f"  flavors ({len(report['flavors'])}):")
    shown = report["flavors"][:12]
    for f in shown:
        mark = "*" if f["name"] == chosen else " "
        click.echo(f"   {mark}{f['name']:<28} {f['ram']:>7} MiB {f['vcpus']:>3} vCPU "
                   f"{f['disk']:>5} GiB" + (f"  ({f['note']})" if f["note"] else ""))
    if len(report["flavors"]) > len(shown):
        click.echo(f"    ... {len(report['flavors']) - len(shown)} more (--json lists all)")
    click.echo(f"  flavor: {chosen or 'none'}  ({fl.get('reason') or fl.get('error')})")

"""What the ``cloudnorm`` command prints: tables, JSON shapes, Markdown. No I/O here."""

from __future__ import annotations

import datetime
import textwrap
from collections.abc import Sequence
from typing import Any

#: Exit codes of every subcommand.
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


# -- tables ---------------------------------------------------------------------------------
def table(headers: Sequence[str], rows: Sequence[Sequence[str]],
          widths: Sequence[int] | None = None) -> str:
    """A plain-text table; cells wrap to ``widths`` (default: the longest cell per column).

    Rows that wrap are separated by a blank line so a row's lines stay together.
    """
    columns = len(headers)
    if widths is None:
        widths = [max([len(headers[i])] + [len(str(r[i])) for r in rows]) for i in
                  range(columns)]
    widths = [max(3, w) for w in widths]

    def cell_lines(text: str, width: int) -> list[str]:
        lines: list[str] = []
        for part in str(text).splitlines() or [""]:
            lines += textwrap.wrap(part, width, break_long_words=True,
                                   break_on_hyphens=False) or [""]
        return lines

    def render(cells: Sequence[str]) -> list[str]:
        wrapped = [cell_lines(c, w) for c, w in zip(cells, widths, strict=True)]
        height = max(len(w) for w in wrapped)
        out = []
        for i in range(height):
            parts = [(w[i] if i < len(w) else "").ljust(widths[n])
                     for n, w in enumerate(wrapped)]
            out.append("  ".join(parts).rstrip())
        return out

    body = [render(r) for r in rows]
    lines = render(headers) + ["  ".join("-" * w for w in widths)]
    tall = any(len(b) > 1 for b in body)
    for i, block in enumerate(body):
        if tall and i:
            lines.append("")
        lines += block
    return "\n".join(lines)


def split_widths(total: int, fixed: Sequence[int | None]) -> list[int]:
    """Column widths for ``total`` characters: fixed ones as given, the rest (None)
    sharing what remains equally (two spaces between columns)."""
    free = [i for i, w in enumerate(fixed) if w is None]
    used = sum(w for w in fixed if w is not None) + 2 * (len(fixed) - 1)
    share = max(20, (total - used) // max(1, len(free)))
    return [share if w is None else w for w in fixed]


# -- conformance ----------------------------------------------------------------------------
def conformance_text(report: dict[str, Any], width: int = 120) -> str:
    """One cloud's conformance (the :func:`cloudnorm.conformance.as_dict` shape) as text."""
    head = (f"cloud {report['cloud']} ({report['provider']}, profile {report['profile']}, "
            f"{report.get('access', 'public')} access): "
            f"{'conforms' if report['ok'] else 'does NOT conform'} through cloudnorm; "
            f"measured in {report['elapsed']:.0f}s")
    lines = [head]
    if report.get("node"):
        lines.append(f"node {report['node']} (deleted again)")
    widths = split_widths(width, [16, None, 9, None])
    rows = [(s["title"], f"{s['raw']}: {s['raw_detail']}", s["cloudnorm"],
             s["gap"] or ("-" if s["raw"] == "YES" else s["cloudnorm_detail"]))
            for s in report["steps"]]
    lines.append(table(("step", "raw cloud (measured)", "cloudnorm",
                        "how cloudnorm closed the gap"), rows, widths))
    lines += [f"note: {n}" for n in report.get("notes") or ()]
    if report.get("error"):
        lines.append(f"error: {report['error']}")
    if report.get("leftovers"):
        lines.append("left behind (remove with `cloudnorm cleanup`): "
                     + ", ".join(report["leftovers"]))
    return "\n".join(lines)


def summary_table(reports: Sequence[dict[str, Any]]) -> str:
    """Raw verdicts against cloudnorm's, one row per cloud, one column per step."""
    if not reports:
        return ""
    steps = [s["title"].split(" ", 1)[0] for s in reports[0]["steps"]]
    rows = []
    for report in reports:
        cells = [f"{_short(s['raw'])}>{_short(s['cloudnorm'])}" for s in report["steps"]]
        rows.append((report["cloud"], *cells, "yes" if report["ok"] else "NO"))
    legend = ("each step: raw cloud > through cloudnorm (Y yes, N no, P partial, "
              "- not measured)")
    return legend + "\n" + table(("cloud", *steps, "ok"), rows)


def _short(verdict: str) -> str:
    return {"YES": "Y", "NO": "N", "PARTIAL": "P"}.get(verdict, "-")


def conformance_markdown(reports: Sequence[dict[str, Any]]) -> str:
    """Conformance reports as Markdown (a heading and a table per cloud)."""
    out = []
    for report in reports:
        out.append(f"### {report['cloud']} ({report['provider']}, profile "
                   f"{report['profile']}, {report.get('access', 'public')} access)\n")
        if report.get("node"):
            out.append(f"Node: `{report['node']}`, deleted again. Measured in "
                       f"{report['elapsed']:.0f} s.\n")
        out.append("| step | raw cloud (measured) | through cloudnorm | how cloudnorm closed "
                   "the gap |")
        out.append("|---|---|---|---|")
        for s in report["steps"]:
            gap = s["gap"] or ("-" if s["raw"] == "YES" else s["cloudnorm_detail"])
            out.append(f"| {_md(s['title'])} | **{s['raw']}**: {_md(s['raw_detail'])} | "
                       f"**{s['cloudnorm']}**: {_md(s['cloudnorm_detail'])} | {_md(gap)} |")
        if report.get("error"):
            out.append(f"\nError: {_md(report['error'])}")
        if report.get("leftovers"):
            out.append("\nLeft behind: " + _md(", ".join(report["leftovers"])))
        out.append("")
    return "\n".join(out)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# -- servers --------------------------------------------------------------------------------
def server_json(server: Any) -> dict[str, Any]:
    """A :class:`~cloudnorm.models.Server` as JSON-ready data (``list``/``show``/``create``)."""
    return {
        "id": server.id, "name": server.name, "status": server.status,
        "cloud": server.location.cloud, "region": server.location.region,
        "zone": server.location.zone, "image": server.image, "flavor": server.flavor,
        "interface_ip": server.interface_ip, "ssh_user": server.ssh_user,
        "ssh_port": server.ssh_port, "host_keys": list(server.host_keys),
        "public_v4": server.public_v4, "public_v6": server.public_v6,
        "private_v4": server.private_v4,
        "addresses": [{"ip": a.ip, "version": a.version, "network": a.network,
                       "public": a.public, "kind": a.kind, "reason": a.reason}
                      for a in server.addresses],
        "created": server.created.isoformat() if server.created else None,
        "tags": dict(server.tags),
        "decisions": [{"step": d.step, "choice": d.choice, "reason": d.reason}
                      for d in server.decisions],
    }


def ssh_target(data: dict[str, Any]) -> str:
    """``user@address:port`` of a :func:`server_json` record, or ``-``."""
    if not data.get("interface_ip"):
        return "-"
    host = data["interface_ip"]
    host = f"[{host}]" if ":" in host else host
    user = f"{data['ssh_user']}@" if data.get("ssh_user") else ""
    return f"{user}{host}:{data.get('ssh_port') or 22}"


def servers_table(servers: Sequence[dict[str, Any]],
                  now: datetime.datetime | None = None) -> str:
    """:func:`server_json` records as the ``cloudnorm list`` table."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    rows = []
    for s in servers:
        age = "-"
        if s.get("created"):
            age = _age(now - datetime.datetime.fromisoformat(s["created"]))
        rows.append((s["name"], s["id"], s["status"], ssh_target(s), age,
                     "yes" if "cloudnorm:owner" in (s.get("tags") or {}) else "no"))
    return table(("name", "id", "status", "ssh", "age", "cloudnorm"), rows)


def server_text(data: dict[str, Any]) -> str:
    """One :func:`server_json` record for a person (``show``/``create``)."""
    lines = [f"server {data['name']} ({data['id']}) in cloud {data['cloud']}: {data['status']}",
             f"  log in:  {ssh_target(data)}"]
    if data.get("image") or data.get("flavor"):
        lines.append(f"  image {data.get('image') or '-'}, flavor {data.get('flavor') or '-'}")
    for a in data["addresses"]:
        lines.append(f"  address {a['ip']:<39} {'public' if a['public'] else 'private':<8}"
                     f"{a['reason']}")
    if data["host_keys"]:
        from cloudnorm import hostkeys

        for key in data["host_keys"]:
            kind, _, blob = key.partition(" ")
            lines.append(f"  host key {kind} {hostkeys.fingerprint(blob.split()[0])}")
    for d in data["decisions"]:
        lines.append(f"  {d['step']}: {d['choice']} ({d['reason']})")
    return "\n".join(lines)


def _age(delta: datetime.timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

"""report.md, report.json, fleet.png and processes.png from one run's results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.stats import fmt, fmt_ratio, fmt_summary, ratio

LIB_NAMES = {"cloudnorm": "cloudnorm", "openstacksdk": "openstacksdk", "libcloud": "Libcloud"}
# Scenario 2's targets: cloudnorm's wall time for a fleet of this size at most
# openstacksdk's, and at most this many requests per server at every N.
FLEET_WALL_N = 50
FLEET_REQUESTS_PER_SERVER = 12
# What each of cloudnorm's create requests is for, by endpoint (scenario 1 notes).
PURPOSE = {
    "neutron GET /v2.0/networks": "network discovery",
    "neutron GET /v2.0/subnets": "network discovery",
    "neutron GET /v2.0/routers": "network discovery",
    "neutron GET /v2.0/floatingips": "network discovery",
    "nova POST /v2.1/os-keypairs": "throw-away key pair",
    "nova DELETE /v2.1/os-keypairs/{id}": "throw-away key pair",
    "neutron POST /v2.0/security-groups": "own security group",
    "neutron POST /v2.0/security-group-rules": "own security group",
    "neutron POST /v2.0/ports": "port and floating IP",
    "neutron GET /v2.0/ports": "port and floating IP",
    "neutron POST /v2.0/floatingips": "port and floating IP",
    "nova POST /v2.1/servers": "boot",
    "nova GET /v2.1/servers/{id}": "status polls",
    "nova GET /v2.1/servers/detail": "status polls",
    "nova POST /v2.1/servers/{id}/action": "console reads",
    "nova POST /v2.1/servers/{id}/metadata": "login record",
}


def write(data: dict[str, Any], results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / "report.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    png = _plot(data, results)
    processes_png = _plot_processes(data, results)
    (results / "report.md").write_text(render(data, png, processes_png))


# -- verdicts ---------------------------------------------------------------------------
def _verdict(value: float | None, limit: float, higher_is_better: bool = False) -> str:
    if value is None:
        return "not measured"
    ok = value >= limit if higher_is_better else value <= limit
    return "**met**" if ok else "**missed**"


def targets(data: dict[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    sc = data.get("scenarios", {})
    create = (sc.get("create") or {}).get("summary")
    if create:
        for mode, limit in (("warm", 0.7), ("cold", 1.0)):
            cn = create["cloudnorm"][mode]["requests"]
            sdk = create["openstacksdk"][mode]["requests"]
            lc = create["libcloud"][mode]["requests"]
            r = ratio(cn, sdk)
            rows.append([f"1 API requests per create, {mode} cache", fmt_summary(cn, digits=1),
                         fmt_summary(sdk, digits=1), fmt_summary(lc, digits=1), fmt_ratio(r),
                         f"≤ {limit:.1f}×", _verdict(r, limit)])
        for mode in ("cold", "warm"):
            cn = create["cloudnorm"][mode]["wall"]
            login = create["cloudnorm"][mode]["ssh_ready"]
            sdk = create["openstacksdk"][mode]["ssh_ready"]
            lc = create["libcloud"][mode]["ssh_ready"]
            r = ratio(cn, sdk)
            rows.append([f"1 wall time to SSH-ready, {mode} (s)",
                         f"{fmt_summary(cn, digits=1)}; logged in at "
                         f"{fmt(login.get('median'), '', 1)}",
                         fmt_summary(sdk, digits=1), fmt_summary(lc, digits=1),
                         f"{fmt_ratio(r)} (logged in: {fmt_ratio(ratio(login, sdk))})",
                         "≤ 0.5×", _verdict(r, 0.5)])
    rows += _fleet_targets(sc.get("concurrent"))
    norm = sc.get("normalize")
    if norm and norm.get("cloudnorm", {}).get("processes"):
        for key, label in (("rate", "wall"), ("cpu_rate", "CPU")):
            cn, sdk = norm["cloudnorm"][key], norm["openstacksdk"][key]
            r = ratio(cn, sdk)
            rows.append([f"3 normalization, servers/s ({label} time)", fmt_summary(cn, digits=0),
                         fmt_summary(sdk, digits=0), "–", fmt_ratio(r), "≥ 50×",
                         _verdict(r, 50.0, higher_is_better=True)])
    start = sc.get("startup")
    if start and start.get("cloudnorm", {}).get("n"):
        r = start.get("cloudnorm_vs_openstacksdk")
        rows.append(["4 start-up, `python -c \"import …\"` (ms)",
                     fmt_summary(_ms(start["cloudnorm"]), digits=0),
                     fmt_summary(_ms(start["openstacksdk"]), digits=0),
                     fmt_summary(_ms(start["libcloud"]), digits=0), fmt_ratio(r), "≤ 0.25×",
                     _verdict(r, 0.25)])
    login = sc.get("login")
    if login and login.get("nodes"):
        for user, node in login["nodes"].items():
            one_ms = fmt(node["one_login"]["median"] * 1000, "", 0)
            where = (f"unknown user ({user}: {node['position']}th of "
                     f"{len(login['candidates'])})")
            if node.get("console_named"):
                r = node["console_vs_one"]
                rows.append([f"5 ACTIVE → logged in, {where}, user read from the console (ms)",
                             f"console {fmt_summary(_ms(node['console_named']), digits=0)}",
                             "–", f"in turn {fmt_summary(_ms(node['sequential']), digits=0)}",
                             f"{fmt_ratio(r)} one login ({one_ms} ms)", "≤ 1.5× one login",
                             _verdict(r, 1.5)])
            r = node["probe_vs_one"]
            rows.append([f"5 ACTIVE → logged in, {where}, no table on the console: probe (ms)",
                         f"probe {fmt_summary(_ms(node['parallel_probe']), digits=0)}",
                         "–", f"in turn {fmt_summary(_ms(node['sequential']), digits=0)}",
                         f"{fmt_ratio(r)} one login ({one_ms} ms)", "≤ 1.5× one login",
                         _verdict(r, 1.5)])
    if norm and norm.get("cloudnorm", {}).get("processes"):
        cn, sdk = norm["cloudnorm"]["peak_rss_mib"], norm["openstacksdk"]["peak_rss_mib"]
        rows.append(["6 peak RSS holding 10,000 classified servers (MiB)",
                     fmt_summary(cn, digits=0), fmt_summary(sdk, digits=0), "–",
                     fmt_ratio(ratio(cn, sdk)), "(no target)", "–"])
    rows += _processes_targets(sc.get("processes"))
    rows += _bfv_targets(sc.get("bfv"))
    return rows


def _bfv_targets(b: dict[str, Any] | None) -> list[list[str]]:
    """Scenario 8 has no target: its rows give the medians and cloudnorm ÷ openstacksdk."""
    s = (b or {}).get("summary") or {}
    if not any((s.get(lib) or {}).get("runs") for lib in LIB_NAMES):
        return []
    rows = []
    for key, label, digits in (
            ("ssh_ready", "8 boot from volume: create → SSH-ready (s)", 1),
            ("requests", "8 boot from volume: API requests, create", 1),
            ("delete_s", "8 boot from volume: delete, until the server is gone (s)", 1),
            ("lifecycle_requests", "8 boot from volume: API requests, create + delete (+ the "
             "left volume's removal)", 1)):
        cells = [fmt_summary((s.get(lib) or {}).get(key) or {}, digits=digits)
                 for lib in LIB_NAMES]
        r = ratio((s.get("cloudnorm") or {}).get(key), (s.get("openstacksdk") or {}).get(key))
        rows.append([label, *cells, fmt_ratio(r), "(no target)", "–"])
    left = [f"{(s.get(lib) or {}).get('volumes_left_total', 0)} of "
            f"{(s.get(lib) or {}).get('runs', 0)}" for lib in LIB_NAMES]
    rows.append(["8 boot from volume: root volumes left after the delete", *left, "–",
                 "none", "**met**" if not (s.get("cloudnorm") or {}).get("volumes_left_total")
                 else "**missed**"])
    return rows


def _processes_targets(p: dict[str, Any] | None) -> list[list[str]]:
    """Scenario 7 has no numeric target (the issue asks for the measurement): its rows
    give both series and, at the largest N, the shared cache ÷ the per-process one."""
    by = ((p or {}).get("summary") or {}).get("by_mode") or {}
    memory, shared = by.get("memory") or {}, by.get("redis") or {}
    sizes = sorted({int(n) for n in memory} | {int(n) for n in shared})
    if not sizes:
        return []
    rows = []
    top = str(max(sizes))
    for key, label, digits in (("requests", "discovery requests", 0),
                               ("wall", "discovery wall time (s)", 2)):
        def series(table: dict[str, Any], key: str = key, digits: int = digits) -> str:
            return " / ".join(fmt((table.get(str(n)) or {}).get(key, {}).get("median"), "",
                                  digits) for n in sizes)

        r = ratio((shared.get(top) or {}).get(key), (memory.get(top) or {}).get(key))
        rows.append([f"7 {label}, N = {', '.join(map(str, sizes))} processes at once",
                     f"per-process cache {series(memory)}; Redis {series(shared)} "
                     f"(Redis ÷ per-process at N = {top}: {fmt_ratio(r)})",
                     "–", "–", "–", "(no target)", "–"])
    return rows


def _ms(s: dict[str, Any]) -> dict[str, Any]:
    return {k: (v * 1000 if isinstance(v, float) else v) for k, v in s.items()
            if k in ("n", "median", "min", "max", "spread")}


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- the report -------------------------------------------------------------------------
def render(data: dict[str, Any], png: str | None, processes_png: str | None = None) -> str:
    sc = data.get("scenarios", {})
    v = data.get("versions", {})
    m = data.get("machine", {})
    out = ["# cloudnorm benchmarks", ""]
    out.append(
        f"Run of {data.get('started', '?')}, {fmt(data.get('elapsed_s'), ' s', 0)} in all "
        f"(budget {fmt(data.get('budget_s'), ' s', 0)}), `python -m bench`. Machine: "
        f"{m.get('cpus')} CPUs, {m.get('platform', '')}; load average at start "
        f"{_load(m.get('load_at_start'))}, at end {_load(m.get('load_at_end'))} (the machine "
        "is shared: other work running at the same time slows every library alike, but not "
        "evenly over time). cloudnorm "
        f"{v.get('cloudnorm', '?')}, openstacksdk {v.get('openstacksdk', '?')}, Apache Libcloud "
        f"{v.get('apache-libcloud', '?')}, asyncssh {v.get('asyncssh', '?')}, Python "
        f"{v.get('python', '?')}.")
    out.append("")
    out += _provenance(data)
    backend = data.get("backend")
    if backend:
        out.append(
            "Backend: the local OpenStack of `cloudnorm.testing` (Keystone, Glance, Neutron, "
            "Placement, Nova) seeded with the **fip-required** profile (tenant network behind "
            "a router; public access only through a floating IP; port 22 closed by default) "
            "and its SSH data plane, all in a private network namespace; started in "
            f"{fmt(backend.get('started_in_s'), ' s', 1)}. Every library runs against this same "
            "backend in this same run. Requests are counted by the services themselves (their "
            "request log: project and user agent of every request).")
        out.append("")
    out += ["## Results against the targets", ""]
    rows = targets(data)
    if rows:
        out.append(_table(["measure", "cloudnorm", "openstacksdk", "Libcloud",
                           "cloudnorm ÷ openstacksdk", "target", "result"], rows))
        out.append("")
        out.append("Cells are median (min–max) over the repetitions.")
        out.append("")
        out += _missed(data)
    else:
        out.append("No scenario produced results.")
    out.append("")
    if "create" in sc:
        out += _create(sc["create"])
    if "concurrent" in sc:
        out += _concurrent(sc["concurrent"], png, data)
    if "normalize" in sc:
        out += _normalize(sc["normalize"])
    if "startup" in sc:
        out += _startup(sc["startup"], data.get("cli_startup"))
    if "login" in sc:
        out += _login(sc["login"])
    if "processes" in sc:
        out += _processes(sc["processes"], processes_png, m.get("cpus"))
    if "bfv" in sc:
        out += _bfv(sc["bfv"])
    problems = list(data.get("errors") or [])
    for name, result in sc.items():
        for item in (result or {}).get("skipped", []) or []:
            problems.append(f"{name}: skipped {item}")
        for item in (result or {}).get("errors", []) or []:
            problems.append(f"{name}: {item}")
    if problems:
        out += ["## Errors and skipped measurements", ""]
        out += [f"- {p}" for p in problems]
        out.append("")
    out += ["## Files", "",
            "`report.json` has every measurement (each repetition, request breakdowns, poll "
            "timelines); `bench/results/raw/` (not committed) the worker outputs and keys. "
            "How to run and what each scenario does: `doc/source/benchmarks.rst`.", ""]
    return "\n".join(out)


def _provenance(data: dict[str, Any]) -> list[str]:
    """Which run each scenario's results come from, once runs of some scenarios only
    (``--only``) were merged into an earlier run's results."""
    partial = data.get("partial_runs") or []
    runs = data.get("scenario_runs") or {}
    if not partial:
        return []
    later = {p.get("started"): p for p in partial}
    lines = []
    for started in dict.fromkeys(runs.values()):
        names = [n for n, s in runs.items() if s == started and n in data.get("scenarios", {})]
        if not names or started not in later:
            continue
        p = later[started]
        v, m = p.get("versions") or {}, p.get("machine") or {}
        lines.append(
            f"{', '.join(names)}: run of {started} (`python -m bench --only "
            f"{','.join(p.get('only') or names)}`, {fmt(p.get('elapsed_s'), ' s', 0)}; "
            f"cloudnorm {v.get('cloudnorm', '?')}, openstacksdk {v.get('openstacksdk', '?')}, "
            f"Libcloud {v.get('apache-libcloud', '?')}; load average at start "
            f"{_load(m.get('load_at_start'))}, at end {_load(m.get('load_at_end'))})")
    if not lines:
        return []
    return ["Results of later runs of some scenarios are merged into this run's; the "
            "other scenarios' results are this run's:", "", *[f"- {x}" for x in lines], ""]


def _load(value: Any) -> str:
    if not value:
        return "?"
    return "/".join(f"{x:.1f}" for x in value)


def _create(c: dict[str, Any]) -> list[str]:
    s = c["summary"]
    out = ["## 1. One create → a reachable node (fip-required)", ""]
    out.append(
        "cloudnorm: `cloud.create_server(name, image=\"ubuntu-22.04\", min_ram=2048, "
        "authorized_keys=[...])`, which returns after a verified login, hardening and removal "
        "of its throw-away key. openstacksdk: key pair + security group + rule (cold only), "
        "then `conn.create_server(..., auto_ip=True, wait=True)`. Libcloud (OpenStack 2.x "
        "driver): key pair + security group + rule (cold only), `create_node`, "
        "`wait_until_running(ssh_interface=\"private_ips\")`, then a floating IP created in "
        "the pool and attached by hand. The peers are given the image id, flavor and network "
        "names; cloudnorm finds them. *Cold*: a new client; *warm*: the same client again (the "
        "peers reuse their key pair and group, and Libcloud its looked-up image, size and "
        "network). Each repetition makes every library's cold create, then every library's "
        "warm one, so a library's two creates are at least the others' creates apart. For "
        "the peers, SSH-ready is the first SSH banner read on the address they report; "
        "cloudnorm's time is until `create_server` returns (its login step alone ends "
        "earlier: column 'logged in').")
    out.append("")
    rows = []
    for lib in ("cloudnorm", "openstacksdk", "libcloud"):
        for mode in ("cold", "warm"):
            x = s[lib][mode]
            rows.append([LIB_NAMES[lib], mode, fmt_summary(x["requests"], digits=1),
                         fmt_summary(x["project_requests"], digits=1),
                         fmt_summary(x["active_and_fip"], digits=1),
                         fmt_summary(x["ssh_ready"], digits=1) if lib == "cloudnorm" else "–",
                         fmt_summary(x["wall"], digits=1), str(x["requests"].get("n", 0))])
    out.append(_table(["library", "cache", "client requests", "all requests in the project",
                       "ACTIVE + public address (s)", "logged in (s)", "SSH-ready (s)", "runs"],
                      rows))
    out.append("")
    out.append(
        "*Client requests*: what the library sent (its requests scoped to the project plus "
        "its token and version-discovery requests). *All requests in the project* adds what "
        "the cloud did on the user's behalf (Nova's calls to Neutron and Glance).")
    out.append("")
    steps = s["cloudnorm"]["cold"].get("steps")
    if steps:
        out.append("cloudnorm's time per step (median seconds, cold / warm; the gaps between "
                   "steps, e.g. creating the security group before the boot, are not shown):")
        out.append("")
        warm_steps = s["cloudnorm"]["warm"].get("steps") or {}
        out.append(_table(list(steps), [[f"{fmt(steps[k].get('median'), '', 2)} / "
                                         f"{fmt((warm_steps.get(k) or {}).get('median'), '', 2)}"
                                         for k in steps]]))
        out.append("")
        out.append(
            "*boot* is from `POST /servers` until the ServerWatcher (one poll a second for a "
            "server's first ten seconds, then every 2 s) sees ACTIVE; the floating IP is "
            "attached to the port cloudnorm made while Nova boots, so *public_address* "
            "has nothing left to do then. *login* is knocking on port 22 until sshd answers "
            "(0.25 s apart, then backing off), reading the host keys (and the login user) "
            "from the console, and the login; *bootstrap* and *remove_key* (hardening, "
            "verified, and removing the throw-away key) are work the peers do not do at all.")
        out.append("")
    rl = s["cloudnorm"]["cold"].get("rate_limit")
    if rl:
        waits = [s["cloudnorm"][m].get("rate_limit_wait") or {} for m in ("cold", "warm")]
        if rl.get("adaptive"):
            setting = (
                "adaptive, per account for the whole process: it starts at "
                f"{fmt(rl['writes_per_s'])} writes/s and {fmt(rl['reads_per_s'])} reads/s "
                "(the OpenStack profile's `adaptive_rate_limit:`), halves when the cloud "
                "throttles (429 or 413 with Retry-After, holding the account's requests "
                "until then) and climbs back")
        else:
            setting = (
                f"in this run fixed at {fmt(rl['writes_per_s'])} write/s and "
                f"{fmt(rl['reads_per_s'])} reads/s per account, kept over a moving window, "
                "the default then; the default is now adaptive, from 10 writes/s and 100 "
                "reads/s (`cloudnorm/profiles/openstack.yaml`)")
        out.append(
            f"cloudnorm's own client-side rate limit (`cloudnorm/ratelimit.py`; {setting}) "
            f"let each create's {rl['writes']} writes (every POST, PUT and DELETE; reading "
            "the console, a POST action, counts as a read) through: they waited "
            f"{fmt(waits[0].get('median'), ' s', 1)} (cold) and "
            f"{fmt(waits[1].get('median'), ' s', 1)} (warm) in all, "
            "time the peers, which have no such limit, do not spend.")
        out.append("")
    out += ["**Address each library reports right after create**", ""]
    rows = []
    for lib in ("cloudnorm", "openstacksdk", "libcloud"):
        rep = s[lib]["cold"].get("reported") or {}
        rows.append([LIB_NAMES[lib], ", ".join(f"`{k}={v!r}`" for k, v in rep.items()),
                     s[lib]["cold"].get("address_source") or "`interface_ip`"])
    out.append(_table(["library", "reported", "address used for SSH"], rows))
    out.append("")
    sdk = s["openstacksdk"]["cold"].get("reported") or {}
    if sdk and not sdk.get("public_v4") and sdk.get("floating_in_addresses"):
        out.append(
            f"Finding: openstacksdk's `create_server(auto_ip=True, wait=True)` returned a "
            f"server with `public_v4=''` and `interface_ip=''` although the floating IP "
            f"{sdk['floating_in_addresses']} was attached and listed in `server.addresses`; a "
            "caller has to dig it out of the address list (or fetch the server again). "
            "Libcloud's node keeps `public_ips=[]` after the floating IP is attached (the "
            "node object is not refreshed); the caller has the address from the floating IP "
            "object it created itself.")
        out.append("")
    out += ["**Where the requests go** (warm run, by endpoint)", ""]
    endpoints = sorted({e for lib in s for e in (s[lib]["warm"].get("breakdown") or {})})
    rows = [[f"`{e}`"] + [str((s[lib]["warm"].get("breakdown") or {}).get(e, "")) for lib in
                           ("cloudnorm", "openstacksdk", "libcloud")] for e in endpoints]
    rows.append(["**total**"] + [str(sum((s[lib]["warm"].get("breakdown") or {}).values()))
                                 for lib in ("cloudnorm", "openstacksdk", "libcloud")])
    out.append(_table(["endpoint", "cloudnorm", "openstacksdk", "Libcloud"], rows))
    out.append("")
    warm = s["cloudnorm"]["warm"].get("breakdown") or {}
    if warm:
        by_purpose: dict[str, int] = {}
        for e, n in warm.items():
            if e in PURPOSE:
                by_purpose[PURPOSE[e]] = by_purpose.get(PURPOSE[e], 0) + n
        total = sum(warm.values())
        out.append(
            f"cloudnorm's {total} warm requests by purpose: "
            + ", ".join(f"{purpose} {n}" for purpose, n in by_purpose.items())
            + ". The peers' warm runs reuse a key pair and a group; cloudnorm makes a "
            "throw-away key and a group of the server's own each time, and removes them. "
            "Its port is made before the boot so that the floating IP goes on while Nova "
            "boots; its console is read once sshd answers, not while the server boots.")
        out.append("")
    return out


def _fleet(c: dict[str, Any] | None) -> dict[tuple[str, int], dict[str, Any]]:
    """Scenario 2's runs by (library, N): the fleet runs (each with its own key login)."""
    return {(r["library"], r["n"]): r for r in (c or {}).get("runs") or []
            if "requests_per_server" in r}


def _kept(c: dict[str, Any] | None) -> dict[tuple[str, str], dict[str, Any]]:
    """Scenario 2's N = 1 runs with the token and discovery kept, by (library, start):
    ``first process`` (fills them) and ``next process`` (what every later one costs)."""
    return {(r["library"], r["start"]): r for r in (c or {}).get("kept_runs") or []
            if "requests_per_server" in r}


def _warm_meets(c: dict[str, Any] | None) -> dict[str, Any] | None:
    """cloudnorm's next-process N = 1 run when it keeps within the requests target."""
    warm = _kept(c).get(("cloudnorm", "next process"))
    return warm if warm and warm["requests_per_server"] <= FLEET_REQUESTS_PER_SERVER else None


def _polls_cell(r: dict[str, Any] | None) -> str:
    if not r:
        return "–"
    return f"{r['polls_per_interval_max']} / {fmt(r['polls_per_interval_mean'], '', 1)}"


def _polls_flat(runs: dict[int, dict[str, Any]]) -> bool | None:
    """Status polls per interval do not grow with N: at no N does the most in one interval
    exceed the smallest N's by more than one, nor the mean the smallest N's mean by more
    than half of it."""
    sizes = sorted(runs)
    if len(sizes) < 2:
        return None
    low = runs[sizes[0]]
    return all(runs[n]["polls_per_interval_max"] <= low["polls_per_interval_max"] + 1
               and runs[n]["polls_per_interval_mean"]
               <= 1.5 * max(low["polls_per_interval_mean"], 1.0) for n in sizes[1:])


def _fleet_targets(c: dict[str, Any] | None) -> list[list[str]]:
    by = _fleet(c)
    if not by:
        return []
    sizes = sorted({n for _, n in by})
    rows = []
    top = FLEET_WALL_N if any(n == FLEET_WALL_N for _, n in by) else max(sizes)
    cn, sdk = by.get(("cloudnorm", top)), by.get(("openstacksdk", top))
    cn_wall, sdk_wall = (cn or {}).get("wall"), (sdk or {}).get("wall")
    r = ratio(cn_wall, sdk_wall)
    verdict = ("not measured" if cn is None or sdk is None or sdk_wall is None
               else "**missed**" if cn_wall is None else _verdict(r, 1.0))
    rows.append([f"2 fleet of {top}: wall time until every server accepts a key login (s)",
                 _wall_cell(cn), _wall_cell(sdk), "–", fmt_ratio(r),
                 "≤ openstacksdk's (≤ 1.00×)", verdict])
    label = " / ".join(map(str, sizes))
    cn_rps = [by[("cloudnorm", n)]["requests_per_server"] for n in sizes
              if ("cloudnorm", n) in by]
    worst = max((by[("cloudnorm", n)]["requests_per_server"]
                 / by[("openstacksdk", n)]["requests_per_server"] for n in sizes
                 if ("cloudnorm", n) in by and ("openstacksdk", n) in by), default=None)
    over = [n for n in sizes if ("cloudnorm", n) in by
            and by[("cloudnorm", n)]["requests_per_server"] > FLEET_REQUESTS_PER_SERVER]
    warm = _warm_meets(c)
    if not cn_rps:
        verdict = "not measured"
    elif over == [1] and warm is not None:
        # A process's one-time token and discovery are all of N = 1's excess: measured
        # again for a process after another, which is what automation runs.
        verdict = (f"**met** for every process after the first (N = 1: "
                   f"{fmt(warm['requests_per_server'], '', 0)}; the machine's first "
                   f"process {fmt(by[('cloudnorm', 1)]['requests_per_server'], '', 0)})")
    elif over:
        verdict = "**missed**"
    else:
        verdict = "**met**" + ("" if len(cn_rps) == len(sizes) else " (at the N measured)")
    rows.append([f"2 fleet: client requests per server, N = {label}",
                 " / ".join(_rps_cell(by.get(("cloudnorm", n))) for n in sizes),
                 " / ".join(_rps_cell(by.get(("openstacksdk", n))) for n in sizes), "–",
                 f"worst {fmt_ratio(worst)}",
                 f"cloudnorm ≤ {FLEET_REQUESTS_PER_SERVER} at every N", verdict])
    kept = _kept(c)
    if kept:
        def cell(lib: str) -> str:
            return " / ".join(_rps_cell(kept.get((lib, start)))
                              for start in ("first process", "next process"))
        rows.append(["2 fleet: client requests, N = 1, first process / next process, with "
                     "the token and discovery kept", cell("cloudnorm"), cell("openstacksdk"),
                     "–", fmt_ratio(ratio(
                         (kept.get(("cloudnorm", "next process")) or {}).get("requests"),
                         (kept.get(("openstacksdk", "next process")) or {}).get("requests"))),
                     f"cloudnorm ≤ {FLEET_REQUESTS_PER_SERVER} (next process)",
                     "not measured" if ("cloudnorm", "next process") not in kept
                     else "**met**" if _warm_meets(c) else "**missed**"])
    flat = _polls_flat({n: by[("cloudnorm", n)] for n in sizes if ("cloudnorm", n) in by})
    interval_cn = next((by[k]["poll_interval"] for k in by if k[0] == "cloudnorm"), 2.0)
    interval_sdk = next((by[k]["poll_interval"] for k in by if k[0] == "openstacksdk"), 5.0)
    rows.append([f"2 fleet: status polls per poll interval, most / mean, N = {label}",
                 " · ".join(_polls_cell(by.get(("cloudnorm", n))) for n in sizes)
                 + f" (per {interval_cn:.0f} s)",
                 " · ".join(_polls_cell(by.get(("openstacksdk", n))) for n in sizes)
                 + f" (per {interval_sdk:.0f} s)", "–", "", "cloudnorm O(1) in N",
                 "not measured" if flat is None else "**met**" if flat else "**missed**"])
    return rows


CONSOLE = "nova POST /v2.1/servers/{id}/action"


def _fleet_missed(c: dict[str, Any] | None) -> list[str]:
    """Why scenario 2's targets are missed, from the run's own measurements."""
    by = _fleet(c)
    out: list[str] = []
    sizes = sorted({n for _, n in by})
    if not sizes:
        return out
    top = FLEET_WALL_N if ("cloudnorm", FLEET_WALL_N) in by else max(sizes)
    cn, sdk = by.get(("cloudnorm", top)), by.get(("openstacksdk", top))
    if cn and sdk and cn.get("wall") and sdk.get("wall") and cn["wall"] > sdk["wall"]:
        last = cn.get("last_step_done") or {}
        dp = cn.get("dataplane") or {}
        out.append(
            f"**Why the fleet's wall time at N = {top} misses ≤ openstacksdk's** "
            f"({fmt(cn['wall'], ' s', 1)} against {fmt(sdk['wall'], ' s', 1)}): the last of "
            f"cloudnorm's servers was seen ACTIVE at {fmt(last.get('boot'), ' s', 1)} "
            f"(openstacksdk's last create returned at "
            f"{fmt(sdk.get('last_active_and_fip'), ' s', 1)}), and its last login came at "
            f"{fmt(last.get('login'), ' s', 1)}. Between the two it waits for the SSH "
            "data plane: " + _dataplane_text(dp) + " cloudnorm logs in only after reading "
            "the host keys cloud-init prints on the console in the node's late boot "
            "stages; openstacksdk's threads log in as soon as sshd answers (accepting any "
            "host key). Its console reads while it waits: "
            f"{(cn.get('breakdown') or {}).get(CONSOLE, 0)} for {top} servers.")
        out.append("")
    cn_runs = {n: by[("cloudnorm", n)] for n in sizes if ("cloudnorm", n) in by}
    over = {n: r for n, r in cn_runs.items()
            if r["requests_per_server"] > FLEET_REQUESTS_PER_SERVER}
    warm = _warm_meets(c)
    if list(over) == [1] and warm is not None:
        first = over[1]
        out.append(
            f"**N = 1 and the first process**: a machine's first process pays "
            f"{fmt(first['requests_per_server'], '', 0)} requests for its one server, "
            "about a dozen of them its one-time token, version documents and discovery "
            "(images, flavors, networks, subnets, routers, router ports, floating IPs), "
            "which no server shares at N = 1. With the token kept in the keyring "
            "(openstack.config's `cache: auth: true`) and discovery in a file "
            "(`dogpile.cache.dbm`), the next process asked "
            f"{fmt(warm['requests_per_server'], '', 0)}: "
            + ", ".join(f"{v} × {k}" for k, v in sorted((warm.get('breakdown') or {}).items(),
                                                        key=lambda kv: -kv[1]))
            + ". Automation runs exactly such processes (an Ansible task, a CI job).")
        out.append("")
        over = {}
    if over:
        parts = []
        for n, r in sorted(over.items()):
            b = r.get("breakdown") or {}
            parts.append(f"N = {n}: {fmt(r['requests_per_server'], '', 1)} per server, of "
                         f"which console reads {fmt(b.get(CONSOLE, 0) / n, '', 1)}")
        out.append(
            f"**Why requests per server miss ≤ {FLEET_REQUESTS_PER_SERVER}**: "
            + "; ".join(parts) + ". A create's own requests are its eight writes (node key "
            "pair and its removal, security group and rules, port, boot, floating IP, "
            "login record), its share of the status polls and its console reads; a fleet "
            "shares one discovery (token, version documents, images, flavors, networks, "
            "subnets, routers, ports, floating IPs: about a dozen requests), which is what "
            "N = 1 pays alone. cloudnorm reads the console until the host keys are on it "
            "(1 s after sshd answers, 0.5 s later, then at waits growing by 1.5× to 5 s); "
            "cloud-init prints them in the node's late boot stages, which take longer the "
            "more nodes boot at once on the machine's two cores, so a larger fleet reads "
            "it more often per server.")
        out.append("")
    return out


def _by_endpoint(lib: str, n: int, breakdown: dict[str, int]) -> str:
    """A library's most frequent requests of a fleet, by endpoint."""
    return (f"At N = {n}, {lib}'s requests by endpoint: "
            + ", ".join(f"`{e}` {k}" for e, k in list(breakdown.items())[:14]) + ".")


def _dataplane_text(dp: dict[str, Any]) -> str:
    if not dp or not dp.get("rounds"):
        return "its rounds were not recorded in this run."
    return (f"it started this fleet's {dp.get('nodes', '?')} nodes between "
            f"{fmt(dp.get('first_node_s'), ' s', 1)} and {fmt(dp.get('last_node_s'), ' s', 1)} "
            f"(up to eight at once, each running cloud-init's first stages), in "
            f"{dp['rounds']} rounds of its reconciling loop, the longest "
            f"{fmt(dp.get('longest_round_s'), ' s', 1)}.")


def _wall_cell(r: dict[str, Any] | None) -> str:
    if not r:
        return "not run"
    if r.get("wall") is not None:
        return fmt(r["wall"], "", 1)
    return (f"not all: {r['ok']}/{r['n']} logged in "
            f"({fmt(r.get('wall_until_all_returned'), ' s', 0)})")


def _rps_cell(r: dict[str, Any] | None) -> str:
    return fmt(r["requests_per_server"], "", 1) if r else "–"


def _concurrent(c: dict[str, Any], png: str | None, data: dict[str, Any]) -> list[str]:
    out = ["## 2. A fleet: N servers at once", ""]
    by = _fleet(c)
    if not by:
        out += ["No fleet run produced results (see the errors below).", ""]
        return out
    interval_cn = next((by[k]["poll_interval"] for k in by if k[0] == "cloudnorm"), 2.0)
    out.append(
        "N threads create N servers at once, as `doc/source/usage.rst` (\"Many servers at "
        "once\") prescribes. **cloudnorm**: N threads call `create_server(name, "
        "image=\"ubuntu-22.04\", min_ram=2048, authorized_keys=[...])` on one shared "
        "`Cloud`; it returns after a key login with a verified host key, hardening and the "
        "throw-away key's removal. **openstacksdk**: one key pair and one security group "
        "opening port 22, then N threads call `create_server(..., auto_ip=True, wait=True)` "
        "on one shared `Connection`; when a create returns, its thread waits for the SSH "
        "banner on the address openstacksdk reports and logs in with the operator's key "
        f"as `{c.get('login_user', 'ubuntu')}` (OpenSSH's client, tried every 0.25 s). "
        "Apache Libcloud is not run in the fleets (scenario 1 measures it alone). Both "
        "libraries run at every N in this same run against the same backend, the largest "
        "N first, the library going first alternating from one N to the next.")
    out.append("")
    out.append(
        "*Wall*: from the fresh client until every server has accepted a key login (until "
        "the last `create_server` returned, for cloudnorm). *Requests*: the library's, "
        "counted by the services themselves (their request log, by user agent), from the "
        "first token on. *Status polls*: `GET /servers/detail` and `GET /servers/{id}`, "
        "counted in consecutive intervals of the library's own poll interval (cloudnorm's "
        f"ServerWatcher {interval_cn:.0f} s -- 1 s while a server is younger than 10 s --; "
        "openstacksdk's `wait_for_server` 5 s) from its first poll to its last: the most in "
        "one interval and the mean. Each fleet runs in a fresh worker process "
        "(`bench/fleet_worker.py`) that imports its library, then makes the client and the "
        "threads; *peak RSS* is that process's (the SSH nodes, the services and the bench's "
        "own process with the data plane are others): " + _rss_method(by) + "; in "
        "brackets, its growth over the RSS with the libraries imported. Afterwards the bench "
        "deletes everything (its sweep, through its own uncounted connection) and counts "
        "what the project still holds (servers, floating IPs, non-network ports, key pairs, "
        "security groups other than `default`, the data plane's nodes): *left*. "
        "*First process / next process*: N = 1 twice more per library, each a fresh worker "
        "told to keep what it may between processes (doc/source/usage.rst, \"A process "
        "after another\"): openstack.config's `cache: auth: true` keeps the token in a "
        "keyring (a file keyring in the bench's directory) for both libraries, and "
        "cloudnorm's discovery goes to a file (`dogpile.cache.dbm`); openstacksdk's own "
        "reply cache stays off, as in a person's script. The first of the two fills them, "
        "the second costs what every later process does.")
    out.append("")
    rows = []
    for key in sorted(by, key=lambda k: (k[1], k[0])):
        r = by[key]
        rss = r.get("rss") or {}
        left = (r.get("cleanup") or {}).get("leftovers")
        rows.append([str(r["n"]), LIB_NAMES[r["library"]], f"{r['ok']}/{r['n']}",
                     fmt(r["wall"], "", 1) if r.get("wall") is not None
                     else f"({fmt(r.get('wall_until_all_returned'), '', 1)})",
                     str(r["requests"]), fmt(r["requests_per_server"], "", 1),
                     str(r["status_polls"]),
                     f"{r['polls_per_interval_max']} / "
                     f"{fmt(r['polls_per_interval_mean'], '', 2)} per "
                     f"{r['poll_interval']:.0f} s",
                     f"{fmt(rss.get('peak_mib'), '', 0)} (+{fmt(rss.get('growth_mib'), '', 1)})",
                     str(len(r.get("failures") or [])),
                     "nothing" if left == {} else ", ".join(f"{k} {v}" for k, v in left.items())
                     if left else "not checked"])
    out.append(_table(["N", "library", "logged in", "wall (s)", "requests",
                       "requests / server", "status polls",
                       "polls per interval, most / mean", "peak RSS (MiB; + over imports)",
                       "errors",
                       "left after the sweep"], rows))
    out.append("")
    failed = [(k, r) for k, r in by.items() if r.get("failures")]
    for (lib, n), r in sorted(failed, key=lambda x: (x[0][1], x[0][0])):
        out.append(f"- {LIB_NAMES[lib]} N = {n}: {len(r['failures'])} failed, e.g. "
                   f"`{r['failures'][0][:200]}`")
    if failed:
        out.append("")
    sizes = sorted({n for _, n in by})
    top = max(sizes)
    cn, sdk = by.get(("cloudnorm", top)), by.get(("openstacksdk", top))
    if cn and cn.get("last_step_done"):
        out.append(
            f"At N = {top}, the last of cloudnorm's creates finished each step this many "
            "seconds after the start: " + ", ".join(
                f"{k} {v:.1f}" for k, v in cn["last_step_done"].items()) + ".")
        out.append("")
    if sdk and sdk.get("last_active_and_fip") is not None:
        out.append(
            f"At N = {top}, openstacksdk's last create returned (ACTIVE, floating IP "
            f"attached) {fmt(sdk['last_active_and_fip'], ' s', 1)} after the start, the "
            f"last SSH banner was read at {fmt(sdk['last_banner'], ' s', 1)} and "
            f"the last key login succeeded at {fmt(sdk['last_logged_in'], ' s', 1)} "
            f"({sdk.get('login_attempts')} `ssh` runs for {sdk['ok']} logins).")
        out.append("")
    for r in (cn, sdk):
        if r and (r.get("dataplane") or {}).get("rounds"):
            out.append(f"During {LIB_NAMES[r['library']]}'s fleet of {top}, the SSH data "
                       "plane (`cloudnorm/testing/openstack/dataplane_sync.py`): "
                       + _dataplane_text(r["dataplane"]))
            out.append("")
    limit = (cn or {}).get("rate_limit") or {}
    if limit:
        throttles = limit.get("throttles") or {}
        out.append(
            f"cloudnorm's client-side rate limit at N = {top}: "
            + (f"adaptive, starting at {fmt(limit['writes_per_s'])} writes/s and "
               f"{fmt(limit['reads_per_s'])} reads/s (the OpenStack profile's "
               "`adaptive_rate_limit:`), halving when the cloud throttles (429/413 with "
               "Retry-After) and climbing back; "
               if limit.get("adaptive") else
               f"fixed at {fmt(limit['writes_per_s'])} writes/s and "
               f"{fmt(limit['reads_per_s'])} reads/s; ")
            + f"{limit['writes']} writes and {limit['reads']} reads went through it, the "
            f"threads waited {fmt(limit['write_wait_s'], ' s', 1)} for write turns and "
            f"{fmt(limit['read_wait_s'], ' s', 1)} for read turns in all; the sandbox "
            f"throttled {throttles.get('write', 0)} writes and {throttles.get('read', 0)} "
            "reads.")
        out.append("")
    if cn:
        b = cn.get("breakdown") or {}
        out.append(_by_endpoint("cloudnorm", top, b))
        versions = b.get("nova GET /v2.1", 0)
        if versions > 1:
            out.append("")
            out.append(
                f"`nova GET /v2.1` (compute version discovery) was made {versions} times for "
                "one `Cloud`, although `Transport.compute_microversion` "
                "(`cloudnorm/drivers/openstack/transport.py`) asks once per driver under a "
                "lock: something else asks for the compute versions.")
        out.append("")
    if sdk:
        out.append(_by_endpoint("openstacksdk", top, sdk.get("breakdown") or {}))
        out.append("")
    capacity = c.get("floating_ip_capacity")
    out.append(
        "The fip-required profile's public subnet is a /27 (about 28 floating IPs), too "
        "small for a fleet of 50: the bench adds a second subnet to the same external "
        "network (`bench/sandbox.py`, 203.0.113.128/25) and raises the project's quotas "
        "(instances, cores, RAM, key pairs, ports, floating IPs, security groups and rules) "
        "well above what 50 servers take"
        + (f"; the network then holds {capacity} floating IPs." if capacity else "."))
    out.append("")
    dp = [e for r in by.values() for e in r.get("dataplane_errors") or []]
    if dp:
        out.append("The SSH data plane reported: " + "; ".join(f"`{e[:160]}`" for e in dp[:3])
                   + ".")
        out.append("")
    if png:
        out += [f"![a fleet of N servers at once: wall time and requests per server]({png})",
                ""]
    return out


def _rss_method(by: dict[tuple[str, int], dict[str, Any]]) -> str:
    methods = {str(m) for r in by.values() if (m := (r.get("rss") or {}).get("method"))}
    return "; ".join(sorted(methods)) if methods else "not measured"


def _normalize(n: dict[str, Any]) -> list[str]:
    out = ["## 3 and 6. Normalizing 10,000 servers, and the memory to hold them", ""]
    out.append(
        "10,000 raw Nova records (each on a tenant network with a fixed and a floating IPv4 "
        "address, on a second private network and with a global IPv6 address) into each "
        "library's server objects, addresses classified, all held in memory; each library in "
        f"fresh processes (cloudnorm {n['cloudnorm'].get('processes', 0)}, openstacksdk "
        f"{n['openstacksdk'].get('processes', 0)}), records in 5 chunks per process. "
        "cloudnorm: `server_state` then its OpenStack driver's `normalize_server` (what "
        "`Cloud.list_servers` does per record). openstacksdk: `Server.existing(connection=…, "
        "**record)` as its proxy builds listed servers, then "
        "`openstack.cloud.meta.add_server_interfaces` (public_v4, private_v4, public_v6, "
        "interface_ip), as `Connection.list_servers` does. Every record carries its floating "
        "IP: without one, openstacksdk asks Neutron for the server's ports and floating IPs, "
        "two requests per server (`meta._get_supplemental_addresses`).")
    out.append("")
    rows = []
    for lib in ("cloudnorm", "openstacksdk"):
        x = n[lib]
        rows.append([LIB_NAMES[lib], fmt_summary(x["rate"], digits=0),
                     fmt_summary(x["cpu_rate"], digits=0),
                     fmt_summary(x["peak_rss_mib"], digits=0),
                     fmt_summary(x["held_mib"], digits=1),
                     fmt_summary(x["baseline_rss_mib"], digits=0),
                     f"{x['with_public_v4']} / {x['with_private_v4']}",
                     str(x.get("requests_while_timed"))])
    out.append(_table(["library", "servers/s (wall)", "servers/s (CPU)", "peak RSS (MiB)",
                       "held models (MiB)", "RSS before (MiB)", "with public_v4 / private_v4",
                       "requests while timed"], rows))
    out.append("")
    hot = n.get("profile")
    if hot:
        out.append("pyinstrument profile of cloudnorm's normalization (share of its time, "
                   "inclusive):")
        out.append("")
        out += [f"- `{h['function']}` ({h['file']}): {h['share'] * 100:.0f}%" for h in hot]
        out.append("")
    return out


def _startup(s: dict[str, Any], cli: dict[str, Any] | None) -> list[str]:
    out = ["## 4. Start-up", ""]
    out.append("Fresh interpreters, taking turns, after one untimed round; wall time of the "
               "whole process, and its CPU time.")
    out.append("")
    rows = []
    base = s.get("python", {}).get("median") or 0.0
    for name, code in (s.get("commands") or {}).items():
        x = s[name]
        if not x.get("n"):
            continue
        rows.append([name, f"`{code}`", fmt_summary(_ms(x), digits=0),
                     fmt((x["median"] - base) * 1000, "", 0),
                     fmt_summary(_ms(s["cpu"][name]), digits=0), str(x["n"])])
    out.append(_table(["", "python -c", "wall (ms)", "over bare python (ms)", "CPU (ms)",
                       "runs"], rows))
    out.append("")
    out.append(f"cloudnorm ÷ openstacksdk: {fmt_ratio(s.get('cloudnorm_vs_openstacksdk'))} wall, "
               f"{fmt_ratio(s.get('cpu_cloudnorm_vs_openstacksdk'))} CPU. `import cloudnorm` "
               "loads no provider SDK; opening an OpenStack cloud does (last row).")
    out.append("")
    if cli is not None:
        out.append("**`cloudnorm --help`** (measured by `bench/cli_startup.py`, run by this "
                   "bench):")
        out.append("")
        data = cli.get("data")
        if data and isinstance(data.get("results"), dict):
            rows = [[name, fmt(r.get("median_ms"), "", 0), f"{fmt(r.get('min_ms'), '', 0)}–"
                     f"{fmt(r.get('max_ms'), '', 0)}", str(r.get("runs"))]
                    for name, r in data["results"].items()]
            out.append(_table(["command", "median (ms)", "min–max (ms)", "runs"], rows))
            out.append("")
            loaded = data.get("sdks_imported") or {}
            out.append(f"Limit {fmt(data.get('limit_ms'), ' ms', 0)}: "
                       f"{'met' if data.get('ok') else 'not met'}; provider SDKs imported by "
                       "help: " + ", ".join(f"{k}: {v or 'none'}" for k, v in loaded.items())
                       + ".")
        else:
            out.append("```\n" + (cli.get("text") or cli.get("error") or cli.get("skipped")
                                  or "(no output)") + "\n```")
        out.append("")
    return out


def _missed(data: dict[str, Any]) -> list[str]:
    """Why each missed target is missed, from this run's own measurements."""
    sc = data.get("scenarios") or {}
    out: list[str] = []
    create = (sc.get("create") or {}).get("summary") or {}
    cn, sdk = create.get("cloudnorm") or {}, create.get("openstacksdk") or {}

    def median(lib: dict[str, Any], mode: str, key: str) -> Any:
        return ((lib.get(mode) or {}).get(key) or {}).get("median")

    modes = ("cold", "warm")
    waits = [median(cn, m, "rate_limit_wait") for m in modes]
    ready = [median(cn, m, "ssh_ready") for m in modes]
    peer = [median(sdk, m, "ssh_ready") for m in modes]
    if all(isinstance(x, float) for x in (*waits, *ready, *peer)) \
            and max(r / p for r, p in zip(ready, peer, strict=True)) > 0.5:
        without = [r - w for r, w in zip(ready, waits, strict=True)]
        out.append(
            "**Why SSH-ready misses ≤ 0.5×**: cloudnorm spends "
            f"{fmt(waits[0], ' s', 1)} (cold) and {fmt(waits[1], ' s', 1)} (warm) of each "
            "create waiting for its own write budget (the peers have no limit). This run's "
            f"times less those waits are {fmt(without[0], ' s', 1)} / "
            f"{fmt(without[1], ' s', 1)} to SSH-ready, "
            f"{fmt_ratio(ratio(without[0], peer[0]))} / {fmt_ratio(ratio(without[1], peer[1]))}"
            " of openstacksdk's time, which includes the hardening and key removal the peers "
            "do not do. The rest is the boot (Nova's two to three seconds to ACTIVE, seen by "
            "a poll a second), the node's first boot (cloud-init making its host keys before "
            "sshd listens), and the machine's load.")
        out.append("")
    warm = [median(cn, "warm", "requests"), median(sdk, "warm", "requests")]
    if all(isinstance(x, (int, float)) for x in warm) and warm[1] and warm[0] / warm[1] > 0.7:
        out.append(
            "**Why warm requests miss ≤ 0.7×**: a warm create makes the node key, its "
            "security group, the port, the boot, the floating IP, the login record and the "
            "key's removal (one request each, see the breakdown below), and then its status "
            "polls and console reads; this run needed more of the last two than usual.")
        out.append("")
    out += _fleet_missed(sc.get("concurrent"))
    nodes = (sc.get("login") or {}).get("nodes") or {}
    if any((n.get("probe_vs_one") or 0) > 1.5 for n in nodes.values()):
        out.append(
            "**Why the probe misses ≤ 1.5× one login**: it is the fallback for consoles "
            "without cloud-init's authorized keys table; `create_server` reads the user from "
            "that table first (the *console* rows). Twelve SSH handshakes cost the server "
            "twelve key exchanges and session processes: the CPU profile in section 5 shows "
            "that work alone needs more than 1.5 logins' time on this machine's two cores. "
            "It is still about half the time of trying the users in turn.")
        out.append("")
    return out


def _login(lg: dict[str, Any]) -> list[str]:
    out = ["## 5. ACTIVE → logged in, login user unknown", ""]
    out.append(
        f"A node of the SSH data plane (real OpenSSH in its own root filesystem) stands for "
        f"a server that just became ACTIVE. Candidates: {', '.join(lg['candidates'])} (what "
        "cloudnorm probes when it knows no user for the image). *One login*: "
        "`cloudnorm.ssh.wait_for_login` with the right user only. *Console*: what "
        "`create_server` does first: the user read from cloud-init's authorized keys table "
        "on the console (fetched anyway for the host keys), then one login. *Probe*: the "
        "fallback when the console has no table (`no_ssh_fingerprints: true`): all "
        "candidates at once, at most eight in flight, a login counting only once it has a "
        "shell. *In turn*: the candidates one after the other through the same "
        "function (same SSH library, options and host key check) until one gets in, as "
        "Libcloud's `ssh_alternate_usernames` does.")
    out.append("")
    rows = []
    for user, node in lg["nodes"].items():
        rows.append([user, f"{node['position']} of {len(lg['candidates'])}",
                     fmt_summary(_ms(node["one_login"]), digits=0),
                     fmt_summary(_ms(node.get("console_named") or {}), digits=0),
                     fmt_summary(_ms(node["parallel_probe"]), digits=0),
                     fmt_summary(_ms(node["sequential"]), digits=0),
                     fmt_ratio(node["probe_vs_one"]), fmt_ratio(node["sequential_vs_probe"]),
                     str(node["one_login"]["n"])])
    out.append(_table(["user", "position", "one login (ms)", "console (ms)", "probe (ms)",
                       "in turn (ms)",
                       "probe ÷ one", "in turn ÷ probe", "runs"], rows))
    out.append("")
    for user, node in lg["nodes"].items():
        rounds = node.get("probe_rounds") or {}
        if node.get("wrong_user"):
            out.append(
                f"**Finding**: on the node whose user is {user}, the parallel probe returned the "
                f"wrong user in {len(node['wrong_user'])} of {node.get('probes', '?')} probes ("
                + "; ".join(node["wrong_user"][:3]) + "). The node's sshd runs with OpenSSH's "
                "default `MaxStartups 10:30:100`: of 12 simultaneous unauthenticated "
                "connections it drops some at random, so the right user's attempt can fail as "
                "retryable, while `root` *gets in*: as on cloud images, root's key is accepted "
                "with cloud-init's forced command (\"Please login as the user …\"). "
                "`ssh._probe` takes the first candidate whose connection authenticated, so it "
                "settles on root, and the hardening that follows would run into the forced "
                "command.")
            out.append("")
        elif rounds.get("max") and rounds["max"] > 1:
            out.append(f"On the node whose user is {user}, some probes needed "
                       f"{rounds['max']:.0f} rounds (a connection was dropped and retried).")
            out.append("")
    cpu, server = lg.get("client_cpu"), lg.get("server_cpu")
    if cpu and server:
        cores = 2
        floor = (cpu["probe"] + server["probe"]) / cores
        ones = [n["one_login"]["median"] for n in (lg.get("nodes") or {}).values()
                if (n.get("one_login") or {}).get("median")]
        bound = bool(ones) and floor > 1.5 * max(ones)
        out.append(
            "CPU time per attempt (median), the profile of where the probe's time goes: "
            f"one login {fmt(cpu['one'] * 1000, ' ms', 1)} in the client and "
            f"{fmt(server['one'] * 1000, ' ms', 0)} in the node's sshd processes; the probe "
            f"{fmt(cpu['probe'] * 1000, ' ms', 1)} in the client and "
            f"{fmt(server['probe'] * 1000, ' ms', 0)} in sshd (a key exchange, a re-executed "
            "sshd and a session process for each of the 12 candidates). On this machine's "
            f"{cores} cores that work alone takes at least {fmt(floor * 1000, ' ms', 0)}, "
            "however it is scheduled" + (
                ": the probe cannot come within 1.5× of one login while it asks twelve "
                "users. " if bound else ". ")
            + "Node CPU is read from /proc: the node's processes and the children they "
            "reaped.")
        out.append("")
    elif cpu:
        out.append(
            f"The client's own CPU time per attempt: one login {fmt(cpu['one'] * 1000, ' ms', 1)}"
            f", probe {fmt(cpu['probe'] * 1000, ' ms', 1)}.")
        out.append("")
    return out


def _processes(p: dict[str, Any], png: str | None, cpus: int | None) -> list[str]:
    out = ["## 7. Many processes, one cloud account", ""]
    out.append(
        "N processes open the same cloud and discover at the same moment: `list_images()`, "
        "`list_flavors()`, `list_networks()`, `find_image(\"ubuntu-22.04\")`, "
        "`find_flavor(min_ram=512)`. *Per-process cache*: no `cache:` setting, each process "
        "keeps its own in memory. *Redis*: `cloudnorm: cache: {class: dogpile.cache.redis, "
        "expiration_time: 300, arguments: {url: …, distributed_lock: true, "
        "redis_expiration_time: 600}}` in clouds.yaml, with a new, empty redis-server for "
        "every run. The workers are forked from one process that has imported everything "
        "and discovered once (untimed), as a pre-forking server makes its workers, so "
        "interpreter start-up is not measured; each opens a new `Cloud` (its own cache, "
        "session and token), waits at a barrier, and all are let go by one write to a "
        "pipe. *Wall*: from that go signal until the last worker finished its discovery. "
        "*Discovery requests*: what the cloud logged for the project from cloudnorm, "
        "Keystone apart (its token and version requests are the next column).")
    out.append("")
    summ = p.get("summary") or {}
    by = summ.get("by_mode") or {}
    base = summ.get("one_process_requests")
    rows = []
    for n in p.get("sizes") or []:
        for mode, name in (("memory", "per-process"), ("redis", "Redis")):
            x = (by.get(mode) or {}).get(str(n))
            if not x:
                continue
            req = x["requests"]
            rows.append([str(n), name, fmt_summary(req, digits=0),
                         fmt_ratio(ratio(req, base)) if base else "n/a",
                         fmt_summary(x["identity_requests"], digits=0),
                         fmt_summary(x["wall"], digits=2),
                         f"{fmt(x['per_process'].get('median'), '', 2)} "
                         f"({fmt(x['per_process'].get('max'), '', 2)})",
                         str(x["reps"])])
    out.append(_table(["N", "cache", "discovery requests", "÷ one process",
                       "Keystone requests", "wall, go → last done (s)",
                       "per process, median (max) (s)", "runs"], rows))
    out.append("")
    if summ.get("as_expected") is not None:
        verdict = ("in every run" if summ["as_expected"] else
                   "**not** in every run (see `report.json`)")
        out.append(
            f"Expected: without sharing the cloud sees N × one process's {fmt(base, '', 0)} "
            "requests, with Redis one process's; so it was " + verdict + ". With Redis, one "
            "process discovers while the others wait on dogpile's lock in Redis and then "
            "read its result; they never ask the cloud, not even for a token.")
        out.append("")
    one = (by.get("memory") or {}).get("1") or {}
    if one.get("breakdown"):
        out.append("One process's discovery requests: " + ", ".join(
            f"`{e}` {n}" for e, n in one["breakdown"].items()) + ".")
        out.append("")
    latency = max((x.get("go_latency_max") or 0.0 for t in by.values() for x in t.values()),
                  default=0.0)
    within = base is not None and base <= 10
    out.append(
        "Cells are median (min–max) over the runs; per-process times are over every worker "
        "of every run. Without sharing, the wall time grows with N because the N "
        f"processes and the services answering them share the machine's {cpus or '?'} "
        f"cores (the last worker started up to {fmt(latency * 1000, ' ms', 0)} after the go "
        "signal)" + ("; one process's discovery stays within cloudnorm's default rate limit "
                     "(10 reads/s for each process), so the limit does not set these times"
                     if within else "") + ". "
        f"Scenario time: {fmt(p.get('duration_s'), ' s', 0)}, of which "
        f"{fmt(p.get('zygote_ready_s'), ' s', 1)} to start the process the workers are "
        "forked from.")
    out.append("")
    warnings = sorted({w for t in by.values() for x in t.values() for w in x.get("warnings")
                       or []})
    if warnings:
        out.append("Warnings the workers logged: " + "; ".join(f"`{w}`" for w in warnings[:5])
                   + ".")
        out.append("")
    if png:
        out += [f"![discovery from N processes, with and without a shared cache]({png})", ""]
    return out


def _bfv(b: dict[str, Any]) -> list[str]:
    s = b.get("summary") or {}
    choice = b.get("cloudnorm_choice") or {}
    size = b.get("volume_size")
    out = ["## 8. Boot from a volume (boot-from-volume profile)", ""]
    out.append(
        f"The **{b.get('profile')}** project of the same sandbox stack: every flavor has a "
        "0 GiB disk (Nova boots such a flavor only from a volume), the images ask for "
        f"`min_disk` {fmt(b.get('expected_root_volume_gb'))} GiB, Cinder is real; otherwise "
        "like fip-required (tenant network behind a router, a floating IP to reach a "
        "server). cloudnorm: `cloud.create_server(name, image=\"ubuntu-22.04\", "
        "min_ram=2048, authorized_keys=[...])`; it chose flavor "
        f"`{choice.get('flavor') or b.get('flavor')}` and a root disk of "
        f"`{choice.get('root_disk') or '?'}` by itself, and returns after a verified key "
        "login, hardening and removal of its throw-away key. openstacksdk: "
        f"`conn.create_server(name, image=<id>, flavor=\"{b.get('flavor')}\", "
        f"network=\"private\", boot_from_volume=True, volume_size={size}, auto_ip=True, "
        "wait=True, key_name=..., security_groups=[...])`. Libcloud: `create_node(..., "
        "image=None, ex_blockdevicemappings=[{source_type: image, destination_type: volume, "
        f"volume_size: {size}, delete_on_termination: true, boot_index: 0, uuid: <image "
        "id>}])`, `wait_until_running`, a floating IP made and attached by hand. The peers "
        "are given the image id, cloudnorm's flavor and its root volume size. Every create "
        "is a new client's (the peers make their key pair and security group, counted, as "
        "in scenario 1's cold creates). For the peers, *SSH-ready* is a key login as "
        f"`{b.get('login_user')}` (OpenSSH's client, tried every 0.25 s) that succeeded "
        "after the first SSH banner on the address they report (scenario 1's measure, "
        "column *first banner*). *Delete*: cloudnorm's `delete_server(id)`, openstacksdk's "
        "`delete_server(id, wait=True, delete_ips=True)`, Libcloud's `destroy_node` and the "
        "floating IP's `delete()`, then `ex_get_node_details` once a second until the node "
        "is gone; each until the server is gone. After each delete the bench lists the "
        "project's volumes with openstacksdk's `block_storage.volumes()` (its own "
        "connection, not counted) until none is on its way out (at most "
        "30 s); what is still there is *left*.")
    out.append("")
    rows = []
    for lib, name in LIB_NAMES.items():
        x = s.get(lib) or {}
        if not x.get("runs"):
            rows.append([name] + ["–"] * 9 + ["0"])
            continue
        rows.append([name, fmt_summary(x["requests"], digits=1),
                     fmt_summary(x["project_requests"], digits=1),
                     fmt_summary(x["active_and_address"], digits=1),
                     fmt_summary(x["ssh_banner"], digits=1),
                     fmt_summary(x["ssh_ready"], digits=1),
                     fmt_summary(x["delete_s"], digits=1),
                     fmt_summary(x["delete_requests"], digits=1),
                     ", ".join(str(v) for v in x.get("root_volume_gb") or []) or "?",
                     f"{x.get('volumes_left_total', 0)} of {x['runs']}", str(x["runs"])])
    out.append(_table(["library", "client requests, create", "all requests in the project",
                       "ACTIVE + public address (s)", "first banner (s)", "SSH-ready (s)",
                       "delete (s)", "client requests, delete", "root volume (GiB)",
                       "root volumes left after delete", "runs"], rows))
    out.append("")
    out.append(
        "Cells are median (min–max) over the runs. *All requests in the project* adds what "
        "the cloud did for the user (Nova's calls to Cinder, Neutron and Glance, e.g. "
        "making or attaching the volume). cloudnorm's *ACTIVE + public address* is when "
        "its public-address step ended. *First banner* and *SSH-ready* of a peer differ "
        "by the key logins that failed after sshd answered (its *ssh_login_attempts* in "
        "`report.json`).")
    out.append("")
    ratios = s.get("ratios") or {}
    rows = []
    for key, label in (("ssh_ready", "create → SSH-ready (time)"),
                       ("requests", "client requests, create"),
                       ("delete_s", "delete (time)"),
                       ("delete_requests", "client requests, delete"),
                       ("lifecycle_requests", "client requests, create + delete (+ removing "
                                              "a left volume)")):
        rows.append([label] + [fmt_ratio((ratios.get(peer) or {}).get(key))
                               for peer in ("openstacksdk", "libcloud")])
    out.append(_table(["cloudnorm ÷", "openstacksdk", "Libcloud"], rows))
    out.append("")
    sdk = s.get("openstacksdk") or {}
    if sdk.get("volumes_left_total"):
        removal = sdk.get("leftover_removal_requests") or {}
        out.append(
            f"**Finding**: openstacksdk's delete left the root volume in "
            f"{sdk['volumes_left_total']} of {sdk['runs']} runs (`available`, "
            f"{size} GiB each): `create_server(boot_from_volume=True)` maps it with "
            "`delete_on_termination` set to its `terminate_volume` argument, which defaults "
            "to False, and `delete_server` does not look at volumes. Its user pays for the "
            "volume until removing it; doing so with `conn.delete_volume(id, wait=True)` "
            f"took {fmt_summary(removal, digits=0)} more requests and "
            f"{fmt_summary(sdk.get('leftover_removal_s') or {}, ' s', 1)} "
            "(in the create + delete row above). Passing `terminate_volume=True` to "
            "`create_server` avoids it; the call measured here leaves it at its default.")
        out.append("")
    cn = s.get("cloudnorm") or {}
    if cn.get("runs"):
        verdict = ("none" if not cn.get("volumes_left_total") else
                   f"**{cn['volumes_left_total']}** in {cn['runs']} runs")
        out.append(
            f"cloudnorm left {verdict}: the volume goes with the server. Until no volume "
            "was on its way out after the delete returned (Cinder deleting it): "
            f"{fmt_summary(cn.get('volume_settle_s') or {}, ' s', 1)}.")
        out.append("")
    steps = cn.get("steps")
    if steps:
        out.append("cloudnorm's time per step (median s):")
        out.append("")
        out.append(_table(list(steps), [[fmt((steps[k] or {}).get("median"), "", 2)
                                         for k in steps]]))
        out.append("")
    for title, key in (("create", "breakdown"), ("delete", "delete_breakdown")):
        endpoints = sorted({e for lib in LIB_NAMES for e in ((s.get(lib) or {}).get(key)
                                                              or {})})
        if not endpoints:
            continue
        out += [f"**Where the requests go, {title}** (last run of each library, by "
                "endpoint)", ""]
        rows = [[f"`{e}`"] + [str(((s.get(lib) or {}).get(key) or {}).get(e, ""))
                              for lib in LIB_NAMES] for e in endpoints]
        rows.append(["**total**"] + [str(sum(((s.get(lib) or {}).get(key) or {}).values()))
                                     for lib in LIB_NAMES])
        out.append(_table(["endpoint", *LIB_NAMES.values()], rows))
        out.append("")
    nova = (s.get("cloudnorm") or {}).get("project_breakdown") or {}
    if nova:
        out.append("What the cloud did for cloudnorm's create besides the client's own "
                   "requests: " + ", ".join(f"`{e}` {n}" for e, n in nova.items()) + ".")
        out.append("")
    lc = b.get("libcloud") or {}
    if lc.get("measured"):
        out.append(f"Libcloud is measured: {lc.get('how')}")
    else:
        why = [e for e in b.get("errors") or [] if e.startswith("libcloud")]
        out.append("Libcloud is **not** measured in this run: "
                   + ("; ".join(why) if why else "no run of it fitted the budget") + ".")
    out.append("")
    return out


# -- the plot ---------------------------------------------------------------------------
def _plot(data: dict[str, Any], results: Path) -> str | None:
    """fleet.png: scenario 2's wall time, requests per server and status polls per
    interval against N, both libraries."""
    by = _fleet(data.get("scenarios", {}).get("concurrent"))
    if not by:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    styles = {"cloudnorm": ("tab:blue", "o"), "openstacksdk": ("tab:orange", "s")}
    sizes = sorted({n for _, n in by})
    panels = (("wall", "wall time until every server accepts a key login (s)"),
              ("requests_per_server", "client requests per server"),
              ("polls_per_interval_max", "status polls per poll interval (most)"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for lib, (color, marker) in styles.items():
            pts = sorted((n, r.get(key)) for (name, n), r in by.items()
                         if name == lib and r.get(key) is not None)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color,
                        label=LIB_NAMES[lib])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("N servers at once")
        ax.set_xticks(sizes)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    axes[1].axhline(FLEET_REQUESTS_PER_SERVER, color="0.5", linestyle="--", linewidth=1)
    axes[1].text(sizes[0], FLEET_REQUESTS_PER_SERVER, f" target ≤ {FLEET_REQUESTS_PER_SERVER}",
                 fontsize=8, color="0.3", va="bottom")
    axes[0].legend()
    interval_cn = next((by[k]["poll_interval"] for k in by if k[0] == "cloudnorm"), 2.0)
    interval_sdk = next((by[k]["poll_interval"] for k in by if k[0] == "openstacksdk"), 5.0)
    axes[2].text(0.02, 0.94, f"cloudnorm: per {interval_cn:.0f} s; openstacksdk: per "
                 f"{interval_sdk:.0f} s", transform=axes[2].transAxes, fontsize=8,
                 color="0.3")
    fig.suptitle("A fleet of N servers at once on the fip-required sandbox cloud",
                 fontsize=11)
    fig.tight_layout()
    name = "fleet.png"
    fig.savefig(results / name, dpi=110)
    plt.close(fig)
    return name


def _plot_processes(data: dict[str, Any], results: Path) -> str | None:
    p = data.get("scenarios", {}).get("processes") or {}
    by = (p.get("summary") or {}).get("by_mode") or {}
    if not any(by.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    series = (("memory", "per-process cache", "tab:orange", "s"),
              ("redis", "shared cache (Redis)", "tab:blue", "o"))
    panels = (("requests", "discovery requests the cloud saw"),
              ("wall", "wall time, go → last worker done (s)"))
    sizes = sorted({int(n) for t in by.values() for n in t})
    for ax, (key, title) in zip(axes, panels, strict=True):
        for mode, label, color, marker in series:
            pts = sorted((int(n), x[key]) for n, x in (by.get(mode) or {}).items()
                         if x[key].get("median") is not None)
            if not pts:
                continue
            xs = [n for n, _ in pts]
            med = [s["median"] for _, s in pts]
            low = [s["median"] - s["min"] for _, s in pts]
            high = [s["max"] - s["median"] for _, s in pts]
            ax.errorbar(xs, med, yerr=[low, high], marker=marker, color=color, capsize=3,
                        label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("N processes discovering at once")
        ax.set_xticks(sizes)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    axes[0].legend()
    axes[1].text(0.02, 0.94, "median; bars: min–max over the runs", transform=axes[1].transAxes,
                 fontsize=8, color="0.3")
    fig.suptitle("Many processes, one cloud account: discovery on the fip-required sandbox",
                 fontsize=11)
    fig.tight_layout()
    name = "processes.png"
    fig.savefig(results / name, dpi=110)
    plt.close(fig)
    return name

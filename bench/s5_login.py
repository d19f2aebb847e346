"""Scenario 5: from a running server to a logged-in session when the login user is unknown.

A node of the SSH data plane (a real OpenSSH server in its own root filesystem, on an
address of the private network namespace) stands in for a server that just became
ACTIVE. Its image's login user is not known, so the candidates are the ones cloudnorm
probes then: every distribution default it knows, and root (12 users).

* one login: ``cloudnorm.ssh.wait_for_login`` with the right user only (the baseline);
* console: what ``create_server`` does first -- read the user off cloud-init's authorized
  keys table in the console it already fetched for the host keys
  (``hostkeys.console_login_users``), then log in once;
* parallel probe (the fallback when the console has no such table): ``wait_for_login``
  with all candidates;
* in turn: the same candidates one after the other, each a complete attempt through the
  same function (same SSH library, same options, same host key check), stopping at the
  first that gets in -- Libcloud's ``ssh_alternate_usernames`` strategy.

Two nodes: one whose user is 6th of the 12 candidates, one whose user is 11th.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

from bench.common import Budget, say
from bench.stats import ratio, summary

ADDRESSES = ("198.51.100.10", "198.51.100.11")


def candidates() -> list[str]:
    """The users cloudnorm probes for an image whose login user it does not know
    (``provision._login_candidates``), for the fip-required cloud's profile."""
    from cloudnorm import profiles

    profile = profiles.load("openstack")
    return list(dict.fromkeys([*profile.login_users.values(),
                               *(d.login_user for d in profiles.distros().values()), "root"]))


def _sequential(ssh: Any, errors: Any, target: Any, users: list[str]) -> tuple[str, int]:
    for tried, user in enumerate(users, 1):
        try:
            ssh.wait_for_login(target, [user], timeout=30)
        except errors.NotReachable:
            continue
        return user, tried
    raise RuntimeError("no candidate user got in")


def run(workdir: Path, budget: Budget, reps: int, reserve: float) -> dict[str, Any]:
    from cloudnorm import errors, hostkeys, keys, ssh
    from cloudnorm.testing.dataplane import Fleet

    users = candidates()
    picks = [users[5], users[-2]]  # 6th and 11th of 12 (the last is root, refused)
    node_key = keys.generate("bench-login")
    fleet = Fleet(workdir / "login-nodes")
    out: dict[str, Any] = {"candidates": users, "nodes": {}}
    try:
        targets, consoles = {}, {}
        for user, address in zip(picks, ADDRESSES, strict=True):
            started = time.monotonic()
            fleet.ensure(f"login-{user}", [address], user=user,
                         authorized_key=node_key.public_key)
            console = ""
            for _ in range(100):  # bounded: the console shows the keys within seconds
                console = fleet.console_text(f"login-{user}")
                if hostkeys.parse_console(console):
                    break
                time.sleep(0.1)
            announced = hostkeys.parse_console(console)
            consoles[user] = console
            targets[user] = ssh.Target(address, 22, node_key.private_key, announced)
            say(f"login node for {user} at {address} up in {time.monotonic() - started:.1f}s")
        for user in picks:
            target = targets[user]
            position = users.index(user) + 1
            one, probe, seq, attempts, named = [], [], [], [], []
            wrong: list[str] = []
            cpu_one, cpu_probe = [], []
            node = fleet.get(f"login-{user}")
            assert node is not None
            server_one, server_probe = [], []
            ssh.wait_for_login(target, [user], timeout=30)  # warm-up, not measured
            for _ in range(reps):
                if budget.left() < reserve:
                    break
                t0, c0, s0 = time.monotonic(), _cpu(), node.cpu_seconds()
                ssh.wait_for_login(target, [user], timeout=30)
                one.append(time.monotonic() - t0)
                cpu_one.append(_cpu() - c0)
                server_one.append(_settled(node) - s0)
                t0 = time.monotonic()
                from_console = hostkeys.console_login_users(consoles[user],
                                                            node_key.public_key)
                login = ssh.wait_for_login(target, list(from_console[:1]) or users, timeout=60)
                named.append(time.monotonic() - t0)
                if login.user != user:
                    wrong.append(f"console named {login.user!r}")
                t0, c0, s0 = time.monotonic(), _cpu(), node.cpu_seconds()
                login = ssh.wait_for_login(target, users, timeout=60)
                probe.append(time.monotonic() - t0)
                cpu_probe.append(_cpu() - c0)
                server_probe.append(_settled(node) - s0)
                attempts.append(login.attempts)
                if login.user != user:
                    # Recorded, not hidden: the probe settled on another candidate.
                    wrong.append(f"probe chose {login.user!r} after {login.attempts} round(s)")
                    say(f"login as {user}: {wrong[-1]}")
                t0 = time.monotonic()
                found, tried = _sequential(ssh, errors, target, users)
                seq.append(time.monotonic() - t0)
                if found != user or tried != position:
                    wrong.append(f"in turn got in as {found!r} at attempt {tried}")
            node = {"user": user, "position": position, "one_login": summary(one),
                    "console_named": summary(named), "parallel_probe": summary(probe),
                    "sequential": summary(seq),
                    "probe_rounds": summary(attempts), "wrong_user": wrong,
                    "probes": len(probe)}
            node["probe_vs_one"] = ratio(node["parallel_probe"], node["one_login"])
            node["console_vs_one"] = ratio(node["console_named"], node["one_login"])
            node["sequential_vs_one"] = ratio(node["sequential"], node["one_login"])
            node["sequential_vs_probe"] = ratio(node["sequential"], node["parallel_probe"])
            out["nodes"][user] = node
            out.setdefault("client_cpu_samples", {"one": [], "probe": []})
            out["client_cpu_samples"]["one"] += cpu_one
            out["client_cpu_samples"]["probe"] += cpu_probe
            out.setdefault("server_cpu_samples", {"one": [], "probe": []})
            out["server_cpu_samples"]["one"] += server_one
            out["server_cpu_samples"]["probe"] += server_probe
            say(f"login as {user} ({position}/{len(users)}): one {node['one_login']['median']:.3f}s"
                f", console {node['console_named']['median']:.3f}s"
                f", probe {node['parallel_probe']['median']:.3f}s, in turn "
                f"{node['sequential']['median']:.3f}s")
    finally:
        fleet.close()
    for side in ("client", "server"):
        samples = out.pop(f"{side}_cpu_samples", None)
        if samples and samples["one"]:
            out[f"{side}_cpu"] = {k: summary(v)["median"] for k, v in samples.items()}
    return out


def _settled(node: Any) -> float:
    """The node's CPU time once the processes of the logins just made have ended (sshd's
    session processes linger a moment after the client closed)."""
    time.sleep(0.2)
    return float(node.cpu_seconds())


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

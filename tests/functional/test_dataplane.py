"""The SSH data plane: real OpenSSH servers where the test clouds say servers are,
set up by the real cloud-init, whose console the clients read the host keys from.

Nodes must live in a private network namespace. When the session already
runs in one, the scenarios below drive nodes directly; otherwise
``test_dataplane_in_private_netns`` re-runs this file in a fresh namespace.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cloudnorm.testing.dataplane import (
    Fleet,
    ensure_openssh,
    in_private_netns,
    run_in_private_netns,
)
from cloudnorm.testing.dataplane.install import ensure_cloud_init
from cloudnorm.testing.dataplane.netns import local_addresses
from cloudnorm.testing.dataplane.node import DEFAULT_PASSWORD, pids_in_pidns

pytestmark = pytest.mark.functional

PROJECT = Path(__file__).resolve().parents[2]
A_V4, A_V6 = "203.0.113.10", "2001:db8:9::10"
B_V4, B_MOVED = "203.0.113.11", "203.0.113.12"
KEYS_BEGIN, KEYS_END = "-----BEGIN SSH HOST KEY KEYS-----", "-----END SSH HOST KEY KEYS-----"
FP_BEGIN = "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
FP_END = "-----END SSH HOST KEY FINGERPRINTS-----"
SYSLOG_PREFIX = re.compile(r"^<\d+>\w{3} [ \d]\d \d\d:\d\d:\d\d \S+: ?")
HOST_KEY_ALGORITHMS = {
    "ssh-ed25519": "ssh-ed25519",
    "ecdsa-sha2-nistp256": "ecdsa-sha2-nistp256",
    "ssh-rsa": "rsa-sha2-512,rsa-sha2-256",
}


IN_PRIVATE_NETNS = in_private_netns()
inside = pytest.mark.skipif(
    not IN_PRIVATE_NETNS,
    reason="needs a private network namespace; test_dataplane_in_private_netns runs it in one",
)


@pytest.mark.skipif(IN_PRIVATE_NETNS, reason="the scenarios run directly in this namespace")
def test_dataplane_in_private_netns() -> None:
    # Installing needs the network, which the private namespace does not have.
    ensure_openssh()
    ensure_cloud_init()
    argv = [
        sys.executable, "-m", "pytest", __file__, "-q", "-rA",
        "-p", "no:cacheprovider", "--noconftest",
    ]
    assert run_in_private_netns(argv, timeout=540, cwd=PROJECT) == 0


# -- helpers -------------------------------------------------------------------


def console_blocks(console: str) -> tuple[list[str], list[str]]:
    """(fingerprint lines, key lines) of the console, syslog headers removed."""
    lines = [SYSLOG_PREFIX.sub("", line) for line in console.splitlines()]
    fps = lines[lines.index(FP_BEGIN) + 1 : lines.index(FP_END)]
    keys = lines[lines.index(KEYS_BEGIN) + 1 : lines.index(KEYS_END)]
    return fps, keys


def write_known_hosts(path: Path, console: str, addresses: list[str], port: int = 22) -> Path:
    """known_hosts holding only what the console says, the way a careful client builds it."""
    _, keys = console_blocks(console)
    hosts = ",".join(a if port == 22 else f"[{a}]:{port}" for a in addresses)
    path.write_text("".join(f"{hosts} {' '.join(k.split()[:2])}\n" for k in keys))
    return path


def ssh(
    address: str, command: str, *, known_hosts: Path, key: Path | None = None,
    user: str = "ubuntu", options: tuple[str, ...] = (), env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    argv = ["ssh", "-F", "/dev/null"]
    if key is not None:
        argv += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    argv += [
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentityAgent=none",
        "-o", "ConnectTimeout=10",
    ]
    if "BatchMode=no" not in options:
        argv += ["-o", "BatchMode=yes"]
    argv += [*options, f"{user}@{address}", command]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env=env if env is not None else {"PATH": os.environ["PATH"], "HOME": "/nonexistent"},
    )


def password_login(address: str, password: str, known_hosts: Path, askpass_dir: Path):
    """A password-only login attempt with the system ssh client (through SSH_ASKPASS)."""
    askpass = askpass_dir / "askpass"
    askpass.write_text(f"#!/bin/sh\nprintf '%s\\n' '{password}'\n")
    askpass.chmod(0o700)
    env = {
        "PATH": os.environ["PATH"], "HOME": "/nonexistent",
        "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force",
    }
    return ssh(
        address, "id -un", known_hosts=known_hosts, env=env,
        options=("-o", "BatchMode=no", "-o", "PreferredAuthentications=password",
                 "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1"),
    )


def booted(node):
    """The node once cloud-init's final stage is over: passwords set, the console's key
    blocks printed (a client waits for them on a real cloud too)."""
    node.wait_booted(timeout=60)
    return node


def keypair(directory: Path, name: str) -> tuple[Path, str]:
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)],
                   check=True, timeout=30)
    return path, (directory / f"{name}.pub").read_text().strip()


def tree_digest(path: Path) -> dict[str, str]:
    """Every entry under ``path`` with its mode and content hash (empty if absent)."""
    found: dict[str, str] = {}
    if not path.exists():
        return found
    entries = [path] if path.is_file() else sorted(path.rglob("*"))
    for entry in entries:
        st = entry.lstat()
        digest = hashlib.sha256(entry.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
        found[str(entry)] = f"{oct(st.st_mode)} {st.st_uid}:{st.st_gid} {digest}"
    return found


def machine_snapshot() -> dict[str, str]:
    snap: dict[str, str] = {}
    for path in ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/hostname", "/etc/hosts",
                 "/etc/ssh", "/etc/sudoers.d", "/root/.ssh", "/home", "/etc/default/ssh",
                 "/etc/cloud", "/var/lib/cloud", "/var/log/cloud-init.log",
                 "/var/log/cloud-init-output.log", "/usr/bin/cloud-init"):
        snap.update(tree_digest(Path(path)))
    snap["hostname"] = socket.gethostname()
    console = os.lstat("/dev/console")
    snap["/dev/console"] = f"{oct(console.st_mode)} {console.st_rdev}"
    return snap


def sshd_processes_here() -> list[int]:
    """sshd processes in this network namespace (it is ours alone)."""
    ours = os.readlink("/proc/self/ns/net")
    found = []
    for entry in os.listdir("/proc"):
        try:
            if not entry.isdigit() or os.readlink(f"/proc/{entry}/ns/net") != ours:
                continue
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() == "sshd":
                    found.append(int(entry))
        except OSError:
            continue
    return found


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


# -- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def machine_before():
    return machine_snapshot()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    return {name: keypair(directory, name) for name in ("alice", "bob", "mallory")}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, machine_before):
    ensure_openssh()
    ensure_cloud_init()
    fleet = Fleet(tmp_path_factory.mktemp("fleet"))
    yield fleet
    fleet.close()


@pytest.fixture(scope="module")
def node_a(fleet, keys):
    started = time.perf_counter()
    node = fleet.ensure("server-a", [A_V4, A_V6], "ubuntu", keys["alice"][1])
    print(f"TIMING node start to sshd (ed25519+ecdsa+rsa host keys): "
          f"{time.perf_counter() - started:.3f}s")
    booted(node)
    print(f"TIMING node start to cloud-init's final stage: {time.perf_counter() - started:.3f}s")
    return node


@pytest.fixture
def known_a(node_a, tmp_path):
    return write_known_hosts(tmp_path / "known_hosts", node_a.console_text(), [A_V4, A_V6])


# -- scenarios -----------------------------------------------------------------


@inside
def test_console_prints_host_keys_like_cloud_init(node_a, tmp_path):
    console = node_a.console_text()
    assert re.search(r"^Cloud-init v\. 22\.4\.2 finished at .* Datasource DataSourceNoCloud ",
                     console, re.M)
    fps, keys = console_blocks(console)
    assert [k.split()[0] for k in keys] == ["ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"]
    assert all(k.endswith(" root@server-a") for k in keys)
    assert keys == list(node_a.host_keys.keys)
    expected = []
    for i, key in enumerate(keys):
        pub = tmp_path / f"{i}.pub"
        pub.write_text(key + "\n")
        out = subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], capture_output=True,
                             text=True, check=True, timeout=30)
        expected.append(out.stdout.strip())
    assert fps == expected
    assert re.search(r"^256 SHA256:\S+ root@server-a \(ED25519\)$", "\n".join(fps), re.M)


@inside
def test_login_over_ipv4_with_keys_from_console(node_a, known_a, keys):
    started = time.perf_counter()
    result = ssh(A_V4, "id -un", known_hosts=known_a, key=keys["alice"][0])
    print(f"TIMING login + command (system ssh, IPv4): {time.perf_counter() - started:.3f}s")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ubuntu"


@inside
def test_login_over_ipv6_with_keys_from_console(node_a, known_a, keys):
    started = time.perf_counter()
    result = ssh(A_V6, "id -un; sudo -n id -un; hostname", known_hosts=known_a,
                 key=keys["alice"][0])
    print(f"TIMING login + command (system ssh, IPv6): {time.perf_counter() - started:.3f}s")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ubuntu", "root", "server-a"]


@inside
def test_console_names_the_user_holding_the_key(node_a, keys):
    from cloudnorm import hostkeys

    console = node_a.console_text()
    assert "Authorized keys from /home/ubuntu/.ssh/authorized_keys for user ubuntu" in console
    assert hostkeys.console_login_users(console, keys["alice"][1]) == ("ubuntu",)
    assert hostkeys.console_login_users(console, keys["bob"][1]) == ()


@inside
def test_probe_of_every_usual_user_never_settles_on_root(node_a, keys):
    """Root's key login works but runs cloud-init's "Please login as ..." forced
    command, and twelve logins at once exceed sshd's MaxStartups: the probe must still
    end with the image's user, every time."""
    from cloudnorm import hostkeys, profiles, ssh

    users = ["root", *dict.fromkeys(d.login_user for d in profiles.distros().values())]
    assert len(users) >= 10 and "ubuntu" in users
    target = ssh.Target(A_V4, 22, keys["alice"][0].read_text(),
                        hostkeys.parse_console(node_a.console_text()))
    chosen, rounds, took = [], [], []
    for _ in range(5):
        started = time.perf_counter()
        login = ssh.wait_for_login(target, users, timeout=60)
        took.append(time.perf_counter() - started)
        chosen.append(login.user)
        rounds.append(login.attempts)
    print(f"TIMING probe of {len(users)} users: {sorted(took)}, rounds {rounds}")
    assert chosen == ["ubuntu"] * 5


@inside
def test_probe_refused_for_every_user_says_so(node_a, keys):
    from cloudnorm import errors, hostkeys, ssh

    target = ssh.Target(A_V4, 22, keys["bob"][0].read_text(),
                        hostkeys.parse_console(node_a.console_text()))
    with pytest.raises(errors.NotReachable, match="refuses the node key for every"):
        ssh.wait_for_login(target, ["root", "centos", "debian"], timeout=30)


@inside
def test_wait_for_port_returns_once_sshd_answers(fleet, keys):
    from cloudnorm import ssh

    fleet.ensure("server-knock", ["203.0.113.40"], "ubuntu", keys["alice"][1])
    try:
        assert ssh.wait_for_port("203.0.113.40", 22, timeout=10) == 1
    finally:
        fleet.remove("server-knock")


@inside
def test_every_console_key_is_one_the_server_holds(node_a, keys, tmp_path):
    _, console_keys = console_blocks(node_a.console_text())
    for key in console_keys:
        kind = key.split()[0]
        known = tmp_path / f"known-{kind}"
        known.write_text(f"{A_V4} {' '.join(key.split()[:2])}\n")
        result = ssh(A_V4, "true", known_hosts=known, key=keys["alice"][0],
                     options=("-o", f"HostKeyAlgorithms={HOST_KEY_ALGORITHMS[kind]}"))
        assert result.returncode == 0, f"{kind}: {result.stderr}"


@inside
def test_lying_console_makes_a_careful_client_refuse(fleet, node_a, keys, tmp_path):
    fleet.ensure("server-a", [A_V4, A_V6], "ubuntu", keys["alice"][1], console_lies=True)
    try:
        lying = node_a.console_text()
        known = write_known_hosts(tmp_path / "known_hosts", lying, [A_V4, A_V6])
        result = ssh(A_V4, "id -un", known_hosts=known, key=keys["alice"][0])
        assert result.returncode == 255
        assert "Host key verification failed" in result.stderr
    finally:
        fleet.ensure("server-a", [A_V4, A_V6], "ubuntu", keys["alice"][1], console_lies=False)
    assert console_blocks(node_a.console_text())[1] != console_blocks(lying)[1]


@inside
def test_wrong_key_is_refused(node_a, known_a, keys):
    result = ssh(A_V4, "id -un", known_hosts=known_a, key=keys["mallory"][0])
    assert result.returncode == 255
    assert "Permission denied (publickey,password)" in result.stderr


@inside
def test_blocked_ssh_refuses_connections_and_keeps_the_server(fleet, node_a, known_a, keys):
    fleet.ensure("server-a", [A_V4, A_V6], "ubuntu", keys["alice"][1], allow_ssh=False)
    try:
        for address in (A_V4, A_V6):
            result = ssh(address, "id -un", known_hosts=known_a, key=keys["alice"][0])
            assert result.returncode == 255
            assert "Connection refused" in result.stderr
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((address, 22), timeout=5).close()
    finally:
        fleet.ensure("server-a", [A_V4, A_V6], "ubuntu", keys["alice"][1], allow_ssh=True)
    # Same server, same host keys: the known_hosts from before still holds.
    result = ssh(A_V4, "id -un", known_hosts=known_a, key=keys["alice"][0])
    assert result.returncode == 0, result.stderr


@inside
def test_second_node_is_isolated(fleet, node_a, known_a, keys, tmp_path):
    node_b = booted(fleet.ensure("server-b", [B_V4], "ubuntu", keys["bob"][1]))
    known_b = write_known_hosts(tmp_path / "known_b", node_b.console_text(), [B_V4])
    assert console_blocks(node_b.console_text())[1] != console_blocks(node_a.console_text())[1]

    assert ssh(B_V4, "id -un", known_hosts=known_b, key=keys["bob"][0]).returncode == 0
    assert ssh(B_V4, "id -un", known_hosts=known_b, key=keys["alice"][0]).returncode == 255
    assert ssh(A_V4, "id -un", known_hosts=known_a, key=keys["bob"][0]).returncode == 255

    marked = ssh(A_V4, "sudo -n sh -c 'echo node-a > /root/.ssh/marker'",
                 known_hosts=known_a, key=keys["alice"][0])
    assert marked.returncode == 0, marked.stderr
    on_b = ssh(B_V4, "sudo -n ls -A /root/.ssh; sudo -n cat /root/.ssh/authorized_keys",
               known_hosts=known_b, key=keys["bob"][0])
    assert on_b.returncode == 0, on_b.stderr
    assert "marker" not in on_b.stdout
    assert keys["bob"][1].split()[1] in on_b.stdout
    assert keys["alice"][1].split()[1] not in on_b.stdout
    # cloud-init's disable_root: root's key only prints a hint.
    assert 'Please login as the user \\"ubuntu\\"' in on_b.stdout
    assert not Path("/root/.ssh/marker").exists()


@inside
def test_moved_address_moves_the_server(fleet, keys, tmp_path):
    node_b = fleet.ensure("server-b", [B_V4], "ubuntu", keys["bob"][1])
    console_before = node_b.console_text()
    fleet.ensure("server-b", [B_MOVED], "ubuntu", keys["bob"][1])
    assert console_blocks(node_b.console_text()) == console_blocks(console_before)
    known = write_known_hosts(tmp_path / "known", node_b.console_text(), [B_V4, B_MOVED])
    moved = ssh(B_MOVED, "id -un", known_hosts=known, key=keys["bob"][0])
    assert moved.returncode == 0, moved.stderr
    gone = ssh(B_V4, "id -un", known_hosts=known, key=keys["bob"][0])
    assert gone.returncode == 255
    assert "Network is unreachable" in gone.stderr


def sighup_sshd(node, known_hosts: Path, key: Path) -> None:
    """Reload sshd's configuration the way an admin without systemd would."""
    pidfile = node.root / "run/sshd.pid"
    written = pidfile.stat().st_mtime_ns
    reload = ssh(A_V4, "sudo -n /usr/sbin/sshd -t "
                       "&& sudo -n sh -c 'kill -HUP \"$(cat /run/sshd.pid)\"'",
                 known_hosts=known_hosts, key=key)
    assert reload.returncode == 0, reload.stderr
    # sshd re-executes itself on SIGHUP and rewrites its PidFile once listening again.
    wait_for(lambda: pidfile.exists() and pidfile.stat().st_mtime_ns != written, 10,
             "sshd to come back after SIGHUP")


@inside
def test_hardened_sshd_refuses_passwords(node_a, known_a, keys, tmp_path):
    before = password_login(A_V4, DEFAULT_PASSWORD, known_a, tmp_path)
    assert before.returncode == 0, before.stderr
    assert before.stdout.strip() == "ubuntu"

    # cloud-init's ssh_pwauth put its setting in a drop-in, which sshd_config includes
    # before anything of its own: editing the main file alone changes nothing.
    assert (node_a.root / "etc/ssh/sshd_config.d/50-cloud-init.conf").read_text() == (
        "PasswordAuthentication yes\n")
    edit = ssh(A_V4, "sudo -n sed -i 's/^PasswordAuthentication yes$/PasswordAuthentication no/' "
                     "/etc/ssh/sshd_config", known_hosts=known_a, key=keys["alice"][0])
    assert edit.returncode == 0, edit.stderr
    sighup_sshd(node_a, known_a, keys["alice"][0])
    assert password_login(A_V4, DEFAULT_PASSWORD, known_a, tmp_path).returncode == 0

    # A drop-in sorted before cloud-init's wins (the first value sshd reads counts).
    harden = ssh(A_V4, "echo 'PasswordAuthentication no' | "
                       "sudo -n tee /etc/ssh/sshd_config.d/00-harden.conf",
                 known_hosts=known_a, key=keys["alice"][0])
    assert harden.returncode == 0, harden.stderr
    sighup_sshd(node_a, known_a, keys["alice"][0])

    after = password_login(A_V4, DEFAULT_PASSWORD, known_a, tmp_path)
    assert after.returncode == 255
    assert "Permission denied (publickey)" in after.stderr
    still = ssh(A_V4, "id -un", known_hosts=known_a, key=keys["alice"][0])
    assert still.returncode == 0, still.stderr
    assert "PasswordAuthentication no" in (node_a.root / "etc/ssh/sshd_config").read_text()
    assert "PasswordAuthentication no" not in Path("/etc/ssh/sshd_config").read_text()
    assert not Path("/etc/ssh/sshd_config.d/00-harden.conf").exists()


@inside
def test_address_moves_to_the_server_it_is_given_to(fleet, keys, tmp_path):
    floating = "203.0.113.30"
    first = fleet.ensure("server-e", [floating], "ubuntu", keys["alice"][1])
    # A server with only a private address: booted, but nothing to reach.
    second = fleet.ensure("server-f", [], "ubuntu", keys["bob"][1], allow_ssh=False)
    assert second.console_text() and second.sshd_pid() is None
    # Booted with nothing listening: cloud-init's set-passwords saw no sshd to restart.
    booted(second)
    assert second.sshd_pid() is None
    fleet.ensure("server-f", [floating], "ubuntu", keys["bob"][1])
    try:
        assert first.addresses == () and first.running and first.sshd_pid() is None
        known = write_known_hosts(tmp_path / "known", second.console_text(), [floating])
        result = ssh(floating, "hostname", known_hosts=known, key=keys["bob"][0])
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "server-f"
    finally:
        fleet.remove("server-e")
        fleet.remove("server-f")
    assert floating not in local_addresses()


@inside
def test_concurrent_reconcilers(fleet, keys, tmp_path):
    wanted = {f"server-{i}": f"203.0.113.{40 + i}" for i in range(3)}
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        nodes = list(pool.map(
            lambda item: fleet.ensure(item[0], [item[1]], "ubuntu", keys["alice"][1]),
            wanted.items(),
        ))
        # The same desired state again, from several threads at once, changes nothing.
        again = list(pool.map(
            lambda item: fleet.ensure(item[0], [item[1]], "ubuntu", keys["alice"][1]),
            list(wanted.items()) * 3,
        ))
    print(f"TIMING 3 nodes started concurrently: {time.perf_counter() - started:.3f}s")
    try:
        assert all(a is nodes[i % 3] for i, a in enumerate(again))
        for node, address in zip(nodes, wanted.values(), strict=True):
            known = write_known_hosts(tmp_path / node.name, booted(node).console_text(),
                                      [address])
            result = ssh(address, "hostname", known_hosts=known, key=keys["alice"][0])
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == node.name
    finally:
        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(fleet.remove, wanted))
    assert set(wanted.values()).isdisjoint(local_addresses())


@inside
def test_cloud_init_is_the_nodes_and_not_the_machines(node_a):
    done = node_a.exec(["cloud-init", "status", "--long"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "status: done" in done.stdout
    assert "DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud]" in done.stdout
    # Its console is the node's own, and none of the machine's disks is there.
    devices = node_a.exec(["sh", "-c", "test -p /dev/console && ls /dev"])
    assert devices.returncode == 0, devices.stderr
    assert not {"sda", "vda", "nvme0n1", "xvda", "loop0"} & set(devices.stdout.split())
    assert not Path("/usr/bin/cloud-init").exists() and not Path("/etc/cloud").exists()
    installed = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "cloud-init"],
                               capture_output=True, text=True, timeout=30)
    assert not installed.stdout.startswith("ii")


@inside
def test_machine_files_untouched_while_nodes_run(fleet, node_a, machine_before):
    assert node_a.running
    assert machine_snapshot() == machine_before
    assert not Path("/run/sshd.pid").exists()


@inside
def test_close_leaves_no_process_address_or_file(fleet, keys, machine_before, tmp_path):
    other = Fleet(tmp_path / "fleet")
    nodes = []
    try:
        c = booted(other.ensure("server-c", ["203.0.113.20"], "ubuntu", keys["alice"][1]))
        d = other.ensure("server-d", ["2001:db8:9::20"], "admin", keys["bob"][1],
                         allow_ssh=False)
        known = write_known_hosts(tmp_path / "known", c.console_text(), ["203.0.113.20"])
        # A login session, and a process it leaves behind, must not outlive the node.
        session = subprocess.Popen(
            ["ssh", "-F", "/dev/null", "-i", str(keys["alice"][0]), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
             "ubuntu@203.0.113.20", "nohup sleep 300 >/dev/null 2>&1 & sleep 300"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: len(c.processes()) >= 5, 10, "the session to start")
        nodes = [c, d, *(fleet.get(i) for i in fleet.node_ids())]
        for node in nodes:
            print(f"TIMING RSS {node.name} ({len(node.processes())} processes, "
                  f"sshd {'on' if node.allow_ssh else 'off'}): {node.rss_bytes() / 2**20:.1f} MiB")
        namespaces = [node._pidns for node in nodes]
        workdirs = [node.workdir for node in nodes]
        addresses = {a for node in nodes for a in node.addresses}
    finally:
        other.close()
        fleet.close()
    try:
        assert session.wait(timeout=10) == 255
    finally:
        session.kill()
    for pidns in namespaces:
        assert pids_in_pidns(pidns) == []
    assert sshd_processes_here() == []
    assert not any(w.exists() for w in workdirs)
    assert addresses.isdisjoint(local_addresses())
    assert machine_snapshot() == machine_before


def test_wait_for_port_knocks_until_the_banner_then_gives_up_with_a_timeout():
    """Loopback only: a port nobody listens on, then one that answers but is no sshd."""
    from cloudnorm import errors, ssh

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed_port = free.getsockname()[1]
    knocks: list[str] = []
    started = time.monotonic()
    with pytest.raises(errors.Timeout, match="not reachable over SSH within 1 s"):
        ssh.wait_for_port("127.0.0.1", closed_port, timeout=1.0, on_attempt=knocks.append)
    assert time.monotonic() - started < 1.5
    # Refused means the machine is up: knocks stay a quarter of a second apart.
    assert len(knocks) >= 3 and all("Refused" in k for k in knocks)

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def greet() -> None:
            for _ in range(8):
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

        threading.Thread(target=greet, daemon=True).start()
        with pytest.raises(errors.Timeout, match="no SSH banner"):
            ssh.wait_for_port("127.0.0.1", listener.getsockname()[1], timeout=0.8)

"""The real cloud-init inside the data plane's nodes: user data runs, the console is
cloud-init's own, and cloud-init itself is never installed on the machine.

Like test_dataplane.py, the node scenarios need a private network namespace; outside
one, ``test_cloud_init_nodes_in_private_netns`` re-runs this file in a fresh one.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from cloudnorm import hostkeys
from cloudnorm.testing.dataplane import (
    Node,
    cloudinit,
    ensure_openssh,
    in_private_netns,
    install,
    run_in_private_netns,
)
from cloudnorm.testing.dataplane.install import ensure_cloud_init

pytestmark = pytest.mark.functional

PROJECT = Path(__file__).resolve().parents[2]
IN_PRIVATE_NETNS = in_private_netns()
inside = pytest.mark.skipif(
    not IN_PRIVATE_NETNS,
    reason="needs a private network namespace; test_cloud_init_nodes_in_private_netns runs it",
)
KEYS_BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
FINISHED = "Cloud-init v. 22.4.2 finished at "

CLOUD_CONFIG = b"""\
#cloud-config
write_files:
  - path: /root/written
    content: written by write_files
runcmd:
  - [sh, -c, "echo ran by runcmd > /root/ran"]
"""
SHELL_SCRIPT = b"""\
#!/bin/sh
echo "user script says hello"
echo ran by the user script > /root/ran
echo written by the user script > /root/written
"""


@pytest.mark.skipif(IN_PRIVATE_NETNS, reason="the scenarios run directly in this namespace")
def test_cloud_init_nodes_in_private_netns() -> None:
    # Installing needs the network, which the private namespace does not have.
    ensure_openssh()
    ensure_cloud_init()
    argv = [sys.executable, "-m", "pytest", __file__, "-q", "-rA",
            "-p", "no:cacheprovider", "--noconftest"]
    assert run_in_private_netns(argv, timeout=540, cwd=PROJECT) == 0


# -- the unpacked tree (no namespace needed) -----------------------------------------------------


def test_cloud_init_is_unpacked_for_nodes_not_installed():
    tree = ensure_cloud_init()
    assert ensure_cloud_init() == tree  # a second call finds it done
    packages = (tree / install.COMPLETE_MARKER).read_text().split()
    assert any(p.startswith("cloud-init_22.4.2-") for p in packages)
    assert (tree / install.DIST_PACKAGES / "cloudinit" / "__pycache__").is_dir()
    # Merged /usr: nothing may shadow the machine's /lib, /bin or /sbin symlinks.
    for name in ("lib", "bin", "sbin", "lib64"):
        if Path("/", name).is_symlink():
            assert not (tree / name).exists(), name
    assert (tree / "usr/lib/systemd/system/cloud-init.service").exists()
    # The image's disable_root_opts, written out in cloudinit.py, are cloud-init's own default.
    default = subprocess.run(
        ["/usr/bin/python3", "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
         "from cloudinit import ssh_util; print(ssh_util.DISABLE_USER_OPTS)",
         str(tree / install.DIST_PACKAGES)], capture_output=True, text=True, timeout=60)
    assert default.stdout.strip() == cloudinit.DISABLE_ROOT_OPTS, default.stderr
    status = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "cloud-init"],
                            capture_output=True, text=True, timeout=30)
    assert not status.stdout.startswith("ii")
    assert not Path("/etc/cloud").exists()


def test_package_contents_land_where_the_machine_links_point(tmp_path):
    machine, tree = tmp_path / "machine", tmp_path / "tree"
    (machine / "usr/lib").mkdir(parents=True)
    (machine / "lib").symlink_to("usr/lib")
    (machine / "var").mkdir()
    (machine / "var/run").symlink_to("/run")
    for path in ("lib/systemd/system/a.service", "usr/lib/systemd/system/b.service",
                 "var/run/c.pid", "etc/cloud/cloud.cfg"):
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(path)
    install.merge_into_symlinked_dirs(tree, machine)
    found = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    assert found == ["etc/cloud/cloud.cfg", "run/c.pid", "usr/lib/systemd/system/a.service",
                     "usr/lib/systemd/system/b.service"]
    assert not (tree / "lib").exists() and not (tree / "var/run").exists()

    (tree / "lib").mkdir()
    (tree / "lib/systemd/system").mkdir(parents=True)
    (tree / "lib/systemd/system/a.service").write_text("another")
    with pytest.raises(install.InstallError, match="both"):
        install.merge_into_symlinked_dirs(tree, machine)


# -- nodes ---------------------------------------------------------------------------------------


def keypair(directory: Path, name: str) -> tuple[Path, str]:
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)],
                   check=True, timeout=30)
    return path, (directory / f"{name}.pub").read_text().strip()


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return keypair(tmp_path_factory.mktemp("keys"), "operator")


@pytest.fixture
def boot(tmp_path, key):
    """Start a node at 203.0.113.5x with the given user data and options, and wait for
    cloud-init's final stage."""
    started: list[Node] = []

    def boot(name: str, userdata: bytes | None, **options) -> Node:
        address = f"203.0.113.{50 + len(started)}"
        node = Node(name, [address], authorized_key=key[1], workdir=tmp_path / name,
                    userdata=userdata, **{"user": "ubuntu", **options})
        started.append(node)
        t0 = time.perf_counter()
        node.start()
        node.wait_booted(timeout=60)
        print(f"TIMING {name}: stages {node.stage_seconds}, final stage over after "
              f"{time.perf_counter() - t0:.2f}s")
        return node

    yield boot
    for node in started:
        node.stop()


def root_login(node: Node, key: Path, tmp_path: Path, command: str):
    """Log in as root with the system ssh client, trusting only the keys on the console."""
    announced = hostkeys.parse_console(node.console_text())
    assert announced.keys, node.console_text()
    known = tmp_path / f"known-{node.name}"
    known.write_text("".join(f"{line}\n" for line in
                             hostkeys.known_hosts_lines(announced.keys, node.addresses[0])))
    argv = ["ssh", "-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=10", f"root@{node.addresses[0]}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL,
                          env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"})


def effects(node: Node, key: Path, tmp_path: Path) -> tuple[str, str]:
    """/root/written and /root/ran, read inside the node and over a root login."""
    # write_files writes content as given: without a newline at its end here.
    read = "for f in /root/written /root/ran; do cat $f || exit 1; echo; done"
    inside_node = node.exec(["sh", "-c", read])
    assert inside_node.returncode == 0, inside_node.stderr
    over_ssh = root_login(node, key, tmp_path, read)
    assert over_ssh.returncode == 0, over_ssh.stderr
    assert over_ssh.stdout == inside_node.stdout
    written, ran = (line for line in inside_node.stdout.splitlines() if line)
    return written, ran


@inside
def test_default_user_logs_in_as_soon_as_sshd_answers(tmp_path, key):
    """users-groups and ssh run before sshd starts; passwords come later (set-passwords,
    in the config stage), and a key login must not wait for them."""
    node = Node("early-node", ["203.0.113.49"], user="ubuntu", authorized_key=key[1],
                workdir=tmp_path / "early")
    try:
        node.start()
        assert node.host_keys is not None
        known = tmp_path / "known"
        known.write_text("".join(f"203.0.113.49 {' '.join(k.split()[:2])}\n"
                                 for k in node.host_keys.keys))
        argv = ["ssh", "-F", "/dev/null", "-i", str(key[0]), "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null",
                "ubuntu@203.0.113.49", "id -un"]
        login = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL,
                               env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"})
        assert (login.returncode, login.stdout.strip()) == (0, "ubuntu"), login.stderr
    finally:
        node.stop()


@inside
def test_cloud_config_user_data_runs(boot, key, tmp_path):
    node = boot("cc-node", CLOUD_CONFIG, disable_root=False)
    assert effects(node, key[0], tmp_path) == ("written by write_files", "ran by runcmd")
    assert node.stage_status == {"init-local": 0, "init": 0, "modules:config": 0,
                                 "modules:final": 0}


@inside
def test_shell_script_user_data_runs_and_prints_on_the_console(boot, key, tmp_path):
    node = boot("script-node", SHELL_SCRIPT, user="root")
    assert effects(node, key[0], tmp_path) == ("written by the user script",
                                              "ran by the user script")
    console = node.console_text()
    # scripts-user's output goes where the final stage's does: the console.
    assert console.index("user script says hello") < console.index(FINISHED)


@inside
def test_gzipped_user_data_runs(boot, key, tmp_path):
    node = boot("gzip-node", gzip.compress(CLOUD_CONFIG), user="root")
    assert effects(node, key[0], tmp_path) == ("written by write_files", "ran by runcmd")


@inside
def test_multipart_user_data_runs_every_part(boot, key, tmp_path):
    message = MIMEMultipart()
    message.attach(MIMEText(
        "#cloud-config\nwrite_files:\n  - path: /root/written\n    content: from the config part\n",
        "cloud-config"))
    message.attach(MIMEText("#!/bin/sh\necho from the script part > /root/ran\n",
                            "x-shellscript"))
    node = boot("mime-node", message.as_bytes(), user="root")
    assert effects(node, key[0], tmp_path) == ("from the config part", "from the script part")


@inside
def test_user_data_larger_than_an_environment_variable_runs(boot, key, tmp_path):
    # GCE takes up to 256 KiB; one argument or variable of exec(2) at most 128 KiB.
    big = (b"#!/bin/sh\n" + b"# padding\n" * 25_000
           + b"echo big > /root/written\necho ran > /root/ran\n")
    assert len(big) > 200_000
    node = boot("big-node", big, user="root")
    assert effects(node, key[0], tmp_path) == ("big", "ran")


@inside
def test_console_is_cloud_inits_and_names_the_real_keys(boot, key):
    node = boot("console-node", None)
    console = node.console_text()
    assert "Cloud-init v. 22.4.2 running 'init-local' at " in console
    assert console.count(FINISHED) >= 1
    assert KEYS_BEGIN in console and "-----BEGIN SSH HOST KEY FINGERPRINTS-----" in console
    announced = hostkeys.parse_console(console)
    assert node.host_keys is not None
    real = node.exec(["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"]).stdout.splitlines()
    assert announced.keys == tuple(" ".join(k.split()[:2]) for k in real)
    assert announced.fingerprints == node.host_keys.fingerprints
    assert hostkeys.console_login_users(console, key[1]) == ("ubuntu",)
    # The final stage ended after sshd started, as on a cloud: the console grew meanwhile.
    assert set(node.stage_seconds) == {"init-local", "init", "modules:config", "modules:final"}


@inside
def test_without_print_host_keys_the_console_has_no_key_blocks(boot):
    node = boot("quiet-node", None, print_host_keys=False)
    console = node.console_text()
    assert FINISHED in console
    assert KEYS_BEGIN not in console and "SSH HOST KEY FINGERPRINTS" not in console
    assert not hostkeys.parse_console(console)
    assert node.host_keys is not None and len(node.host_keys.keys) == 3


@inside
def test_console_lies_about_the_keys_it_really_printed(boot):
    node = boot("lying-node", None)
    honest = hostkeys.parse_console(node.console_text())
    node.console_lies = True
    lying = hostkeys.parse_console(node.console_text())
    assert len(lying.keys) == len(honest.keys) == 3
    assert not set(lying.keys) & set(honest.keys)
    assert not set(lying.fingerprints) & set(honest.fingerprints)
    assert [k.split()[0] for k in lying.keys] == [k.split()[0] for k in honest.keys]

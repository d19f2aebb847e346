"""Make the machine able to run nodes: the real OpenSSH server, sudo and cloud-init.

A node's root filesystem is a copy-on-write view of this machine's, so the
programs a node runs (sshd, sudo, useradd) must be installed here first.

cloud-init is the exception: installed on the machine, its systemd units would
run at the machine's next boot and reconfigure its network, disks and users. So
Debian's package and the Python libraries it needs that the machine lacks are
only unpacked (``dpkg-deb -x``) into a tree of their own, which nodes lay over
the machine's root (an extra overlay layer); only nodes see cloud-init.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cloudnorm.testing.openstack.install import cache_dir

SSHD = Path("/usr/sbin/sshd")
SUDO = Path("/usr/bin/sudo")
PACKAGES = ("openssh-server", "sudo")
# Debian's convention for "packages must not start services": invoke-rc.d
# asks this script and exit code 101 means "action forbidden".
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
APT_TIMEOUT = 600


class InstallError(RuntimeError):
    """The OpenSSH server or cloud-init could not be made available."""


def missing() -> list[str]:
    return [p for p, path in zip(PACKAGES, (SSHD, SUDO), strict=True) if not path.exists()]


def ensure_openssh(timeout: float = APT_TIMEOUT) -> None:
    """Install openssh-server and sudo with apt-get unless already present."""
    packages = missing()
    if not packages:
        return
    apt_install(PACKAGES, timeout)
    still = missing()
    if still:
        raise InstallError(f"apt-get finished but {', '.join(still)} is still missing")


def apt_install(packages: Iterable[str], timeout: float = APT_TIMEOUT) -> None:
    """``apt-get install`` Debian ``packages`` as root, without starting their services
    (the sandboxes run their own servers, never the machine's); raises
    :class:`InstallError` naming the command to run where this process cannot."""
    packages = list(packages)
    if os.geteuid() != 0:
        raise InstallError(f"{', '.join(packages)} not installed and this process is not "
                           f"root; run as root: apt-get install -y {' '.join(packages)}")
    if shutil.which("apt-get") is None:
        raise InstallError(f"{', '.join(packages)} not installed and apt-get is not available")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", NEEDRESTART_MODE="l")
    created_policy = forbid_service_start()
    try:
        apt(["apt-get", "update", "-q"], env, timeout)
        apt(["apt-get", "install", "-y", "-q", "--no-install-recommends",
             "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
             *packages], env, timeout)
    finally:
        if created_policy:
            POLICY_RC_D.unlink(missing_ok=True)


def forbid_service_start() -> bool:
    # The machine may have no init system; a started sshd would also listen
    # on the machine's real interfaces, which nodes must never do.
    if POLICY_RC_D.exists():
        return False
    POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    return True


def apt(argv: list[str], env: dict[str, str], timeout: float) -> None:
    # Another apt run may hold the lock; wait for it rather than fail at once.
    argv = [argv[0], "-o", "DPkg::Lock::Timeout=120", *argv[1:]]
    try:
        proc = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise InstallError(f"{' '.join(argv)} failed with exit code {proc.returncode}:\n{tail}")


# -- cloud-init, for nodes only ----------------------------------------------------------

CLOUD_INIT = "cloud-init"
#: The interpreter that runs cloud-init inside nodes (the machine's, seen through the overlay).
NODE_PYTHON = Path("/usr/bin/python3")
DIST_PACKAGES = "usr/lib/python3/dist-packages"
COMPLETE_MARKER = ".cloudnorm-complete"
LOCK_WAIT_SECONDS = 10 * 60
# Imported once the tree is built: what the nodes' cloud-init runs, so that a missing
# library shows up here rather than as a half-configured node.
CHECK_IMPORTS = (
    "cloudinit.cmd.main", "cloudinit.sources.DataSourceNoCloud", "cloudinit.sources.DataSourceNone",
    "cloudinit.distros.debian", "cloudinit.config.cc_bootcmd", "cloudinit.config.cc_write_files",
    "cloudinit.config.cc_set_hostname", "cloudinit.config.cc_update_hostname",
    "cloudinit.config.cc_update_etc_hosts", "cloudinit.config.cc_users_groups",
    "cloudinit.config.cc_ssh", "cloudinit.config.cc_set_passwords", "cloudinit.config.cc_runcmd",
    "cloudinit.config.cc_scripts_user", "cloudinit.config.cc_ssh_authkey_fingerprints",
    "cloudinit.config.cc_keys_to_console", "cloudinit.config.cc_final_message",
    "cloudinit.config.schema", "jinja2", "jsonschema", "configobj", "jsonpatch", "yaml",
)


def cloud_init_root(python: Path = NODE_PYTHON) -> Path:
    """Where the unpacked cloud-init tree for ``python`` lives (it may not exist yet).

    Compiled modules (.pyc, C extensions) are for one Python version, hence its name
    in the path."""
    version = os.path.basename(os.path.realpath(python))  # e.g. python3.11
    return cache_dir() / f"cloud-init-root-{version}"


def cloud_init_ready(root: Path | None = None) -> bool:
    root = root or cloud_init_root()
    return (root / COMPLETE_MARKER).is_file()


def ensure_cloud_init(timeout: float = APT_TIMEOUT) -> Path:
    """Unpack cloud-init and the Python libraries it lacks here into a tree for nodes;
    return the tree. Does nothing when a complete tree is already there."""
    root = cloud_init_root()
    if cloud_init_ready(root):
        return root
    for tool in ("apt-get", "apt-cache", "dpkg-deb", "dpkg-query"):
        if shutil.which(tool) is None:
            raise InstallError(f"cannot unpack cloud-init for the nodes: {tool} is not available")
    if not NODE_PYTHON.exists():
        raise InstallError(f"cannot run cloud-init in nodes: {NODE_PYTHON} is missing")
    root.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(root.with_name(root.name + ".lock")):
        # Another process may have finished the tree while this one waited.
        if cloud_init_ready(root):
            return root
        if root.exists():
            shutil.rmtree(root)  # left by a build that was killed halfway
        staging = Path(tempfile.mkdtemp(prefix=root.name + ".building-", dir=root.parent))
        try:
            _build_cloud_init_tree(staging, timeout)
            staging.chmod(0o755)  # mkdtemp's 0700 would be the mode of the node's layer
            staging.rename(root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return root


def _build_cloud_init_tree(staging: Path, timeout: float) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    try:
        packages = packages_to_unpack(env, timeout)
    except InstallError:
        # A machine that never ran apt-get update knows no cloud-init package yet.
        if os.geteuid() != 0:
            raise
        apt(["apt-get", "update", "-q"], env, timeout)
        packages = packages_to_unpack(env, timeout)
    debs = staging / "debs"
    tree = staging / "tree"
    debs.mkdir()
    tree.mkdir()
    # The download runs as whoever we are: apt's _apt user could not write here.
    _run(["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", *packages],
         env, timeout, cwd=debs)
    files = sorted(debs.glob("*.deb"))
    if len(files) != len(packages):
        raise InstallError(f"apt-get download fetched {len(files)} files for {len(packages)} "
                           f"packages ({', '.join(packages)})")
    versions = []
    for deb in files:
        _run(["dpkg-deb", "-x", str(deb), str(tree)], env, timeout)
        versions.append(deb.name.removesuffix(".deb"))
    merge_into_symlinked_dirs(tree, Path("/"))
    dist = tree / DIST_PACKAGES
    if not (dist / "cloudinit").is_dir():
        raise InstallError(f"{CLOUD_INIT} unpacked, but {DIST_PACKAGES}/cloudinit is missing")
    # Without .pyc files every node's first boot would compile cloud-init (several hundred
    # milliseconds per stage) and write the result into its own upper directory. -d names
    # the sources where nodes see them, for tracebacks.
    _run([str(NODE_PYTHON), "-m", "compileall", "-q", "-j", "0", "-d", f"/{DIST_PACKAGES}",
          str(dist)], env, timeout)
    check = (f"import sys; sys.path.insert(0, {str(dist)!r}); "
             f"import {', '.join(CHECK_IMPORTS)}")
    _run([str(NODE_PYTHON), "-I", "-c", check], env, timeout)
    shutil.rmtree(debs)
    for entry in tree.iterdir():
        entry.rename(staging / entry.name)
    tree.rmdir()
    (staging / COMPLETE_MARKER).write_text("".join(f"{v}\n" for v in versions))


def packages_to_unpack(env: dict[str, str], timeout: float) -> list[str]:
    """cloud-init and, following its dependencies, every python3-* package the machine does
    not have. Other missing dependencies (eject, gdisk, isc-dhcp-client, locales) serve
    modules the nodes do not run, and would be programs installed for the machine."""
    installed = _installed_packages(env, timeout)
    wanted = [CLOUD_INIT]
    frontier = [CLOUD_INIT]
    while frontier:
        found = _depends(frontier, env, timeout)
        frontier = []
        for package in found:
            for group in found[package]:
                if any(_base(name) in installed or _base(name) in wanted for name in group):
                    continue
                pick = next((_base(n) for n in group if _base(n).startswith("python3-")), None)
                if pick is not None:
                    wanted.append(pick)
                    frontier.append(pick)
    return wanted


def _base(name: str) -> str:
    return name.strip("<>").split(":")[0]


def _installed_packages(env: dict[str, str], timeout: float) -> set[str]:
    out = _run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev} ${Provides}\n"],
               env, timeout)
    installed: set[str] = set()
    for line in out.splitlines():
        name, status, *provides = line.split(" ", 2)
        if status.startswith("ii"):
            installed.add(name)
            for item in (provides[0] if provides else "").split(","):
                if item.strip():
                    installed.add(item.split()[0].split(":")[0])
    return installed


def _depends(packages: Iterable[str], env: dict[str, str],
             timeout: float) -> dict[str, list[list[str]]]:
    """Each package's Depends and Pre-Depends as groups of alternatives."""
    out = _run(["apt-cache", "depends", "--no-recommends", "--no-suggests", "--no-conflicts",
                "--no-breaks", "--no-replaces", "--no-enhances", *packages], env, timeout)
    found: dict[str, list[list[str]]] = {}
    groups: list[list[str]] = []
    alternative = False
    for line in out.splitlines():
        if not line.startswith(" "):
            groups = found.setdefault(line.strip(), [])
            alternative = False
            continue
        match = re.match(r"\s*(\|?)(?:Pre)?Depends: (\S+)", line)
        if match is None:
            continue  # a provider of a virtual package, listed under it
        if alternative:
            groups[-1].append(match.group(2))
        else:
            groups.append([match.group(2)])
        alternative = match.group(1) == "|"
    missing = [p for p in packages if p not in found]
    if missing:
        raise InstallError(f"apt-cache knows no package {', '.join(missing)}")
    return found


def merge_into_symlinked_dirs(tree: Path, machine: Path) -> None:
    """Move what the packages put in a directory that is a symlink on the machine to
    where the symlink points, inside the tree.

    Debian 12's packages still ship /lib/systemd and the like, while the machine's /lib
    is a symlink to usr/lib. In an overlay a directory of an upper layer hides a symlink
    of the same name below it: the node's /lib would hold cloud-init's few files and
    nothing else, and no program would start."""
    for directory in _walk_dirs(tree):
        relative = directory.relative_to(tree)
        on_machine = machine / relative
        if not on_machine.is_symlink():
            continue
        link = os.readlink(on_machine)
        target_relative = (Path(link.lstrip("/")) if os.path.isabs(link)
                           else Path(os.path.normpath(relative.parent / link)))
        if str(target_relative).startswith(".."):
            raise InstallError(f"{on_machine} points outside the machine's root: {link}")
        _move_merging(directory, tree / target_relative)


def _walk_dirs(tree: Path) -> Iterator[Path]:
    # Top-down, and a directory moved away is not descended into (its contents are
    # visited again where they land, if that is under a symlinked directory too).
    stack = [tree]
    while stack:
        current = stack.pop()
        for entry in sorted(current.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                yield entry
                if entry.exists():
                    stack.append(entry)


def _move_merging(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        dest = target / entry.name
        if entry.is_dir() and not entry.is_symlink() and dest.is_dir():
            _move_merging(entry, dest)
        elif dest.exists() or dest.is_symlink():
            raise InstallError(f"packages put both {entry} and {dest} in the cloud-init tree")
        else:
            entry.rename(dest)
    source.rmdir()


def _run(argv: list[str], env: dict[str, str], timeout: float,
         cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from exc
    except OSError as exc:
        raise InstallError(f"{argv[0]}: {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise InstallError(f"{' '.join(argv)} failed with exit code {proc.returncode}:\n{tail}")
    return proc.stdout


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        try:
            _lock_with_timeout(handle.fileno(), LOCK_WAIT_SECONDS)
        except TimeoutError as exc:
            raise InstallError(f"another process holds {path} for over "
                               f"{LOCK_WAIT_SECONDS}s") from exc
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _lock_with_timeout(fd: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError from None
            time.sleep(0.2)

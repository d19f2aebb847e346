"""A node's first boot: the image's own preparation, then the real cloud-init.

The node's root starts as a copy of this machine. Two things turn it into a
freshly launched cloud server:

* what the image was built with, which is not cloud-init's job: its sshd_config,
  and none of the machine's keys in root's .ssh (:data:`PREPARE`);
* Debian's cloud-init (unpacked for nodes only, see ``install.py``), fed through
  the NoCloud datasource: a seed with the instance's metadata, the cloud's key and
  the server's user data, and a cloud.cfg.d file with the image's settings
  (:func:`image_config`). It makes the default user, the host keys, authorized
  keys and passwords, runs the user data, and prints on the console what it
  prints on every cloud, which is where a careful client learns the host keys.

Why real cloud-init rather than an imitation: the console format, the users and
keys it makes and the user data it runs are then what cloudnorm meets on a real
cloud, version for version, and a change of cloud-init shows up in the tests.
"""

from __future__ import annotations

import grp
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from cloudnorm import hostkeys

HOST_KEY_TYPES = ("ed25519", "ecdsa", "rsa")

# Many cloud images ship password logins enabled until someone hardens them;
# listen addresses and port are given on sshd's command line, as a real
# machine's would come from its interfaces rather than from this file. UsePAM
# as in Debian's and Ubuntu's images: without PAM, sshd refuses even keys for an
# account whose password is locked, as useradd leaves the default user until
# cloud-init's set-passwords runs, after sshd has started.
SSHD_CONFIG = """\
Include /etc/ssh/sshd_config.d/*.conf

{host_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding no
PrintMotd no
AcceptEnv LANG LC_*
PidFile /run/sshd.pid
Subsystem sftp /usr/lib/openssh/sftp-server
"""

# cloud-init's default (ssh_util.DISABLE_USER_OPTS): root's key answers with a hint,
# then exit 142. Written out so the image's setting is visible in one place.
DISABLE_ROOT_OPTS = (
    "no-port-forwarding,no-agent-forwarding,no-X11-forwarding,"
    "command=\"echo 'Please login as the user \\\"$USER\\\" rather than the user "
    "\\\"$DISABLE_USER\\\".';echo;sleep 10;exit 142\""
)

# Only modules that act inside the node. Debian's list also has growpart, resizefs,
# disk_setup and mounts (the machine's disks: /dev is the machine's), apt-configure,
# ntp, timezone, locale, keyboard, grub-dpkg, rsyslog, ca-certs, seed_random (the
# machine's packages, clock, boot loader and devices), snap, lxd, puppet, chef,
# phone-home, power-state-change and the like: none of them may touch this machine.
INIT_MODULES = ("bootcmd", "write-files", "set_hostname", "update_hostname",
                "update_etc_hosts", "users-groups", "ssh")
CONFIG_MODULES = ("set-passwords", "runcmd")
FINAL_MODULES = ("write-files-deferred", "scripts-vendor", "scripts-per-once",
                 "scripts-per-boot", "scripts-per-instance", "scripts-user",
                 "ssh-authkey-fingerprints", "keys-to-console", "final-message")

SEED_DIR = "/var/lib/cloud/seed/nocloud"
IMAGE_CONFIG = "/etc/cloud/cloud.cfg.d/90_cloudnorm_image.cfg"

# Runs as root inside the node before cloud-init. Inputs arrive in the environment
# so that nothing needs shell quoting; user data on stdin in base64, as it may be
# binary and larger than an environment variable may be.
PREPARE = r"""
set -eu
rm -rf /etc/ssh/sshd_config.d
mkdir -p /etc/ssh/sshd_config.d
printf '%s' "$SSHD_CONFIG" > /etc/ssh/sshd_config
# Whatever the machine keeps in root's .ssh is not the server's.
rm -rf /root/.ssh
mkdir -p "$SEED_DIR" "$(dirname "$IMAGE_CONFIG")"
printf '%s' "$META_DATA" > "$SEED_DIR/meta-data"
base64 -d > "$SEED_DIR/user-data"
: > "$SEED_DIR/vendor-data"
chmod 600 "$SEED_DIR/user-data"
printf '%s' "$IMAGE_CFG" > "$IMAGE_CONFIG"
"""


@dataclass(frozen=True)
class HostKeys:
    """A node's host keys: ``keys`` as their .pub lines, ``fingerprints`` as OpenSSH's
    SHA256 fingerprints, in the same order."""

    fingerprints: tuple[str, ...]
    keys: tuple[str, ...]

    @classmethod
    def from_pub_lines(cls, text: str) -> HostKeys:
        keys = tuple(line.strip() for line in text.splitlines() if line.strip())
        return cls(tuple(hostkeys.fingerprint(k.split()[1]) for k in keys), keys)


def meta_data(name: str, authorized_key: str) -> str:
    return yaml.safe_dump({"instance-id": name, "local-hostname": name,
                           "public-keys": [authorized_key]}, sort_keys=False)


def image_config(
    *, user: str, password: str, host_key_types: Sequence[str], disable_root: bool,
    print_authorized_keys: bool, print_host_keys: bool,
) -> str:
    """The image's cloud.cfg.d file: what an image builder sets for cloud-init."""
    if user == "root":
        # Images that log in as root have no default user to create, and root's key
        # must work: cloud-init's disable_root would send root to itself.
        default_user: dict[str, object] = {"name": "root", "lock_passwd": False, "sudo": None}
        disable_root = False
        passwords = [{"name": "root", "password": password, "type": "text"}]
    else:
        default_user = {
            "name": user, "gecos": user, "lock_passwd": False, "shell": "/bin/bash",
            "groups": [g for g in ("adm", "sudo") if _group_exists(g)],
            "sudo": "ALL=(ALL) NOPASSWD:ALL",
        }
        passwords = [{"name": name, "password": password, "type": "text"}
                     for name in ("root", user)]
    config = {
        "datasource_list": ["NoCloud", "None"],
        # fs_label null: no looking for a seed disk labelled cidata, which would
        # mean probing (and mounting) the machine's block devices.
        "datasource": {"NoCloud": {"fs_label": None}},
        # The data plane gives the node its addresses; cloud-init must not touch links.
        "network": {"config": "disabled"},
        "users": ["default"],
        "system_info": {"default_user": default_user},
        "preserve_hostname": False,
        "manage_etc_hosts": True,
        "disable_root": disable_root,
        "disable_root_opts": DISABLE_ROOT_OPTS,
        "ssh_genkeytypes": list(host_key_types),
        "no_ssh_fingerprints": not print_authorized_keys,
        "ssh": {"emit_keys_to_console": print_host_keys},
        "ssh_pwauth": True,
        "chpasswd": {"expire": False, "users": passwords},
        "cloud_init_modules": list(INIT_MODULES),
        "cloud_config_modules": list(CONFIG_MODULES),
        "cloud_final_modules": list(FINAL_MODULES),
    }
    header = (
        "# The image's cloud-init settings, written by cloudnorm's data plane.\n"
        "# The module lists leave out every module that could act on the machine the\n"
        "# node runs on (disks, packages, clock, network): see cloudinit.py.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, width=1000)


def _group_exists(name: str) -> bool:
    # The node's /etc/group is the machine's at first boot.
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def sshd_config(host_key_types: Sequence[str]) -> str:
    host_keys = "\n".join(f"HostKey /etc/ssh/ssh_host_{t}_key" for t in host_key_types)
    return SSHD_CONFIG.format(host_keys=host_keys)


def lying_console(console: str, real: HostKeys, decoy: HostKeys) -> str:
    """The console with every key and fingerprint of ``real`` replaced by the ``decoy``'s
    of the same type: a console showing other host keys than the server has."""
    by_type = {k.split()[0]: (k, fp) for k, fp in zip(decoy.keys, decoy.fingerprints,
                                                      strict=True)}
    for key, fp in zip(real.keys, real.fingerprints, strict=True):
        other_key, other_fp = by_type[key.split()[0]]
        console = console.replace(key.split()[1], other_key.split()[1]).replace(fp, other_fp)
    return console

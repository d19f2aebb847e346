"""What a cloud image and cloud-init do at a node's first boot.

The node's root starts as a copy of this machine; first boot turns it into a
freshly launched cloud server: its own host keys, the image's sshd_config,
the image's default user holding the injected key with passwordless sudo,
and the console output from which a careful client learns the host keys.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

HOST_KEY_TYPES = ("ed25519", "ecdsa", "rsa")
CLOUD_INIT_VERSION = "24.4"

# Many cloud images ship password logins enabled until someone hardens them;
# listen addresses and port are given on sshd's command line, as a real
# machine's would come from its interfaces rather than from this file.
SSHD_CONFIG = """\
Include /etc/ssh/sshd_config.d/*.conf

{host_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
PrintMotd no
AcceptEnv LANG LC_*
PidFile /run/sshd.pid
Subsystem sftp /usr/lib/openssh/sftp-server
"""

# cloud-init's disable_root: root's key answers with a hint, then exit 142.
DISABLE_ROOT_OPTIONS = (
    'no-port-forwarding,no-agent-forwarding,no-X11-forwarding,'
    'command="echo \'Please login as the user \\"{user}\\" rather than the user '
    '\\"root\\".\';echo;sleep 10;exit 142"'
)

# Runs as root inside the node. Inputs arrive in the environment so that no
# key or password needs shell quoting.
FIRST_BOOT = r"""
set -eu
printf '%s\n' "$NODE_NAME" > /etc/hostname
grep -qs "[[:space:]]$NODE_NAME\$" /etc/hosts || printf '127.0.1.1\t%s\n' "$NODE_NAME" >> /etc/hosts

# The image's host keys would be shared by every server launched from it.
rm -f /etc/ssh/ssh_host_*
for type in $HOST_KEY_TYPES; do
    ssh-keygen -q -t "$type" -N '' -C "root@$NODE_NAME" -f "/etc/ssh/ssh_host_${type}_key"
done
rm -rf /etc/ssh/sshd_config.d
mkdir -p /etc/ssh/sshd_config.d
printf '%s' "$SSHD_CONFIG" > /etc/ssh/sshd_config

# Whatever the machine keeps in root's .ssh is not the server's.
rm -rf /root/.ssh
install -d -m 700 /root/.ssh
if [ "$DEFAULT_USER" != root ]; then
    if ! getent passwd "$DEFAULT_USER" >/dev/null; then
        groups=
        for g in adm sudo; do
            getent group "$g" >/dev/null && groups="${groups:+$groups,}$g"
        done
        useradd --create-home --shell /bin/bash ${groups:+--groups "$groups"} "$DEFAULT_USER"
    fi
    printf '%s' "$SUDOERS" > /etc/sudoers.d/90-cloud-init-users
    chmod 440 /etc/sudoers.d/90-cloud-init-users
    printf '%s\n' "$ROOT_KEYS" > /root/.ssh/authorized_keys
    chmod 600 /root/.ssh/authorized_keys
fi
home=$(getent passwd "$DEFAULT_USER" | cut -d: -f6)
group=$(id -gn "$DEFAULT_USER")
install -d -m 700 -o "$DEFAULT_USER" -g "$group" "$home/.ssh"
printf '%s\n' "$AUTHORIZED_KEY" > "$home/.ssh/authorized_keys"
chown "$DEFAULT_USER:$group" "$home/.ssh/authorized_keys"
chmod 600 "$home/.ssh/authorized_keys"

if [ "$DEFAULT_USER" = root ]; then
    printf 'root:%s\n' "$PASSWORD" | chpasswd
else
    printf 'root:%s\n%s:%s\n' "$PASSWORD" "$DEFAULT_USER" "$PASSWORD" | chpasswd
fi

for f in /etc/ssh/ssh_host_*key.pub; do
    printf 'FP %s\n' "$(ssh-keygen -l -f "$f")"
    printf 'KEY %s\n' "$(cat "$f")"
done
"""


@dataclass(frozen=True)
class HostKeys:
    """Host keys as cloud-init prints them: ``ssh-keygen -l`` lines and .pub lines."""

    fingerprints: tuple[str, ...]
    keys: tuple[str, ...]

    @classmethod
    def parse(cls, output: str) -> HostKeys:
        fps = [line[3:] for line in output.splitlines() if line.startswith("FP ")]
        keys = [line[4:] for line in output.splitlines() if line.startswith("KEY ")]
        return cls(tuple(fps), tuple(keys))


def first_boot_env(
    *, name: str, user: str, authorized_key: str, password: str,
    host_key_types: Sequence[str], disable_root: bool,
) -> dict[str, str]:
    host_keys = "\n".join(f"HostKey /etc/ssh/ssh_host_{t}_key" for t in host_key_types)
    if disable_root:
        root_keys = f"{DISABLE_ROOT_OPTIONS.format(user=user)} {authorized_key}"
    else:
        root_keys = authorized_key
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "NODE_NAME": name,
        "DEFAULT_USER": user,
        "AUTHORIZED_KEY": authorized_key,
        "ROOT_KEYS": root_keys,
        "PASSWORD": password,
        "HOST_KEY_TYPES": " ".join(host_key_types),
        "SSHD_CONFIG": SSHD_CONFIG.format(host_keys=host_keys),
        "SUDOERS": f"# Created by cloud-init\n\n# User rules for {user}\n"
                   f"{user} ALL=(ALL) NOPASSWD:ALL\n",
    }


def authorized_keys_table(user: str, authorized_key: str) -> list[str]:
    """What cloud-init's ssh-authkey-fingerprints module (on by default) prints for the
    default user: a ``ci-info:`` table of the user's authorized keys, SHA-256 in hex."""
    key_type, blob, *comment = authorized_key.split()
    digest = hashlib.sha256(base64.b64decode(blob)).hexdigest()
    fingerprint = ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
    header = ["Keytype", "Fingerprint (sha256)", "Options", "Comment"]
    row = [key_type, fingerprint, "-", " ".join(comment) or "-"]
    widths = [max(len(a), len(b)) + 2 for a, b in zip(header, row, strict=True)]
    rule = "+" + "+".join("-" * w for w in widths) + "+"

    def cells(values: list[str]) -> str:
        return "|" + "|".join(v.center(w) for v, w in zip(values, widths, strict=True)) + "|"

    path = "/root/.ssh/authorized_keys" if user == "root" else f"/home/{user}/.ssh/authorized_keys"
    title = f"Authorized keys from {path} for user {user}".center(len(rule), "+")
    return [f"ci-info: {line}" for line in (title, rule, cells(header), rule, cells(row), rule)]


def console_text(host_keys: HostKeys, booted: float, finished: float,
                 authorized: Sequence[str] = (), emit_keys: bool = True) -> str:
    """Console output of a first boot, as cloud-init writes it; ``authorized`` are the
    lines of the authorized keys table, when the image prints one; without
    ``emit_keys`` the host keys are not printed (``emit_keys_to_console: false``)."""
    stamp = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(finished))
    # cloud-init pipes the fingerprints through `logger -s -t ec2`, which
    # puts a syslog header on each line; the keys themselves go out bare.
    syslog = f"<14>{time.strftime('%b %e %H:%M:%S', time.gmtime(finished))} ec2: "
    up = 5.0 + (finished - booted)
    keys = [
        syslog,
        syslog + "#" * 61,
        syslog + "-----BEGIN SSH HOST KEY FINGERPRINTS-----",
        *(syslog + fp for fp in host_keys.fingerprints),
        syslog + "-----END SSH HOST KEY FINGERPRINTS-----",
        syslog + "#" * 61,
        "-----BEGIN SSH HOST KEY KEYS-----",
        *host_keys.keys,
        "-----END SSH HOST KEY KEYS-----",
    ]
    lines = [
        f"Cloud-init v. {CLOUD_INIT_VERSION} running 'modules:final' at {stamp}. "
        f"Up {up:.2f} seconds.",
        *authorized,
        *(keys if emit_keys else ()),
        f"Cloud-init v. {CLOUD_INIT_VERSION} finished at {stamp}. Datasource DataSourceNone.  "
        f"Up {up + 0.01:.2f} seconds",
    ]
    return "\n".join(lines) + "\n"

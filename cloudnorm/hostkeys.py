"""Host keys as cloud-init reports them on the console, and checks against them.

cloud-init prints, on every first boot, the new host keys between
``-----BEGIN SSH HOST KEY KEYS-----`` / ``-----END SSH HOST KEY KEYS-----``
and their fingerprints between ``-----BEGIN SSH HOST KEY FINGERPRINTS-----``
/ ``-----END ...-----``. The console reaches cloudnorm over the cloud's API
(Nova's console log, EC2's GetConsoleOutput, GCE's serial port), a channel the
network between cloudnorm and the server cannot tamper with, so it is what
host keys are verified against.

The same console names the login user: cloud-init's ssh-authkey-fingerprints
module (on unless ``no_ssh_fingerprints: true``) prints, per configured user, a
``ci-info:`` table of that user's authorized keys. The user whose table holds
the key cloudnorm injected is the one to log in as, found without a single
failed login.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

import attrs

_KEYS = re.compile(r"-----BEGIN SSH HOST KEY KEYS-----(.*?)-----END SSH HOST KEY KEYS-----",
                   re.S)
_FPS = re.compile(
    r"-----BEGIN SSH HOST KEY FINGERPRINTS-----(.*?)-----END SSH HOST KEY FINGERPRINTS-----", re.S)
_KEY_LINE = re.compile(r"(?:^|\s)((?:ssh|ecdsa|sk)-[a-z0-9@.-]+)\s+([A-Za-z0-9+/]+={0,3})(?:\s|$)")
_FP_LINE = re.compile(r"\b(SHA256:[A-Za-z0-9+/]{43}=?|MD5(?::[0-9a-f]{2}){16}|"
                      r"(?:[0-9a-f]{2}:){15}[0-9a-f]{2})\b")


_AUTHORIZED_TITLE = re.compile(r"Authorized keys from \S+ for user ([^\s+]+)")
_HASH_HEADER = re.compile(r"Fingerprint \((\w+)\)")


@attrs.frozen
class HostKeys:
    """What the console says about a server's host keys.

    ``keys`` are ``"<type> <base64>"`` strings (known_hosts form without a host);
    ``fingerprints`` are ``SHA256:...`` strings.
    """

    keys: tuple[str, ...] = ()
    fingerprints: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.keys or self.fingerprints)

    def accepts(self, key_type: str, key_base64: str) -> bool:
        """True when a key the server presented is one the console announced."""
        if f"{key_type} {key_base64}" in self.keys:
            return True
        return fingerprint(key_base64) in self.fingerprints


def fingerprint(key_base64: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob."""
    digest = hashlib.sha256(base64.b64decode(key_base64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def parse_console(text: str | None) -> HostKeys:
    """The host keys and fingerprints announced in console output (last boot wins)."""
    if not text:
        return HostKeys()
    keys: list[str] = []
    fps: list[str] = []
    key_blocks = _KEYS.findall(text)
    if key_blocks:
        for line in key_blocks[-1].splitlines():
            match = _KEY_LINE.search(line)
            if match and _valid_blob(match.group(2)):
                keys.append(f"{match.group(1)} {match.group(2)}")
    fp_blocks = _FPS.findall(text)
    if fp_blocks:
        for line in fp_blocks[-1].splitlines():
            match = _FP_LINE.search(line)
            if match and match.group(1).startswith("SHA256:"):
                fps.append(match.group(1).rstrip("="))
    return HostKeys(keys=tuple(dict.fromkeys(keys)), fingerprints=tuple(dict.fromkeys(fps)))


def _valid_blob(blob: str) -> bool:
    try:
        base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def known_hosts_lines(host_keys: tuple[str, ...], address: str, port: int = 22) -> list[str]:
    """known_hosts lines for ``address`` (bracketed when the port is not 22)."""
    host = address if port == 22 else f"[{address}]:{port}"
    return [f"{host} {key}" for key in host_keys]


#: Server metadata (tags) where create_server leaves how to log in: ``user@address:port``.
LOGIN_KEY = "cloudnorm:ssh"
#: Prefix of one metadata item per verified host key, named by key type.
HOST_KEY_PREFIX = "cloudnorm:host_key:"
#: Longest value every supported cloud stores (Nova metadata: 255, EC2 tags: 256).
METADATA_VALUE_MAX = 255


@attrs.frozen
class LoginRecord:
    """How create_server logged in to a server, as stored on the server itself.

    ``keys`` are the host keys kept whole; ``fingerprints`` stand in for keys too long
    for one metadata value (RSA), and check a key the server presents.
    """

    user: str
    address: str
    port: int
    keys: tuple[str, ...] = ()
    fingerprints: tuple[str, ...] = ()


def login_metadata(user: str, address: str, port: int,
                   host_keys: tuple[str, ...]) -> dict[str, str]:
    """Metadata items recording a login: one for ``user@address:port``, one per host key
    (its base64 blob, or its SHA256 fingerprint when the blob does not fit a value)."""
    host = f"[{address}]" if ":" in address else address
    items = {LOGIN_KEY: f"{user}@{host}:{port}"}
    for key in host_keys:
        key_type, _, blob = key.partition(" ")
        blob = blob.split()[0] if blob else ""
        if not blob:
            continue
        items[HOST_KEY_PREFIX + key_type] = (
            blob if len(blob) <= METADATA_VALUE_MAX else fingerprint(blob))
    return items


def login_record(metadata: dict[str, str]) -> LoginRecord | None:
    """The login stored by :func:`login_metadata`, or None when there is none (or it is
    not in that form)."""
    match = re.fullmatch(r"([^@\s]+)@(\[[0-9A-Fa-f:.]+\]|[^:\s]+):(\d+)",
                         str(metadata.get(LOGIN_KEY) or ""))
    if not match:
        return None
    keys: list[str] = []
    fps: list[str] = []
    for name, value in sorted(metadata.items()):
        if not name.startswith(HOST_KEY_PREFIX):
            continue
        if value.startswith("SHA256:"):
            fps.append(value)
        elif _valid_blob(value):
            keys.append(f"{name[len(HOST_KEY_PREFIX):]} {value}")
    return LoginRecord(user=match.group(1), address=match.group(2).strip("[]"),
                       port=int(match.group(3)), keys=tuple(keys), fingerprints=tuple(fps))


def console_login_users(text: str | None, public_key: str) -> tuple[str, ...]:
    """Users whose authorized keys, as cloud-init printed them on the console, hold
    ``public_key`` (an OpenSSH public key line), in the order printed."""
    if not text:
        return ()
    parts = public_key.split()
    if len(parts) < 2 or not _valid_blob(parts[1]):
        return ()
    blob = base64.b64decode(parts[1])
    found: list[str] = []
    user: str | None = None
    method = "sha256"
    for raw in text.splitlines():
        _, marker, line = raw.partition("ci-info: ")
        if not marker:
            continue
        title = _AUTHORIZED_TITLE.search(line)
        if title:
            user, method = title.group(1), "sha256"
            continue
        if user is None or not line.startswith("|"):
            if not line.startswith("+"):
                user = None  # the table ended
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        header = _HASH_HEADER.search(line)
        if header:
            method = header.group(1).lower()
        elif len(cells) >= 2 and cells[1] == _hex_fingerprint(blob, method):
            found.append(user)
    return tuple(dict.fromkeys(found))


def _hex_fingerprint(blob: bytes, method: str) -> str | None:
    """cloud-init's fingerprint form: the hex digest in colon-separated pairs."""
    try:
        digest = hashlib.new(method, blob).hexdigest()
    except ValueError:
        return None
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))

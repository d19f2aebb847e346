"""Host keys as cloud-init reports them on the console, and checks against them.

cloud-init prints, on every first boot, the new host keys between
``-----BEGIN SSH HOST KEY KEYS-----`` / ``-----END SSH HOST KEY KEYS-----``
and their fingerprints between ``-----BEGIN SSH HOST KEY FINGERPRINTS-----``
/ ``-----END ...-----``. The console reaches cloudnorm over the cloud's API
(Nova's console log, EC2's GetConsoleOutput, GCE's serial port), a channel the
network between cloudnorm and the server cannot tamper with, so it is what
host keys are verified against.
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

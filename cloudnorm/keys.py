"""Throw-away SSH key pairs: one per node, alive only while cloudnorm needs it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import attrs

from cloudnorm.models import KeyPair


@attrs.frozen
class NodeKey:
    """An ed25519 key pair held in memory. ``repr()`` never shows the private half."""

    name: str
    public_key: str
    private_key: str = attrs.field(repr=False)

    def as_keypair(self) -> KeyPair:
        return KeyPair(name=self.name, public_key=self.public_key, private_key=self.private_key)

    @contextlib.contextmanager
    def private_key_file(self) -> Iterator[str]:
        """The private key in a 0600 file, removed on exit (for the system ``ssh``)."""
        fd, path = tempfile.mkstemp(prefix="cloudnorm-key-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as stream:
                stream.write(self.private_key)
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def generate(name: str, comment: str | None = None) -> NodeKey:
    """A new ed25519 key pair named ``name`` (the comment defaults to the name)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return NodeKey(name=name, public_key=f"{public} {comment or name}", private_key=private)

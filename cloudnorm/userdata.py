"""User data: what the caller hands to the server's first boot (cloud-init, usually).

A mapping is a cloud-config and is written as one (``#cloud-config`` and YAML); text
and bytes go to the cloud exactly as given (a shell script, a cloud-config, a MIME
multi-part archive, gzip). Each cloud limits the size and each limit is checked
before anything is created, so an oversized user data leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import yaml

from cloudnorm import errors

#: What ``create_server(userdata=...)`` accepts.
UserData = str | bytes | Mapping[str, Any]


@attrs.frozen
class SizeLimit:
    """How much user data a cloud takes, and where that is documented."""

    #: The most bytes the cloud accepts, measured as ``measured`` says.
    limit: int
    #: "raw" (the bytes as given), "base64" (their base64 form), or "text" (the bytes
    #: where they are UTF-8 text, else their base64 form: a GCE metadata value).
    measured: str
    #: Where the limit is written down.
    source: str

    def size(self, data: bytes) -> int:
        if self.measured == "text":
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                return _base64_size(data)
            return len(data)
        return _base64_size(data) if self.measured == "base64" else len(data)


def _base64_size(data: bytes) -> int:
    # base64 turns every 3 bytes (or fewer, padded) into 4 characters.
    return -(-len(data) // 3) * 4


def encode(userdata: UserData) -> bytes:
    """The bytes a server receives for ``userdata``.

    >>> encode({"runcmd": ["touch /root/ran"]}).decode()
    '#cloud-config\\nruncmd:\\n- touch /root/ran\\n'
    """
    if isinstance(userdata, bytes):
        return userdata
    if isinstance(userdata, str):
        return userdata.encode("utf-8")
    if isinstance(userdata, Mapping):
        body = yaml.safe_dump(dict(userdata), default_flow_style=False, sort_keys=False)
        return b"#cloud-config\n" + body.encode("utf-8")
    raise TypeError(f"userdata must be text, bytes or a mapping (a cloud-config), "
                    f"not {type(userdata).__name__}")


def check_size(data: bytes, limit: SizeLimit, cloud: str) -> None:
    """Refuse user data the cloud would refuse, before anything is created."""
    size = limit.size(data)
    if size > limit.limit:
        form = "base64-encoded " if size != len(data) else ""
        raise errors.InvalidRequest(
            f"the user data is {size} bytes {form}and this cloud takes at most "
            f"{limit.limit} ({limit.source}): make it smaller, for example gzip it "
            "(cloud-init unpacks gzip) or fetch the rest with #include",
            cloud=cloud, field="userdata")

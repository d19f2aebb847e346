"""Host keys a GCE instance's guest environment publishes in its guest attributes.

Instances are created with ``enable-guest-attributes=TRUE``, so that their guest
environment (Google's guest agent, or cloud-init) publishes the host keys it makes in the
guest attributes (``hostkeys/<type>``); the driver reads them back with
``instances.getGuestAttributes``. Images that publish none (guest attributes off, an image
without the agent) leave the serial console to read.

Google's guest agent, on first boot, makes the host keys and PUTs each public key to
guest-attributes/hostkeys/<type> (instance_setup.go, generateSSHKeys), value the base64
blob only; cloud-init's GCE datasource does the same (publish_host_keys). Both only
succeed where the metadata says enable-guest-attributes=TRUE. Windows images put RDP and
WinRM certificate thumbprints in the same namespace: those are no SSH keys.
"""

from __future__ import annotations

import re
from typing import Any

from cloudnorm import sshkeys
from cloudnorm.drivers import records
from cloudnorm.drivers.gce.normalize import text_field

HOSTKEY_NAMESPACE = "hostkeys"
_KEY_TYPE = re.compile(r"(?:ssh|ecdsa|sk)-[a-z0-9@.-]+")


def host_key_line(key_type: str, value: str) -> str:
    """``"TYPE BASE64"`` for the guest attribute ``hostkeys/<key_type>``, checked as a key
    printed on a console is: the value must be one whole public key of that type.

    The value is the base64 blob (what the guest agent and cloud-init write), or
    ``"TYPE BASE64 [comment]"``; anything after the key on its first line (a comment, a
    second line) is ignored, as gcloud does. Raises ValueError for anything else.
    """
    if not _KEY_TYPE.fullmatch(key_type):
        raise ValueError(f"'{key_type}' is not an SSH key type")
    words = value.split()
    if len(words) >= 2 and words[0] == key_type:
        words = words[1:]
    if not words:
        raise ValueError("the value is empty")
    text = words[0]
    problem = sshkeys.key_problem(key_type, text)
    if problem:
        raise ValueError(f"'{text[:20]}...': {problem}")
    return f"{key_type} {text}"


@records.guarded("guest attributes", id_keys=("selfLink", "queryPath"))
def published_host_keys(reply: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The host keys in an ``instances.getGuestAttributes`` reply for ``hostkeys/``:
    (``"TYPE BASE64"`` lines, why each other entry was set aside).

    A reply of the wrong shape is malformed; an entry that is no whole SSH key of its
    type is set aside, never used (any process on the instance can write guest
    attributes, so their content is checked like console text is).
    """
    value = records.mapping(records.mapping(reply, "reply").get("queryValue"), "queryValue")
    keys: list[str] = []
    skipped: list[str] = []
    for index, item in enumerate(records.mappings(value.get("items"), "queryValue.items")):
        where = f"queryValue.items[{index}]"
        namespace = text_field(item.get("namespace"), f"{where}.namespace")
        key = text_field(item.get("key"), f"{where}.key")
        text = text_field(item.get("value"), f"{where}.value")
        if namespace != HOSTKEY_NAMESPACE:
            skipped.append(f"{namespace}/{key}: not in namespace {HOSTKEY_NAMESPACE}/")
            continue
        try:
            line = host_key_line(key, text)
        except ValueError as exc:
            skipped.append(f"{namespace}/{key}: {exc}")
            continue
        if line not in keys:
            keys.append(line)
    return tuple(keys), tuple(skipped)

"""The SSH data plane of the local test clouds.

The local clouds create no virtual machines. When one reports a server as
running, a node comes up on the address the server is reachable at: a private
root filesystem whose first boot runs the real cloud-init with what the cloud
holds for the server (its key, its user data), its console, and a real OpenSSH
server, so that what cloudnorm promises (a server a person can SSH into) is
checked against the real thing.

Nodes need root, ``openssh-server`` and ``sudo`` on the machine
(:func:`ensure_openssh`), Debian's cloud-init unpacked for them
(:func:`ensure_cloud_init`), and a private network namespace
(:func:`run_in_private_netns`).
"""

from cloudnorm.testing.dataplane.fleet import Fleet
from cloudnorm.testing.dataplane.install import InstallError, ensure_cloud_init, ensure_openssh
from cloudnorm.testing.dataplane.netns import (
    NotInPrivateNetns,
    add_address,
    in_private_netns,
    remove_address,
    require_private_netns,
    run_in_private_netns,
)
from cloudnorm.testing.dataplane.node import Node, NodeError

__all__ = [
    "Fleet", "InstallError", "Node", "NodeError", "NotInPrivateNetns",
    "add_address", "ensure_cloud_init", "ensure_openssh", "in_private_netns", "remove_address",
    "require_private_netns", "run_in_private_netns",
]

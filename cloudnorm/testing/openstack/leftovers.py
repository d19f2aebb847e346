"""What cloudnorm made that a sandbox project still holds, listed through openstacksdk
directly (not through cloudnorm, whose own bookkeeping is what a test checks)."""

from __future__ import annotations

from typing import Any

from cloudnorm.models import OWNER_KEY


def leftovers(sandbox: Any, profile: str, *, owner: str | None = None,
              servers_named: str | None = None) -> list[str]:
    """Servers, key pairs, ports, floating IPs, port forwardings, security groups and
    volumes cloudnorm made in ``profile``'s project, one line each.

    ``owner``: only what one create made (its marker); otherwise anything carrying
    cloudnorm's marker or name, servers apart. ``servers_named``: servers whose name
    starts with it count, marked or not. Volumes count when marked (metadata, name or
    description), when attached to a server that counts, and, without ``owner``, when
    Nova made them for a server (boot from an image to a volume, a blank volume): those
    carry nothing of their caller's, and the sandbox seeds no volume.
    """
    def mine(text: str | None) -> bool:
        return (owner in (text or "")) if owner else (
            OWNER_KEY in (text or "") or (text or "").startswith("cloudnorm-"))

    sdk = sandbox.connect(profile)
    try:
        servers = [s for s in sdk.compute.servers()
                   if (owner and (s.metadata or {}).get(OWNER_KEY) == owner)
                   or (servers_named and (s.name or "").startswith(servers_named))]
        found = [f"server {s.name} {s.id}" for s in servers]
        found += [f"key pair {k.name}" for k in sdk.compute.keypairs() if mine(k.name)]
        if sdk.has_service("network"):
            found += [f"port {p.name} {p.id}" for p in sdk.network.ports()
                      if (p.name or "").startswith("cloudnorm-") and mine(p.name)]
            for fip in sdk.network.ips():
                if mine(fip.description):
                    found.append(f"floating IP {fip.floating_ip_address}")
                found += [f"port forwarding {fip.floating_ip_address}:{pf.external_port}"
                          for pf in sdk.network.port_forwardings(fip)
                          if mine(pf.description)]
            found += [f"security group {g.name}" for g in sdk.network.security_groups()
                      if (g.name or "").startswith("cloudnorm-") and mine(g.name)]
        if sdk.has_service("block-storage"):
            counted = {s.id for s in servers}
            found += [f"volume {v.name or '(unnamed)'} {v.id} {v.status}"
                      for v in sdk.block_storage.volumes()
                      if _volume_counts(v, mine, owner, counted)]
    finally:
        sdk.close()
    return found


def _volume_counts(volume: Any, mine: Any, owner: str | None, servers: set[str]) -> bool:
    metadata = volume.metadata or {}
    if (metadata.get(OWNER_KEY) == owner) if owner else OWNER_KEY in metadata:
        return True
    if mine(volume.name) or mine(volume.description):
        return True
    if any(attachment.get("server_id") in servers for attachment in volume.attachments or ()):
        return True
    # Nova names a blank volume it makes "<server id>-blank-vol" and a root volume made
    # from an image not at all.
    return owner is None and (not volume.name or volume.name.endswith("-blank-vol"))

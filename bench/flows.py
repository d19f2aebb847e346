"""One "create a server and reach it" per library, written the way each library is
meant to be used, on the fip-required cloud (tenant network behind a router; public
access only through a floating IP; the default security group keeps port 22 closed).

* cloudnorm: ``cloud.create_server(name, image="ubuntu-22.04", min_ram=2048)``: it
  registers a throw-away key, opens port 22 with a group of its own, boots, attaches a
  floating IP, logs in with a verified host key, hardens and removes the key again.
* openstacksdk: ``conn.create_server(..., auto_ip=True, wait=True)``.
* Libcloud (OpenStack 2.x driver): ``create_node`` + ``wait_until_running`` + the
  floating IP calls a person makes by hand (create in the pool, attach to the node).

The peers are given what a person would hard-code (the image id -- the cloud has two
images of that name -- the flavor and network names). To be reachable at all they need a
key pair and a security group that lets port 22 in: a cold run creates both (counted), a
warm run reuses those of the preceding cold run (nothing to count): the peers' best case.
For the peers, "SSH-ready" is the first SSH banner read on the address they report;
with ``login=`` (scenario "bfv") it is a key login that succeeded after that banner
(:func:`wait_for_key_login`).

Every function takes the backend (or a :meth:`~bench.sandbox.Backend.view` of it) whose
project it works in; the defaults are the fip-required cloud's flavor and network.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.sandbox import Backend

FLAVOR = "m1.small"
NETWORK = "private"
POOL = "public"
BANNER_TIMEOUT = 60.0
LOGIN_TIMEOUT = 60.0
LOGIN_RETRY = 0.25  # s between key login attempts (cloudnorm's first pause is the same)
CREATE_TIMEOUT = 120  # one create takes 5-15 s here: bounded, so a stuck backend costs little


def wait_for_banner(address: str, port: int = 22, timeout: float = BANNER_TIMEOUT) -> float:
    """Seconds until a TCP connect to ``address`` reads an SSH banner (bounded)."""
    started = time.monotonic()
    deadline = started + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=2.0) as sock:
                sock.settimeout(2.0)
                data = b""
                while b"\n" not in data and len(data) < 512:
                    chunk = sock.recv(256)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"SSH-"):
                    return time.monotonic() - started
                last = f"no banner: {data[:40]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"no SSH banner on {address}:{port} within {timeout:.0f}s ({last})")


def wait_for_key_login(address: str, user: str, key_path: Path, port: int = 22,
                       timeout: float = LOGIN_TIMEOUT) -> tuple[float, int]:
    """Seconds until ``ssh -i key_path user@address true`` succeeds, and the attempts it
    took (bounded): what a person's script does after the cloud says the server is up.
    OpenSSH's client, batch mode, no configuration file, the host key taken on first use
    (the peers have no way to verify it)."""
    started = time.monotonic()
    deadline = started + timeout
    attempts = 0
    last = "no attempt"
    command = ["ssh", "-F", "/dev/null", "-i", str(key_path), "-p", str(port),
               "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "ConnectTimeout=3", "-o", "LogLevel=ERROR", f"{user}@{address}", "true"]
    while time.monotonic() < deadline:
        attempts += 1
        try:
            proc = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=10)
        except subprocess.TimeoutExpired:
            last = "ssh did not finish within 10 s"
        else:
            if proc.returncode == 0:
                return time.monotonic() - started, attempts
            last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        time.sleep(LOGIN_RETRY)
    raise TimeoutError(f"no key login as {user}@{address} within {timeout:.0f}s after "
                       f"{attempts} attempts ({last})")


# -- cloudnorm ------------------------------------------------------------------------
def cloudnorm_connect(backend: Backend) -> Any:
    import cloudnorm

    return cloudnorm.connect(backend.cloud, config_files=[str(backend.clouds_yaml)])


def cloudnorm_create(backend: Backend, cloud: Any, name: str, operator_key: str) -> dict[str, Any]:
    steps: dict[str, float] = {}
    started = time.monotonic()
    if cloud is None:
        cloud = cloudnorm_connect(backend)
    before = _limiter_state(cloud)
    server = cloud.create_server(
        name, image="ubuntu-22.04", min_ram=2048, authorized_keys=[operator_key],
        timeout=CREATE_TIMEOUT,
        on_step=lambda e: steps.setdefault(f"{e.step}:{e.status}", time.monotonic() - started))
    wall = time.monotonic() - started
    return {
        "cloud": cloud, "server_id": server.id, "wall": wall,
        "active": steps.get("boot:done"), "address_ready": steps.get("public_address:done"),
        "ssh_ready": steps.get("login:done"),
        "reported": {"public_v4": server.public_v4, "interface_ip": server.interface_ip,
                     "ssh_user": server.ssh_user},
        "address": server.interface_ip,
        "steps": {k: round(v, 3) for k, v in steps.items()},
        "rate_limit": _limiter_delta(before, _limiter_state(cloud)),
        "decisions": {d.step: d.choice for d in server.decisions},
        "volumes": [{"id": v.id, "size": v.size, "root": v.root} for v in server.volumes],
        "note": "create_server returns after a verified login, hardening and node-key removal",
    }


def _limiter_state(cloud: Any) -> dict[str, Any] | None:
    """cloudnorm's client-side rate limiter (one per account, process-wide): its setting
    (fixed rates, or the start rates of an adaptive budget), how many requests went
    through it, how long they waited and how often the cloud throttled, so far."""
    limiter = getattr(getattr(cloud, "driver", None), "limiter", None)
    if limiter is None:
        return None
    adaptive = bool(getattr(limiter.limit, "adaptive", False))
    state = {"reads_per_s": limiter.limit.reads, "writes_per_s": limiter.limit.writes,
             "adaptive": adaptive, "counts": dict(limiter.counts),
             "waited": dict(limiter.waited),
             "throttles": dict(getattr(limiter, "throttles", {}) or {})}
    if adaptive:
        state["rates_now"] = {kind: limiter.rate(kind) for kind in ("write", "read")}
    return state


def _limiter_delta(before: dict[str, Any] | None, after: dict[str, Any] | None
                   ) -> dict[str, Any] | None:
    if before is None or after is None:
        return None
    throttles = {kind: after["throttles"].get(kind, 0) - before["throttles"].get(kind, 0)
                 for kind in ("write", "read")} if "throttles" in after else None
    return {"reads_per_s": after["reads_per_s"], "writes_per_s": after["writes_per_s"],
            "adaptive": after.get("adaptive", False), "throttles": throttles,
            "rates_at_end": after.get("rates_now"),
            "writes": after["counts"]["write"] - before["counts"]["write"],
            "reads": after["counts"]["read"] - before["counts"]["read"],
            "write_wait_s": round(after["waited"]["write"] - before["waited"]["write"], 3),
            "read_wait_s": round(after["waited"]["read"] - before["waited"]["read"], 3)}


# -- openstacksdk ---------------------------------------------------------------------
def sdk_connect(backend: Backend) -> Any:
    import openstack.config
    import openstack.connection

    config = openstack.config.OpenStackConfig(config_files=[str(backend.clouds_yaml)],
                                              load_envvars=False)
    return openstack.connection.Connection(config=config.get_one(cloud=backend.cloud))


def sdk_access(conn: Any, tag: str, public_key: str) -> dict[str, str]:
    """The key pair and the security group opening port 22 a person creates once."""
    key = conn.compute.create_keypair(name=f"bench-sdk-{tag}", public_key=public_key)
    group = conn.network.create_security_group(name=f"bench-sdk-ssh-{tag}")
    conn.network.create_security_group_rule(
        security_group_id=group.id, direction="ingress", protocol="tcp", port_range_min=22,
        port_range_max=22, remote_ip_prefix="0.0.0.0/0", ethertype="IPv4")
    return {"key_name": key.name, "security_group": group.name}


def _floating_of(server: Any) -> str | None:
    for entries in (server.addresses or {}).values():
        for entry in entries:
            if entry.get("OS-EXT-IPS:type") == "floating":
                return str(entry["addr"])
    return None


def sdk_create(backend: Backend, conn: Any, access: dict[str, str] | None, name: str,
               public_key: str, tag: str, banner: bool = True, *, flavor: str = FLAVOR,
               network: str = NETWORK, login: tuple[str, Path] | None = None,
               **create_kwargs: Any) -> dict[str, Any]:
    """``create_kwargs`` go to ``create_server`` as well (``boot_from_volume=True``,
    ``volume_size=8``); ``login``: (user, private key) to wait for a key login after the
    banner."""
    started = time.monotonic()
    if conn is None:
        conn = sdk_connect(backend)
    if access is None:
        access = sdk_access(conn, tag, public_key)
    server = conn.create_server(
        name, image=backend.image_id(), flavor=flavor, network=network,
        key_name=access["key_name"], security_groups=[access["security_group"]],
        auto_ip=True, wait=True, timeout=CREATE_TIMEOUT, **create_kwargs)
    created = time.monotonic() - started
    reported = {"public_v4": server.public_v4, "interface_ip": server.interface_ip,
                "access_ipv4": server.access_ipv4,
                "floating_in_addresses": _floating_of(server)}
    # The address a person would use: what the SDK reports, else the floating address
    # dug out of the server's address list (no extra request).
    address = server.public_v4 or server.interface_ip or _floating_of(server)
    result: dict[str, Any] = {
        "conn": conn, "access": access, "server_id": server.id, "active_and_fip": created,
        "reported": reported, "address": address,
        "address_source": ("public_v4" if server.public_v4 else "interface_ip"
                           if server.interface_ip else "addresses[...] floating entry"),
        "volume_ids": [v["id"] for v in (server.attached_volumes or [])],
    }
    if banner and address:
        result["ssh_ready"] = created + wait_for_banner(address)
        if login is not None:
            result["ssh_banner"] = result["ssh_ready"]
            result["ssh_login_attempts"] = wait_for_key_login(address, *login)[1]
            result["ssh_ready"] = time.monotonic() - started
    result["wall"] = result.get("ssh_ready", created)
    return result


# -- Apache Libcloud ------------------------------------------------------------------
def libcloud_connect(backend: Backend) -> Any:
    from libcloud.compute.providers import get_driver
    from libcloud.compute.types import Provider

    auth = backend.auth
    driver_class = get_driver(Provider.OPENSTACK)
    return driver_class(
        auth["username"], auth["password"], api_version="2.0",
        ex_force_auth_url=auth["auth_url"].rsplit("/v3", 1)[0],
        ex_force_auth_version="3.x_password", ex_tenant_name=auth["project_name"],
        ex_domain_name="Default", ex_tenant_domain_id=auth.get("project_domain_id", "default"),
        ex_force_service_region=backend.region)


def libcloud_access(driver: Any, tag: str, public_key: str) -> dict[str, Any]:
    key = driver.import_key_pair_from_string(f"bench-lc-{tag}", public_key)
    group = driver.ex_create_security_group(f"bench-lc-ssh-{tag}", "ssh")
    driver.ex_create_security_group_rule(group, "tcp", 22, 22, cidr="0.0.0.0/0")
    return {"key_name": key.name, "security_group": group}


def libcloud_lookups(backend: Backend, driver: Any, flavor: str = FLAVOR,
                     network: str = NETWORK, image: bool = True) -> dict[str, Any]:
    """The image (unless ``image`` is False: a block device mapping names it by id), the
    size and the network objects ``create_node`` takes."""
    found = driver.get_image(backend.image_id()) if image else None
    size = next(s for s in driver.list_sizes() if s.name == flavor)
    net = next(n for n in driver.ex_list_networks() if n.name == network)
    return {"image": found, "size": size, "network": net}


def libcloud_create(backend: Backend, driver: Any, access: dict[str, Any] | None,
                    lookups: dict[str, Any] | None, name: str, public_key: str, tag: str,
                    banner: bool = True, *, flavor: str = FLAVOR, network: str = NETWORK,
                    login: tuple[str, Path] | None = None,
                    block_device_mappings: list[dict[str, Any]] | None = None,
                    objects: dict[str, Any] | None = None) -> dict[str, Any]:
    """``block_device_mappings``: boot from them (``ex_blockdevicemappings``), no image;
    ``login``: (user, private key) to wait for a key login after the banner; ``objects``
    is given the node and the floating IP objects (for the caller's delete)."""
    started = time.monotonic()
    if driver is None:
        driver = libcloud_connect(backend)
    if access is None:
        access = libcloud_access(driver, tag, public_key)
    if lookups is None:
        lookups = libcloud_lookups(backend, driver, flavor, network,
                                   image=block_device_mappings is None)
    extra = {"ex_blockdevicemappings": block_device_mappings} if block_device_mappings else {}
    node = driver.create_node(
        name=name, size=lookups["size"], image=lookups["image"], networks=[lookups["network"]],
        ex_keyname=access["key_name"], ex_security_groups=[access["security_group"]], **extra)
    # public_ips stays empty until a floating IP is attached: wait for the private one.
    ((node, _),) = driver.wait_until_running([node], timeout=CREATE_TIMEOUT,
                                             ssh_interface="private_ips")
    active = time.monotonic() - started
    pool = next(p for p in driver.ex_list_floating_ip_pools() if p.name == POOL)
    fip = pool.create_floating_ip()
    if not driver.ex_attach_floating_ip_to_node(node, fip):
        raise RuntimeError(f"libcloud could not attach {fip.ip_address} to {node.id}")
    attached = time.monotonic() - started
    if objects is not None:
        objects.update(node=node, floating_ip=fip)
    reported = {"public_ips": list(node.public_ips), "private_ips": list(node.private_ips),
                "floating_ip_object": fip.ip_address}
    result: dict[str, Any] = {
        "driver": driver, "access": access, "lookups": lookups, "server_id": node.id,
        "active": active, "active_and_fip": attached, "reported": reported,
        "address": fip.ip_address,
        "address_source": "the floating IP object the caller created (node.public_ips "
                          "is not refreshed)",
    }
    if banner:
        result["ssh_ready"] = attached + wait_for_banner(fip.ip_address)
        if login is not None:
            result["ssh_banner"] = result["ssh_ready"]
            result["ssh_login_attempts"] = wait_for_key_login(fip.ip_address, *login)[1]
            result["ssh_ready"] = time.monotonic() - started
    result["wall"] = result.get("ssh_ready", attached)
    return result

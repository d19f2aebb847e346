"""Scenario 8 (``--only bfv``): boot from a volume, create → SSH-ready → delete, on the
boot-from-volume cloud of the same sandbox stack (zero-disk flavors only, images with
``min_disk: 8``, a real Cinder).

* cloudnorm: ``cloud.create_server(name, image="ubuntu-22.04", min_ram=2048)``: it sees
  that the flavor has no disk and boots from a volume of the image's ``min_disk`` by
  itself; it returns after a verified key login. Delete: ``cloud.delete_server(id)``.
* openstacksdk: ``conn.create_server(name, image=<id>, flavor=<name>, network=...,
  boot_from_volume=True, volume_size=<cloudnorm's root disk size>, auto_ip=True,
  wait=True, key_name=..., security_groups=[...])``, then the first SSH banner on the
  address it reports (scenario 1's measure), then a key login as ``ubuntu`` that
  succeeds. Delete: ``conn.delete_server(id, wait=True, delete_ips=True)``.
* Libcloud (OpenStack 2.x driver): ``create_node(..., image=None,
  ex_blockdevicemappings=[{source_type: image, destination_type: volume, volume_size,
  delete_on_termination: True, boot_index: 0, uuid: <image id>}])``, then as in scenario
  1 (``wait_until_running``, a floating IP made and attached by hand), the banner and
  the key login. Delete: ``destroy_node``, the floating IP deleted, and
  ``ex_get_node_details`` until the node is gone.

Every create is a new client's (as scenario 1's cold creates: the peers make their key
pair and security group, counted). After each delete the project's volumes are listed
with openstacksdk's ``block_storage.volumes()`` through the bench's own connection (not
counted), until none is on its way out (bounded); a volume still there is *left*. A
volume openstacksdk leaves (its ``terminate_volume`` defaults to False) is then deleted
with openstacksdk's own calls, counted apart: what its user has to add for the same end
state. Nothing here depends on how cloudnorm makes the volume (in Nova's block device
mapping or in Cinder first): only the time, the requests and what is left are measured.
"""

from __future__ import annotations

import contextlib
import re
import time
import traceback
from typing import Any

from bench import flows
from bench.common import RAW, Budget, breakdown, make_key, say
from bench.sandbox import BFV_PROFILE, Backend
from bench.stats import ratio, summary

LIBRARIES = ("cloudnorm", "openstacksdk", "libcloud")
NETWORK = "private"
# The Ubuntu image's login user, as a person using the peers hard-codes it.
LOGIN_USER = "ubuntu"
# One create + delete + sweep of each library costs about this much here (s).
COST = {"cloudnorm": 25.0, "openstacksdk": 35.0, "libcloud": 30.0}
ROUND_COST = sum(COST.values())
DELETE_TIMEOUT = 120.0
VOLUME_SETTLE = 30.0  # s to wait for volumes on their way out after a delete
# Volume states on the way to something else (Cinder's volume status values).
TRANSITIONAL = frozenset({"creating", "attaching", "detaching", "deleting", "reserved",
                          "downloading", "maintenance", "in-use"})
LIBCLOUD = ("Apache Libcloud's OpenStack driver boots from a volume through "
            "`create_node(image=None, ex_blockdevicemappings=[...])`: Nova's "
            "block_device_mapping_v2, passed through as given (source image, destination "
            "volume, size, delete_on_termination).")


def _root_size(decisions: dict[str, str] | None) -> int | None:
    """The GiB of cloudnorm's ``root_disk`` decision ("8 GiB volume")."""
    match = re.match(r"(\d+) GiB volume", (decisions or {}).get("root_disk") or "")
    return int(match.group(1)) if match else None


def _attached(volumes: list[Any], server_id: str) -> list[Any]:
    return [v for v in volumes
            if any(a.get("server_id") == server_id for a in (v.attachments or ()))]


def _settle(view: Backend) -> tuple[list[Any], float]:
    """The project's volumes once none is on its way out (bounded), and the seconds it
    took."""
    started = time.monotonic()
    volumes = view.volumes()
    while any(v.status in TRANSITIONAL for v in volumes) \
            and time.monotonic() - started < VOLUME_SETTLE:
        time.sleep(0.5)
        volumes = view.volumes()
    return volumes, time.monotonic() - started


def _create(view: Backend, lib: str, name: str, tag: str, operator: tuple[Any, str],
            size: int, flavor: str, objects: dict[str, Any]) -> dict[str, Any]:
    key_path, public_key = operator
    login = (LOGIN_USER, key_path)
    if lib == "cloudnorm":
        return flows.cloudnorm_create(view, None, name, public_key)
    if lib == "openstacksdk":
        return flows.sdk_create(view, None, None, name, public_key, f"bfv-{tag}",
                                flavor=flavor, network=NETWORK, login=login,
                                boot_from_volume=True, volume_size=size)
    mapping = [{"boot_index": 0, "uuid": view.image_id(), "source_type": "image",
                "destination_type": "volume", "volume_size": size,
                "delete_on_termination": True}]
    return flows.libcloud_create(view, None, None, None, name, public_key, f"bfv-{tag}",
                                 flavor=flavor, network=NETWORK, login=login,
                                 block_device_mappings=mapping, objects=objects)


def _delete(lib: str, out: dict[str, Any], objects: dict[str, Any]) -> None:
    server_id = out["server_id"]
    if lib == "cloudnorm":
        if not out["cloud"].delete_server(server_id, timeout=DELETE_TIMEOUT):
            raise RuntimeError(f"cloudnorm found no server {server_id} to delete")
    elif lib == "openstacksdk":
        if not out["conn"].delete_server(server_id, wait=True, delete_ips=True,
                                         timeout=DELETE_TIMEOUT):
            raise RuntimeError(f"openstacksdk found no server {server_id} to delete")
    else:
        driver = out["driver"]
        if not driver.destroy_node(objects["node"]):
            raise RuntimeError(f"libcloud could not destroy {server_id}")
        objects["floating_ip"].delete()
        deadline = time.monotonic() + DELETE_TIMEOUT
        while driver.ex_get_node_details(server_id) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"libcloud: node {server_id} still there after "
                                   f"{DELETE_TIMEOUT:.0f}s")
            time.sleep(1.0)  # wait_until_running's own pace would be 5 s


def _remove_leftovers(out: dict[str, Any], left: list[Any]) -> None:
    """What an openstacksdk user adds to be rid of the root volume its delete kept:
    ``conn.delete_volume(id, wait=True)`` on the same connection."""
    conn = out["conn"]
    for volume in left:
        if not conn.delete_volume(volume.id, wait=True, timeout=60):
            raise RuntimeError(f"openstacksdk found no volume {volume.id} to delete")


def _one(view: Backend, lib: str, name: str, tag: str, operator: tuple[Any, str],
         size: int, flavor: str) -> dict[str, Any]:
    objects: dict[str, Any] = {}
    since = view.mark()
    out = _create(view, lib, name, tag, operator, size, flavor, objects)
    until = view.mark()
    client = view.client_requests(lib, since, until)
    project = view.project_requests(since, until)
    result: dict[str, Any] = {
        "server_id": out["server_id"], "address": out.get("address"),
        "ssh_ready": out["wall"], "ssh_banner": out.get("ssh_banner"),
        "ssh_login_attempts": out.get("ssh_login_attempts"),
        "active_and_address": out.get("active_and_fip") or out.get("address_ready"),
        "requests": len(client),
        "project_requests": len(project) + sum(1 for r in client if r.get("project") is None),
        "breakdown": breakdown(client),
        "project_breakdown": breakdown(r for r in project if r not in client),
    }
    if lib == "cloudnorm":
        result.update(decisions=out.get("decisions"), steps=out.get("steps"),
                      logged_in=out.get("ssh_ready"), rate_limit=out.get("rate_limit"))
    volumes = _attached(view.volumes(), out["server_id"])
    result["root_volume_gb"] = [v.size for v in volumes]
    result["volume_ids"] = [v.id for v in volumes]
    # The delete, counted apart.
    since = view.mark()
    started = time.monotonic()
    try:
        _delete(lib, out, objects)
        result["delete_s"] = time.monotonic() - started
        until = view.mark()
        deleted = view.client_requests(lib, since, until)
        result["delete_requests"] = len(deleted)
        result["delete_breakdown"] = breakdown(deleted)
        at_return = view.volumes()
        result["volumes_when_delete_returned"] = sorted(v.status for v in at_return)
        left, settle = _settle(view)
        result["volumes_left"] = len(left)
        result["volumes_left_status"] = sorted(v.status for v in left)
        result["volume_settle_s"] = settle
        if left and lib == "openstacksdk":
            since = view.mark()
            started = time.monotonic()
            try:
                _remove_leftovers(out, left)
            except Exception as exc:
                result["leftover_removal_error"] = f"{type(exc).__name__}: {exc}"
            result["leftover_removal_s"] = time.monotonic() - started
            removal = view.client_requests(lib, since, view.mark())
            result["leftover_removal_requests"] = len(removal)
            result["leftover_removal_breakdown"] = breakdown(removal)
            result["volumes_left_after_removal"] = len(view.volumes())
    finally:
        for client_key in ("cloud", "conn"):
            if out.get(client_key) is not None:
                with contextlib.suppress(Exception):
                    out[client_key].close()
    return result


def run(backend: Backend, budget: Budget, reps: int, reserve: float) -> dict[str, Any]:
    """``reserve``: seconds to leave in the budget for the scenarios after this one."""
    from cloudnorm.testing.dataplane import require_private_netns

    require_private_netns()  # every SSH connection below goes to a sandbox address
    view = backend.view(BFV_PROFILE)
    operator = make_key(RAW / "keys", "operator")
    expect = view.state["expect"]
    flavor = str(expect["flavor"]["name"])
    size = int(expect.get("root_volume_gb") or 8)
    volumes_before = len(view.volumes())
    runs: dict[str, list[dict[str, Any]]] = {lib: [] for lib in LIBRARIES}
    errors: list[str] = []
    skipped: list[str] = []
    cloudnorm_choice: dict[str, Any] = {}
    for rep in range(reps):
        order = LIBRARIES[rep % 3:] + LIBRARIES[:rep % 3]  # no library always goes first
        for lib in order:
            if budget.left() - reserve < COST[lib]:
                skipped.append(f"{lib} repetition {rep + 1}")
                continue
            name = f"bench-bfv-{lib}-{rep}"
            try:
                out = _one(view, lib, name, str(rep), operator, size, flavor)
            except Exception as exc:
                errors.append(f"{lib} {rep + 1}: {type(exc).__name__}: {exc}")
                say(errors[-1])
                traceback.print_exc()
                view.sweep(volumes=True)
                continue
            if lib == "cloudnorm":
                # The peers are given what cloudnorm chose (the same flavor, a root volume
                # of the same size) from its first create on.
                decided = _root_size(out.get("decisions"))
                chosen = (out.get("decisions") or {}).get("flavor")
                if decided and not cloudnorm_choice:
                    cloudnorm_choice = {"root_disk_gb": decided, "flavor": chosen,
                                        "root_disk": out["decisions"].get("root_disk")}
                    size = decided
                    flavor = chosen or flavor
            out["volume_size_given"] = size if lib != "cloudnorm" else None
            say(f"bfv {lib:12s}: {out['requests']:3d} requests, {out['ssh_ready']:5.1f}s to "
                f"SSH-ready; delete {out.get('delete_requests')} requests, "
                f"{out.get('delete_s', 0.0):4.1f}s; volumes left {out.get('volumes_left')}")
            runs[lib].append(out)
            view.sweep(volumes=True)
    view.sweep(volumes=True)
    return {"profile": BFV_PROFILE, "cloud": view.cloud,
            "image": {"id": view.image_id(), "name": expect["image"].get("name")},
            "flavor": flavor, "volume_size": size, "expected_root_volume_gb":
            expect.get("root_volume_gb"), "cloudnorm_choice": cloudnorm_choice,
            "login_user": LOGIN_USER, "volumes_before": volumes_before,
            "volumes_after": len(view.volumes()),
            "libcloud": {"measured": bool(runs["libcloud"]), "how": LIBCLOUD},
            "runs": runs, "summary": _summarize(runs), "errors": errors,
            "skipped": skipped, "finished_at": time.time()}


def _summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    keys = ("ssh_ready", "ssh_banner", "active_and_address", "requests", "project_requests",
            "delete_s", "delete_requests", "volumes_left", "volume_settle_s",
            "leftover_removal_s", "leftover_removal_requests", "logged_in")
    out: dict[str, Any] = {}
    for lib, items in runs.items():
        out[lib] = {key: summary([i.get(key) for i in items]) for key in keys}
        out[lib]["runs"] = len(items)
        if lib == "cloudnorm":
            from bench.s1_create import _steps  # scenario 1's per-step medians

            out[lib]["steps"] = _steps(items)
        out[lib]["breakdown"] = items[-1]["breakdown"] if items else {}
        out[lib]["project_breakdown"] = items[-1]["project_breakdown"] if items else {}
        out[lib]["delete_breakdown"] = items[-1].get("delete_breakdown") if items else {}
        out[lib]["leftover_removal_breakdown"] = next(
            (i["leftover_removal_breakdown"] for i in items
             if i.get("leftover_removal_breakdown")), None)
        out[lib]["root_volume_gb"] = sorted({s for i in items for s in i["root_volume_gb"]})
        out[lib]["volumes_left_total"] = sum(i.get("volumes_left") or 0 for i in items)
        # Create and delete together, with what openstacksdk's user adds to remove the
        # volume it kept.
        out[lib]["lifecycle_requests"] = summary([
            i["requests"] + (i.get("delete_requests") or 0)
            + (i.get("leftover_removal_requests") or 0) for i in items
            if i.get("delete_requests") is not None])
    cn = out.get("cloudnorm") or {}
    out["ratios"] = {
        peer: {key: ratio(cn.get(key), (out.get(peer) or {}).get(key))
               for key in ("ssh_ready", "requests", "delete_s", "delete_requests",
                           "lifecycle_requests")}
        for peer in ("openstacksdk", "libcloud")}
    return out

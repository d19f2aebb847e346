"""Instances and their boot disks: insert (with GCE's checks, addresses and the CPUS
quota), get, delete, metadata, the serial port, and disks."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from cloudnorm.testing.gce import catalog
from cloudnorm.testing.gce.common import (
    NAME,
    ApiError,
    Pool,
    invalid,
    last_part,
    new_fingerprint,
    not_found,
    timestamp,
)
from cloudnorm.testing.gce.images import ImagesMixin
from cloudnorm.testing.gce.networks import NetworksMixin

_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_METADATA_KEY = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_BIOS = ("SeaBIOS (version 1.8.2-google)\r\n"
         "Total RAM Size = 0x0000000080000000 = 2048 MiB\r\n"
         "CPUs found: 2     Max CPUs supported: 2\r\n"
         "Booting from Hard Disk 0...\r\n"
         "[    0.000000] Linux version 5.15.0-1057-gcp (buildd@lcy02-amd64-041) (gcc (Ubuntu "
         "11.4.0-1ubuntu1~22.04) 11.4.0, GNU ld (GNU Binutils for Ubuntu) 2.38) #65-Ubuntu SMP\r\n"
         "[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz-5.15.0-1057-gcp root=LABEL="
         "cloudimg-rootfs ro console=ttyS0,38400n8\r\n")


class InstancesMixin(ImagesMixin, NetworksMixin):
    """Instances and disks of a :class:`.state.ComputeState`."""

    # -- instances ---------------------------------------------------------------------
    def _nat_in_use(self) -> set[str]:
        return {a.get("natIP") for zones in self.instances.values() for found in zones.values()
                for i in found.values() for nic in i.get("networkInterfaces", [])
                for a in nic.get("accessConfigs", []) if a.get("natIP")}

    def _internal_address(self, project: str, subnet: dict[str, Any]) -> str:
        key = subnet["selfLink"]
        if key not in self.internal_pools:
            network = ipaddress.ip_network(subnet["ipCidrRange"])
            # GCE keeps the first two and the last two addresses of every subnet.
            self.internal_pools[key] = Pool([str(h) for h in list(network.hosts())[1:-1]])
        in_use = {nic.get("networkIP") for found in self.instances[project].values()
                  for i in found.values() for nic in i.get("networkInterfaces", [])}
        return self.internal_pools[key].take(in_use, f"addresses in subnet {subnet['name']}")

    def insert_instance(self, project: str, zone: str, body: dict[str, Any],
                        request_id: str | None) -> dict[str, Any]:
        self.zone(project, zone)
        if request_id and request_id in self.request_operations:
            return self.request_operations[request_id]
        region = zone.rsplit("-", 1)[0]
        name = str(body.get("name") or "")
        if not NAME.fullmatch(name):
            raise invalid("resource.name", name, "Must be a match of regex "
                          "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
        zone_instances = self.instances[project].setdefault(zone, {})
        if name in zone_instances:
            raise ApiError(409, "alreadyExists",
                           f"The resource 'projects/{project}/zones/{zone}/instances/{name}' "
                           "already exists")
        machine_link = str(body.get("machineType") or "")
        machine = next((m for m in self.machine_types(project, zone)
                        if m["name"] == last_part(machine_link)), None)
        if machine is None or f"zones/{zone}/" not in machine_link + "/":
            raise invalid("resource.machineType", machine_link,
                          f"Machine type with name '{last_part(machine_link)}' does not exist in "
                          f"zone '{zone}'.")
        labels = dict(body.get("labels") or {})
        self._check_labels(labels, "resource.labels")
        items = list((body.get("metadata") or {}).get("items") or [])
        for item in items:
            if not _METADATA_KEY.fullmatch(str(item.get("key", ""))):
                raise invalid("resource.metadata", item.get("key"),
                              "Metadata keys must match '[a-zA-Z0-9-_]{1,128}'.")
        if len(json.dumps(items)) > 512 * 1024:
            raise invalid("resource.metadata", "...", "Metadata exceeds 512 KB.")
        tags = list((body.get("tags") or {}).get("items") or [])
        for tag in tags:
            if not NAME.fullmatch(tag):
                raise invalid("resource.tags.items[0]", tag, "Invalid network tag.")
        disks = body.get("disks") or []
        boot = [d for d in disks if d.get("boot")]
        if len(boot) != 1 or not (boot[0].get("initializeParams") or {}).get("sourceImage"):
            raise invalid("resource.disks", "", "Exactly one boot disk created from an image "
                          "(initializeParams.sourceImage) is required here.")
        params = boot[0]["initializeParams"]
        image = self.resolve_image(project, params["sourceImage"])
        disk_labels = dict(params.get("labels") or {})
        self._check_labels(disk_labels, "resource.disks[0].initializeParams.labels")
        size = int(params.get("diskSizeGb") or image["diskSizeGb"])
        if size < int(image["diskSizeGb"]):
            raise invalid("resource.disks[0].initializeParams.diskSizeGb", size,
                          f"Requested disk size cannot be smaller than the image size "
                          f"({image['diskSizeGb']} GB).")
        extra = self._blank_disks(project, zone, name, [d for d in disks if not d.get("boot")])
        for disk_name in (name, *(d["name"] for d in extra)):
            if disk_name in self.disks[project].setdefault(zone, {}):
                raise ApiError(409, "alreadyExists",
                               f"The resource 'projects/{project}/zones/{zone}/disks/"
                               f"{disk_name}' already exists")
        nics_in = body.get("networkInterfaces") or [{}]
        nics = []
        for index, nic in enumerate(nics_in):
            network = self.network(project, str(nic.get("network") or "global/networks/default"))
            subnet = self._subnet_for(project, region, network, nic, index)
            accesses = []
            for access in nic.get("accessConfigs") or []:
                if access.get("type", "ONE_TO_ONE_NAT") != "ONE_TO_ONE_NAT":
                    raise invalid(f"resource.networkInterfaces[{index}].accessConfigs[0].type",
                                  access.get("type"), "Only ONE_TO_ONE_NAT is supported.")
                accesses.append({"kind": "compute#accessConfig", "type": "ONE_TO_ONE_NAT",
                                 "name": access.get("name") or "External NAT",
                                 "natIP": access.get("natIP")
                                 or self.nat_pool.take(self._nat_in_use(), "external addresses"),
                                 "networkTier": access.get("networkTier") or "PREMIUM"})
            nics.append({"kind": "compute#networkInterface", "name": f"nic{index}",
                         "network": network["selfLink"], "subnetwork": subnet["selfLink"],
                         "networkIP": self._internal_address(project, subnet),
                         "accessConfigs": accesses, "fingerprint": new_fingerprint(),
                         "stackType": "IPV4_ONLY"})
        used = sum(int(m["guestCpus"]) for z, found in self.instances[project].items()
                   if z.rsplit("-", 1)[0] == region for i in found.values()
                   for m in self.machine_types(project, z) if m["selfLink"] == i["machineType"])
        if used + int(machine["guestCpus"]) > catalog.CPU_QUOTA:
            raise ApiError(403, "quotaExceeded",
                           f"Quota 'CPUS' exceeded.  Limit: {catalog.CPU_QUOTA}.0 in region "
                           f"{region}.")
        instance_id = self.new_id()
        link = self.link(project, "zones", zone, "instances", name)
        disk_link = self.link(project, "zones", zone, "disks", name)
        self.disks[project][zone][name] = {
            "kind": "compute#disk", "id": self.new_id(), "creationTimestamp": timestamp(),
            "name": name, "sizeGb": str(size), "zone": self.link(project, "zones", zone),
            "status": "READY", "selfLink": disk_link, "sourceImage": image["selfLink"],
            "sourceImageId": image["id"], "type": self.link(project, "zones", zone,
                                                             "diskTypes", "pd-standard"),
            "labels": disk_labels, "users": [link], "architecture": image.get("architecture")}
        attached = []
        for index, disk in enumerate(extra, start=1):
            stored = {"kind": "compute#disk", "id": self.new_id(),
                      "creationTimestamp": timestamp(), "name": disk["name"],
                      "sizeGb": str(disk["size"]), "zone": self.link(project, "zones", zone),
                      "status": "READY",
                      "selfLink": self.link(project, "zones", zone, "disks", disk["name"]),
                      "type": self.link(project, "zones", zone, "diskTypes", "pd-standard"),
                      "labels": disk["labels"], "users": [link]}
            self.disks[project][zone][disk["name"]] = stored
            attached.append({"kind": "compute#attachedDisk", "type": "PERSISTENT",
                             "mode": "READ_WRITE", "source": stored["selfLink"],
                             "deviceName": disk["device"] or f"persistent-disk-{index}",
                             "index": index, "boot": False, "autoDelete": disk["auto_delete"],
                             "interface": "SCSI", "diskSizeGb": str(disk["size"])})
        instance = {
            "kind": "compute#instance", "id": instance_id, "creationTimestamp": timestamp(),
            "name": name, "description": str(body.get("description") or ""),
            "tags": {"items": tags, "fingerprint": new_fingerprint()},
            "machineType": machine["selfLink"], "status": "PROVISIONING",
            "zone": self.link(project, "zones", zone), "canIpForward": False,
            "networkInterfaces": nics,
            "disks": [{"kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": "READ_WRITE",
                       "source": disk_link, "deviceName": "persistent-disk-0", "index": 0,
                       "boot": True, "autoDelete": bool(boot[0].get("autoDelete", False)),
                       "licenses": image.get("licenses", []), "interface": "SCSI",
                       "diskSizeGb": str(size), "architecture": image.get("architecture")},
                      *attached],
            "metadata": {"kind": "compute#metadata", "fingerprint": new_fingerprint(),
                         "items": items},
            "serviceAccounts": list(body.get("serviceAccounts") or []),
            "selfLink": link,
            "scheduling": {"onHostMaintenance": "MIGRATE", "automaticRestart": True,
                           "preemptible": False, "provisioningModel": "STANDARD"},
            "cpuPlatform": "Unknown CPU Platform", "labels": labels,
            "labelFingerprint": new_fingerprint(), "startRestricted": False,
            "deletionProtection": bool(body.get("deletionProtection", False)),
            "fingerprint": new_fingerprint(), "lastStartTimestamp": timestamp()}
        zone_instances[name] = instance
        operation = self.new_operation(project, f"zones/{zone}", "insert", link, instance_id,
                                       request_id)
        if self.insert_failures:
            failure = self.insert_failures.pop(0)

            def fail() -> None:
                zone_instances.pop(name, None)
                for disk_name in (name, *(d["name"] for d in extra)):
                    self.disks[project][zone].pop(disk_name, None)
                self.finish(operation, failure)
            self.schedule(self.boot_seconds / 3, fail)
            return operation

        def staging() -> None:
            if instance["status"] == "PROVISIONING":
                instance["status"] = "STAGING"

        def running() -> None:
            if instance["status"] in ("PROVISIONING", "STAGING"):
                instance.update(status="RUNNING", cpuPlatform="Intel Broadwell")
            self.finish(operation)
        self.schedule(self.boot_seconds / 3, staging)
        self.schedule(self.boot_seconds, running)
        return operation

    def _subnet_for(self, project: str, region: str, network: dict[str, Any],
                    nic: dict[str, Any], index: int) -> dict[str, Any]:
        regional = self.subnetworks[project].get(region, {})
        mine = [s for s in regional.values() if s["network"] == network["selfLink"]]
        wanted = nic.get("subnetwork")
        if wanted:
            named = re.search(r"regions/([^/]+)/", str(wanted))
            found = regional.get(last_part(wanted)) if named is None or named.group(1) == region \
                else None
            if found is None:
                raise not_found(f"projects/{project}/regions/{region}/subnetworks/"
                                f"{last_part(wanted)}")
            if found["network"] != network["selfLink"]:
                raise invalid(f"resource.networkInterfaces[{index}].subnetwork", wanted,
                              f"Subnetwork does not belong to network '{network['name']}'.")
            return found
        if not network.get("autoCreateSubnetworks"):
            raise invalid(f"resource.networkInterfaces[{index}]", "",
                          "Subnetwork should be specified for custom subnetmode network")
        if not mine:
            raise invalid(f"resource.networkInterfaces[{index}].network", network["selfLink"],
                          f"The network has no subnetwork in region {region}.")
        return mine[0]

    @staticmethod
    def _check_labels(labels: dict[str, Any], field: str) -> None:
        for key, value in labels.items():
            if not _LABEL_KEY.fullmatch(str(key)) or not _LABEL_VALUE.fullmatch(str(value)):
                raise invalid(field, f"{key}={value}",
                              "Label keys and values can only contain lowercase letters, "
                              "numeric characters, underscores and dashes.")

    def instance(self, project: str, zone: str, name: str) -> dict[str, Any]:
        self.zone(project, zone)
        found = self.instances[project].get(zone, {}).get(name)
        if found is None:
            raise not_found(f"projects/{project}/zones/{zone}/instances/{name}")
        return found

    def _blank_disks(self, project: str, zone: str, instance: str,
                     disks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The new blank disks an insert asks for besides the boot disk. A disk given by
        ``source`` (an existing one) is not modelled here and is refused."""
        found = []
        for index, disk in enumerate(disks, start=1):
            field = f"resource.disks[{index}]"
            params = disk.get("initializeParams")
            if not params or disk.get("source") or params.get("sourceImage"):
                raise invalid(field, "", "Only new blank disks (initializeParams without "
                              "sourceImage) are supported besides the boot disk here.")
            if not params.get("diskSizeGb"):
                raise invalid(f"{field}.initializeParams.diskSizeGb", "",
                              "A blank disk needs its size.")
            size = int(params["diskSizeGb"])
            if size < 1:
                raise invalid(f"{field}.initializeParams.diskSizeGb", size,
                              "Disk size must be at least 1 GB.")
            labels = dict(params.get("labels") or {})
            self._check_labels(labels, f"{field}.initializeParams.labels")
            name = str(params.get("diskName") or f"{instance}-{index}")
            if not NAME.fullmatch(name):
                raise invalid(f"{field}.initializeParams.diskName", name, "Invalid disk name.")
            found.append({"name": name, "size": size, "labels": labels,
                          "device": disk.get("deviceName"),
                          # GCE's default for a disk's autoDelete is false.
                          "auto_delete": bool(disk.get("autoDelete", False))})
        return found

    def delete_instance(self, project: str, zone: str, name: str) -> dict[str, Any]:
        instance = self.instance(project, zone, name)
        operation = self.new_operation(project, f"zones/{zone}", "delete", instance["selfLink"],
                                       instance["id"], None)
        instance["status"] = "STOPPING"

        def gone() -> None:
            if self.instances[project].get(zone, {}).get(name) is instance:
                del self.instances[project][zone][name]
            for disk in instance["disks"]:
                stored = self.disks[project].get(zone, {}).get(last_part(disk["source"]))
                if stored is None:
                    continue
                stored["users"] = [u for u in stored.get("users", [])
                                   if u != instance["selfLink"]]
                if disk.get("autoDelete"):
                    del self.disks[project][zone][stored["name"]]
            (self.console_dir / f"{instance['id']}.log").unlink(missing_ok=True)
            self.guest_attributes.pop(instance["selfLink"], None)
            self.finish(operation)
        self.schedule(self.delete_seconds, gone)
        return operation

    def set_metadata(self, project: str, zone: str, name: str,
                     body: dict[str, Any]) -> dict[str, Any]:
        instance = self.instance(project, zone, name)
        current = instance["metadata"]
        if body.get("fingerprint") != current["fingerprint"]:
            raise ApiError(412, "conditionNotMet",
                           "Supplied fingerprint does not match current metadata fingerprint.")
        items = list(body.get("items") or [])
        for item in items:
            if not _METADATA_KEY.fullmatch(str(item.get("key", ""))):
                raise invalid("metadata", item.get("key"),
                              "Metadata keys must match '[a-zA-Z0-9-_]{1,128}'.")
        operation = self.new_operation(project, f"zones/{zone}", "setMetadata",
                                       instance["selfLink"], instance["id"], None)
        current.update(items=items, fingerprint=new_fingerprint())
        self.schedule(self.firewall_seconds, lambda: self.finish(operation))
        return operation

    def serial_port(self, project: str, zone: str, name: str, port: int,
                    start: int) -> dict[str, Any]:
        instance = self.instance(project, zone, name)
        if not 1 <= port <= 4:
            raise invalid("port", port, "Must be between 1 and 4.")
        if instance["status"] != "RUNNING":
            raise ApiError(400, "resourceNotReady",
                           f"The resource '{instance['selfLink']}' is not ready")
        text = _BIOS if port == 1 else ""
        if port == 1:
            try:
                text += (self.console_dir / f"{instance['id']}.log").read_text()
            except FileNotFoundError:
                pass
        data = text.encode()
        start = max(0, min(start, len(data)))
        return {"kind": "compute#serialPortOutput", "contents": data[start:].decode(
            errors="replace"), "start": str(start), "next": str(len(data)),
            "selfLink": instance["selfLink"] + f"/serialPort?port={port}"}

    # -- disks -------------------------------------------------------------------------
    def disk(self, project: str, zone: str, name: str) -> dict[str, Any]:
        self.zone(project, zone)
        found = self.disks[project].get(zone, {}).get(name)
        if found is None:
            raise not_found(f"projects/{project}/zones/{zone}/disks/{name}")
        return found

    def delete_disk(self, project: str, zone: str, name: str) -> dict[str, Any]:
        disk = self.disk(project, zone, name)
        if disk.get("users"):
            raise ApiError(400, "resourceInUseByAnotherResource",
                           f"The disk resource '{disk['selfLink']}' is already being used by "
                           f"'{disk['users'][0]}'")
        operation = self.new_operation(project, f"zones/{zone}", "delete", disk["selfLink"],
                                       disk["id"], None)

        def apply() -> None:
            self.disks[project][zone].pop(name, None)
            self.finish(operation)
        self.schedule(self.delete_seconds, apply)
        return operation

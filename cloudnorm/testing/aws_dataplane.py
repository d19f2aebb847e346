"""Keep the SSH data plane in step with what the local EC2 (moto) says.

moto boots no machines, so this watcher plays the part of the hypervisor and of
the VPC: for every running instance it keeps a node (a real sshd with the image's
user and the instance's key pair) answering on exactly what EC2 would make
reachable from the internet -- the instance's public IPv4 (launch address or
Elastic IP) when its subnet's route table sends 0.0.0.0/0 to an internet gateway,
and its private address only for a client inside its VPC (``Fleet.inside``) --
and with sshd running only while one of its security
groups lets TCP 22 in from anywhere. It publishes each node's console, with
cloud-init's host key blocks, as the instance's GetConsoleOutput.

It reads the cloud through the EC2 API like any client, with its own boto3
client: cloudnorm's request counts are unaffected.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from cloudnorm.testing.dataplane.watch import Watcher

LOG = logging.getLogger(__name__)


def _opens_ssh(permission: dict[str, Any]) -> bool:
    if permission.get("IpProtocol") not in ("tcp", "6", "-1"):
        return False
    if permission.get("IpProtocol") != "-1":
        low, high = permission.get("FromPort"), permission.get("ToPort")
        if low is None or not (int(low) <= 22 <= int(high if high is not None else low)):
            return False
    # Only a rule open to anywhere lets the (simulated) internet in; a rule naming
    # another group admits that group's members only.
    return any(r.get("CidrIp") == "0.0.0.0/0" for r in permission.get("IpRanges") or ())


def _internet_routed(table: dict[str, Any] | None) -> bool:
    return any(r.get("DestinationCidrBlock") == "0.0.0.0/0"
               and str(r.get("GatewayId") or "").startswith("igw-")
               and r.get("State", "active") == "active"
               for r in (table or {}).get("Routes") or ())


class AwsDataPlaneSync(Watcher):
    name = "aws-dataplane-sync"

    """A background thread reconciling ``fleet`` with the sandbox every ``interval`` s."""

    def __init__(self, sandbox: Any, fleet: Any, interval: float = 0.2) -> None:
        self._sandbox = sandbox
        super().__init__(interval, fleet)
        self._clients = {region: sandbox.client("ec2", region) for region in sandbox.regions}
        self._keys: dict[str, str] = {}  # instance id -> public key of its key pair
        self._user_data: dict[str, bytes | None] = {}  # instance id -> its UserData

    def sync_once(self) -> None:
        running: dict[str, tuple[str, dict[str, Any]]] = {}
        for region, ec2 in self._clients.items():
            reply = ec2.describe_instances(Filters=[{"Name": "instance-state-name",
                                                     "Values": ["running"]}])
            for reservation in reply.get("Reservations") or ():
                for instance in reservation.get("Instances") or ():
                    running[instance["InstanceId"]] = (region, instance)
        self.retire(running, forget=self._forget)
        if running:
            self._reconcile(running)
        self.rounds += 1

    def _reconcile(self, running: dict[str, tuple[str, dict[str, Any]]]) -> None:
        regions = {region for region, _ in running.values()}
        tables = {r: self._clients[r].describe_route_tables()["RouteTables"] for r in regions}
        groups = {r: {g["GroupId"]: g for g in self._clients[r].describe_security_groups()[
            "SecurityGroups"]} for r in regions}

        def bring_up(iid: str) -> None:
            region, instance = running[iid]
            user = self._sandbox.login_user(instance.get("ImageId", ""))
            key = self._key(region, iid, instance)
            if not user or not key:
                return
            addresses = self._reachable(instance, tables[region])
            if not addresses:
                # Nothing reaches it from outside: no node to answer (and no console).
                self.take_down(iid)
                return
            attached = {g["GroupId"] for g in instance.get("SecurityGroups") or ()}
            attached |= {g["GroupId"] for nic in instance.get("NetworkInterfaces") or ()
                         for g in nic.get("Groups") or ()}
            allow = any(_opens_ssh(p) for g in attached
                        for p in groups[region].get(g, {}).get("IpPermissions") or ())
            self.fleet.ensure(iid, addresses, user=user, authorized_key=key, port=22,
                               allow_ssh=allow, userdata=self._read_user_data(region, iid))
            self.known.add(iid)
            self.show_console(iid, lambda: self.fleet.console_text(iid))

        self.each(running, bring_up)

    def write_console(self, node_id: str, text: str | None) -> None:
        self._sandbox.set_console(node_id, text)

    def _forget(self, node_id: str) -> None:
        self._keys.pop(node_id, None)
        self._user_data.pop(node_id, None)

    def _read_user_data(self, region: str, iid: str) -> bytes | None:
        """The instance's UserData, read once (EC2 fixes it while the instance runs)."""
        if iid not in self._user_data:
            reply = self._clients[region].describe_instance_attribute(
                InstanceId=iid, Attribute="userData")
            value = (reply.get("UserData") or {}).get("Value")
            self._user_data[iid] = base64.b64decode(value) if value else None
        return self._user_data[iid]

    def _key(self, region: str, iid: str, instance: dict[str, Any]) -> str | None:
        """The public key of the instance's key pair, read once (EC2 fixes it at launch)."""
        if iid not in self._keys:
            name = instance.get("KeyName")
            if not name:
                return None
            try:
                found = self._clients[region].describe_key_pairs(
                    KeyNames=[name], IncludePublicKey=True)["KeyPairs"]
            except Exception as exc:  # the key pair may already be deleted: cloudnorm's step 8
                LOG.warning("instance %s: key pair %s unreadable: %s", iid, name, exc)
                return None
            self._keys[iid] = found[0]["PublicKey"].strip()
        return self._keys[iid]

    def _reachable(self, instance: dict[str, Any], tables: list[dict[str, Any]]) -> list[str]:
        subnet, vpc = instance.get("SubnetId"), instance.get("VpcId")
        # A client inside the VPC (or the subnet) reaches the private address too.
        found = ([instance["PrivateIpAddress"]] if instance.get("PrivateIpAddress")
                 and {subnet, vpc, "*"} & set(self.fleet.inside) else [])
        public = instance.get("PublicIpAddress")
        if not public:
            return found
        explicit = next((t for t in tables for a in t.get("Associations") or ()
                         if a.get("SubnetId") == subnet), None)
        main = next((t for t in tables if t.get("VpcId") == vpc
                     and any(a.get("Main") for a in t.get("Associations") or ())), None)
        return [public, *found] if _internet_routed(explicit or main) else found

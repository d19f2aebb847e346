"""The create flow's moving parts that need no cloud: polling, rollback, the address plan."""

import threading
import time

import pytest

from cloudnorm import errors, networks
from cloudnorm.drivers.base import Created
from cloudnorm.models import Network
from cloudnorm.provision import Ledger, ServerWatcher
from cloudnorm.state import ServerState


def running(state):
    return state is not None and state.phase == "running"


class CountingDriver:
    def __init__(self):
        self.calls = []
        self.states = {}
        self.deleted = []
        self.lock = threading.Lock()

    def poll_servers(self, ids):
        with self.lock:
            self.calls.append(set(ids))
        return {i: ServerState(i, i, "running" if self.states.get(i) == "ACTIVE" else "pending",
                               self.states.get(i, "BUILD")) for i in ids}

    def delete(self, item):
        if item.id == "boom":
            raise RuntimeError("cloud said no")
        self.deleted.append(item.id)


def test_watcher_polls_once_per_interval_for_all_waiters():
    driver = CountingDriver()
    watcher = ServerWatcher(driver, interval=0.2)
    ids = [f"s{i}" for i in range(10)]
    results = {}

    def wait(sid):
        results[sid] = watcher.wait(sid, running,
                                    time.monotonic() + 10)

    threads = [threading.Thread(target=wait, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    time.sleep(0.5)
    for i in ids:
        driver.states[i] = "ACTIVE"
    for t in threads:
        t.join(10)
    assert all(results[i].status == "ACTIVE" for i in ids)
    # ten waiters for ~0.7 s at 0.2 s: a handful of polls, not ten per interval
    assert len(driver.calls) <= 6
    assert any(len(c) > 1 for c in driver.calls)


def test_watcher_times_out():
    watcher = ServerWatcher(CountingDriver(), interval=0.05)
    with pytest.raises(errors.Timeout):
        watcher.wait("s", lambda rec: False, time.monotonic() + 0.3)


def test_a_failed_poll_raises_in_its_waiter_and_the_others_go_on():
    driver = CountingDriver()
    real_poll = driver.poll_servers
    failures = iter([errors.ServiceUnavailable("connection closed while listing servers")])

    def poll_servers(ids):
        failure = next(failures, None)
        if failure is not None:
            time.sleep(0.1)  # long enough for the second waiter to be waiting on this poll
            raise failure
        return real_poll(ids)

    driver.poll_servers = poll_servers
    watcher = ServerWatcher(driver, interval=0.05)
    outcome = {}

    def wait(sid):
        try:
            outcome[sid] = watcher.wait(sid, running,
                                        time.monotonic() + 5).status
        except errors.CloudnormError as exc:
            outcome[sid] = type(exc).__name__

    driver.states.update(a="ACTIVE", b="ACTIVE")
    first = threading.Thread(target=wait, args=("a",))
    first.start()
    time.sleep(0.03)
    second = threading.Thread(target=wait, args=("b",))
    second.start()
    first.join(5)
    second.join(5)
    assert outcome == {"a": "ServiceUnavailable", "b": "ACTIVE"}


def test_ledger_removes_in_reverse_and_reports_leftovers():
    driver = CountingDriver()
    ledger = Ledger(driver)
    ledger.retry_delay = 0
    for rid in ("key", "boom", "group", "server"):
        ledger.add(Created("thing" if rid != "server" else "server", rid))
    waited = []
    leftovers = ledger.rollback(waited.append)
    assert driver.deleted == ["server", "group", "key"]
    assert waited == ["server"]
    assert len(leftovers) == 1 and "boom" in leftovers[0]
    assert ledger.items == []


def test_ledger_tries_a_failed_delete_again():
    class Flaky:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def delete(self, item):
            self.calls.append(item.id)
            if item.id == "fip" and self.calls.count("fip") < 3:
                raise errors.ServiceUnavailable("503 from the network service")
            if item.id == "gone":
                raise errors.NotFound("no such key pair")

    driver = Flaky()
    ledger = Ledger(driver)
    ledger.retry_delay = 0
    ledger.add(Created("keypair", "gone"))
    ledger.add(Created("floating_ip", "fip"))
    assert ledger.rollback(lambda _: None) == []
    assert driver.calls == ["fip", "fip", "fip", "gone"]  # NotFound is done, not retried


def _net(name, public, external=False, usable=True, cidr="10.0.0.0/24", nid=None):
    return Network(id=nid or name, name=name, public=public, reason=f"{name} reason",
                   external=external, usable=usable, subnets=(cidr,), ip_versions=(4,))


def test_plan_no_floating_ip_on_a_public_network():
    pub = _net("public", True, cidr="203.0.113.0/27")
    plan = networks.plan_public_address(pub, [pub], [], networks.NetworkHints(),
                                        requires_floating_ip=None, floating_ip_source="neutron",
                                        profile_name="openstack")
    assert not plan.floating_ip and "public" in plan.decision.reason


def test_plan_floating_ip_from_the_routers_pool_first():
    private = _net("private", False)
    pool_a = _net("a", True, external=True, cidr="203.0.113.0/27")
    pool_b = _net("b", True, external=True, cidr="203.0.113.32/27")
    router = networks.Router("r", "r1", "b", ("private",))
    plan = networks.plan_public_address(private, [private, pool_a, pool_b], [router],
                                        networks.NetworkHints(), requires_floating_ip=None,
                                        floating_ip_source="neutron", profile_name="openstack")
    assert plan.floating_ip
    assert [p.name for p in plan.pools] == ["b", "a"]
    assert "router 'r1'" in plan.decision.reason


def test_plan_refuses_before_boot_when_there_is_no_way_in():
    private = _net("private", False)
    dead = _net("external", False, external=False, usable=False)
    with pytest.raises(errors.NotReachable, match="unreachable"):
        networks.plan_public_address(private, [private, dead], [], networks.NetworkHints(),
                                     requires_floating_ip=None, floating_ip_source="neutron",
                                     profile_name="openstack")


def test_plan_follows_the_profile_when_it_forbids_floating_ips():
    pub = _net("public", True, cidr="203.0.113.0/27")
    plan = networks.plan_public_address(pub, [pub], [], networks.NetworkHints(),
                                        requires_floating_ip=False, floating_ip_source="none",
                                        profile_name="vexx")
    assert not plan.floating_ip and "vexx" in plan.decision.reason


def test_hardening_script_quotes_keys_and_turns_passwords_off():
    from cloudnorm import ssh

    script = ssh.hardening_script("ubuntu", ["ssh-ed25519 AAAA op@x", "ssh-rsa BBBB o'q"], None)
    assert "PasswordAuthentication no" in script
    assert "o'\"'\"'q" in script  # shell-quoted, not injected


def test_watcher_polls_faster_while_a_server_is_young():
    driver = CountingDriver()
    watcher = ServerWatcher(driver, interval=0.4, early_interval=0.1, early=0.5)
    started = time.monotonic()
    with pytest.raises(errors.Timeout):
        watcher.wait("young", lambda rec: False, started + 1.3)
    # about five polls in the first half second, then one every 0.4 s
    assert 5 <= watcher.polls <= 9, watcher.polls


# -- the root disk ------------------------------------------------------------------------------
def _root(request_fields, caps_fields, flavor_disk=20, image_min_disk=0):
    from types import SimpleNamespace

    from cloudnorm.models import Flavor, Image
    from cloudnorm.provision import CreateRequest
    from cloudnorm.provision.steps import root_disk
    from cloudnorm.state import Capabilities

    run = SimpleNamespace(request=CreateRequest("web", **request_fields),
                          driver=SimpleNamespace(capabilities=Capabilities(
                              security_groups=True, **caps_fields)))
    return root_disk(run, Image(id="i", name="img", min_disk=image_min_disk),
                     Flavor(id="f", name="zero" if flavor_disk == 0 else "f", ram=2048,
                            vcpus=1, disk=flavor_disk))


@pytest.mark.parametrize("request_fields, caps, disk, min_disk, expected", [
    # Nova: a disk-0 flavor is for volume-backed servers only.
    ({}, {"block_storage": True}, 0, 8, (True, 8, "flavor 'zero' has disk 0")),
    ({}, {"block_storage": True}, 0, 0, (True, 10, "the default")),
    ({}, {"block_storage": True}, 20, 0, (False, None, "no volume asked for")),
    ({"boot_from_volume": True}, {"block_storage": True}, 20, 0,
     (True, 20, "boot_from_volume=True; size: the flavor's disk")),
    ({"volume_size": 40}, {"block_storage": True}, 20, 0, (True, 40, "volume_size asked")),
    ({"boot_from_volume": False}, {"block_storage": True}, 20, 0,
     (False, None, "boot_from_volume=False")),
    ({}, {}, 20, 0, (False, None, "no block storage")),
    # EBS, persistent disks: always a volume, of the image's size unless asked.
    ({}, {"block_storage": True, "root_is_volume": True}, 0, 0, (True, None, "every root disk")),
    ({"volume_size": 30}, {"block_storage": True, "root_is_volume": True}, 0, 0,
     (True, 30, "every root disk")),
])
def test_root_disk_decision(request_fields, caps, disk, min_disk, expected):
    root = _root(request_fields, caps, flavor_disk=disk, image_min_disk=min_disk)
    volume, size, words = expected
    assert (root.volume, root.size) == (volume, size)
    assert root.decision.step == "root_disk" and words in root.decision.reason


@pytest.mark.parametrize("fields", [{"volume_size": 0}, {"volumes": [1, -2]},
                                    {"volumes": [True]}])
def test_volume_sizes_are_whole_positive_gib(fields):
    from cloudnorm import errors
    from cloudnorm.provision import CreateRequest

    with pytest.raises(errors.InvalidRequest, match="at least 1") as info:
        CreateRequest("web", **fields)
    assert info.value.field == next(iter(fields))


def _nova_record(status, task_state=None, fault=None):
    # The fields of Nova's GET /servers/detail that decide a phase (API reference,
    # "List Servers Detailed"); a failed delete leaves vm_state error with the task
    # state cleared (nova/compute/manager.py, terminate_instance ->
    # _set_instance_obj_error_state) and the exception as the server's fault.
    record = {"id": "s1", "name": "web", "status": status, "OS-EXT-STS:task_state": task_state,
              "metadata": {}}
    if fault:
        record["fault"] = {"code": 500, "created": "2026-12-06T15:40:00Z", "message": fault}
    return record


class FailingDeleteDriver:
    """Nova whose first ``failures`` deletes of a server fail on the compute host."""

    def __init__(self, failures):
        self.failures = failures
        self.deletes = 0

    def delete(self, item):
        self.deletes += 1

    def poll_servers(self, ids):
        from cloudnorm.drivers.openstack.normalize import server_state
        if self.deletes > self.failures:
            return {}
        return {"s1": server_state(_nova_record(
            "ERROR", fault="Failed to deallocate network for instance."))}


@pytest.mark.parametrize("failures, deletes", [(0, 1), (1, 2), (2, 3)])
def test_a_delete_the_cloud_failed_is_asked_again(failures, deletes):
    from cloudnorm.provision.delete import remove_resources
    driver = FailingDeleteDriver(failures)
    watcher = ServerWatcher(driver, interval=0.01)
    remove_resources(driver.delete, watcher, [Created("server", "s1", "web")],
                     time.monotonic() + 5)
    assert driver.deletes == deletes


def test_a_delete_that_keeps_failing_is_a_typed_error_with_the_fault_and_no_wait():
    from cloudnorm.provision.delete import DELETE_ATTEMPTS, remove_resources
    driver = FailingDeleteDriver(failures=99)
    watcher = ServerWatcher(driver, interval=0.01)
    began = time.monotonic()
    with pytest.raises(errors.ProviderError, match="deallocate network") as caught:
        remove_resources(driver.delete, watcher, [Created("server", "s1", "web")],
                         time.monotonic() + 60)
    assert driver.deletes == DELETE_ATTEMPTS
    assert caught.value.status == "ERROR"
    assert time.monotonic() - began < 5  # not the 60 s deadline


def test_a_server_being_deleted_is_waited_for_even_from_error():
    # A server that failed to boot, once asked to go, shows ERROR with task state
    # "deleting" until it is gone: that is progress, not a failed delete.
    from cloudnorm.drivers.openstack.normalize import server_state
    from cloudnorm.provision.delete import wait_deleted
    polls = iter([{"s1": server_state(_nova_record("ERROR", task_state="deleting"))},
                  {"s1": server_state(_nova_record("ERROR", task_state="deleting"))}])

    class Driver:
        def poll_servers(self, ids):
            return next(polls, {})

    wait_deleted(ServerWatcher(Driver(), interval=0.01), "s1", time.monotonic() + 5)

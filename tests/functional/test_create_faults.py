"""A failure at each of create_server's eight steps: a typed error, and nothing left.

Faults are real where the sandbox can make them real (a Neutron floating IP
quota of zero, an image that does not exist, SSH never let in); elsewhere the
driver call of that step is made to fail as the cloud would.
"""

from __future__ import annotations

import attrs
import pytest

import cloudnorm
from cloudnorm import errors, provision, ssh
from cloudnorm.testing.openstack.leftovers import leftovers
from cloudnorm.testing.openstack.quotas import no_floating_ips

pytestmark = pytest.mark.functional
PROFILE = "fip-required"  # the profile where every kind of resource gets created


@pytest.fixture
def cloud(openstack_sandbox, openstack_dataplane):
    cloud = cloudnorm.connect(f"sandbox-{PROFILE}",
                              config_files=[str(openstack_sandbox.clouds_yaml)])
    yield cloud
    cloud.close()


def left_behind(sandbox) -> list[str]:
    return leftovers(sandbox, PROFILE, servers_named="cn-fault")


def create(cloud, steps, **kwargs):
    kwargs.setdefault("timeout", 90)
    return cloud.create_server("cn-fault", image=kwargs.pop("image", "ubuntu-22.04"),
                               min_ram=2048, on_step=steps.append, **kwargs)


def failed_step(steps) -> str:
    return next(e.step for e in steps if e.status == "failed")


def fail_with(exc):
    def _raise(*args, **kwargs):
        raise exc
    return _raise


def test_step1_node_key_refused(cloud, openstack_sandbox, monkeypatch):
    monkeypatch.setattr(cloud.driver, "create_keypair", fail_with(errors.QuotaExceeded(
        "key pair quota exceeded", resource="key pairs")))
    steps: list = []
    with pytest.raises(errors.QuotaExceeded):
        create(cloud, steps)
    assert failed_step(steps) == "node_key"
    assert left_behind(openstack_sandbox) == []


def test_step2_discovery_fails(cloud, openstack_sandbox, monkeypatch):
    cloud.refresh()
    monkeypatch.setattr(cloud.driver, "list_flavors", fail_with(errors.ProviderError(
        "compute answered 500", status=500, request_id="req-x")))
    steps: list = []
    with pytest.raises(errors.ProviderError) as info:
        create(cloud, steps)
    assert info.value.request_id == "req-x"
    assert failed_step(steps) == "discovery"
    assert left_behind(openstack_sandbox) == []


def test_step3_no_such_image(cloud, openstack_sandbox):
    steps: list = []
    with pytest.raises(errors.NotFound, match="ubuntu 99.04"):
        create(cloud, steps, image="ubuntu-99.04")
    assert failed_step(steps) == "choice"
    assert left_behind(openstack_sandbox) == []


def test_step4_server_goes_to_error(cloud, openstack_sandbox, monkeypatch):
    real_poll = cloud.driver.poll_servers

    def poll_with_fault(ids):
        found = real_poll(ids)
        # What Nova's record says of a boot no host could take: status ERROR and the
        # scheduler's fault message (the compute API reference, "Show Server Details").
        return {i: attrs.evolve(r, phase="error", status="ERROR",
                                fault="No valid host was found.") for i, r in found.items()}

    monkeypatch.setattr(cloud.driver, "poll_servers", poll_with_fault)
    steps: list = []
    with pytest.raises(errors.ProviderError, match="No valid host"):
        create(cloud, steps)
    assert failed_step(steps) == "boot"
    monkeypatch.undo()
    assert left_behind(openstack_sandbox) == []


def test_step5_floating_ip_quota_exhausted(cloud, openstack_sandbox):
    with no_floating_ips(openstack_sandbox, f"sandbox-{PROFILE}"):
        steps: list = []
        with pytest.raises(errors.QuotaExceeded) as info:
            create(cloud, steps)
        assert info.value.resource == "floating IP"
        assert failed_step(steps) == "public_address"
    assert left_behind(openstack_sandbox) == []


def test_step6_ssh_never_answers(cloud, openstack_sandbox, openstack_dataplane, monkeypatch):
    real_ensure = openstack_dataplane.ensure

    def closed(node_id, *args, **kwargs):
        kwargs["allow_ssh"] = False
        return real_ensure(node_id, *args, **kwargs)

    monkeypatch.setattr(openstack_dataplane, "ensure", closed)
    steps: list = []
    with pytest.raises(errors.Timeout, match="not reachable over SSH"):
        create(cloud, steps, timeout=25)
    assert failed_step(steps) == "login"
    monkeypatch.undo()
    assert left_behind(openstack_sandbox) == []


def test_step7_bootstrap_fails(cloud, openstack_sandbox, monkeypatch):
    monkeypatch.setattr(ssh, "hardening_script",
                        lambda *a, **k: "echo 'sshd_config is read-only' >&2; exit 3\n")
    steps: list = []
    with pytest.raises(errors.NotReachable, match="read-only"):
        create(cloud, steps, authorized_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA op"])
    assert failed_step(steps) == "bootstrap"
    assert left_behind(openstack_sandbox) == []


def test_step8_key_removal_fails(cloud, openstack_sandbox, monkeypatch):
    monkeypatch.setattr(cloud.driver, "delete_keypair", fail_with(errors.ProviderError(
        "compute answered 503", status=503)))
    steps: list = []
    with pytest.raises(errors.ProviderError):
        create(cloud, steps)
    assert failed_step(steps) == "remove_key"
    monkeypatch.undo()
    assert left_behind(openstack_sandbox) == []


def test_interrupt_mid_create_rolls_back(cloud, openstack_sandbox):
    def interrupt(event: provision.StepEvent) -> None:
        if event.step == "public_address" and event.status == "started":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cloud.create_server("cn-fault", min_ram=2048, on_step=interrupt, timeout=90)
    assert left_behind(openstack_sandbox) == []

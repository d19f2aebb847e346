"""A failure at each of create_server's eight steps, on every sandbox cloud: a typed
error, the failed step reported, and nothing left.

Faults are real where the sandbox can make them real (an image that does not exist, a
public address the cloud refuses, a boot the cloud refuses or throttles, SSH never let
in, a console without host keys or with the wrong ones); elsewhere the driver call of
that step fails as the cloud would. Each cloud says which of its own refusals it can
make (``public_address_fault``, ``refusals`` in sandbox_clouds.py).
"""

from __future__ import annotations

import time

import attrs
import pytest
from sandbox_clouds import clouds_with, refusals

from cloudnorm import errors, provision, ssh
from cloudnorm.state import gone

pytestmark = [pytest.mark.functional,
              pytest.mark.filterwarnings("ignore:Support for InfluxDB")]
FAULTS = clouds_with("faults")


@pytest.fixture
def cloud(sandbox_cloud):
    assert sandbox_cloud.leftovers() == []
    return sandbox_cloud.connect()


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


# -- before login ------------------------------------------------------------------------------
@pytest.mark.parametrize("sandbox_cloud", FAULTS, indirect=True)
def test_step1_node_key_refused(cloud, sandbox_cloud, monkeypatch):
    monkeypatch.setattr(cloud.driver, "create_keypair",  # public: cloud.driver
                        fail_with(errors.QuotaExceeded("key pair quota exceeded",
                                                       resource="key pairs")))
    steps: list = []
    with pytest.raises(errors.QuotaExceeded):
        create(cloud, steps)
    assert failed_step(steps) == "node_key"
    assert sandbox_cloud.leftovers() == []


@pytest.mark.parametrize("sandbox_cloud", FAULTS, indirect=True)
def test_step2_discovery_fails(cloud, sandbox_cloud, monkeypatch):
    cloud.refresh()
    monkeypatch.setattr(cloud.driver, "list_flavors",  # public: cloud.driver
                        fail_with(errors.ProviderError("compute answered 500", status=500,
                                                       request_id="req-x")))
    steps: list = []
    with pytest.raises(errors.ProviderError) as info:
        create(cloud, steps)
    assert info.value.request_id == "req-x"
    assert failed_step(steps) == "discovery"
    assert sandbox_cloud.leftovers() == []


@pytest.mark.parametrize("sandbox_cloud", FAULTS, indirect=True)
def test_step3_no_such_image(cloud, sandbox_cloud):
    steps: list = []
    with pytest.raises(errors.NotFound, match="ubuntu 99.04"):
        create(cloud, steps, image="ubuntu-99.04")
    assert failed_step(steps) == "choice"
    assert sandbox_cloud.leftovers() == []


@pytest.mark.parametrize("sandbox_cloud", FAULTS, indirect=True)
def test_step4_server_goes_to_error(cloud, sandbox_cloud, monkeypatch):
    driver = cloud.driver  # public: cloud.driver
    real_poll = driver.poll_servers

    def poll_with_fault(ids):
        # Until it is deleted: a cloud that keeps deleted servers listed (EC2's
        # terminated instances) shows them as deleted, not in ERROR.
        found = real_poll(ids)
        # Nova's record of a boot no host could take: status ERROR and the scheduler's
        # fault message (compute API reference, "Show Server Details").
        return {i: r if gone(r) else
                attrs.evolve(r, phase="error", status="ERROR",
                             fault="No valid host was found.")
                for i, r in found.items()}

    monkeypatch.setattr(driver, "poll_servers", poll_with_fault)
    steps: list = []
    with pytest.raises(errors.ProviderError, match="No valid host"):
        create(cloud, steps)
    assert failed_step(steps) == "boot"
    monkeypatch.undo()
    assert sandbox_cloud.leftovers() == []


@pytest.mark.parametrize("sandbox_cloud, refusal", refusals(), indirect=["sandbox_cloud"])
def test_step4_boot_refused_is_typed_and_rolled_back(cloud, sandbox_cloud, refusal):
    """The cloud's own refusals of a boot (capacity, quota, an exhausted request rate)
    are QuotaExceeded naming what ran out; what is not transient is not retried."""
    want = sandbox_cloud.expect["refusals"][refusal]
    steps: list = []
    with sandbox_cloud.refusal(refusal) as calls:
        with pytest.raises(errors.QuotaExceeded) as info:
            create(cloud, steps, wait=False)
    assert info.value.resource == want["resource"]
    assert want["says"] in str(info.value)
    if want["calls"] is not None:
        assert calls() == want["calls"]
    assert failed_step(steps) == "boot"
    assert sandbox_cloud.leftovers() == []


@pytest.mark.parametrize("sandbox_cloud", clouds_with("faults", "public_address_fault"),
                         indirect=True)
def test_step5_public_address_refused(cloud, sandbox_cloud):
    with sandbox_cloud.public_address_refused() as resource:
        steps: list = []
        with pytest.raises(errors.QuotaExceeded) as info:
            create(cloud, steps)
        assert info.value.resource == resource
        assert failed_step(steps) == "public_address"
    assert sandbox_cloud.leftovers() == []


@pytest.mark.parametrize("sandbox_cloud", FAULTS, indirect=True)
def test_interrupt_mid_create_rolls_back(cloud, sandbox_cloud):
    def interrupt(event: provision.StepEvent) -> None:
        if event.step == "public_address" and event.status == "started":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cloud.create_server("cn-fault", min_ram=2048, on_step=interrupt, timeout=90)
    assert sandbox_cloud.leftovers() == []


# -- login and after: the SSH data plane answers (or, as told, does not) ----------------------
@pytest.mark.parametrize("sandbox_cloud", FAULTS, indirect=True)
def test_step6_ssh_never_answers(cloud, sandbox_cloud, sandbox_fleet, monkeypatch):
    real_ensure = sandbox_fleet.ensure

    def closed(node_id, *args, **kwargs):
        kwargs["allow_ssh"] = False
        return real_ensure(node_id, *args, **kwargs)

    monkeypatch.setattr(sandbox_fleet, "ensure", closed)
    steps: list = []
    with pytest.raises(errors.Timeout, match="not reachable over SSH"):
        create(cloud, steps, timeout=sandbox_cloud.expect["faults"]["login_timeout"])
    assert failed_step(steps) == "login"
    monkeypatch.undo()
    assert sandbox_cloud.leftovers() == []


@pytest.mark.parametrize("sandbox_cloud", FAULTS, indirect=True)
def test_step7_ssh_bootstrap_fails(cloud, sandbox_cloud, sandbox_fleet, monkeypatch):
    monkeypatch.setattr(ssh, "hardening_script",
                        lambda *a, **k: "echo 'sshd_config is read-only' >&2; exit 3\n")
    steps: list = []
    with pytest.raises(errors.NotReachable, match="read-only"):
        create(cloud, steps, authorized_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA op"])
    assert failed_step(steps) == "bootstrap"
    assert sandbox_cloud.leftovers() == []


@pytest.mark.parametrize("sandbox_cloud", FAULTS, indirect=True)
def test_step8_ssh_key_removal_fails(cloud, sandbox_cloud, sandbox_fleet, monkeypatch):
    monkeypatch.setattr(cloud.driver, "delete_keypair",  # public: cloud.driver
                        fail_with(errors.ProviderError("compute answered 503", status=503)))
    steps: list = []
    with pytest.raises(errors.ProviderError):
        create(cloud, steps)
    assert failed_step(steps) == "remove_key"
    monkeypatch.undo()
    assert sandbox_cloud.leftovers() == []


@pytest.mark.parametrize("sandbox_cloud", clouds_with("no_host_keys"), indirect=True)
def test_ssh_answers_but_no_host_keys_rolls_back(cloud, sandbox_cloud, sandbox_fleet):
    # sshd answers, but the console never shows host keys: the flow reaches step 6 and
    # must give up (it will not log in to a server it cannot identify), removing
    # everything -- a floating or Elastic IP too.
    want = sandbox_cloud.expect["no_host_keys"]
    steps: list = []
    with sandbox_fleet.options(print_host_keys=False), \
            pytest.raises(errors.Timeout, match="never printed its SSH host keys"):
        cloud.create_server("cn-no-keys", timeout=want["timeout"], on_step=steps.append)
    assert failed_step(steps) == "login"
    done = next(s for s in steps if s.step == "public_address" and s.status == "done")
    assert done.detail.startswith(want["detail_prefix"]) and want["detail_has"] in done.detail
    assert sandbox_cloud.leftovers() == []


@pytest.mark.parametrize("sandbox_cloud", clouds_with("host_key_mismatch"), indirect=True)
def test_ssh_host_key_mismatch_is_fatal_and_cleaned_up(cloud, sandbox_cloud, sandbox_fleet,
                                                       monkeypatch):
    # The console names other keys than the ones sshd answers with: someone else is
    # answering. No retry until the timeout, and nothing left.
    real_ensure = sandbox_fleet.ensure

    def lying_ensure(node_id, *args, **kwargs):
        kwargs["console_lies"] = True
        return real_ensure(node_id, *args, **kwargs)

    monkeypatch.setattr(sandbox_fleet, "ensure", lying_ensure)
    steps: list = []
    started = time.monotonic()
    with pytest.raises(errors.HostKeyMismatch):
        cloud.create_server("cn-liar", min_ram=2048, timeout=120, on_step=steps.append)
    assert time.monotonic() - started < 60  # fatal: no waiting for the timeout
    assert failed_step(steps) == "login"
    monkeypatch.undo()
    assert sandbox_cloud.leftovers() == []


@pytest.mark.parametrize("sandbox_cloud", clouds_with("retried"), indirect=True)
def test_request_limit_is_retried(cloud, sandbox_cloud):
    """A throttled boot is sent again after a backoff and then succeeds."""
    mark = sandbox_cloud.mark()
    with sandbox_cloud.throttled_boots(times=2) as calls:
        server = cloud.create_server("cn-throttled", wait=False)
    assert calls() == (3, 2)
    boots = [r for r in sandbox_cloud.requests(since=mark)
             if r == sandbox_cloud.expect["retried"]["boot_request"]]
    assert len(boots) == 3
    assert cloud.delete_server(server) is True
    assert sandbox_cloud.leftovers() == []

"""When a create reads a new server's console for its host keys: a second after sshd
answered, or about when the image's earlier servers showed them.

cloud-init starts sshd from its init stage (module ``ssh`` in ``cloud_init_modules``)
but prints the host keys last in its final stage (``keys-to-console`` after
``scripts-user`` and ``ssh-authkey-fingerprints`` in ``cloud_final_modules``; Debian's
cloud-init package, /etc/cloud/cloud.cfg), so on a busy cloud they come seconds after
sshd answers. Every read before that is a wasted console request: on OpenStack the
``os-getConsoleOutput`` server action (``POST /servers/{id}/action``, Nova API
reference), which Nova answers with a call to the compute host."""

from __future__ import annotations

import datetime
import time

import pytest

import cloudnorm
from cloudnorm.cloud import DELAY_SAMPLES
from cloudnorm.models import Image
from cloudnorm.provision.ledger import Reporter
from cloudnorm.provision.login import FOUND_AT_ONCE, announced_host_keys, delay_to_learn
from cloudnorm.state import Capabilities

ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIGx3bWVzMW9rZ2Z1c3R1a3F2bHh5b3RtYnJ6d2hqbGJ2"
CONSOLE = ("-----BEGIN SSH HOST KEY KEYS-----\n"
           f"ssh-ed25519 {ED25519} root@web\n-----END SSH HOST KEY KEYS-----\n")
IMAGE = Image(id="ami-1", name="ubuntu-22.04", os_distro="ubuntu", os_version="22.04",
              created=datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc))


class Console:
    provider = "openstack"
    capabilities = Capabilities(security_groups=True, published_host_keys=False)

    def __init__(self, blank_reads: int):
        self.blank_reads, self.reads = blank_reads, 0

    def console_output(self, server_id):
        self.reads += 1
        return CONSOLE if self.reads > self.blank_reads else "Cloud-init v. 23.4 running"


@pytest.fixture
def cloud(write_clouds):
    path = write_clouds({"work": {"cloudnorm": {
        "provider": "aws", "region": "eu-central-1", "endpoint_url": "http://127.0.0.1:9"}}})
    return cloudnorm.connect("work", config_files=[path])


def test_a_cloud_goes_by_the_median_of_the_latest_delays(cloud):
    assert cloud.host_keys_delay(IMAGE) is None
    for seconds in (9.0, 9.0, 9.0, 1.0, 2.0, 3.0, 2.5, 1.5, 4.0, 2.0, 3.0, 1.0):
        cloud.remember_host_keys_delay(IMAGE, seconds)
    # the three 9 s of a slow spell are gone: only the last DELAY_SAMPLES count
    assert DELAY_SAMPLES == 9
    assert cloud.host_keys_delay(IMAGE) == 2.0
    other = Image(id="ami-2", name="debian-12", os_distro="debian", os_version="12")
    assert cloud.host_keys_delay(other) is None


def test_the_first_read_comes_when_asked_and_says_how_long_it_took(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    driver = Console(blank_reads=0)
    keys, _, seen = announced_host_keys(driver, "web", time.monotonic() + 60, True,
                                        Reporter(None, "web"), first_read=3.2)
    assert keys.keys == (f"ssh-ed25519 {ED25519}",)
    assert slept == [3.2] and driver.reads == 1 and seen is not None and seen < 1.0


def test_a_late_print_is_read_at_growing_waits_after_the_first(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    driver = Console(blank_reads=3)
    announced_host_keys(driver, "web", time.monotonic() + 60, True, Reporter(None, "web"),
                        first_read=2.0)
    assert slept == [2.0, 0.5, 0.75, 1.125] and driver.reads == 4


def test_published_keys_and_unverified_logins_teach_nothing():
    class Published(Console):
        capabilities = Capabilities(security_groups=True, published_host_keys=True)

        def published_host_keys(self, server_id):
            return (f"ssh-ed25519 {ED25519}",)

    _, _, seen = announced_host_keys(Published(0), "web", time.monotonic() + 5, True,
                                     Reporter(None, "web"))
    assert seen is None
    _, _, seen = announced_host_keys(Console(0), "web", time.monotonic() + 5, False,
                                     Reporter(None, "web"))
    assert seen is None


def test_a_find_at_the_first_read_lowers_what_is_learned(cloud):
    # Keys found at the first look came at most then: they count shorter, so that the
    # learned wait comes down again once servers print sooner; found later, as seen.
    assert delay_to_learn(3.1, first_read=3.0) == pytest.approx(3.1 * FOUND_AT_ONCE)
    assert delay_to_learn(4.6, first_read=3.0) == 4.6
    first = 4.0
    for _ in range(2 * DELAY_SAMPLES):  # servers now print before any first read
        cloud.remember_host_keys_delay(IMAGE, delay_to_learn(first, first))
        first = max(1.0, cloud.host_keys_delay(IMAGE) or 0.0)
    assert first < 2.0


def test_what_servers_booting_alongside_learn_spares_the_next_reads(monkeypatch):
    """Ten servers of one image boot together: when one shows its keys 6 s after sshd
    answered, the others read next about then, not at their own growing waits."""
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    driver = Console(blank_reads=2)
    # until this server's first read, nothing is known; then a sibling saw its keys at 6 s
    announced_host_keys(driver, "web", 60.0, True, Reporter(None, "web"), first_read=1.0,
                        learned=lambda: 6.0 if driver.reads else 1.0)
    assert slept == [1.0, 0.5, 4.5] and driver.reads == 3
    # without what the others learned: the waits of its own schedule
    now[0], slept[:] = 0.0, []
    driver = Console(blank_reads=2)
    announced_host_keys(driver, "web", 60.0, True, Reporter(None, "web"), first_read=1.0)
    assert slept == [1.0, 0.5, 0.75]

"""The conformance check on a cloud that boots only from volumes: the raw walk's plain
boot refused (Nova's 403 for a flavor with disk 0), the later raw steps not measured,
nothing left behind, and create_server's root disk decision in the boot row."""

from __future__ import annotations

import datetime
import json
from types import SimpleNamespace
from typing import Any

import attrs
import pytest

from cloudnorm import conformance, errors
from cloudnorm.cli import render as cli_render
from cloudnorm.drivers.base import Created
from cloudnorm.drivers.openstack.transport import http_error
from cloudnorm.models import Decision, Flavor, Image, KeyPair, Location, Server
from cloudnorm.provision import STEPS, StepEvent
from cloudnorm.settings import CacheSettings, CloudSettings
from cloudnorm.state import Capabilities

from .conftest import net_facts

ZERO_DISK_REFUSAL = "Only volume-backed servers are allowed for flavors with zero disk."
ZERO = Flavor("f-2", "s3.medium.2", 2048, 1, disk=0)
LOCAL = Flavor("f-small", "m1.small", 2048, 1, disk=20)
IMAGE = Image("img-jammy", "Standard_Ubuntu_22.04_latest", "ubuntu", "22.04", min_disk=8,
              raw={"os_distro": "ubuntu", "os_version": "22.04"})
VOLUME_ROOT = Decision("root_disk", "8 GiB volume",
                       "flavor 's3.medium.2' has disk 0: Nova lets only volume-backed servers "
                       "use it; size: the image's min_disk")
LOCAL_ROOT = Decision("root_disk", "the flavor's 20 GiB disk", "no volume asked for")


def nova_refusal(cloud: str = "bfv") -> errors.CloudnormError:
    """The error the OpenStack transport makes of Nova's 403 to POST /servers."""
    reply = SimpleNamespace(status_code=403, text="", reason="Forbidden",
                            json=lambda: {"forbidden": {"code": 403,
                                                        "message": ZERO_DISK_REFUSAL}})
    return http_error(cloud, reply, "compute POST /servers", "req-1")


# -- measurements ---------------------------------------------------------------------------
def test_conformance_boot_refused_names_the_zero_disk_flavor_and_the_clouds_words():
    exc = nova_refusal()
    assert isinstance(exc, errors.ProviderError) and exc.status == 403
    measured = conformance.boot_refused(exc.message, ZERO)
    assert measured.verdict == "NO"
    assert measured.detail.startswith("flavor 's3.medium.2' has disk 0 (no local disk) and the "
                                      "plain request names no volume; the cloud refused it: ")
    assert "answered 403 to compute POST /servers" in measured.detail
    assert measured.detail.endswith(ZERO_DISK_REFUSAL)


def test_conformance_boot_refused_says_nothing_of_disks_where_it_tells_nothing():
    other = conformance.boot_refused("no such image", LOCAL)
    assert other == conformance.Measured(
        "NO", "the cloud refused the plain boot of flavor 'm1.small': no such image")
    # EC2 and GCE sizes have no disk: every root disk there is a volume anyway.
    ec2 = conformance.boot_refused("InvalidParameterValue", ZERO, root_is_volume=True)
    assert "disk 0" not in ec2.detail and ec2.verdict == "NO"


@pytest.mark.parametrize("exc, answer", [
    (nova_refusal(), True),
    (errors.QuotaExceeded("quota exceeded for instances"), True),
    (errors.InvalidRequest("bad name"), True),
    (errors.ProviderError("InvalidParameterValue", status="InvalidParameterValue"), True),
    (errors.ProviderError("internal error", status=500), False),
    (errors.ServiceUnavailable("cannot reach the cloud"), False),
    (errors.AuthError("token expired"), False),
    (errors.Timeout("too slow"), False),
])
def test_conformance_refused_is_an_answer_that_made_nothing(exc, answer):
    assert conformance.refused(exc) is answer


def test_conformance_root_disk_note():
    assert conformance.root_disk_note(VOLUME_ROOT) == (
        "booted from an 8 GiB volume: flavor 's3.medium.2' has disk 0: Nova lets only "
        "volume-backed servers use it; size: the image's min_disk")
    assert conformance.root_disk_note(attrs.evolve(VOLUME_ROOT, choice="20 GiB volume")) \
        .startswith("booted from a 20 GiB volume: ")
    assert conformance.root_disk_note(LOCAL_ROOT) == "root disk: the flavor's 20 GiB disk"


# -- a cloud that refuses a plain boot of a zero-disk flavor --------------------------------
class FakeDriver:
    """The driver verbs the raw walk uses; ``boot`` answers with ``boot_error``."""

    def __init__(self, boot_error: errors.CloudnormError | None) -> None:
        self.boot_error = boot_error
        self.keypairs: dict[str, str] = {}
        self.servers: dict[str, Any] = {}
        self.booted: list[Any] = []
        self.deleted: list[Created] = []
        self.capabilities = Capabilities(security_groups=True, block_storage=True)

    def create_keypair(self, name: str, public_key: str) -> KeyPair:
        self.keypairs[name] = public_key
        return KeyPair(name, "SHA256:x")

    def list_keypairs(self) -> list[KeyPair]:
        return [KeyPair(name, "SHA256:x") for name in self.keypairs]

    def delete_keypair(self, name: str) -> bool:
        return self.keypairs.pop(name, None) is not None

    def list_images(self) -> list[Image]:
        return [IMAGE]

    def list_flavors(self) -> list[Flavor]:
        return [ZERO]

    def network_facts(self) -> Any:
        return [net_facts("private", "10.0.9.0/24"), net_facts("public", "203.0.113.232/29",
                                                              external=True)], []

    def boot(self, spec: Any) -> Created:
        self.booted.append(spec)
        if self.boot_error is not None:
            raise self.boot_error
        raise AssertionError("this cloud boots nothing plainly")

    def delete(self, item: Created) -> None:
        self.deleted.append(item)
        if item.kind == "keypair":
            self.keypairs.pop(item.id, None)


class FakeCloud:
    """What ``conformance.run`` asks of a Cloud, on a cloud with zero-disk flavors only;
    ``create_server`` reports the steps and decisions create_server reports there."""

    name, provider = "bfv", "openstack"

    def __init__(self, boot_error: errors.CloudnormError | None) -> None:
        self.driver = FakeDriver(boot_error)
        self.profile = SimpleNamespace(name="openstack", image_user_properties=())
        self.settings = CloudSettings(name="fake", provider="openstack", region=None,
                                      profile=None, options={}, cache=CacheSettings())
        self.watcher = SimpleNamespace(wait=self._never)
        self.flavor_asks: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    @staticmethod
    def _never(*args: Any) -> None:
        raise AssertionError("no server to wait for")

    def choose_image(self, os: str) -> tuple[Image, Decision]:
        return IMAGE, Decision("image", IMAGE.name, "newest")

    def choose_flavor(self, **asks: Any) -> tuple[Flavor, Decision]:
        self.flavor_asks.append(asks)
        return ZERO, Decision("flavor", ZERO.name, "smallest; its disk is 0")

    def default_network(self) -> Any:
        return SimpleNamespace(name="private", id="net-private")

    def list_networks(self) -> list[Any]:
        return []

    def create_server(self, request: Any, on_step: Any) -> Server:
        for step in STEPS:
            on_step(StepEvent(step, "started", "...", 0.0))
            on_step(StepEvent(step, "done", "server srv-1 running" if step == "boot"
                              else f"{step} done", 1.0))
        return Server(id="srv-1", name=request.name, status="running",
                      location=Location(self.name), interface_ip="203.0.113.9",
                      ssh_user="ubuntu", ssh_port=22, tags={"cloudnorm:owner": "o1"},
                      created=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
                      decisions=(Decision("flavor", ZERO.name, "smallest"), VOLUME_ROOT))

    def delete_server(self, server: Server, timeout: float) -> None:
        self.deleted.append(server.id)

    def owned_resources(self, owner: str | None = None) -> list[Created]:
        return []


def test_conformance_raw_walk_measures_a_refused_plain_boot_and_leaves_nothing():
    cloud = FakeCloud(nova_refusal())
    found, left = conformance.measure_raw(cloud, "cn-test")  # type: ignore[arg-type]
    (spec,) = cloud.driver.booted
    # the flavor a plain user takes (and cloudnorm too), booted with no volume
    assert spec.flavor == ZERO and spec.plain and not spec.boot_from_volume
    assert cloud.flavor_asks == [{"min_ram": 2048, "min_disk": 8}]
    assert found["boot"].verdict == "NO" and ZERO_DISK_REFUSAL in found["boot"].detail
    assert "has disk 0" in found["boot"].detail
    for step in ("public_address", "login"):
        assert found[step].verdict == "n/a"
        assert found[step].detail.startswith("not measured: the plain boot was refused (")
        assert ZERO_DISK_REFUSAL in found[step].detail
    assert [found[s].verdict for s in STEPS] == ["YES", "YES", "YES", "NO", "n/a", "n/a", "NO",
                                                  "PARTIAL"]
    assert left == [] and cloud.driver.keypairs == {} and cloud.driver.deleted == []


def test_conformance_raw_walk_out_of_reach_at_boot_measures_nothing_more():
    cloud = FakeCloud(errors.ServiceUnavailable("cannot reach cloud 'bfv'"))
    found, left = conformance.measure_raw(cloud, "cn-test")  # type: ignore[arg-type]
    assert [found[s].verdict for s in STEPS[3:]] == ["n/a"] * 5
    assert found["boot"].detail == "not measured: cannot reach cloud 'bfv'"
    # the key pair goes with the undo
    assert left == [] and cloud.driver.keypairs == {}
    assert [c.kind for c in cloud.driver.deleted] == ["keypair"]


def test_conformance_report_on_a_cloud_that_boots_only_from_volumes():
    cloud = FakeCloud(nova_refusal())
    report = conformance.run(cloud)  # type: ignore[arg-type]
    assert report.ok and report.leftovers == () and cloud.deleted == ["srv-1"]
    boot = report.steps[3]
    assert (boot.title, boot.raw, boot.cloudnorm) == ("4 boot", "NO", "YES")
    assert ZERO_DISK_REFUSAL in boot.raw_detail and "has disk 0" in boot.raw_detail
    assert boot.cloudnorm_detail == ("server srv-1 running; booted from an 8 GiB volume: "
                                     "flavor 's3.medium.2' has disk 0: Nova lets only "
                                     "volume-backed servers use it; size: the image's min_disk")
    assert boot.gap.startswith("booted from an 8 GiB volume: flavor 's3.medium.2' has disk 0")
    assert report.steps[4].raw == "n/a"

    data = conformance.as_dict(report)
    assert json.loads(json.dumps(data)) == data
    row = data["steps"][3]
    assert (row["raw"], row["cloudnorm"]) == ("NO", "YES")
    assert row["raw_detail"] == boot.raw_detail and row["gap"] == boot.gap
    assert data["steps"][4]["raw_detail"].startswith("not measured: the plain boot was refused")

    text = cli_render.conformance_text(data, width=120)
    assert "4 boot            NO: flavor 's3.medium.2' has disk 0" in text
    assert "booted from an 8 GiB volume" in text
    md = cli_render.conformance_markdown([data])
    line = next(li for li in md.splitlines() if li.startswith("| 4 boot |"))
    assert "| **NO**: flavor 's3.medium.2' has disk 0" in line
    assert "| **YES**: server srv-1 running; booted from an 8 GiB volume" in line
    assert "N>Y" in cli_render.summary_table([data]).splitlines()[-1].split()[4]


# -- the cloudnorm column elsewhere ---------------------------------------------------------
def events(detail: str = "server srv-1 running") -> list[StepEvent]:
    return [StepEvent(step, "done", detail if step == "boot" else f"{step} ok", 1.0)
            for step in STEPS]


def test_conformance_boot_detail_notes_a_local_root_disk_briefly():
    raw = {step: conformance.Measured("YES", "fine") for step in STEPS}
    rows = conformance.through_cloudnorm(events(), (LOCAL_ROOT,), raw)
    boot = rows[3]
    assert boot.cloudnorm_detail == "server srv-1 running; root disk: the flavor's 20 GiB disk"
    assert boot.gap == ""  # the raw cloud boots too
    assert [r.cloudnorm_detail for r in rows if r.step != "boot"] == [
        f"{step} ok" for step in STEPS if step != "boot"]


def test_conformance_boot_detail_without_a_root_disk_decision_is_the_event():
    raw = {step: conformance.Measured("YES", "fine") for step in STEPS}
    raw["boot"] = conformance.Measured("NO", "the server went to ERROR: no valid host")
    rows = conformance.through_cloudnorm(events(), (), raw)
    assert rows[3].cloudnorm_detail == "server srv-1 running"
    assert rows[3].gap == "server srv-1 running"
    # a local root disk is no way a gap was closed: the gap stays the step's detail
    local = conformance.through_cloudnorm(events(), (LOCAL_ROOT,), raw)[3]
    assert local.gap == local.cloudnorm_detail


def test_conformance_boot_failed_through_cloudnorm_keeps_its_failure():
    raw = {step: conformance.Measured("YES", "fine") for step in STEPS}
    failing = [StepEvent(s, "done", "ok", 1.0) for s in STEPS[:3]]
    failing.append(StepEvent("boot", "failed", "server web went to ERROR: no valid host", 2.0))
    rows = conformance.through_cloudnorm(failing, (VOLUME_ROOT,), raw, "boom")
    assert rows[3].cloudnorm == "NO"
    assert rows[3].cloudnorm_detail == "failed: server web went to ERROR: no valid host"

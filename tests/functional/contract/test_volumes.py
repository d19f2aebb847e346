"""Volumes on every sandbox cloud with block storage: a server made with data volumes
has them attached (seen through the provider's own API), logs in as usual, and
delete_server leaves no volume behind; a root volume is sized as asked."""

from __future__ import annotations

import pytest
from sandbox_clouds import clouds_with, known_hosts_file, ssh_as

from cloudnorm import errors
from cloudnorm.models import OWNER_KEY

pytestmark = [pytest.mark.functional,
              pytest.mark.filterwarnings("ignore:Support for InfluxDB")]


@pytest.mark.parametrize("sandbox_cloud", clouds_with("volumes"), indirect=True)
def test_data_volumes_are_attached_and_go_with_the_server(sandbox_cloud, sandbox_fleet,
                                                          operator_key, tmp_path):
    want = sandbox_cloud.expect["volumes"]
    key_path, operator_pub = operator_key
    assert sandbox_cloud.leftovers() == []
    cloud = sandbox_cloud.connect()
    lifecycle = sandbox_cloud.expect.get("lifecycle", {})
    server = cloud.create_server("cn-volumes", authorized_keys=[operator_pub], volumes=[1, 2],
                                 timeout=lifecycle.get("timeout", 120),
                                 **lifecycle.get("create", {}))
    owner = server.tags[OWNER_KEY]
    try:
        assert sandbox_cloud.volume_sizes(server) == sorted([1, 2, want["root"]])
        roots = [v for v in server.volumes if v.root]
        data = [v for v in server.volumes if not v.root]
        assert len(roots) == 1 and len(data) == 2, server.volumes
        assert all(v.delete_on_termination for v in server.volumes), server.volumes
        chosen = {d.step: d for d in server.decisions}
        assert "volume" in chosen["root_disk"].choice, chosen["root_disk"]
        known_hosts = known_hosts_file(tmp_path / "known_hosts", server)
        assert ssh_as(server, "root", key_path, known_hosts).returncode == 0
    finally:
        assert cloud.delete_server(server.id) is True
    assert sandbox_cloud.marked(owner) == set()
    assert sandbox_cloud.leftovers() == []


@pytest.mark.parametrize("asked_in", ["call", "clouds.yaml"])
@pytest.mark.parametrize("sandbox_cloud", clouds_with("volumes"), indirect=True)
def test_the_root_volume_is_sized_as_asked(sandbox_cloud, asked_in):
    want = sandbox_cloud.expect["volumes"]
    size = {"volume_size": want["root"] + 5}
    if asked_in == "call":
        cloud, asked = sandbox_cloud.connect(), size
    else:  # the cloud's cloudnorm: defaults:, for every create
        cloud, asked = sandbox_cloud.connect(cloudnorm={"defaults": size}), {}
    server = cloud.create_server("cn-root-size", wait=False, **asked,
                                 **sandbox_cloud.expect.get("lifecycle", {}).get("create", {}))
    try:
        state = cloud.wait_for_server(server.id, lambda s: s is not None and s.booted, 60)
        assert state is not None
        assert sandbox_cloud.volume_sizes(cloud.get_server(server.id)) == [want["root"] + 5]
    finally:
        assert cloud.delete_server(server.id) is True
    assert sandbox_cloud.leftovers() == []


@pytest.mark.parametrize("sandbox_cloud", clouds_with("volumes"), indirect=True)
def test_a_failure_after_the_volumes_exist_leaves_none(sandbox_cloud, sandbox_fleet, monkeypatch):
    # Step 6 fails (the console cannot be read) once the server runs with its volumes:
    # the rollback removes the server, and every volume with it.
    cloud = sandbox_cloud.connect()
    seen: list[list[int]] = []

    def console_fails(server_id):
        seen.append(sandbox_cloud.volume_sizes(cloud.get_server(server_id)))
        raise errors.ProviderError("the console service is down", status=503)

    monkeypatch.setattr(cloud.driver, "console_output", console_fails)  # public: cloud.driver
    steps: list = []
    with pytest.raises(errors.ProviderError, match="console service is down"):
        cloud.create_server("cn-volumes-fail", volumes=[1], on_step=steps.append, timeout=90,
                            **sandbox_cloud.expect.get("lifecycle", {}).get("create", {}))
    assert seen and 1 in seen[0], seen  # the data volume existed when the step failed
    assert next(e.step for e in steps if e.status == "failed") == "login"
    assert sandbox_cloud.leftovers() == []

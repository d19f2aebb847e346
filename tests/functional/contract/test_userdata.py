"""User data on every sandbox cloud: what the caller passes is what the cloud holds for
the server, read back through the provider's own API; it runs on the server (the nodes
run the real cloud-init, fed from what the cloud holds), proven by a root login; one
larger than the cloud takes is refused before anything is made."""

from __future__ import annotations

import gzip

import pytest
from sandbox_clouds import clouds_with, known_hosts_file, ssh_as

from cloudnorm import errors, userdata

pytestmark = [pytest.mark.functional,
              pytest.mark.filterwarnings("ignore:Support for InfluxDB")]

CLOUD_CONFIG = {"write_files": [{"path": "/root/written", "content": "by cloud-init\n"}],
                "runcmd": ["touch /root/ran"]}
SCRIPT = "#!/bin/sh\necho ran > /root/ran\n"
PACKED = gzip.compress(b"#cloud-config\nruncmd: [touch /root/ran]\n")


@pytest.mark.parametrize("given", [CLOUD_CONFIG, SCRIPT, PACKED],
                         ids=["cloud-config", "script", "gzip"])
@pytest.mark.parametrize("sandbox_cloud", clouds_with("boot"), indirect=True)
def test_user_data_reaches_the_cloud_as_given(sandbox_cloud, given):
    assert sandbox_cloud.leftovers() == []
    cloud = sandbox_cloud.connect()
    server = cloud.create_server("cn-userdata", wait=False, userdata=given,
                                 **sandbox_cloud.boot_arguments())
    try:
        assert sandbox_cloud.user_data(server) == userdata.encode(given)
    finally:
        assert cloud.delete_server(server.id) is True
    assert sandbox_cloud.leftovers() == []


@pytest.mark.parametrize("sandbox_cloud", clouds_with("boot"), indirect=True)
def test_user_data_over_the_limit_is_refused_before_anything_is_made(sandbox_cloud):
    cloud = sandbox_cloud.connect()
    limit = cloud.capabilities.user_data_limit
    assert limit is not None
    too_big = b"#!/bin/sh\n" + b"#" * limit.limit  # text: every cloud measures it as is
    steps: list = []
    mark = sandbox_cloud.mark()
    with pytest.raises(errors.InvalidRequest) as info:
        cloud.create_server("cn-too-big", userdata=too_big, on_step=steps.append,
                            **sandbox_cloud.boot_arguments())
    assert info.value.field == "userdata" and str(limit.limit) in str(info.value)
    assert [(e.step, e.status) for e in steps] == [("node_key", "failed")]
    assert sandbox_cloud.requests(since=mark) == []
    assert sandbox_cloud.leftovers() == []


RUNS = {"write_files": [{"path": "/root/written", "content": "by cloud-init\n"}],
        "runcmd": ["echo ran > /root/ran"]}
SCRIPT_RUNS = "#!/bin/sh\necho by a script > /root/written\necho ran > /root/ran\n"


@pytest.mark.parametrize("given, written", [(RUNS, "by cloud-init"),
                                            (SCRIPT_RUNS, "by a script")],
                         ids=["cloud-config", "script"])
@pytest.mark.parametrize("sandbox_cloud", clouds_with("user_data_runs"), indirect=True)
def test_user_data_runs_on_the_server(sandbox_cloud, sandbox_fleet, operator_key, tmp_path,
                                      given, written):
    key_path, operator_pub = operator_key
    assert sandbox_cloud.leftovers() == []
    cloud = sandbox_cloud.connect()
    want = sandbox_cloud.expect.get("lifecycle", {})
    server = cloud.create_server("cn-userdata-runs", authorized_keys=[operator_pub],
                                 userdata=given, timeout=want.get("timeout", 120),
                                 **want.get("create", {}))
    try:
        # Host keys verified from cloud-init's own console output; root's key was
        # installed by cloudnorm's hardening, after cloud-init ran the user data.
        known_hosts = known_hosts_file(tmp_path / "known_hosts", server)
        found = ssh_as(server, "root", key_path, known_hosts,
                       command="cat /root/written /root/ran")
        assert (found.returncode, found.stdout.splitlines()) == (0, [written, "ran"]), \
            found.stderr
    finally:
        assert cloud.delete_server(server.id) is True
    assert sandbox_cloud.leftovers() == []

"""User data on every sandbox cloud: what the caller passes is what the cloud holds for
the server, read back through the provider's own API; one larger than the cloud takes
is refused before anything is made."""

from __future__ import annotations

import gzip

import pytest
from sandbox_clouds import clouds_with

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

"""User data as each cloud receives it, and each cloud's size limit checked up front."""

from __future__ import annotations

import gzip

import pytest
import yaml

from cloudnorm import errors, userdata
from cloudnorm.userdata import SizeLimit

# The limits as the vendors document them:
# Nova: "The provided user data must be base64 encoded and is restricted to 65535 bytes"
#   (docs.openstack.org/nova/latest/user/metadata.html#user-data).
NOVA = SizeLimit(65535, "base64", "Nova")
# EC2: "User data is limited to 16 KB, in raw form, before it is base64-encoded"
#   (docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-add-user-data.html);
#   a larger one is refused as "Member must have length less than or equal to 21847"
#   (kubicorn/kubicorn#667, the base64 form of 16384 bytes).
EC2 = SizeLimit(16384, "raw", "EC2")
# GCE: a metadata value "must be less than or equal to 262144 bytes (256 KiB)"
#   (compute v1 API reference, Metadata.items[].value).
GCE = SizeLimit(262144, "text", "GCE")


def test_a_mapping_is_a_cloud_config():
    data = userdata.encode({"write_files": [{"path": "/etc/motd", "content": "hi"}],
                            "runcmd": ["touch /root/ran"]})
    assert data.startswith(b"#cloud-config\n")
    assert yaml.safe_load(data) == {"write_files": [{"path": "/etc/motd", "content": "hi"}],
                                    "runcmd": ["touch /root/ran"]}


def test_text_and_bytes_go_as_given():
    script = "#!/bin/sh\necho é > /root/out\n"
    assert userdata.encode(script) == script.encode("utf-8")
    packed = gzip.compress(b"#cloud-config\nruncmd: [true]\n")
    assert userdata.encode(packed) == packed


def test_anything_else_is_refused():
    with pytest.raises(TypeError, match="not int"):
        userdata.encode(42)  # type: ignore[arg-type]


def test_the_base64_form_is_what_nova_measures():
    # 49149 raw bytes are 65532 base64 characters; 49152 would be 65536.
    userdata.check_size(b"x" * 49149, NOVA, "c")
    with pytest.raises(errors.InvalidRequest) as info:
        userdata.check_size(b"x" * 49152, NOVA, "c")
    assert info.value.field == "userdata"
    assert "65536 bytes base64-encoded" in str(info.value)
    assert "at most 65535 (Nova)" in str(info.value)


@pytest.mark.parametrize("limit", [EC2, GCE], ids=["ec2", "gce"])
def test_raw_limits(limit):
    userdata.check_size(b"x" * limit.limit, limit, "c")
    with pytest.raises(errors.InvalidRequest, match=f"at most {limit.limit}"):
        userdata.check_size(b"x" * (limit.limit + 1), limit, "c")


def test_gce_measures_binary_user_data_in_its_base64_form():
    # A metadata value is text: gzip goes base64-encoded, and that form must fit.
    packed = b"\x1f\x8b" + b"\xff" * (GCE.limit * 3 // 4 - 2)
    userdata.check_size(packed, GCE, "c")
    with pytest.raises(errors.InvalidRequest, match="base64-encoded"):
        userdata.check_size(packed + b"\xff" * 3, GCE, "c")

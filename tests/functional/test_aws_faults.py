"""The AWS driver against replies broken on the way: a stub EC2 endpoint on 127.0.0.1
behind the fault proxy (cloudnorm/testing/faults.py). Whatever arrives, the caller gets
a cloudnorm error, never botocore's own exceptions."""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cloudnorm import config, errors, profiles
from cloudnorm.drivers.aws.driver import AwsDriver
from cloudnorm.testing.faults import FaultProxy, Rule, ec2_error

INSTANCE_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<DescribeInstanceTypesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
    b"<requestId>r-1</requestId><instanceTypeSet>"
    + b"".join(b"<item><instanceType>t3a.%s</instanceType><memoryInfo><sizeInMiB>%d"
               b"</sizeInMiB></memoryInfo><vCpuInfo><defaultVCpus>2</defaultVCpus></vCpuInfo>"
               b"</item>" % (size, mib) for size, mib in (
                   (b"small", 2048), (b"medium", 4096), (b"large", 8192)))
    + b"</instanceTypeSet></DescribeInstanceTypesResponse>")

pytestmark = [pytest.mark.functional, pytest.mark.usefixtures("isolated_cloud_environment")]


class _Ec2(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/xml;charset=UTF-8")
        self.send_header("Content-Length", str(len(INSTANCE_TYPES)))
        self.end_headers()
        self.wfile.write(INSTANCE_TYPES)


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ec2)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        with FaultProxy({"ec2": f"http://127.0.0.1:{server.server_address[1]}"},
                        seed=1) as running:
            yield running
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def make_driver(proxy: FaultProxy) -> AwsDriver:
    # A VPC name of its own: a rate limiter of its own (the identity names the VPC).
    settings = config.CloudSettings(
        name="aws-test", provider="aws", region="us-east-1", profile=None,
        options={"provider": "aws", "region": "us-east-1",
                 "endpoint_url": proxy.endpoints["ec2"], "vpc": uuid.uuid4().hex,
                 "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                 "rate_limit": {"reads": 1000, "writes": 1000}},
        cache=config.CacheSettings())
    return AwsDriver(settings, profiles.load("aws"))


def test_the_stub_answers(proxy):
    assert [f.name for f in make_driver(proxy).list_flavors()] == [
        "t3a.small", "t3a.medium", "t3a.large"]


def test_a_reply_cut_short_is_a_provider_error(proxy):
    proxy.add(Rule("truncate", count=1))
    with pytest.raises(errors.ProviderError, match="cut short or garbled") as info:
        make_driver(proxy).list_flavors()
    assert len(str(info.value)) < 600  # not the whole body the parser quotes
    assert proxy.counts() == {"truncate": 1}


def test_throttling_and_server_faults_are_retried(proxy):
    proxy.add(Rule("status", status=503, body=ec2_error("RequestLimitExceeded"),
                   content_type="text/xml", count=1),
              Rule("status", status=500, body=ec2_error("InternalError"),
                   content_type="text/xml", count=1))
    driver = make_driver(proxy)
    assert len(driver.list_flavors()) == 3
    assert proxy.counts() == {"status": 2}
    assert driver.limiter.counts["read"] == 3  # every attempt waited for its turn


def test_throttling_that_never_ends_is_quota_exceeded(proxy):
    proxy.add(Rule("status", status=503, body=ec2_error("RequestLimitExceeded"),
                   content_type="text/xml"))
    with pytest.raises(errors.QuotaExceeded, match="after 3 attempt") as info:
        make_driver(proxy).list_flavors()
    assert info.value.resource == "API request rate"

"""pytest plugin: the ``openstack_sandbox`` fixture, one local OpenStack per test session.

Load it with ``pytest_plugins = ["cloudnorm.testing.pytest_plugin"]``. The sandbox starts on
first use with every profile, in a temporary directory, and stops when the session ends.
To iterate quickly, start one yourself and point the tests at it::

    python -m cloudnorm.testing run --workdir /tmp/sandbox -- sleep infinity &
    CLOUDNORM_SANDBOX_CLOUDS_YAML=/tmp/sandbox/clouds.yaml pytest tests/functional

``python -m cloudnorm.testing run -- pytest ...`` sets that variable for its command, so
such a run reuses the sandbox it started.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REUSE_VARIABLE = "CLOUDNORM_SANDBOX_CLOUDS_YAML"
#: Settings of the person running the tests that must not reach a test's cloud clients.
PERSONAL_PREFIXES = ("AWS_", "OS_", "GOOGLE_", "CLOUDSDK_")
DATAPLANE_VARIABLE = "CLOUDNORM_SANDBOX_DATAPLANE"


@pytest.fixture(scope="session")
def openstack_sandbox(tmp_path_factory):
    """A running sandbox: ``clouds_yaml``, ``cloud_names``, ``admin_auth``, ``request_log``,
    ``requests(since=, service=, project=)``, ``profile(name)`` (ids and expectations)."""
    reuse = os.environ.get(REUSE_VARIABLE)
    if reuse:
        from cloudnorm.testing.openstack.state import SandboxState

        yield SandboxState.from_clouds_yaml(Path(reuse))
        return

    from cloudnorm.testing.openstack.stack import OpenStackStack

    stack = OpenStackStack(tmp_path_factory.mktemp("openstack-sandbox"))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def openstack_dataplane(openstack_sandbox, tmp_path_factory):
    """The sandbox's SSH data plane (a :class:`~cloudnorm.testing.dataplane.Fleet`):
    every ACTIVE server answers SSH on the addresses its profile makes reachable.
    Needs root and a private network namespace (``python -m cloudnorm.testing run``
    provides both)."""
    from cloudnorm.testing.openstack.dataplane_sync import DataPlane

    if os.environ.get(DATAPLANE_VARIABLE):
        pytest.fail("this sandbox's SSH data plane belongs to `python -m cloudnorm.testing run`;"
                    " tests that steer nodes need their own: run pytest inside `unshare -n`"
                    " without `run`", pytrace=False)
    with DataPlane(openstack_sandbox, tmp_path_factory.mktemp("nodes")) as dataplane:
        yield dataplane.fleet


@pytest.fixture
def isolated_cloud_environment(monkeypatch, tmp_path):
    """No AWS, OpenStack or Google setting of the person running the tests leaks in, and
    no client may fall back to an instance metadata service (169.254.169.254) for
    credentials, region or project."""
    for key in list(os.environ):
        if key.startswith(PERSONAL_PREFIXES):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))

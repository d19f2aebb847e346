"""The sandbox clouds of the functional tests, each started once per test run.

The local OpenStack and its data plane come from ``cloudnorm.testing.pytest_plugin``
(``openstack_sandbox``, ``openstack_dataplane``); the local EC2 and the local Compute
Engine, with their data planes, are here. Every module that needs one of them takes it
from here: moto keeps its accounts in process-wide state, so two local EC2s in one run
would share (and reset) one account.

``sandbox_cloud`` binds one of ``sandbox_clouds.CLOUDS`` (given as the test's parameter)
to its running sandbox; ``sandbox_fleet`` is that cloud's SSH data plane.
"""

from __future__ import annotations

import subprocess

import pytest
from sandbox_clouds import RequestRecorder, SandboxCloud


def _data_plane_needs_private_netns() -> None:
    from cloudnorm.testing.dataplane import require_private_netns

    # Nodes answer on the clouds' public addresses: only inside a private network
    # namespace are those addresses the nodes' and nobody else's.
    require_private_netns()


# -- the local EC2 -------------------------------------------------------------------------
@pytest.fixture(scope="session")
def aws_sandbox(tmp_path_factory):
    from cloudnorm.testing.aws import MotoSandbox

    with MotoSandbox(tmp_path_factory.mktemp("aws-sandbox")) as running:
        yield running


@pytest.fixture(scope="session")
def aws_recorder(aws_sandbox):
    """What cloudnorm's clients ask the local EC2, operation by operation."""
    with RequestRecorder(aws_sandbox.endpoint_url) as recorder:
        yield recorder


@pytest.fixture(scope="session")
def aws_clouds_yaml(aws_sandbox, aws_recorder, tmp_path_factory):
    """The local EC2's clouds, reached through the request recorder."""
    return aws_recorder.clouds_yaml(aws_sandbox.clouds(),
                                    tmp_path_factory.mktemp("aws-clouds") / "clouds.yaml")


@pytest.fixture(scope="session")
def aws_dataplane(aws_sandbox, tmp_path_factory):
    """The local EC2's SSH data plane (a Fleet): a running instance answers SSH."""
    from cloudnorm.testing.aws_dataplane import AwsDataPlaneSync
    from cloudnorm.testing.dataplane import Fleet

    _data_plane_needs_private_netns()
    with Fleet(tmp_path_factory.mktemp("aws-fleet")) as fleet:
        sync = AwsDataPlaneSync(aws_sandbox, fleet).start()
        try:
            yield fleet
        finally:
            sync.stop()
            assert sync.errors == []


# -- the local Compute Engine --------------------------------------------------------------
@pytest.fixture(scope="session")
def gce_sandbox(tmp_path_factory):
    from cloudnorm.testing.gce import GceSandbox

    with GceSandbox(tmp_path_factory.mktemp("gce-sandbox")) as running:
        yield running


@pytest.fixture(scope="session")
def gce_clouds_yaml(gce_sandbox):
    return gce_sandbox.write_clouds_yaml()


@pytest.fixture(scope="session")
def gce_dataplane(gce_sandbox, tmp_path_factory):
    """The local Compute Engine's SSH data plane (a Fleet)."""
    from cloudnorm.testing.dataplane import Fleet

    _data_plane_needs_private_netns()
    with Fleet(tmp_path_factory.mktemp("gce-fleet")) as fleet:
        sync = gce_sandbox.dataplane(fleet).start()
        try:
            yield fleet
        finally:
            sync.stop()
            assert sync.errors == []


# -- one cloud of the contract -------------------------------------------------------------
@pytest.fixture
def sandbox_cloud(request) -> SandboxCloud:
    """The parameter's SandboxCloud, bound to its running sandbox (started on first use).
    Clouds it opened are closed after the test."""
    spec: SandboxCloud = request.param
    if spec.provider == "openstack":
        sandbox = request.getfixturevalue("openstack_sandbox")
        bound = spec.bind(sandbox, sandbox.clouds_yaml)
    elif spec.provider == "aws":
        request.getfixturevalue("isolated_cloud_environment")
        bound = spec.bind(request.getfixturevalue("aws_sandbox"),
                          request.getfixturevalue("aws_clouds_yaml"),
                          recorder=request.getfixturevalue("aws_recorder"))
    elif spec.provider == "gce":
        request.getfixturevalue("isolated_cloud_environment")
        bound = spec.bind(request.getfixturevalue("gce_sandbox"),
                          request.getfixturevalue("gce_clouds_yaml"))
    else:
        raise ValueError(f"no sandbox for provider {spec.provider!r}")
    yield bound
    bound.close()


@pytest.fixture
def sandbox_fleet(sandbox_cloud, request):
    """The SSH data plane of ``sandbox_cloud``: its servers answer SSH on the addresses
    the cloud makes reachable."""
    from cloudnorm.testing.dataplane import in_private_netns

    if not in_private_netns():
        pytest.skip("the SSH data plane needs a private network namespace (scripts/test "
                    "runs the suite in one; so do test_aws.py's and test_gce.py's re-runs)")
    return request.getfixturevalue(f"{sandbox_cloud.provider}_dataplane")


@pytest.fixture(scope="session")
def operator_key(tmp_path_factory):
    """The operator's own key pair: (private key file, public key line)."""
    path = tmp_path_factory.mktemp("operator") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "operator",
                    "-f", str(path)], check=True)
    return path, path.with_suffix(".pub").read_text().strip()

"""Bad input and bad answers: each gives its typed error, a message naming what to fix,
and leaves nothing behind (counted through openstacksdk, not cloudnorm)."""

from __future__ import annotations

import contextlib

import pytest
import yaml

import cloudnorm
from cloudnorm import errors
from cloudnorm.testing.faults import Rule, in_front_of
from cloudnorm.testing.openstack.leftovers import leftovers
from cloudnorm.testing.openstack.quotas import no_floating_ips

pytestmark = pytest.mark.functional
PROFILE = "fip-required"
CLOUD = f"sandbox-{PROFILE}"
NAME = "cn-bad"


def left_behind(sandbox) -> list[str]:
    return leftovers(sandbox, PROFILE, servers_named=NAME)


def entry(sandbox) -> dict:
    with open(sandbox.clouds_yaml, encoding="utf-8") as handle:
        return yaml.safe_load(handle)["clouds"][CLOUD]


# -- configuration ----------------------------------------------------------------------------
def _malformed(entry, path):
    path.write_text("clouds:\n  sandbox-fip-required: [auth\n", encoding="utf-8")


def _unknown_key(entry, path):
    entry["cloudnorm"]["flavour"] = "m1.small"
    path.write_text(yaml.safe_dump({"clouds": {CLOUD: entry}}), encoding="utf-8")


def _no_password(entry, path):
    del entry["auth"]["password"]
    path.write_text(yaml.safe_dump({"clouds": {CLOUD: entry}}), encoding="utf-8")


def _wrong_password(entry, path):
    entry["auth"]["password"] = "not-the-password"
    path.write_text(yaml.safe_dump({"clouds": {CLOUD: entry}}), encoding="utf-8")


def _bad_rate_limit(entry, path):
    entry["cloudnorm"]["rate_limit"] = {"writes": "fast"}
    path.write_text(yaml.safe_dump({"clouds": {CLOUD: entry}}), encoding="utf-8")


@pytest.mark.parametrize("spoil, error, fragments", [
    (_malformed, errors.ConfigError, ["not valid YAML", "at line", "fix the file"]),
    (_unknown_key, errors.ConfigError, ["unknown key(s) flavour", "known keys"]),
    (_no_password, errors.ConfigError, ["lacks auth settings", "password"]),
    (_wrong_password, errors.AuthError, ["refused the credentials",
                                         "check username, password and project"]),
    (_bad_rate_limit, errors.ConfigError, ["rate_limit: writes", "requests per second"]),
], ids=["malformed-yaml", "unknown-key", "missing-credentials", "wrong-credentials",
        "bad-rate-limit"])
def test_bad_configuration(openstack_sandbox, tmp_path, spoil, error, fragments):
    path = tmp_path / "clouds.yaml"
    spoil(entry(openstack_sandbox), path)
    with pytest.raises(error) as info:
        with cloudnorm.connect(CLOUD, config_files=[str(path)]) as cloud:
            cloud.create_server(NAME, min_ram=2048, timeout=60)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert "not-the-password" not in str(info.value)
    assert left_behind(openstack_sandbox) == []


# -- asks the cloud cannot meet ------------------------------------------------------------------
@pytest.fixture
def cloud(openstack_sandbox):
    with cloudnorm.connect(CLOUD, config_files=[str(openstack_sandbox.clouds_yaml)]) as opened:
        opened.refresh()
        yield opened


@contextlib.contextmanager
def _no_quota(sandbox, kind):
    if kind == "floating_ips":
        with no_floating_ips(sandbox, CLOUD):
            yield
        return
    admin = sandbox.connect_admin()
    project = admin.identity.find_project(CLOUD)
    try:
        admin.set_compute_quotas(project.id, instances=0)
        yield
    finally:
        admin.set_compute_quotas(project.id, instances=50)
        admin.close()


@contextlib.contextmanager
def _isolated_network(sandbox):
    sdk = sandbox.connect(PROFILE)
    net = sdk.network.create_network(name="cn-isolated")
    sdk.network.create_subnet(network_id=net.id, cidr="10.9.0.0/24", ip_version=4,
                              name="cn-isolated-v4")
    try:
        yield
    finally:
        sdk.network.delete_network(net.id)
        sdk.close()


@pytest.mark.parametrize("ask, setup, error, fragments", [
    ({"image": "plan9-4"}, None, errors.NotFound, ["plan9"]),
    ({"min_ram": 10_000_000}, None, errors.NotFound, ["10000000"]),
    ({"min_ram": 2048}, "floating_ips", errors.QuotaExceeded,
     ["quota", "free resources or ask for a higher quota"]),
    ({"min_ram": 2048}, "instances", errors.QuotaExceeded,
     ["instances", "free resources or ask for a higher quota"]),
    # Found out only when Neutron refuses the floating IP, after the boot: rolled back.
    ({"min_ram": 2048, "network": "cn-isolated"}, "isolated", errors.NotReachable,
     ["cn-isolated", "floating IP", "not reachable"]),
], ids=["unknown-image-os", "impossible-flavor", "floating-ip-quota", "instance-quota",
        "network-without-way-out"])
def test_impossible_asks(openstack_sandbox, openstack_dataplane, cloud, ask, setup, error,
                         fragments):
    if setup == "isolated":
        context = _isolated_network(openstack_sandbox)
    elif setup:
        context = _no_quota(openstack_sandbox, setup)
    else:
        context = contextlib.nullcontext()
    with context:
        cloud.refresh()
        with pytest.raises(error) as info:
            cloud.create_server(NAME, timeout=90, **ask)
    text = str(info.value).lower()
    for fragment in fragments:
        assert fragment.lower() in text
    assert left_behind(openstack_sandbox) == []


# -- answers cloudnorm cannot read -----------------------------------------------------------------
@pytest.mark.parametrize("rule, where", [
    (Rule("malformed", service="compute", method="GET", path=r"/flavors/detail"),
     "compute GET /flavors/detail"),
    (Rule("truncate", service="image", method="GET", path=r"/v2/images$"),
     "image GET /v2/images"),
], ids=["malformed-json", "truncated-reply"])
def test_unreadable_replies(openstack_sandbox, tmp_path, rule, where):
    with in_front_of(openstack_sandbox, PROFILE, CLOUD, tmp_path / "c.yaml",
                     seed=3) as proxy:
        proxy.add(rule)
        with cloudnorm.connect(CLOUD, config_files=[str(proxy.clouds_yaml_path)]) as cloud:
            cloud.refresh()
            with pytest.raises(errors.ProviderError) as info:
                cloud.create_server(NAME, min_ram=2048, timeout=60)
        assert proxy.counts().get(rule.kind, 0) >= 2  # read again before giving up
    text = str(info.value)
    assert where.split()[0] in text and ("malformed" in text or "broken off" in text
                                         or "reach" in text), text
    assert left_behind(openstack_sandbox) == []

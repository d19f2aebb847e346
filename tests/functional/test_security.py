"""Secrets stay secret: no password, token or throw-away private key in logs, error texts
or reprs; throw-away keys live in memory or in 0600 files that go away; host keys are
verified by default everywhere."""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

import pytest
import yaml

import cloudnorm
from cloudnorm import errors, keys, ssh

pytestmark = pytest.mark.functional
PROFILE = "fip-required"
CLOUD = f"sandbox-{PROFILE}"
SOURCE = Path(cloudnorm.__file__).resolve().parent


def _texts(caplog) -> list[str]:
    found = []
    for record in caplog.records:
        found.append(record.getMessage())
        if record.exc_text:
            found.append(record.exc_text)
    return found


def test_no_secret_in_logs_errors_or_reprs(openstack_sandbox, openstack_dataplane, caplog,
                                           monkeypatch):
    with open(openstack_sandbox.clouds_yaml, encoding="utf-8") as handle:
        password = yaml.safe_load(handle)["clouds"][CLOUD]["auth"]["password"]
    made: list[keys.NodeKey] = []
    real_generate = keys.generate

    def generate(*args, **kwargs):
        made.append(real_generate(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(keys, "generate", generate)
    caplog.set_level(logging.DEBUG)  # everything, keystoneauth's and openstacksdk's too
    shown: list[str] = []
    with cloudnorm.connect(CLOUD, config_files=[str(openstack_sandbox.clouds_yaml)]) as cloud:
        server = cloud.create_server("cn-secret", min_ram=2048, timeout=120)
        shown += [repr(server), str(server), repr(cloud), repr(cloud.settings)]
        try:
            # A create that fails late, after the key and token have been used a while.
            monkeypatch.setattr(ssh, "hardening_script", lambda *a, **k: "echo no >&2; exit 3\n")
            with pytest.raises(errors.CloudnormError) as info:
                cloud.create_server("cn-secret-2", min_ram=2048, timeout=120,
                                    authorized_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA op"])
            shown += [str(info.value), repr(info.value)]
        finally:
            monkeypatch.undo()
            token = cloud.driver.conn.session.get_token()
            cloud.delete_server(server)
    assert len(made) == 2 and token and password
    shown += [repr(k) for k in made]
    secrets = {"password": password, "token": token}
    for index, key in enumerate(made):
        # The base64 body of the private key: any line of it would betray it.
        body = [line for line in key.private_key.splitlines() if "PRIVATE KEY" not in line]
        secrets.update({f"private key {index} line {n}": line for n, line in enumerate(body)})
    texts = _texts(caplog) + shown
    assert len(caplog.records) > 50  # DEBUG logging did capture the create
    leaks = {name for name, secret in secrets.items() for text in texts if secret in text}
    assert leaks == set()


def test_cloudnorm_does_not_turn_on_sdk_debug_logging(openstack_sandbox):
    before = {name: logging.getLogger(name).level for name in ("keystoneauth", "openstack")}
    with cloudnorm.connect(CLOUD, config_files=[str(openstack_sandbox.clouds_yaml)]) as cloud:
        cloud.list_flavors()
    after = {name: logging.getLogger(name).level for name in before}
    assert after == before
    code = "\n".join(p.read_text(encoding="utf-8") for p in SOURCE.rglob("*.py")
                     if "testing" not in p.parts)
    assert "enable_logging" not in code and "split_loggers" not in code


def test_private_key_file_is_0600_and_removed():
    key = keys.generate("cloudnorm-test")
    assert key.private_key not in repr(key)
    with key.private_key_file() as path:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert Path(path).read_text(encoding="utf-8") == key.private_key
    assert not os.path.exists(path)


# Host keys are checked against what the console announced, unless a caller says
# verify_host_keys=False. The one connection that checks nothing is the password probe:
# it offers a made-up password to see that it is refused, and runs nothing.
_UNVERIFIED = re.compile(r"known_hosts\s*=\s*None|StrictHostKeyChecking\s*=\s*(no|accept-new)|"
                         r"AutoAddPolicy|UserKnownHostsFile\s*=\s*/dev/null|"
                         r"verify_host_keys\s*:\s*bool\s*=\s*False", re.I)


def test_host_keys_are_verified_by_default_everywhere():
    hits = []
    for path in sorted(SOURCE.rglob("*.py")):
        if "testing" in path.parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _UNVERIFIED.search(line):
                hits.append(f"{path.relative_to(SOURCE)}:{number}")
    probe = [h for h in hits if h.startswith("ssh.py:")]
    assert len(probe) <= 1 and hits == probe, hits
    if probe:
        number = int(probe[0].split(":")[1])
        lines = (SOURCE / "ssh.py").read_text(encoding="utf-8").splitlines()
        enclosing = next(line for line in reversed(lines[:number]) if "def " in line)
        assert "_password_refused" in enclosing

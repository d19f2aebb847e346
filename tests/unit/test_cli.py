"""The ``cloudnorm`` command's pure parts: rendering, JSON shapes, exit codes, the
conformance verdicts, leftovers, the stored login, the progress display."""

from __future__ import annotations

import datetime
import io
import json
import subprocess
import sys
import types

import attrs
import pytest
from click.testing import CliRunner

from cloudnorm import cleanup, cli, conformance, hostkeys
from cloudnorm.cli import render as cli_render
from cloudnorm.cli import sandbox_control as cli_sandbox
from cloudnorm.cli import ssh_access as cli_ssh
from cloudnorm.cli.progress import Progress
from cloudnorm.drivers.base import Created
from cloudnorm.models import Address, Decision, Image, Location, Server
from cloudnorm.networks import NetworkFacts, Subnet
from cloudnorm.provision import STEPS, StepEvent
from cloudnorm.state import ServerState

from .conftest import NEUTRON, NOVA, nova_server

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOO+HlX0gWBgdiGZV03XgmCZaZACC4Vnz+N1KMeKXV2O"
RSA_BLOB = "AAAAB3NzaC1yc2EAAAADAQABAAABgQ" + "C" * 522
UTC = datetime.timezone.utc


def server(**fields):
    base = dict(id="srv-1", name="web1", status="running", location=Location("mycloud"),
                addresses=(Address("203.0.113.5", 4, "public", True, "globally routable"),),
                interface_ip="203.0.113.5", ssh_user="ubuntu", ssh_port=22,
                host_keys=(ED25519,), tags={"cloudnorm:owner": "abc"},
                created=datetime.datetime(2024, 1, 1, tzinfo=UTC),
                decisions=(Decision("image", "Ubuntu", "newest"),))
    base.update(fields)
    return Server(**base)


# -- tables ---------------------------------------------------------------------------------
def test_table_aligns_columns_and_keeps_wrapped_rows_together():
    text = cli_render.table(("a", "b"), [("x", "one two three four"), ("yy", "z")], [3, 8])
    assert text.splitlines() == [
        "a    b", "---  --------", "x    one two", "     three", "     four", "", "yy   z"]


def test_table_without_wrapping_has_no_blank_lines():
    text = cli_render.table(("name", "n"), [("a", "1"), ("bb", "22")])
    assert text.splitlines() == ["name  n", "----  ---", "a     1", "bb    22"]


def test_split_widths_shares_what_is_left():
    assert cli_render.split_widths(100, [16, None, 9, None]) == [16, 34, 9, 34]


# -- conformance verdicts -------------------------------------------------------------------
def test_public_address_verdicts():
    v4 = Address("203.0.113.9", 4, "public", True, "globally routable address")
    private = Address("10.0.1.5", 4, "private", False, "private-range address")
    v6 = Address("2001:db8::5", 6, "default", True, "globally routable address")
    assert conformance.public_address(server(addresses=(private, v4))).verdict == "YES"
    partial = conformance.public_address(server(addresses=(private, v6)))
    assert partial.verdict == "PARTIAL" and "only over IPv6" in partial.detail
    none = conformance.public_address(server(addresses=(private,)))
    assert none.verdict == "NO"
    assert none.detail.startswith("no public address after boot")
    assert "10.0.1.5" in none.detail


def facts(*nets):
    return list(nets), []


def net(name, cidr="10.0.0.0/24", external=False, default_for_zone=False):
    return NetworkFacts(id=name, name=name, router_external=external,
                        subnets=(Subnet(f"{name}-s", name, cidr, 4),),
                        default_for_zone=default_for_zone)


def test_choice_needs_labelled_images_and_a_default_network():
    labelled = Image("i", "Ubuntu 22.04", raw={"os_distro": "ubuntu", "os_version": "22.04"})
    bare = Image("i", "Ubuntu 22.04")
    one = facts(net("private"), net("public", "203.0.113.0/27", external=True))
    two = facts(net("a"), net("b"))
    assert conformance.choice_facts(labelled, one).verdict == "YES"
    partial = conformance.choice_facts(bare, one)
    assert (partial.verdict, partial.missing) == ("PARTIAL", ("image",))
    assert "only its name" in partial.detail
    none = conformance.choice_facts(bare, two)
    assert (none.verdict, none.missing) == ("NO", ("image", "network"))
    # no network service: the cloud places servers; EC2: the default subnets
    assert conformance.choice_facts(labelled, None).verdict == "YES"
    ec2 = facts(net("subnet-1", default_for_zone=True), net("subnet-2", default_for_zone=True))
    aws_image = Image("ami-1", "ubuntu/images/x", raw={"cloudnorm:source": "public parameter /p"})
    assert conformance.choice_facts(aws_image, ec2).verdict == "YES"


def test_discovery_boot_login_and_hardening_verdicts():
    assert conformance.discovery_api(3, 2, facts(net("a"))).verdict == "YES"
    assert conformance.discovery_api(3, 2, None).verdict == "PARTIAL"
    assert conformance.discovery_api(0, 2, facts()).verdict == "NO"
    assert conformance.boot_result(ServerState("s", "web", "running", "ACTIVE"),
                                   2.0).verdict == "YES"
    failed = conformance.boot_result(ServerState("s", "web", "error", "ERROR",
                                                 fault="No valid host"), 1.0)
    assert failed.verdict == "NO" and "No valid host" in failed.detail
    assert conformance.boot_result(None, 1.0).verdict == "NO"
    console = ("-----BEGIN SSH HOST KEY KEYS-----\n" + ED25519 + " root@x\n"
               "-----END SSH HOST KEY KEYS-----\n")
    image = Image("i", "img", raw={"os_admin_user": "admin"})
    assert conformance.login_facts(image, ("os_admin_user",), console).verdict == "YES"
    assert conformance.login_facts(Image("i", "img"), ("os_admin_user",), console).verdict \
        == "PARTIAL"
    assert conformance.login_facts(Image("i", "img"), (), "").verdict == "NO"
    assert conformance.hardening().verdict == "NO"


def events_for(steps, fail=None):
    found = []
    for step in steps:
        found.append(StepEvent(step, "started", "…", 0.0))
        found.append(StepEvent(step, "failed" if step == fail else "done", f"{step} ok", 1.0))
        if step == fail:
            break
    return found


def test_rows_say_how_the_gap_was_closed():
    raw = {step: conformance.Measured("YES", "fine") for step in STEPS}
    raw["public_address"] = conformance.Measured("NO", "no public address after boot")
    decisions = (Decision("ssh_access", "cloudnorm-abc", "group"),
                 Decision("public_address", "floating IP from public", "private network"),
                 Decision("public_address", "203.0.113.7", "floating IP from 'public' attached"))
    rows = conformance.through_cloudnorm(events_for(STEPS), decisions, raw)
    assert [r.cloudnorm for r in rows] == ["YES"] * 8
    five = rows[4]
    assert (five.title, five.raw, five.cloudnorm) == ("5 public address", "NO", "YES")
    assert five.gap == ("203.0.113.7: floating IP from 'public' attached; TCP 22 opened by "
                        "cloudnorm-abc")
    assert rows[0].gap == ""  # the raw cloud had it


def test_rows_after_a_failure_are_not_reached():
    raw = {step: conformance.Measured("YES", "fine") for step in STEPS}
    rows = conformance.through_cloudnorm(events_for(STEPS, fail="login"), (), raw, "boom")
    assert [r.cloudnorm for r in rows] == ["YES"] * 5 + ["NO"] * 3
    assert rows[5].cloudnorm_detail == "failed: login ok"
    assert rows[6].cloudnorm_detail == "not reached: step 6 login failed"


def report(**fields):
    raw = {step: conformance.Measured("YES", "fine") for step in STEPS}
    raw["public_address"] = conformance.Measured("NO", "no public address after boot")
    rows = conformance.through_cloudnorm(
        events_for(STEPS), (Decision("public_address", "1.2.3.4", "floating IP"),), raw)
    base = dict(cloud="c1", provider="openstack", profile="openstack",
                started="2024-01-01T00:00:00+00:00", elapsed=12.3, steps=tuple(rows),
                node="n1: ubuntu@203.0.113.7 port 22")
    base.update(fields)
    return conformance.Report(**base)


def test_report_json_shape():
    data = conformance.as_dict(report())
    assert json.loads(json.dumps(data)) == data
    assert data["ok"] is True
    assert set(data) == {"cloud", "provider", "profile", "started", "elapsed", "steps", "node",
                         "error", "leftovers", "notes", "access", "ok"}
    assert data["access"] == "public"
    assert data["steps"][4] == {
        "step": "public_address", "title": "5 public address", "raw": "NO",
        "raw_detail": "no public address after boot", "cloudnorm": "YES",
        "cloudnorm_detail": "public_address ok", "gap": "1.2.3.4: floating IP"}
    assert conformance.as_dict(report(leftovers=("server s1",)))["ok"] is False


def test_conformance_text_and_markdown():
    data = conformance.as_dict(report(notes=("logged in",)))
    text = cli_render.conformance_text(data, width=100)
    assert text.startswith("cloud c1 (openstack, profile openstack, public access): conforms "
                           "through cloudnorm")
    assert "5 public address  NO: no public address" in text
    assert "note: logged in" in text
    assert all(len(line) <= 100 for line in text.splitlines()[2:])
    md = cli_render.conformance_markdown([data])
    assert md.startswith("### c1 (openstack, profile openstack, public access)")
    private = conformance.as_dict(attrs.evolve(report(), access="private"))
    assert "profile openstack, private access)" in cli_render.conformance_text(private)
    assert ("| 5 public address | **NO**: no public address after boot | **YES**: "
            "public_address ok | 1.2.3.4: floating IP |") in md
    summary = cli_render.summary_table([data])
    assert "c1     Y>Y  Y>Y  Y>Y  Y>Y  N>Y  Y>Y  Y>Y  Y>Y  yes" in summary


def test_markdown_escapes_pipes():
    data = conformance.as_dict(report(error="a | b"))
    assert "Error: a \\| b" in cli_render.conformance_markdown([data])


# -- servers --------------------------------------------------------------------------------
def test_server_json_shape():
    data = cli_render.server_json(server())
    assert json.loads(json.dumps(data)) == data
    assert data["interface_ip"] == "203.0.113.5" and data["ssh_port"] == 22
    assert data["host_keys"] == [ED25519]
    assert data["addresses"][0] == {"ip": "203.0.113.5", "version": 4, "network": "public",
                                    "public": True, "kind": "fixed",
                                    "reason": "globally routable"}
    assert data["decisions"] == [{"step": "image", "choice": "Ubuntu", "reason": "newest"}]


def test_ssh_target_and_list_table():
    v6 = cli_render.server_json(server(interface_ip="2001:db8::5", ssh_port=2201))
    assert cli_render.ssh_target(v6) == "ubuntu@[2001:db8::5]:2201"
    assert cli_render.ssh_target(cli_render.server_json(server(interface_ip=None))) == "-"
    now = datetime.datetime(2024, 1, 1, 3, tzinfo=UTC)
    text = cli_render.servers_table([cli_render.server_json(server())], now=now)
    assert text.splitlines()[2].split() == ["web1", "srv-1", "running", "ubuntu@203.0.113.5:22",
                                            "3h", "yes"]


def test_server_text_shows_fingerprints():
    text = cli_render.server_text(cli_render.server_json(server()))
    assert "log in:  ubuntu@203.0.113.5:22" in text
    assert f"host key ssh-ed25519 {hostkeys.fingerprint(ED25519.split()[1])}" in text


# -- the login stored on the server ---------------------------------------------------------
def test_login_metadata_round_trip_keeps_short_keys_and_fingerprints_long_ones():
    keys = (ED25519, f"ssh-rsa {RSA_BLOB}")
    items = hostkeys.login_metadata("ubuntu", "2001:db8::5", 2201, keys)
    assert items["cloudnorm:ssh"] == "ubuntu@[2001:db8::5]:2201"
    assert items["cloudnorm:host_key:ssh-ed25519"] == ED25519.split()[1]
    assert items["cloudnorm:host_key:ssh-rsa"] == hostkeys.fingerprint(RSA_BLOB)
    assert all(len(k) <= 255 and len(v) <= 255 for k, v in items.items())
    record = hostkeys.login_record({**items, "role": "web"})
    assert record == hostkeys.LoginRecord("ubuntu", "2001:db8::5", 2201, (ED25519,),
                                          (hostkeys.fingerprint(RSA_BLOB),))
    assert hostkeys.login_record({"cloudnorm:ssh": "nonsense"}) is None
    assert hostkeys.login_record({}) is None


def test_get_server_gives_the_stored_login_back(connect, fake_os):
    items = hostkeys.login_metadata("debian", "203.0.113.243", 2201, (ED25519,))
    fake_os.neutron("/networks", json={"networks": []})
    for path in ("/subnets", "/routers", "/ports", "/floatingips"):
        fake_os.neutron(path, json={path.strip("/"): []})
    fake_os.nova("/servers/srv-1", json={"server": nova_server(
        metadata={"cloudnorm:owner": "abc", **items})})
    found = connect().get_server("srv-1")
    assert (found.ssh_user, found.interface_ip, found.ssh_port) == ("debian", "203.0.113.243",
                                                                   2201)
    assert found.host_keys == (ED25519,)


def test_openstack_stores_metadata_in_one_request(connect, fake_os):
    fake_os.nova("/servers/srv-1/metadata", method="POST", json={"metadata": {}})
    connect()._driver.set_server_metadata("srv-1", {"cloudnorm:ssh": "u@1.2.3.4:22"})
    sent = fake_os.requests_to(NOVA + "/servers/srv-1/metadata")
    assert [r.json() for r in sent] == [{"metadata": {"cloudnorm:ssh": "u@1.2.3.4:22"}}]


def test_openstack_lists_every_owned_resource(connect, fake_os):
    fake_os.neutron("/floatingips", json={"floatingips": [
        {"id": "f1", "floating_ip_address": "203.0.113.9", "port_id": None,
         "description": "cloudnorm:owner=aaaaaaaaaaaa", "created_at": "2024-01-01T00:00:00Z"},
        {"id": "f2", "floating_ip_address": "203.0.113.10", "description": "someone's"}]})
    ports = fake_os.neutron("/ports", json={"ports": [
        {"id": "p1", "name": "cloudnorm-eeeeeeeeeeee",
         "description": "cloudnorm:owner=eeeeeeeeeeee", "created_at": "2024-03-01T00:00:00Z"},
        {"id": "p2", "name": "", "description": ""}]})
    fake_os.neutron("/security-groups", json={"security_groups": [
        {"id": "g1", "name": "cloudnorm-bbbbbbbbbbbb",
         "description": "cloudnorm:owner=bbbbbbbbbbbb ssh access"},
        {"id": "g2", "name": "default", "description": "Default security group"}]})
    fake_os.nova("/servers/detail", json={"servers": [
        nova_server("s1", metadata={"cloudnorm:owner": "cccccccccccc"}),
        nova_server("s2", metadata={})]})
    fake_os.nova("/os-keypairs", json={"keypairs": [
        {"keypair": {"name": "cloudnorm-dddddddddddd", "public_key": "k"}},
        {"keypair": {"name": "cloudnorm-laptop", "public_key": "k"}}]})
    fake_os.nova("/os-keypairs/cloudnorm-dddddddddddd", json={"keypair": {
        "name": "cloudnorm-dddddddddddd", "created_at": "2024-02-01T00:00:00.000000"}})
    found = connect()._driver.owned_resources(None)
    assert [(c.kind, c.id, c.owner) for c in found] == [
        ("floating_ip", "f1", "aaaaaaaaaaaa"), ("server", "s1", "cccccccccccc"),
        ("port", "p1", "eeeeeeeeeeee"), ("security_group", "g1", "bbbbbbbbbbbb"),
        ("keypair", "cloudnorm-dddddddddddd", "dddddddddddd")]
    assert found[2].created == datetime.datetime(2024, 3, 1, tzinfo=UTC)
    assert found[4].created == datetime.datetime(2024, 2, 1, tzinfo=UTC)
    assert not any("security-groups?name" in r.url for r in fake_os.requests_to(NEUTRON))
    # Only the fields cleanup needs: a project's ports carry much more.
    assert "fields=description" in ports.last_request.url


# -- cloudnorm ssh --------------------------------------------------------------------------
def test_ssh_argv_accepts_only_the_verified_keys(tmp_path):
    known = cli_ssh.write_known_hosts(server(ssh_port=2201), tmp_path)
    assert known.read_text() == f"[203.0.113.5]:2201 {ED25519}\n"
    assert oct(known.stat().st_mode & 0o777) == "0o600"
    argv = cli_ssh.ssh_argv(server(ssh_port=2201), known, identity="/k", options=["A=b"],
                            command=["id", "-un"])
    assert argv[:5] == ["ssh", "-p", "2201", "-l", "ubuntu"]
    assert "StrictHostKeyChecking=yes" in argv and f"UserKnownHostsFile={known}" in argv
    assert argv[-3:] == ["203.0.113.5", "id", "-un"]
    assert cli_ssh.ssh_argv(server(), known, user="root")[4] == "root"


def test_ssh_without_verified_keys_is_refused(tmp_path):
    from cloudnorm import errors

    with pytest.raises(errors.NotReachable, match="no host keys cloudnorm verified"):
        cli_ssh.write_known_hosts(server(host_keys=(), tags={}), tmp_path)


def test_ssh_with_fingerprints_only_checks_what_the_server_presents(monkeypatch, tmp_path):
    from cloudnorm import errors

    rsa = f"ssh-rsa {RSA_BLOB}"
    tags = hostkeys.login_metadata("ubuntu", "203.0.113.5", 22, (rsa,))
    monkeypatch.setattr(cli_ssh, "keyscan", lambda address, port: [ED25519, rsa])
    lines = cli_ssh.known_hosts_lines(server(host_keys=(), tags=tags))
    assert lines == [f"203.0.113.5 {rsa}"]
    monkeypatch.setattr(cli_ssh, "keyscan", lambda address, port: [ED25519])
    with pytest.raises(errors.HostKeyMismatch):
        cli_ssh.known_hosts_lines(server(host_keys=(), tags=tags))


# -- cleanup --------------------------------------------------------------------------------
def test_leftovers_are_owners_without_a_running_server_old_enough():
    now = datetime.datetime(2024, 1, 1, 12, tzinfo=UTC)
    old, new = now - datetime.timedelta(hours=3), now - datetime.timedelta(minutes=5)
    resources = [
        Created("keypair", "cloudnorm-a", "cloudnorm-a", "a", old),
        Created("floating_ip", "f", "203.0.113.9", "a", old),
        Created("security_group", "g", "cloudnorm-b", "b", None),
        Created("keypair", "cloudnorm-c", "cloudnorm-c", "c", new),  # a create under way
        Created("server", "s", "web", "d", old), Created("security_group", "gd", "", "d"),
        Created("server", "e", "broken", "e", old)]
    live = cleanup.live_owners([server(tags={"cloudnorm:owner": "d"}),
                                server(status="error", tags={"cloudnorm:owner": "e"})])
    assert live == {"d"}
    found, kept = cleanup.group(resources, live, datetime.timedelta(hours=1), now)
    assert [(f.owner, [r.kind for r in f.resources]) for f in found] == [
        ("a", ["floating_ip", "keypair"]), ("b", ["security_group"]), ("e", ["server"])]
    assert found[1].reason == "no server carries its marker; the cloud gives no creation time"
    assert found[2].reason.startswith("its server is in ERROR")
    assert kept == ["c: newest resource made 5m ago, under 1h", "d: its server runs"]


def test_a_server_whose_create_never_finished_is_not_live():
    # The boot marks a waited create in-progress; only its end marks it done. A create
    # killed in between (no rollback could run) leaves a running server nobody has.
    unfinished = server(tags={"cloudnorm:owner": "k", "cloudnorm:create": "in-progress"})
    finished = server(tags={"cloudnorm:owner": "f", "cloudnorm:create": "done"})
    unwaited = server(tags={"cloudnorm:owner": "w"})  # wait=False: the caller's to watch
    assert cleanup.live_owners([unfinished, finished, unwaited]) == {"f", "w"}


def test_parse_age():
    assert cleanup.parse_age("1h") == datetime.timedelta(hours=1)
    assert cleanup.parse_age("90") == datetime.timedelta(seconds=90)
    assert cleanup.parse_age("2d") == datetime.timedelta(days=2)
    with pytest.raises(ValueError):
        cleanup.parse_age("soon")


# -- progress -------------------------------------------------------------------------------
class Pipe(io.StringIO):
    def isatty(self):
        return False


def test_progress_writes_plain_lines_when_not_a_terminal():
    out = Pipe()
    progress = Progress(stream=out)
    progress.step(StepEvent("boot", "started", "booting", 0.1))
    progress.step(StepEvent("login", "waiting", "refused", 1.0))
    progress.step(StepEvent("login", "waiting", "refused again", 1.5))  # throttled
    progress.step(StepEvent("login", "done", "logged in", 2.0))
    progress.close()
    assert out.getvalue().splitlines() == [
        ".. [1/8] boot: booting", ".. [2/8] login: refused", "ok [2/8] login: logged in (2.0s)"]
    assert "\033" not in out.getvalue()


def test_progress_shows_a_wait_only_once_it_lasts():
    import time

    out = Pipe()
    progress = Progress(stream=out, delay=0.3)
    with progress.waiting("quick"):
        pass
    with progress.waiting("slow", "slow done"):
        time.sleep(0.7)
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == ".. slow" and lines[1].startswith("ok slow done (")
    assert len(lines) == 2


# -- the sandbox's bookkeeping --------------------------------------------------------------
def test_sandbox_status_when_nothing_runs(tmp_path):
    info = cli_sandbox.status(tmp_path)
    assert info["running"] is False and info["starting"] is False
    assert cli_sandbox.down(tmp_path) == {"stopped": False, "reason": "no sandbox was running"}


def test_sandbox_usage_says_how_to_enter_its_namespace():
    lines = cli_sandbox.usage({"clouds_yaml": "/s/clouds.yaml", "netns_differs": True,
                               "pid_in_sandbox": 42, "clouds": ["sandbox-x"],
                               "dataplane": True})
    assert lines[0] == "export OS_CLIENT_CONFIG_FILE=/s/clouds.yaml"
    assert "nsenter --net=/proc/42/ns/net cloudnorm inspect sandbox-x" in lines


def test_alive_knows_its_own_process():
    import os

    assert cli_sandbox.alive(os.getpid()) and not cli_sandbox.alive(None)


# -- exit codes -----------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["inspect"], ["nosuchcommand"], ["list"], ["conformance"],
    ["conformance", "c", "--json", "--markdown"], ["cleanup", "c", "--older-than", "soon"],
    ["sandbox", "up", "--bogus"]])
def test_usage_errors_exit_2(args, monkeypatch):
    monkeypatch.delenv("OS_CLOUD", raising=False)
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 2, result.output


def test_cloud_errors_exit_1(write_clouds, monkeypatch):
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", write_clouds({}))
    result = CliRunner().invoke(cli.main, ["list", "-c", "nosuchcloud"])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "nosuchcloud" in result.output


def test_help_loads_no_provider_sdk():
    code = ("import sys\nfrom cloudnorm.cli import main\n"
            "try:\n    main(['list', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('openstack', 'boto3', 'botocore', 'google', 'keystoneauth1', 'asyncssh')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_create_sends_the_user_data_file_as_it_is(tmp_path, monkeypatch):
    import contextlib

    from cloudnorm import errors

    asked = []

    class Cloud:
        settings = types.SimpleNamespace(create_defaults={})

        def create_server(self, request, on_step=None):
            asked.append(request)
            raise errors.InvalidRequest("stop here", field="userdata")

    monkeypatch.setattr(cli, "_connect", lambda name: contextlib.nullcontext(Cloud()))
    key = tmp_path / "op.pub"
    key.write_text("ssh-ed25519 AAAA op\n")
    data = tmp_path / "init.sh"
    data.write_bytes(b"#!/bin/sh\necho \xc3\xa9 > /root/ran\n")
    result = CliRunner().invoke(cli.main, [
        "create", "web1", "-c", "c", "--authorized-key", str(key), "--user-data", str(data),
        "--availability-zone", "az-2", "--security-group", "web", "--security-group", "db"])
    assert result.exit_code == 1 and "stop here" in result.output
    (request,) = asked
    assert request.userdata == data.read_bytes()
    assert (request.availability_zone, request.security_groups) == ("az-2", ("web", "db"))
    assert request.public is None  # the cloud's configuration decides
    for flag, public in (("--private", False), ("--public", True)):
        CliRunner().invoke(cli.main, ["create", "web1", "-c", "c", "--authorized-key",
                                      str(key), flag])
        assert asked[-1].public is public
    CliRunner().invoke(cli.main, ["create", "web1", "-c", "c", "--authorized-key", str(key),
                                  "--boot-from-volume", "--volume-size", "30", "--volume", "1",
                                  "--volume", "2"])
    assert (asked[-1].boot_from_volume, asked[-1].volume_size, asked[-1].volumes) == (
        True, 30, (1, 2))
    refused = CliRunner().invoke(cli.main, ["create", "web1", "-c", "c", "--volume", "0"])
    assert refused.exit_code == 2 and "--volume" in refused.output

"""Host keys read from cloud-init console output."""

import base64
import os

import pytest

from cloudnorm import hostkeys, keys

ED = "AAAAC3NzaC1lZDI1NTE5AAAAIG9tYWtlYmVsaWV2ZWtleWZvcnRlc3RzMDEyMzQ1Njc4"
ED_FP = hostkeys.fingerprint(ED)

CONSOLE = f"""[   12.3] cloud-init[900]: Cloud-init v. 23.1 running 'modules:final'
ci-info: no authorized SSH keys fingerprints found for user ubuntu.
<14>Nov 24 08:00:00 cloud-init: #############################################################
<14>Nov 24 08:00:00 cloud-init: -----BEGIN SSH HOST KEY FINGERPRINTS-----
<14>Nov 24 08:00:00 cloud-init: 256 {ED_FP} root@node (ED25519)
<14>Nov 24 08:00:00 cloud-init: -----END SSH HOST KEY FINGERPRINTS-----
<14>Nov 24 08:00:00 cloud-init: #############################################################
-----BEGIN SSH HOST KEY KEYS-----
ssh-ed25519 {ED} root@node
-----END SSH HOST KEY KEYS-----
"""


def test_parse_reads_keys_and_fingerprints():
    found = hostkeys.parse_console(CONSOLE)
    assert found.keys == (f"ssh-ed25519 {ED}",)
    assert found.fingerprints == (ED_FP,)
    assert found.accepts("ssh-ed25519", ED)


def test_a_key_the_console_did_not_announce_is_rejected():
    other = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519" + os.urandom(36)).decode()
    found = hostkeys.parse_console(CONSOLE)
    assert not found.accepts("ssh-ed25519", other)


def test_fingerprints_alone_are_enough():
    only_fps = CONSOLE.split("-----BEGIN SSH HOST KEY KEYS-----")[0]
    found = hostkeys.parse_console(only_fps)
    assert found.keys == ()
    assert found.accepts("ssh-ed25519", ED)


def test_last_boot_wins():
    other = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519" + b"k" * 36).decode()
    rebooted = CONSOLE + CONSOLE.replace(ED, other).replace(ED_FP, hostkeys.fingerprint(other))
    found = hostkeys.parse_console(rebooted)
    assert found.keys == (f"ssh-ed25519 {other}",)
    assert not found.accepts("ssh-ed25519", ED)


def test_nothing_announced_yet():
    assert not hostkeys.parse_console("[    0.0] Linux version 6.1\nlogin:")
    assert not hostkeys.parse_console(None)


def test_garbage_between_markers_is_ignored():
    junk = "-----BEGIN SSH HOST KEY KEYS-----\nssh-ed25519 !!!notbase64!!! x\n" \
           "-----END SSH HOST KEY KEYS-----"
    assert hostkeys.parse_console(junk).keys == ()


def test_known_hosts_lines_bracket_other_ports():
    assert hostkeys.known_hosts_lines(("ssh-ed25519 AAAA",), "203.0.113.5") == [
        "203.0.113.5 ssh-ed25519 AAAA"]
    assert hostkeys.known_hosts_lines(("ssh-ed25519 AAAA",), "203.0.113.5", 2201) == [
        "[203.0.113.5]:2201 ssh-ed25519 AAAA"]


def test_node_key_never_shows_its_private_half():
    key = keys.generate("cloudnorm-test")
    assert key.public_key.startswith("ssh-ed25519 ") and key.public_key.endswith("cloudnorm-test")
    assert "PRIVATE" in key.private_key
    assert key.private_key not in repr(key) and "PRIVATE" not in repr(key)
    assert "PRIVATE" not in repr(key.as_keypair())


def test_private_key_file_is_0600_and_removed():
    key = keys.generate("k")
    with key.private_key_file() as path:
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert open(path).read() == key.private_key
    assert not os.path.exists(path)


# -- the login user from cloud-init's authorized keys table -------------------------------------
def _table(user: str, public_key: str, method: str = "sha256", prefix: str = "ci-info: ") -> str:
    import base64
    import hashlib

    blob = base64.b64decode(public_key.split()[1])
    digest = hashlib.new(method, blob).hexdigest()
    fp = ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
    rule = "+---------+" + "-" * (len(fp) + 2) + "+---------+---------+"
    return "\n".join(prefix + line for line in (
        f"+++++Authorized keys from /home/{user}/.ssh/authorized_keys for user {user}+++++",
        rule, f"| Keytype | Fingerprint ({method}) | Options | Comment |", rule,
        f"| ssh-ed25519 | {fp} | - | node |", rule))


def test_console_names_the_user_whose_table_holds_the_key():


    mine, other = keys.generate("mine").public_key, keys.generate("other").public_key
    console = "\n".join([
        "[   10.1] cloud-init[812]: ci-info: no authorized SSH keys fingerprints found for "
        "user root.",
        _table("admin", other),
        _table("cloud-user", mine, prefix="[   10.2] cloud-init[812]: ci-info: "),
        "-----BEGIN SSH HOST KEY KEYS-----"])
    assert hostkeys.console_login_users(console, mine) == ("cloud-user",)
    assert hostkeys.console_login_users(console, other) == ("admin",)


def test_console_table_in_another_hash_is_read():


    mine = keys.generate("mine").public_key
    assert hostkeys.console_login_users(_table("core", mine, "sha512"), mine) == ("core",)
    mislabeled = _table("core", mine).replace("(sha256)", "(md5)")
    assert hostkeys.console_login_users(mislabeled, mine) == ()
    unknown = _table("core", mine).replace("(sha256)", "(nohash)")
    assert hostkeys.console_login_users(unknown, mine) == ()


@pytest.mark.parametrize("console", [None, "", "ci-info: | ssh-ed25519 | aa:bb | - | - |",
                                     "no table here\nat all"])
def test_console_without_a_table_names_nobody(console):


    assert hostkeys.console_login_users(console, keys.generate("k").public_key) == ()


def test_malformed_public_key_names_nobody():
    assert hostkeys.console_login_users(_table("core", "ssh-ed25519 AAAA"), "garbage") == ()


def test_login_asks_for_the_host_key_types_held_in_full():
    from cloudnorm import ssh

    held = hostkeys.HostKeys(keys=(f"ssh-ed25519 {ED}", "ssh-rsa AAAAB3NzaC1yc2E"),
                             fingerprints=("SHA256:abc",))
    assert ssh._host_key_algorithms(held) == ["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256",
                                              "ssh-rsa"]
    # only fingerprints, or nothing checked: the server chooses
    assert ssh._host_key_algorithms(hostkeys.HostKeys(fingerprints=("SHA256:x",))) == "default"
    assert ssh._host_key_algorithms(None) == "default"

"""Host keys read from console output: cloud-init's blocks, Fedora CoreOS's issue lines,
and the real consoles of tests/unit/corpus/consoles (SOURCES.md there says where each
comes from)."""

import base64
import hashlib
import os
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from cloudnorm import hostkeys, keys

CORPUS = Path(__file__).parent / "corpus" / "consoles"

# The first kernel line of a boot, as in ec2-ubuntu-14.04-cloud-init-0.7.5.log.
KERNEL_BANNER = ("[    0.000000] Linux version 5.15.0-91-generic (buildd@lcy02-amd64-045) "
                 "(gcc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0) #101-Ubuntu SMP\n")


def _fresh(kind: str, comment: str = "root@node") -> tuple[str, str]:
    """A new host key (``ssh-keygen -t kind`` would make the same kind of key) as its .pub
    line, and its SHA256 fingerprint; for the derived consoles below."""
    private = {"ed25519": ed25519.Ed25519PrivateKey.generate,
               "ecdsa": lambda: ec.generate_private_key(ec.SECP256R1()),
               "rsa": lambda: rsa.generate_private_key(65537, 2048)}[kind]()
    line = private.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}", hostkeys.fingerprint(line.split()[1])


def _keygen_l(pub: str) -> str:
    """``ssh-keygen -l -f`` of a .pub line: bits, fingerprint, comment, (TYPE)."""
    key_type, blob, comment = pub.split(maxsplit=2)
    bits = {"ssh-ed25519": 256, "ecdsa-sha2-nistp256": 256}.get(key_type, 2048)
    label = {"ssh-ed25519": "ED25519", "ecdsa-sha2-nistp256": "ECDSA"}.get(key_type, "RSA")
    return f"{bits} {hostkeys.fingerprint(blob)} {comment} ({label})"


def _cloud_init_blocks(pubs: list[str], fingerprints: bool = True, keys_block: bool = True,
                       tag: str = "<14>Dec  5 10:00:00 cloud-init: ") -> str:
    """What write-ssh-key-fingerprints of cloud-init >= 21.2 prints for these keys (see
    ../../cloudnorm/hostkeys.py and the nocloud-ubuntu-20.04 record)."""
    lines = []
    if fingerprints:
        lines += [tag + "#" * 61, tag + "-----BEGIN SSH HOST KEY FINGERPRINTS-----",
                  *(tag + _keygen_l(p) for p in pubs),
                  tag + "-----END SSH HOST KEY FINGERPRINTS-----", tag + "#" * 61]
    if keys_block:
        lines += ["-----BEGIN SSH HOST KEY KEYS-----", *pubs, "-----END SSH HOST KEY KEYS-----"]
    return "\n".join(lines) + "\n"


def _real(name: str) -> str:
    return (CORPUS / name).read_text()

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
    """A rebuild boots a new kernel and cloud-init prints new keys: the old ones are gone."""
    key, fp = _fresh("ed25519")
    rebuilt = CONSOLE + KERNEL_BANNER + CONSOLE.replace(f"ssh-ed25519 {ED}", key).replace(
        ED_FP, fp)
    found = hostkeys.parse_console(rebuilt)
    assert found.keys == (" ".join(key.split()[:2]),)
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


# -- real consoles ------------------------------------------------------------------------------
# What each console of the corpus announces: the key types kept whole, in the order printed,
# and how many fingerprints. SOURCES.md says where each console comes from.
EXPECTED = {
    # EC2, Ubuntu 14.04, cloud-init 0.7.5: `ec2:` tag without syslog header, MD5 fingerprints
    "ec2-ubuntu-14.04-cloud-init-0.7.5.log": (("ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"), 4),
    # cloud-init 0.7.5 whose blocks came out empty: nothing to check a login against
    "ec2-ubuntu-14.04-cloud-init-0.7.5-empty-blocks.log": ((), 0),
    # Fedora CoreOS: console-login-helper-messages' issue lines, fingerprints only
    "fcos-31-qemu-serial.log": ((), 3),
    "fcos-31-qemu-serial-failed-unit.log": ((), 3),
    # IBM Z HMC console wrapping at 80 columns: a 3072-bit RSA key over 7 lines
    "nocloud-s390x-ubuntu-20.04-wrapped-80-columns.log": (
        ("ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"), 4),
    # the RSA line is cut short in the published console: only two keys are whole
    "nocloud-ubuntu-20.04-cloud-init-21.4.log": (("ecdsa-sha2-nistp256", "ssh-ed25519"), 4),
    # `nova console-log --length=5`: the tail of a keys block, its BEGIN marker cut off
    "nova-console-log-length-5-tail.log": ((), 0),
}


def test_every_corpus_console_has_an_expectation_and_a_source():
    files = sorted(p.name for p in CORPUS.glob("*.log"))
    assert files == sorted(EXPECTED)
    sources = (CORPUS / "SOURCES.md").read_text()
    assert all(f"`{name}`" in sources for name in files)


def _check_whole(found: hostkeys.HostKeys) -> None:
    """Every key kept is a key an SSH library loads, with one of the listed fingerprints."""
    for key in found.keys:
        serialization.load_ssh_public_key(key.encode())
        if found.fingerprints:
            assert hostkeys._fingerprints_of(base64.b64decode(key.split()[1])) & set(
                found.fingerprints)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_console(name):
    found = hostkeys.parse_console(_real(name))
    types, fingerprints = EXPECTED[name]
    assert tuple(k.split()[0] for k in found.keys) == types
    assert len(found.fingerprints) == fingerprints
    _check_whole(found)
    for key in found.keys:
        assert found.accepts(*key.split())


def _wrap(text: str, width: int) -> str:
    """The console as a terminal of ``width`` columns shows it: long lines broken anywhere."""
    return "\n".join(line[i:i + width] for line in text.split("\n")
                     for i in range(0, max(len(line), 1), width))


@pytest.mark.parametrize("width", [80, 64])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_console_wrapped_reads_the_same(name, width):
    assert hostkeys.parse_console(_wrap(_real(name), width)) == hostkeys.parse_console(
        _real(name))


def test_md5_fingerprints_of_old_ssh_keygen_check_keys():
    found = hostkeys.parse_console(_real("ec2-ubuntu-14.04-cloud-init-0.7.5.log"))
    assert "MD5:7c:c6:6b:54:49:25:48:0a:16:be:5f:24:75:c4:9a:dd" in found.fingerprints
    blob = found.keys[1].split()[1]
    assert hostkeys.HostKeys(fingerprints=found.fingerprints).accepts("ssh-ed25519", blob)
    assert not hostkeys.HostKeys(fingerprints=found.fingerprints).accepts(
        "ssh-ed25519", _fresh("ed25519")[0].split()[1])


def test_fcos_issue_fingerprints_check_keys_without_whole_keys():
    found = hostkeys.parse_console(_real("fcos-31-qemu-serial.log"))
    assert found.fingerprints[0] == "SHA256:xIVCnEx8x8cfiwijGLOs+iaojfVs/Nkt//ZEcM2i/EY"
    assert found.keys == ()


# -- several boots in one console ---------------------------------------------------------------
EC2 = "ec2-ubuntu-14.04-cloud-init-0.7.5.log"
NOCLOUD = "nocloud-ubuntu-20.04-cloud-init-21.4.log"
STAGE = "Cloud-init v. 21.4 running 'init' at Fri, 05 Dec 2025 10:00:00 +0000. Up 5.0 seconds.\n"
DONE = "Cloud-init v. 21.4 finished at Fri, 05 Dec 2025 10:00:09 +0000. Up 9.0 seconds\n"


def test_a_reboot_keeps_the_first_boots_keys():
    """keys_to_console runs once per instance: after a plain reboot nothing new is printed."""
    rebooted = _real(EC2) + KERNEL_BANNER + STAGE + "ubuntu login:\n" + DONE
    assert hostkeys.parse_console(rebooted) == hostkeys.parse_console(_real(EC2))


def test_a_rebuild_takes_keys_and_fingerprints_from_its_own_boot_only():
    pubs = [_fresh("ed25519")[0], _fresh("ecdsa")[0]]
    rebuilt = _real(NOCLOUD) + KERNEL_BANNER + STAGE + _cloud_init_blocks(pubs, fingerprints=False)
    found = hostkeys.parse_console(rebuilt + DONE)
    assert found.keys == tuple(" ".join(p.split()[:2]) for p in pubs)
    assert found.fingerprints == ()  # the first boot's are not this boot's


def test_a_block_missing_its_end_does_not_run_into_the_next_boot():
    first = _real(NOCLOUD).replace("-----END SSH HOST KEY KEYS-----\n", "")
    pub, fp = _fresh("ed25519")
    found = hostkeys.parse_console(first + KERNEL_BANNER + STAGE + _cloud_init_blocks([pub]))
    assert found == hostkeys.HostKeys(keys=(" ".join(pub.split()[:2]),), fingerprints=(fp,))
    # Nor within one boot: a cut keys block yields no keys, and no later block stands in.
    alone = hostkeys.parse_console(first + _cloud_init_blocks([pub], fingerprints=False))
    assert alone.keys == () and len(alone.fingerprints) == 4


def test_a_new_boot_whose_cloud_init_is_still_running_is_waited_for():
    booting = _real(EC2) + KERNEL_BANNER + STAGE
    assert not hostkeys.parse_console(booting)
    assert hostkeys.parse_console(booting + DONE) == hostkeys.parse_console(_real(EC2))
    # journald's copy of the last line often lands after the login prompt (as
    # "i-05d4... login: [   23.50] cloud-init[968]: Cloud-init v. ..." on EC2)
    glued = booting + "ubuntu login: [   23.754086] cloud-init[968]: " + DONE
    assert hostkeys.parse_console(glued) == hostkeys.parse_console(_real(EC2))


def test_journalds_copy_of_the_blocks_interleaved_with_the_direct_one_is_harmless():
    """cloud-init writes to /dev/console and, through systemd, journald forwards the same
    lines with ``[uptime] cloud-init[pid]:`` in front; the two copies interleave."""
    direct = _real(NOCLOUD).splitlines(keepends=True)
    both = "".join(line + "[  317.2] cloud-init[1278]: " + line for line in direct)
    assert hostkeys.parse_console(both) == hostkeys.parse_console(_real(NOCLOUD))
    journal_only = "".join("[  317.2] cloud-init[1278]: " + line for line in direct)
    assert hostkeys.parse_console(journal_only) == hostkeys.parse_console(_real(NOCLOUD))


def test_fcos_takes_the_latest_boots_issue():
    first, second = _real("fcos-31-qemu-serial.log"), _real("fcos-31-qemu-serial-failed-unit.log")
    found = hostkeys.parse_console(KERNEL_BANNER + first + KERNEL_BANNER + second)
    assert found.fingerprints == ("SHA256:bA3Gzr14lUU740T8Ib8XXpgggN/desPPyyLSd93n0Vk",
                                  "SHA256:o7p+qOEh5zWRszRwUlLY/uxftz5v4QxuYFTEoJO7UqY",
                                  "SHA256:mRXimZXpHhieyPcHOU8DK3sKDIwC2nihSOV6WNjPZJw")
    # getty shows the issue again with every prompt: the same fingerprints, not more
    again = second + "\nLogin incorrect\n\n" + second
    assert hostkeys.parse_console(again) == hostkeys.parse_console(second)


# -- what cloud-init did not print --------------------------------------------------------------
def test_a_block_after_cloud_inits_in_the_same_boot_is_ignored():
    pub, _ = _fresh("ed25519")
    forged = _real(NOCLOUD) + "ubuntu login: root\nPassword:\n" + _cloud_init_blocks([pub])
    assert hostkeys.parse_console(forged) == hostkeys.parse_console(_real(NOCLOUD))


def test_text_typed_at_the_login_prompt_is_not_a_block():
    """The serial console echoes what is typed after ``login:``; cloud-init's markers and
    the issue's lines start their line."""
    pub, fp = _fresh("ed25519")
    typed = "".join(f"vm1 login: {line}\nPassword:\n\nLogin incorrect\n"
                    for line in _cloud_init_blocks([pub], tag="").splitlines())
    assert not hostkeys.parse_console(typed)
    fcos = _real("fcos-31-qemu-serial.log")
    issue = fcos + f"localhost login: SSH host key: {fp} (ED25519)\n"
    assert hostkeys.parse_console(issue) == hostkeys.parse_console(fcos)


@pytest.mark.parametrize("tag", ["", "ec2[4242]: ", "<14>Dec  5 10:00:00 sshd: "])
def test_a_fingerprint_block_without_loggers_tag_is_not_cloud_inits(tag):
    """write-ssh-key-fingerprints pipes the block through ``logger -s -t ec2`` (``-t
    cloud-init`` since 21.2), which never adds a pid; a wall message always has one."""
    pub, fp = _fresh("ed25519")
    found = hostkeys.parse_console(_cloud_init_blocks([pub], tag=tag))
    assert found.fingerprints == ()
    assert found.keys == (" ".join(pub.split()[:2]),)


def test_a_key_without_a_listed_fingerprint_is_dropped():
    real = hostkeys.parse_console(_real(NOCLOUD))
    ed = next(k for k in real.keys if k.startswith("ssh-ed25519"))
    swapped = _real(NOCLOUD).replace(ed, " ".join(_fresh("ed25519")[0].split()[:2]))
    found = hostkeys.parse_console(swapped)
    assert [k.split()[0] for k in found.keys] == ["ecdsa-sha2-nistp256"]
    assert found.fingerprints == real.fingerprints


# -- keys that are not whole --------------------------------------------------------------------
KERNEL_MESSAGE = "[   12.345678] random: crng init done"


@pytest.mark.parametrize("glue", ["", "\n"])
def test_a_key_line_split_by_a_kernel_message_is_not_stored(glue):
    real = hostkeys.parse_console(_real(NOCLOUD))
    ed = next(k for k in real.keys if k.startswith("ssh-ed25519"))
    cut = 12 + 44  # inside the blob, on a base64 quantum: the first half still decodes
    split = _real(NOCLOUD).replace(ed, ed[:cut] + glue + KERNEL_MESSAGE + "\n" + ed[cut:])
    found = hostkeys.parse_console(split)
    assert ed not in found.keys and ed[:cut] not in found.keys
    assert [k.split()[0] for k in found.keys] == ["ecdsa-sha2-nistp256"]
    assert found.accepts(*ed.split())  # its fingerprint still checks it


def test_a_kernel_message_between_lines_of_a_block_is_skipped():
    lines = _real(NOCLOUD).splitlines(keepends=True)
    noisy = "".join(line + (KERNEL_MESSAGE + "\n" if "SSH HOST KEY" in line or
                            line.startswith("ecdsa") else "") for line in lines)
    assert hostkeys.parse_console(noisy) == hostkeys.parse_console(_real(NOCLOUD))


def _blob(*fields: bytes) -> str:
    return base64.b64encode(b"".join(len(f).to_bytes(4, "big") + f for f in fields)).decode()


def test_valid_key_wants_the_whole_wire_format():
    ed, rsa_key, ecdsa = (_fresh(kind)[0].split()[:2] for kind in ("ed25519", "rsa", "ecdsa"))
    for key_type, blob in (ed, rsa_key, ecdsa):
        assert hostkeys.valid_key(key_type, blob)
        raw = base64.b64decode(blob)
        assert not hostkeys.valid_key(key_type, base64.b64encode(raw[:-4]).decode())  # cut
        assert not hostkeys.valid_key(key_type, base64.b64encode(raw + b"\0").decode())
        assert not hostkeys.valid_key(key_type, blob[:-4])  # base64 cut on a quantum
        assert not hostkeys.valid_key("ssh-dss", blob)  # the line's type is not the blob's
    assert not hostkeys.valid_key("ssh-ed25519", _blob(b"ssh-ed25519", b"k" * 31))
    point = bytearray(base64.b64decode(ecdsa[1]))
    point[-1] ^= 1  # off the curve
    assert not hostkeys.valid_key(ecdsa[0], base64.b64encode(bytes(point)).decode())
    assert not hostkeys.valid_key("ssh-rsa", _blob(b"ssh-rsa", b"\x01\x00\x01", b"\x80" * 256))
    assert not hostkeys.valid_key("ssh-ed25519", ed[1][:-1] + "=")  # not canonical base64
    # a type cloudnorm has no fields for: the name must match and the base64 be whole
    assert hostkeys.valid_key("ssh-xmss@openssh.com", _blob(b"ssh-xmss@openssh.com", b"x"))
    assert not hostkeys.valid_key("ssh-xmss@openssh.com", _blob(b"ssh-ed25519", b"x" * 32))


# -- the login user from tables of the latest boot ----------------------------------------------
def test_real_table_of_md5_fingerprints_is_read():
    lines = hostkeys._lines(_real(EC2))
    tables = hostkeys._authorized_tables(hostkeys._boots(lines)[-1])
    assert tables == [("ubuntu", "md5", [
        ["ssh-rsa", "4c:73:9d:e5:f4:60:09:77:2e:09:1e:52:e3:79:78:26", "-",
         "packer 5b8e2fbf-372c-b3c9-32b3-b01e379e886d"],
        ["ssh-rsa", "d6:94:ef:4e:e0:26:35:50:a0:72:8c:13:e9:f5:b8:6d", "-",
         "spinnaker_developer"]])]
    assert hostkeys.console_login_users(_real(EC2), keys.generate("k").public_key) == ()


def test_tables_of_an_older_boot_are_not_read():
    mine, other = keys.generate("mine").public_key, keys.generate("other").public_key
    console = "\n".join([_table("admin", mine), KERNEL_BANNER, _table("cloud-user", other)])
    assert hostkeys.console_login_users(console, mine) == ()
    assert hostkeys.console_login_users(console, other) == ("cloud-user",)


def test_tables_after_the_host_keys_or_repeated_are_not_cloud_inits():
    mine, other = keys.generate("mine").public_key, keys.generate("other").public_key
    console = "\n".join([_table("ubuntu", other), _table("ubuntu", mine),
                         _cloud_init_blocks([_fresh("ed25519")[0]]), _table("root", mine)])
    assert hostkeys.console_login_users(console, mine) == ()
    assert hostkeys.console_login_users(console, other) == ("ubuntu",)


def test_a_table_wrapped_at_80_columns_is_read():
    mine = keys.generate("mine").public_key
    assert hostkeys.console_login_users(_wrap(_table("rocky", mine), 80), mine) == ("rocky",)


# -- the sandbox's nodes: the real cloud-init 22.4.2 ---------------------------------------------
# Consoles captured from data plane nodes running Debian's cloud-init 22.4.2 (see
# corpus/consoles/cloud-init-22.4.2-debian-console.md): what the sandbox clouds publish.
SANDBOX = "cloud-init-22.4.2-debian-console.txt"
SANDBOX_QUIET = "cloud-init-22.4.2-debian-console-no-host-keys.txt"
SANDBOX_OPERATOR = ("ssh-ed25519 "
                    "AAAAC3NzaC1lZDI1NTE5AAAAILCD33rzUi4Ul0v7yBurFVjKkHK/uZSId65tflkjsTF2 "
                    "operator@cloudnorm-tests")


def test_the_sandbox_console_parses():
    text = _real(SANDBOX)
    found = hostkeys.parse_console(text)
    printed = re.findall(r"^((?:ssh|ecdsa)-\S+ \S+) root@node-1$", text, re.M)
    assert [k.split()[0] for k in printed] == ["ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"]
    assert found.keys == tuple(printed)
    assert found.fingerprints == tuple(hostkeys.fingerprint(k.split()[1]) for k in printed)
    _check_whole(found)
    assert hostkeys.console_login_users(text, SANDBOX_OPERATOR) == ("debian",)
    assert hostkeys.console_login_users(text, keys.generate("other").public_key) == ()
    assert hostkeys.parse_console(_wrap(text, 80)) == found


def test_the_sandbox_console_without_key_blocks_announces_nothing():
    """ssh-keygen's own "The key fingerprint is:" lines are on it, but they are no
    announcement: only cloud-init's blocks are."""
    text = _real(SANDBOX_QUIET)
    assert "The key fingerprint is:" in text and "finished at" in text
    assert not hostkeys.parse_console(text)
    assert hostkeys.console_login_users(text, SANDBOX_OPERATOR) == ("debian",)


def test_the_sandbox_console_before_its_final_stage_is_undecided():
    """sshd answers before cloud-init's final stage has printed the keys (as on a real
    cloud): a console cut there gives nothing yet, and nothing of an older boot."""
    text = _real(SANDBOX)
    cut = text[:text.index("Cloud-init v. 22.4.2 running 'modules:final'")]
    assert not hostkeys.parse_console(cut)
    assert not hostkeys.parse_console(_real(NOCLOUD) + cut)


def test_table_digest_helper_matches_cloud_init():
    # cloud-init's _gen_fingerprint: hashlib over the decoded blob, hex in pairs
    blob = base64.b64decode(ED)
    assert hostkeys._hex_fingerprint(blob, "sha256") == ":".join(
        re.findall("..", hashlib.sha256(blob).hexdigest()))
    assert hostkeys._hex_fingerprint(blob, "nohash") is None

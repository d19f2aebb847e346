"""Consoles made of the pieces real ones hold, shuffled, cut, wrapped and interleaved:
parsing them never raises, and whatever is accepted is a whole key that the listed
fingerprints (when there are any) vouch for."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st

from cloudnorm import hostkeys

from . import fuzzing


def _pub(private) -> str:
    return private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


# Real keys from the corpus (nocloud-ubuntu-20.04-cloud-init-21.4.log) and fresh ones.
KEYS = [
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHN14OCnYTeMh09qRz"
    "mWhtXsCgMOQu5S4WLksyBkQsNFil50MPdN8EoE0hh4dw70UzctiMXmQW/vStGeeyLv7OA=",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHtOReNwl7HPAz5EUR/6mRdACoNszPBcSS9tCUeot7CE",
    _pub(ed25519.Ed25519PrivateKey.generate()),
    _pub(ec.generate_private_key(ec.SECP384R1())),
    _pub(rsa.generate_private_key(65537, 2048)),
]

PREFIXES = ["", "ec2: ", "<14>Dec  5 10:00:00 ec2: ", "<14>Dec  5 10:00:00 cloud-init: ",
            "[   21.500000] cloud-init[977]: ", "[   21.500000] ", "ec2[4242]: ", "vm login: "]
MARKERS = [f"-----{edge} SSH HOST KEY {kind}-----"
           for kind in ("FINGERPRINTS", "KEYS") for edge in ("BEGIN", "END")]


def _keygen_l(key: str) -> str:
    return f"256 {hostkeys.fingerprint(key.split()[1])} root@node (TYPE)"


@st.composite
def key_lines(draw) -> str:
    key = draw(st.sampled_from(KEYS))
    how = draw(st.sampled_from(["whole", "cut", "flip", "comment"]))
    if how == "cut":
        return key[:draw(st.integers(0, len(key)))]
    if how == "flip":
        at = draw(st.integers(len(key.split()[0]) + 1, len(key) - 1))
        return key[:at] + draw(st.sampled_from("A/+0z=")) + key[at + 1:]
    return key + (" root@node" if how == "comment" else "")


pieces = st.one_of(
    st.tuples(st.sampled_from(PREFIXES), st.sampled_from(MARKERS)).map("".join),
    key_lines(),
    st.tuples(st.sampled_from(PREFIXES), st.sampled_from(KEYS).map(_keygen_l)).map("".join),
    st.sampled_from(KEYS).map(lambda k: f"SSH host key: {hostkeys.fingerprint(k.split()[1])} "
                                        "(ED25519)"),
    st.sampled_from([
        "[    0.000000] Linux version 6.1.0-13-amd64 (debian-kernel@lists.debian.org)",
        "[    5.100000] cloud-init[600]: Cloud-init v. 24.4 running 'init-local' at now.",
        "Cloud-init v. 24.4 running 'init' at Fri, 05 Dec 2025 10:00:00 +0000.",
        "Cloud-init v. 24.4 finished at Fri, 05 Dec 2025 10:00:09 +0000.",
        "[   12.345678] random: crng init done", "ubuntu login: ", "", "\r", "\x00",
        "ci-info: ++++Authorized keys from /home/u/.ssh/authorized_keys for user u++++",
        "ci-info: +---------+------+---------+---------+",
        "ci-info: | Keytype | Fingerprint (sha256) | Options | Comment |",
        "ci-info: | ssh-ed25519 | aa:bb | - | x |",
    ]),
    st.text(max_size=40),
)


@st.composite
def consoles(draw) -> str:
    lines = draw(st.lists(pieces, max_size=40))
    # a narrow console breaks every long line
    return _wrapped("\n".join(lines), draw(st.sampled_from([0, 0, 80, 64, 33])))


@st.composite
def announcing_consoles(draw) -> str:
    """cloud-init's two blocks for some keys (the fingerprints of some keys, not always the
    same ones), key lines whole or damaged, other lines landing anywhere in between."""
    tag = draw(st.sampled_from(PREFIXES[1:5] + [""]))
    listed = draw(st.lists(st.sampled_from(KEYS), max_size=4))
    lines = [tag + MARKERS[0], *(tag + _keygen_l(k) for k in listed), tag + MARKERS[1]]
    if draw(st.booleans()):
        lines = []
    lines += [MARKERS[2], *draw(st.lists(key_lines(), min_size=1, max_size=4)), MARKERS[3]]
    for _ in range(draw(st.integers(0, 6))):
        lines.insert(draw(st.integers(0, len(lines))), draw(pieces))
    return draw(st.sampled_from(["", "\n".join(draw(st.lists(pieces, max_size=5))) + "\n"])) \
        + _wrapped("\n".join(lines), draw(st.sampled_from([0, 0, 80, 64, 33])))


def _wrapped(text: str, width: int) -> str:
    if not width:
        return text
    return "\n".join(line[i:i + width] for line in text.split("\n")
                     for i in range(0, max(len(line), 1), width))


@fuzzing.FUZZ
@given(consoles() | announcing_consoles())
def test_console_parser_accepts_only_whole_vouched_keys(text):
    found = hostkeys.parse_console(text)
    for key in found.keys:
        key_type, blob = key.split()
        loaded = serialization.load_ssh_public_key(key.encode())
        assert loaded.public_bytes(serialization.Encoding.OpenSSH,
                                   serialization.PublicFormat.OpenSSH).decode().split()[0] \
            == key_type
        if found.fingerprints:
            assert hostkeys._fingerprints_of(base64.b64decode(blob)) & set(found.fingerprints)
    for fp in found.fingerprints:
        assert fp.startswith(("SHA256:", "MD5:"))


@fuzzing.FUZZ
@given(consoles(), st.sampled_from(KEYS))
def test_login_user_lookup_never_raises(text, key):
    users = hostkeys.console_login_users(text, key + " me")
    assert isinstance(users, tuple) and all(isinstance(u, str) for u in users)


@fuzzing.FUZZ
@given(st.text(max_size=300), st.sampled_from(["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256",
                                               "sk-ssh-ed25519@openssh.com", "ssh-dss", "x"]))
def test_valid_key_never_raises(blob, key_type):
    assert hostkeys.valid_key(key_type, blob) in (True, False)

"""Host keys as a server's console announces them, and checks against them.

The console reaches cloudnorm over the cloud's API (Nova's console log, EC2's
GetConsoleOutput, GCE's serial port), a channel the network between cloudnorm and
the server cannot tamper with, so it is what host keys are verified against. Two
announcements are read:

* cloud-init's keys_to_console module (once per instance) runs
  ``write-ssh-key-fingerprints``: the ``ssh-keygen -l`` lines between
  ``-----BEGIN/END SSH HOST KEY FINGERPRINTS-----``, piped through ``logger -s``
  so that each line carries logger's tag (``ec2:`` up to cloud-init 21.1,
  ``cloud-init:`` since, after an optional ``<14>Mon dd hh:mm:ss`` header), then
  the ``.pub`` files as they are between ``-----BEGIN/END SSH HOST KEY KEYS-----``.
* Fedora CoreOS / RHCOS have no cloud-init: console-login-helper-messages puts
  ``SSH host key: SHA256:... (TYPE)`` lines in /etc/issue, which getty shows with
  every login prompt. Those are fingerprints only.

A console is not one boot, nor only cloud-init's: it keeps earlier boots (a reboot,
a rebuild), the kernel and journald write into it at any moment, some consoles wrap
at 80 columns, and whatever anyone types at the login prompt is echoed into it. So
the console is cut into boots; only the latest boot that announced keys counts;
within it only the first block of each kind, begun at the start of a line by
cloud-init's own channel, counts (cloud-init prints each once; a later one is
someone else's); keys must be whole SSH public keys, and when the same boot lists
fingerprints, every key must have one of them.

The same console names the login user: cloud-init's ssh-authkey-fingerprints
module (on unless ``no_ssh_fingerprints: true``) prints, per configured user, a
``ci-info:`` table of that user's authorized keys, just before the host keys. The
user whose table holds the key cloudnorm injected is the one to log in as, found
without a single failed login.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterator

import attrs

from cloudnorm.sshkeys import valid_key

_FINGERPRINTS, _KEYS = "FINGERPRINTS", "KEYS"
_MARKERS = {f"-----{edge} SSH HOST KEY {kind}-----": (kind, edge == "BEGIN")
            for kind in (_FINGERPRINTS, _KEYS) for edge in ("BEGIN", "END")}

# What sits in front of a line's text: the kernel's timestamp, then the identifier
# journald forwards a service's output under, then logger's header and tag. logger
# -s never adds a pid to the tag; a wall message (any local user's `logger -p emerg`)
# always has one, so ``ec2[123]:`` is not taken for logger's tag.
_KERNEL_TIME = re.compile(r"\[\s*\d+\.\d+\] ?")
_JOURNAL_IDENT = re.compile(r"([A-Za-z0-9_.@-]+)\[\d+\]: ?")
_LOGGER_TAG = re.compile(r"(?:<\d{1,3}>)?(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d )?"
                         r"(ec2|cloud-init):(?: |$)")
_CLOUD_INIT_IDENT = "cloud-init"

_KERNEL_BANNER = re.compile(r"Linux version \d+\.\d+")
_STAGE = re.compile(r"Cloud-init v\. \S+ running '(init-local|init|modules:\w+)'")
_FINISHED = re.compile(r"Cloud-init v\. \S+ finish")

_KEY_START = re.compile(r"((?:ssh|ecdsa|sk)-[a-z0-9@.-]+) ([A-Za-z0-9+/]*={0,2})(.*)")
_B64_RUN = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_FP = (r"(SHA256:[A-Za-z0-9+/]{43}=?|MD5(?::[0-9a-f]{2}){16}|"
       r"[0-9a-f]{2}(?::[0-9a-f]{2}){15})(?=\s|$)")
_FP_ENTRY = re.compile(r"\d+ " + _FP)
_ISSUE_ENTRY = re.compile(r"SSH host key: " + _FP)

#: Longest wrapped key worth reassembling: a 16384-bit RSA key is ~2.8k base64 chars.
_MAX_CONTINUATION_LINES = 40


@attrs.frozen
class HostKeys:
    """What the console says about a server's host keys.

    ``keys`` are ``"<type> <base64>"`` strings (known_hosts form without a host);
    ``fingerprints`` are ``SHA256:...`` strings, or ``MD5:aa:bb:...`` where the image's
    ssh-keygen predates SHA256 fingerprints (OpenSSH < 6.8).
    """

    keys: tuple[str, ...] = ()
    fingerprints: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.keys or self.fingerprints)

    def accepts(self, key_type: str, key_base64: str) -> bool:
        """True when a key the server presented is one the console announced."""
        if f"{key_type} {key_base64}" in self.keys:
            return True
        try:
            blob = base64.b64decode(key_base64, validate=True)
        except (binascii.Error, ValueError):
            return False
        # The blob names its own type, so the same blob under another algorithm name
        # (rsa-sha2-512 for ssh-rsa) is the same key.
        if any(key.split()[1:2] == [key_base64] for key in self.keys):
            return True
        return bool(_fingerprints_of(blob) & set(self.fingerprints))


def fingerprint(key_base64: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob."""
    digest = hashlib.sha256(base64.b64decode(key_base64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _fingerprints_of(blob: bytes) -> set[str]:
    sha = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    md5 = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return {sha, "MD5:" + ":".join(md5[i:i + 2] for i in range(0, len(md5), 2))}


def _normal_fingerprint(text: str) -> str:
    if text.startswith("SHA256:"):
        return text.rstrip("=")
    return text if text.startswith("MD5:") else "MD5:" + text


# -- the console, line by line and boot by boot -------------------------------------------------
@attrs.frozen
class _Line:
    """One console line: ``text`` is what is left once the prefixes are taken off;
    ``journal`` is ``""`` (written to the console directly), ``"-"`` (a kernel message)
    or the identifier journald forwarded it under; ``tag`` is logger's tag or ``""``."""

    text: str
    journal: str = ""
    tag: str = ""

    @property
    def bare(self) -> bool:
        return not self.journal and not self.tag

    @property
    def from_cloud_init(self) -> bool:
        return self.journal in ("", _CLOUD_INIT_IDENT)


def _lines(text: str) -> list[_Line]:
    lines = []
    for raw in text.replace("\x00", "").split("\n"):
        rest, journal, tag = raw.strip("\r"), "", ""
        stamp = _KERNEL_TIME.match(rest)
        if stamp:
            rest, journal = rest[stamp.end():], "-"
            ident = _JOURNAL_IDENT.match(rest)
            if ident:
                rest, journal = rest[ident.end():], ident.group(1)
        logged = _LOGGER_TAG.match(rest)
        if logged:
            rest, tag = rest[logged.end():], logged.group(1)
        lines.append(_Line(rest.rstrip(), journal, tag))
    return lines


def _match_wrapped(pattern: re.Pattern[str], lines: list[_Line], i: int) -> re.Match[str] | None:
    """``pattern`` at the start of line ``i``, or of it joined with the next line (a
    console that wraps long lines breaks them anywhere)."""
    found = pattern.match(lines[i].text)
    if found is None and i + 1 < len(lines) and lines[i + 1].bare:
        found = pattern.match(lines[i].text + lines[i + 1].text)
    return found


def _boots(lines: list[_Line]) -> list[list[_Line]]:
    """The console cut where a boot starts: the kernel's banner, or cloud-init's first
    stage (for consoles that show no kernel messages)."""
    boots: list[list[_Line]] = [[]]
    local_seen = False
    for i, line in enumerate(lines):
        starts = False
        if line.journal in ("", "-") and not line.tag and _KERNEL_BANNER.match(line.text):
            starts, local_seen = True, False
        elif line.from_cloud_init and not line.tag:
            stage = _match_wrapped(_STAGE, lines, i)
            if stage and stage.group(1) == "init-local":
                starts, local_seen = True, True
            elif stage and stage.group(1) == "init":
                starts, local_seen = not local_seen, False
        if starts and boots[-1]:
            boots.append([])
        boots[-1].append(line)
    return boots


def _undecided(boot: list[_Line]) -> bool:
    """cloud-init ran in this boot and has not finished: it may yet print keys. (Looked
    for anywhere in a line: journald's copy of these lines often lands after a login
    prompt. Text that fakes them only makes cloudnorm wait, or fall back to keys the
    login then checks.)"""
    running = finished = False
    for i, line in enumerate(boot):
        text = line.text + (boot[i + 1].text if i + 1 < len(boot) and boot[i + 1].bare else "")
        running = running or _STAGE.search(text) is not None
        finished = finished or _FINISHED.search(text) is not None
    return running and not finished


# -- cloud-init's blocks ------------------------------------------------------------------------
def _marker(lines: list[_Line], i: int) -> tuple[str, int] | None:
    """The block marker line ``i`` starts with, and how many lines it spans."""
    text = lines[i].text
    if text in _MARKERS:
        return text, 1
    if not text.startswith("-----"):
        return None
    for j in range(i + 1, min(i + 3, len(lines))):
        if not any(m.startswith(text) for m in _MARKERS) or not lines[j].bare:
            return None
        text += lines[j].text
        if text in _MARKERS:
            return text, j - i + 1
    return None


@attrs.frozen
class _Block:
    channel: tuple[str, str]  # the (journal, tag) its BEGIN marker came with
    lines: list[_Line]  # everything between its markers, other writers' lines included
    whole: bool  # its END marker came before anything else started


def _first_block(boot: list[_Line], kind: str) -> _Block | None:
    """The first block of ``kind`` cloud-init printed in this boot; None when it
    printed none."""
    for i, line in enumerate(boot):
        found = _marker(boot, i)
        if found is None or _MARKERS[found[0]] != (kind, True) or not line.from_cloud_init:
            continue
        if kind == _FINGERPRINTS and not line.tag:
            continue  # logger tags every line of cloud-init's fingerprint block
        channel = (line.journal, line.tag)
        start = i + found[1]
        for j in range(start, len(boot)):
            other = _marker(boot, j)
            if other is not None and (boot[j].journal, boot[j].tag) == channel:
                # Another block starting before this one ended means this one was cut.
                return _Block(channel, boot[start:j], _MARKERS[other[0]] == (kind, False))
        return _Block(channel, boot[start:], False)
    return None


def _entries(block: list[_Line], channel: tuple[str, str]) -> Iterator[tuple[int, _Line]]:
    for i, line in enumerate(block):
        if (line.journal, line.tag) == channel:
            yield i, line


def _block_keys(block: list[_Line], channel: tuple[str, str]) -> list[str]:
    keys: list[str] = []
    for i, line in _entries(block, channel):
        start = _KEY_START.fullmatch(line.text)
        if start is None:
            continue
        key_type, blob, rest = start.groups()
        if rest and not rest[0].isspace():
            continue  # something other than a comment is glued to the blob
        if not rest:
            # The blob reached the end of the line: a wrapped line goes on in the next.
            for more in block[i + 1:i + 1 + _MAX_CONTINUATION_LINES]:
                if valid_key(key_type, blob) or not more.bare:
                    break
                run = _B64_RUN.match(more.text)
                assert run is not None
                blob += run.group(0)
                if run.end() != len(more.text):
                    break
        if valid_key(key_type, blob):
            keys.append(f"{key_type} {blob}")
    return keys


def _joined_match(pattern: re.Pattern[str], block: list[_Line], i: int) -> re.Match[str] | None:
    text = block[i].text
    for more in [*block[i + 1:i + 3], None]:
        found = pattern.match(text)
        if found or more is None or not more.bare:
            return found
        text += more.text
    return None


def _block_fingerprints(block: list[_Line], channel: tuple[str, str]) -> list[str]:
    found = (_joined_match(_FP_ENTRY, block, i) for i, _ in _entries(block, channel))
    return [_normal_fingerprint(m.group(1)) for m in found if m]


def _issue_fingerprints(boot: list[_Line]) -> list[str]:
    """The first run of ``SSH host key:`` lines getty showed in this boot (it shows them
    again with every prompt; a later run is no more trustworthy than the first)."""
    fps: list[str] = []
    gap = 0
    for i, line in enumerate(boot):
        if not line.bare:
            continue  # kernel or journal lines may land between the issue's lines
        found = _joined_match(_ISSUE_ENTRY, boot, i)
        if found:
            fps.append(_normal_fingerprint(found.group(1)))
            gap = 0
        elif fps:
            gap += 1  # the rest of a wrapped line, at most
            if gap > 1 or not line.text:
                break
    return fps


def _announced(boot: list[_Line]) -> HostKeys | None:
    """What this boot announced, or None when it announced nothing."""
    fp_block, key_block = _first_block(boot, _FINGERPRINTS), _first_block(boot, _KEYS)
    if fp_block is None and key_block is None:
        issue = _issue_fingerprints(boot)
        return HostKeys(fingerprints=tuple(dict.fromkeys(issue))) if issue else None
    fps = _block_fingerprints(fp_block.lines, fp_block.channel) if fp_block and fp_block.whole \
        else []
    keys = _block_keys(key_block.lines, key_block.channel) if key_block and key_block.whole \
        else []
    if fps:
        listed = set(fps)
        keys = [k for k in keys if _fingerprints_of(base64.b64decode(k.split()[1])) & listed]
    return HostKeys(keys=tuple(dict.fromkeys(keys)), fingerprints=tuple(dict.fromkeys(fps)))


def parse_console(text: str | None) -> HostKeys:
    """The host keys and fingerprints the latest boot that announced any printed."""
    if not text:
        return HostKeys()
    for boot in reversed(_boots(_lines(text))):
        found = _announced(boot)
        if found is not None:
            return found
        if _undecided(boot):
            return HostKeys()  # an older boot's keys may be gone (a rebuild): wait
    return HostKeys()


def _valid_blob(blob: str) -> bool:
    try:
        base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def known_hosts_lines(host_keys: tuple[str, ...], address: str, port: int = 22) -> list[str]:
    """known_hosts lines for ``address`` (bracketed when the port is not 22)."""
    host = address if port == 22 else f"[{address}]:{port}"
    return [f"{host} {key}" for key in host_keys]


#: Server metadata (tags) where create_server leaves how to log in: ``user@address:port``.
LOGIN_KEY = "cloudnorm:ssh"
#: Prefix of one metadata item per verified host key, named by key type.
HOST_KEY_PREFIX = "cloudnorm:host_key:"
#: Longest value every supported cloud stores (Nova metadata: 255, EC2 tags: 256).
METADATA_VALUE_MAX = 255


@attrs.frozen
class LoginRecord:
    """How create_server logged in to a server, as stored on the server itself.

    ``keys`` are the host keys kept whole; ``fingerprints`` stand in for keys too long
    for one metadata value (RSA), and check a key the server presents.
    """

    user: str
    address: str
    port: int
    keys: tuple[str, ...] = ()
    fingerprints: tuple[str, ...] = ()


def login_metadata(user: str, address: str, port: int,
                   host_keys: tuple[str, ...]) -> dict[str, str]:
    """Metadata items recording a login: one for ``user@address:port``, one per host key
    (its base64 blob, or its SHA256 fingerprint when the blob does not fit a value)."""
    host = f"[{address}]" if ":" in address else address
    items = {LOGIN_KEY: f"{user}@{host}:{port}"}
    for key in host_keys:
        key_type, _, blob = key.partition(" ")
        blob = blob.split()[0] if blob else ""
        if not blob:
            continue
        items[HOST_KEY_PREFIX + key_type] = (
            blob if len(blob) <= METADATA_VALUE_MAX else fingerprint(blob))
    return items


def login_record(metadata: dict[str, str]) -> LoginRecord | None:
    """The login stored by :func:`login_metadata`, or None when there is none (or it is
    not in that form)."""
    match = re.fullmatch(r"([^@\s]+)@(\[[0-9A-Fa-f:.]+\]|[^:\s]+):(\d+)",
                         str(metadata.get(LOGIN_KEY) or ""))
    if not match:
        return None
    keys: list[str] = []
    fps: list[str] = []
    for name, value in sorted(metadata.items()):
        if not name.startswith(HOST_KEY_PREFIX):
            continue
        if value.startswith("SHA256:"):
            fps.append(value)
        elif _valid_blob(value):
            keys.append(f"{name[len(HOST_KEY_PREFIX):]} {value}")
    return LoginRecord(user=match.group(1), address=match.group(2).strip("[]"),
                       port=int(match.group(3)), keys=tuple(keys), fingerprints=tuple(fps))


def console_login_users(text: str | None, public_key: str) -> tuple[str, ...]:
    """Users whose authorized keys, as cloud-init printed them on the console, hold
    ``public_key`` (an OpenSSH public key line), in the order printed. Only the latest
    boot that printed such tables counts, and in it only the first table per user,
    printed before the host keys (ssh-authkey-fingerprints runs once per instance,
    right before keys-to-console)."""
    if not text:
        return ()
    parts = public_key.split()
    if len(parts) < 2 or not _valid_blob(parts[1]):
        return ()
    key_type, blob = parts[0], base64.b64decode(parts[1])
    for boot in reversed(_boots(_lines(text))):
        tables = _authorized_tables(boot)
        if tables is not None:
            return tuple(dict.fromkeys(
                user for user, method, rows in tables
                if any(row[:2] == [key_type, _hex_fingerprint(blob, method)] for row in rows)))
        if _undecided(boot):
            return ()
    return ()


_AUTHORIZED_TITLE = re.compile(r"\+*Authorized keys from \S+ for user ([^\s+]+)\+*")
_NO_AUTHORIZED = re.compile(r"no authorized SSH keys fingerprints found for user (\S+?)\.?")
_HASH_HEADER = re.compile(r"\|\s*Keytype\s*\|\s*Fingerprint \((\w+)\)\s*\|")
_RULE = re.compile(r"\+[-+]+\+")


def _ci_info(boot: list[_Line]) -> Iterator[str]:
    """cloud-init's ``ci-info:`` lines up to its host key blocks, table lines that a
    narrow console wrapped joined back."""
    for i, line in enumerate(boot):
        if _marker(boot, i) is not None:
            return
        if line.tag or not line.from_cloud_init or not line.text.startswith("ci-info: "):
            continue
        content = line.text[len("ci-info: "):]
        if content.startswith(("|", "+")):
            for more in boot[i + 1:i + 9]:
                if content.endswith(("|", "+")) or not more.bare:
                    break
                content += more.text
        yield content


def _authorized_tables(boot: list[_Line]) -> list[tuple[str, str, list[list[str]]]] | None:
    """The authorized keys tables of this boot, as (user, hash, rows of cells); None when
    the boot printed none, nor said a user had no keys."""
    tables: list[tuple[str, str, list[list[str]]]] = []
    seen: set[str] = set()
    printed = False
    table: tuple[str, str, list[list[str]]] | None = None
    step = 0  # in a table: 0 top rule, 1 header, 2 rule under it, 3 rows until the last rule
    for content in _ci_info(boot):
        title = _AUTHORIZED_TITLE.fullmatch(content)
        said = title or _NO_AUTHORIZED.fullmatch(content)
        if said:
            printed, table, step = True, None, 0
            user = said.group(1)
            if title and user not in seen:
                table = (user, "", [])
            seen.add(user)
            continue
        if table is None:
            continue
        header = _HASH_HEADER.match(content)
        if step in (0, 2) and _RULE.fullmatch(content):
            step += 1
        elif step == 1 and header:
            table, step = (table[0], header.group(1).lower(), table[2]), 2
        elif step == 3 and _RULE.fullmatch(content):
            tables.append(table)
            table = None
        elif step == 3 and content.startswith("|") and content.endswith("|"):
            table[2].append([cell.strip() for cell in content[1:-1].split("|")])
        else:
            table = None  # not the shape cloud-init prints
    return tables if printed else None


def _hex_fingerprint(blob: bytes, method: str) -> str | None:
    """cloud-init's fingerprint form: the hex digest in colon-separated pairs."""
    try:
        digest = hashlib.new(method, blob).hexdigest()
    except (ValueError, TypeError):
        return None
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))

"""Which operating system an image holds, and which image to boot for an OS ask.

Clouds name the same image ``Ubuntu 22.04 LTS (Jammy Jellyfish)``,
``ubuntu-22.04-x86_64`` or ``Ubuntu-Jammy-22.04-amd64-20240301``; some set
``os_distro``/``os_version`` properties, most do not. This module reads both,
trusting properties over names.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence

import attrs

from cloudnorm import errors, profiles
from cloudnorm.models import Decision, Image

_ARCH_WORDS = {"x86_64": "x86_64", "amd64": "x86_64", "x64": "x86_64", "x86-64": "x86_64",
               "aarch64": "aarch64", "arm64": "aarch64", "ppc64le": "ppc64le",
               "s390x": "s390x", "i386": "i686", "i686": "i686"}
_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)*")
_DATE = re.compile(r"(?<!\d)(20\d{2})[-.]?(\d{2})[-.]?(\d{2})(?!\d)")


@attrs.frozen
class OSAsk:
    """A parsed OS request: ``"ubuntu-22.04"`` → distro ubuntu, version 22.04."""

    distro: str
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.distro} {self.version}" if self.version else self.distro


def parse_os(text: str) -> OSAsk:
    """Parse ``ubuntu-22.04``, ``ubuntu 22.04``, ``debian-12``, ``ubuntu-jammy`` or ``fedora``."""
    distro, version, _ = _read_name(text)
    if distro is None:
        raise errors.NotFound(
            f"unknown operating system '{text}'; ask for one of "
            + ", ".join(sorted(profiles.distros())) + " with an optional version, "
            "e.g. 'ubuntu-22.04'")
    return OSAsk(distro, version)


def _read_name(text: str) -> tuple[str | None, str | None, str | None]:
    """(distro, version, architecture) read from an image name or an OS ask."""
    lowered = text.lower().replace("_", "-")
    lowered = _DATE.sub(" ", lowered)
    words = _WORD.findall(lowered.replace("-", " "))
    arch = next((_ARCH_WORDS[w] for w in words if w in _ARCH_WORDS), None)
    if "x86" in words and "64" in words:
        arch = "x86_64"
    table = profiles.distros()
    distro, glued, at = _find_distro(words, table)
    if distro is None:  # "jammy-server-cloudimg-amd64": a codename names its distribution
        distro = next((name for name, info in table.items()
                       if any(w in info.codenames for w in words)), None)
    version = glued
    if distro and version is None:
        info = table[distro]
        version = next((info.codenames[w] for w in words if w in info.codenames), None)
        if version is None:
            at = next((i for i, w in enumerate(words)
                       if _VERSION.fullmatch(w) and w not in ("64", "86")), None)
            version = words[at] if at is not None else None
    if version is not None and at is not None:
        version += _service_pack(words[at + 1:at + 2])
    return distro, version, arch


_VERSION = re.compile(r"\d{1,2}(?:\.\d{1,2})*")
#: A version glued to a one-word alias: "ol8.9", "centos7", "OL9U4" (release 9, update 4).
_GLUED = r"(\d{1,2}(?:\.\d{1,2})*)(?:u(\d{1,2}))?"


def _service_pack(following: list[str]) -> str:
    """".5" when the version is followed by "sp5" (SLES 15 SP5 is release 15.5)."""
    match = re.fullmatch(r"sp(\d{1,2})", following[0]) if following else None
    return f".{match.group(1)}" if match else ""


def _find_distro(words: list[str], table: dict[str, profiles.Distro]
                 ) -> tuple[str | None, str | None, int | None]:
    """The distribution a name holds, and a version glued to its alias with the index
    of the word holding both.

    A name can hold several (``bitnami-wordpress-...-linux-debian-12``, ``fedora-coreos``):
    the one named first wins, and among those starting at the same word the most specific
    (most words, then longest): products put their own name first and their base last.
    """
    best: tuple[tuple[int, int, int], str, str | None] | None = None

    def offer(position: int, n_words: int, length: int, name: str,
              glued: str | None = None) -> None:
        nonlocal best
        rank = (position, -n_words, -length)
        if best is None or rank < best[0]:
            best = (rank, name, glued)

    for name, info in table.items():
        for alias in info.aliases:
            alias_words = _WORD.findall(alias.lower().replace("-", " "))
            size = len(alias_words)
            for i in range(len(words) - size + 1):
                if words[i:i + size] == alias_words:
                    offer(i, size, len(alias), name)
                    break
            if size == 1 and len(alias_words[0]) >= 2:
                pattern = re.compile(re.escape(alias_words[0]) + _GLUED)
                for i, word in enumerate(words):
                    match = pattern.fullmatch(word)
                    if match:
                        version = match.group(1) + (f".{match.group(2)}" if match.group(2)
                                                    else "")
                        offer(i, 1, len(alias), name, version)
                        break
        for group in info.all_words:
            if all(w in words for w in group):
                offer(min(words.index(w) for w in group), len(group), sum(map(len, group)),
                      name)
    if best is None:
        return None, None, None
    return best[1], best[2], best[0][0] if best[2] is not None else None


def describe_image(image_id: str, name: str, properties: dict) -> tuple[str | None, str | None,
                                                                       str | None]:
    """(distro, version, architecture) of an image: properties first, then the name."""
    name_distro, name_version, name_arch = _read_name(name or "")
    table = profiles.distros()
    # Glance's os_distro, or its older namespaced form ("org.openstack__1__os_distro:
    # org.ubuntu") that some public clouds still set.
    distro = properties.get("os_distro") or properties.get("org.openstack__1__os_distro")
    if distro:
        distro = str(distro).lower().removeprefix("org.").removeprefix("com.")
        distro = next((k for k, v in table.items()
                       if distro == k or distro in v.aliases), distro)
        # os_distro has no value for CentOS Stream: images of it say "centos", and the
        # name tells them apart.
        if name_distro and table[name_distro].family == distro:
            distro = name_distro
    version = properties.get("os_version") or properties.get("org.openstack__1__os_version")
    arch = properties.get("architecture") or properties.get("hw_architecture")
    if arch:
        arch = _ARCH_WORDS.get(str(arch).lower(), str(arch).lower())
    return (distro or name_distro, str(version) if version else name_version, arch or name_arch)


def is_distro(want: str, have: str | None) -> bool:
    """Whether an image of ``have`` answers an ask for ``want``: the same distribution,
    or one of its family (a CentOS Stream image answers "centos-9")."""
    if have is None:
        return False
    info = profiles.distros().get(have)
    return have == want or (info is not None and info.family == want)


def version_matches(want: str | None, have: str | None) -> bool:
    if want is None:
        return True
    if have is None:
        return False
    want_parts, have_parts = want.split("."), have.split(".")
    return have_parts[: len(want_parts)] == want_parts


def _version_key(version: str | None) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in (version or "").split(".") if p)
    except ValueError:
        return ()


def _name_date(name: str) -> str:
    found = _DATE.findall(name)
    return "".join(found[-1]) if found else ""


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def choose_image(images: Sequence[Image], ask: str | OSAsk, *,
                 architecture: str = "x86_64") -> tuple[Image, Decision]:
    """The newest usable image of an OS, with the reason and what was passed over."""
    want = parse_os(ask) if isinstance(ask, str) else ask
    skipped: list[str] = []
    fits: list[Image] = []
    for image in images:
        if not is_distro(want.distro, image.os_distro) \
                or not version_matches(want.version, image.os_version):
            continue
        why = None
        if image.status != "active":
            why = f"status {image.status}"
        elif image.hidden:
            why = "hidden"
        elif image.is_snapshot:
            why = "a snapshot"
        elif image.architecture and image.architecture != architecture:
            why = image.architecture
        if why:
            skipped.append(f"'{image.name}' ({why})")
        else:
            fits.append(image)
    if not fits:
        raise errors.NotFound(
            f"no usable {want} image"
            + (f"; passed over {', '.join(skipped)}" if skipped else "")
            + f". Upload one, or ask for another OS (known here: {_known_os(images)})")
    if want.version is None:
        top = max(_version_key(i.os_version) for i in fits)
        fits = [i for i in fits if _version_key(i.os_version) == top]
    # Public images first (a private one may be someone's experiment), then
    # the newest; a build date in the name breaks ties that timestamps leave.
    def rank(image: Image) -> tuple:
        return (image.visibility != "private", image.created or _EPOCH, _name_date(image.name),
                image.name, image.id)
    fits.sort(key=rank, reverse=True)
    best = fits[0]
    reason = (f"'{best.name}' is the newest active {architecture} image of {want}"
              f" among {len(fits)} candidate(s)")
    if skipped:
        reason += f"; passed over {', '.join(skipped)}"
    return best, Decision("image", best.name, reason)


def _known_os(images: Sequence[Image]) -> str:
    found = sorted({f"{i.os_distro}-{i.os_version}" if i.os_version else str(i.os_distro)
                    for i in images if i.os_distro and i.status == "active" and not i.hidden})
    return ", ".join(found) or "none"

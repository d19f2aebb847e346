"""Whether a text is one whole SSH public key of the type it claims.

Host keys reach cloudnorm as text that anything on the way may have cut, split or
forged (a console, a guest attribute): a key is used only when its base64 decodes
exactly and its wire format holds that type's fields and nothing more.
"""

from __future__ import annotations

import base64
import binascii

__all__ = ["key_problem", "valid_key"]


# -- SSH public key wire format (RFC 4253 6.6, RFC 5656 3.1, RFC 8709 4, PROTOCOL.u2f) ---------
# The NIST curves' prime and b (a is -3): a point is checked to lie on its curve, so that
# a key whose bytes were altered on the way is not taken for a key.
_NIST_CURVES = {
    "nistp256": (2**256 - 2**224 + 2**192 + 2**96 - 1,
                 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B),
    "nistp384": (2**384 - 2**128 - 2**96 + 2**32 - 1,
                 int("B3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875A"
                     "C656398D8A2ED19D2A85C8EDD3EC2AEF", 16)),
    "nistp521": (2**521 - 1,
                 int("0051953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF1"
                     "09E156193951EC7E937B1652C0BD3BB1BF073573DF883D2C34F1EF451FD46B503F00", 16)),
}
_EDDSA_SIZES = {"ssh-ed25519": 32, "ssh-ed448": 57, "sk-ssh-ed25519@openssh.com": 32}


def valid_key(key_type: str, blob_base64: str) -> bool:
    """True when ``blob_base64`` is a whole SSH public key of type ``key_type``: canonical
    base64 whose wire format names that type and, for the types cloudnorm knows, holds
    exactly the fields that type has."""
    return key_problem(key_type, blob_base64) is None


def key_problem(key_type: str, blob_base64: str) -> str | None:
    """Why ``blob_base64`` is not a whole SSH public key of type ``key_type``; None when
    it is one."""
    try:
        blob = base64.b64decode(blob_base64, validate=True)
    except (binascii.Error, ValueError):
        return "not base64"
    if not blob or base64.b64encode(blob).decode() != blob_base64:
        return "the base64 text does not encode one key exactly"
    reader = _Wire(blob)
    try:
        if reader.string() != key_type.encode():
            return f"the key inside is not of type {key_type}"
        if not _known_fields(key_type, reader):
            return None  # another type: the name matches and the base64 is whole
        extra = 0
        while not reader.done():
            reader.string()
            extra += 1
    except ValueError as exc:
        return str(exc)
    return f"{extra} field(s) past the end of a {key_type} key" if extra else None


def _known_fields(key_type: str, reader: _Wire) -> bool:
    """Reads the fields of a known type, raising ValueError when they are not there;
    False for a type whose fields cloudnorm does not know."""
    if key_type in _EDDSA_SIZES:
        if len(reader.string()) != _EDDSA_SIZES[key_type]:
            raise ValueError("wrong EdDSA key size")
    elif key_type.startswith(("ecdsa-sha2-", "sk-ecdsa-sha2-")):
        curve = reader.string().decode("ascii", "replace")
        if not key_type.split("@")[0].endswith("-" + curve) or not _on_curve(
                curve, reader.string()):
            raise ValueError("the curve named inside is not the key type's, or its point "
                             "is not on it")
    elif key_type == "ssh-rsa":
        exponent, modulus = reader.mpint(), reader.mpint()
        if exponent < 3 or exponent % 2 == 0 or modulus.bit_length() < 512:
            raise ValueError("not an RSA public key")
    elif key_type == "ssh-dss":
        if min(reader.mpint() for _ in range(4)) <= 0:
            raise ValueError("not a DSA public key")
    else:
        return False
    if key_type.startswith("sk-"):
        reader.string()  # the FIDO application
    return True


def _on_curve(curve: str, point: bytes) -> bool:
    if curve not in _NIST_CURVES:
        return False
    prime, b = _NIST_CURVES[curve]
    size = (prime.bit_length() + 7) // 8
    if len(point) != 1 + 2 * size or point[0] != 4:
        return False
    x, y = int.from_bytes(point[1:1 + size], "big"), int.from_bytes(point[1 + size:], "big")
    return x < prime and y < prime and (y * y - (x * x * x - 3 * x + b)) % prime == 0


class _Wire:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def string(self) -> bytes:
        if self.at + 4 > len(self.data):
            raise ValueError("a length prefix is cut short")
        size = int.from_bytes(self.data[self.at:self.at + 4], "big")
        start, self.at = self.at + 4, self.at + 4 + size
        if self.at > len(self.data):
            raise ValueError("a field is cut short")
        return self.data[start:self.at]

    def mpint(self) -> int:
        raw = self.string()
        if not raw or raw[0] & 0x80 or (raw[0] == 0 and (len(raw) == 1 or not raw[1] & 0x80)):
            raise ValueError("not a positive, minimally encoded mpint")
        return int.from_bytes(raw, "big")

    def done(self) -> bool:
        return self.at == len(self.data)

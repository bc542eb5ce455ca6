"""Certificate data: the printed fields, serials, verification tokens, and the signed canonical payload."""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import re
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "KINDS",
    "PAYLOAD_FORMAT",
    "CertificateData",
    "canonical_payload",
    "format_serial",
    "generate_signing_key",
    "key_id",
    "new_verify_token",
    "parse_serial",
    "public_key",
    "sign",
    "signature_key_id",
    "verify",
]

KINDS = ("electronic", "paper")

# A format tag inside the signed payload: a signature over one payload layout can never be
# replayed as a signature over a later layout (or over anything else signed with the key).
PAYLOAD_FORMAT = "xinwei.certificate/1"

SERIAL_PREFIX = "XW"
_SERIAL_RE = re.compile(r"XW-(\d{4})-(\d{6})")

# Limits keep every field printable on one line of the certificate (the renderer shrinks the
# type to fit) and the verify URL small enough for a QR code with large, phone-friendly modules.
_MAX_LEN = {
    "holder_name": 64,
    "school": 64,
    "student_number": 32,
    "course_title": 80,
    "issuer": 48,
    "verify_url": 160,
}
_MAX_ISSUERS = 4


def _clean_text(field: str, value: Any) -> str:
    """NFC, whitespace runs collapsed, no control/format characters: what is signed is what is printed."""
    if not isinstance(value, str):
        raise TypeError(f"{field} must be str, not {type(value).__name__}")
    text = " ".join(unicodedata.normalize("NFC", value).split())
    if not text:
        raise ValueError(f"{field} is empty")
    limit = _MAX_LEN["issuer" if field.startswith("issuer") else field]
    if len(text) > limit:
        raise ValueError(f"{field} is longer than {limit} characters")
    for ch in text:
        # Cc: controls; Cf: invisible format characters, including the bidi overrides
        # (U+202E …) that could make a printed name read differently from the stored one.
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise ValueError(f"{field} contains a non-printing character U+{ord(ch):04X}")
    return text


@dataclass(frozen=True, slots=True)
class CertificateData:
    """Everything printed on one version of a certificate. Strings are NFC-normalised on construction."""

    holder_name: str
    school: str
    student_number: str
    course_title: str
    score: int
    serial: str
    issued_on: dt.date
    verify_url: str
    issuers: tuple[str, ...]
    version: int = 1
    kind: str = "electronic"

    def __post_init__(self) -> None:
        for name in ("holder_name", "school", "student_number", "course_title", "verify_url"):
            object.__setattr__(self, name, _clean_text(name, getattr(self, name)))
        if isinstance(self.issuers, str) or not isinstance(self.issuers, (tuple, list)):
            raise TypeError("issuers must be a tuple of str")
        issuers = tuple(_clean_text(f"issuer[{i}]", line) for i, line in enumerate(self.issuers))
        if not 1 <= len(issuers) <= _MAX_ISSUERS:
            raise ValueError(f"issuers must have 1 to {_MAX_ISSUERS} lines")
        object.__setattr__(self, "issuers", issuers)
        # bool is an int subclass; True must not print as a score of 1.
        if type(self.score) is not int or not 0 <= self.score <= 100:
            raise ValueError("score must be an int from 0 to 100")
        if type(self.version) is not int or self.version < 1:
            raise ValueError("version must be an int >= 1")
        # datetime is a date subclass; a time of day would leak into the ISO date in the payload.
        if not isinstance(self.issued_on, dt.date) or isinstance(self.issued_on, dt.datetime):
            raise TypeError("issued_on must be a datetime.date")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        parse_serial(self.serial)
        if not re.fullmatch(r"https?://[!-~]+", self.verify_url):
            raise ValueError("verify_url must be an absolute http(s) URL of printable ASCII")

    @classmethod
    def from_mapping(cls, fields: Mapping[str, Any]) -> CertificateData:
        """Build from a dict (a stored row, JSON): `issued_on` may be an ISO date string, `issuers` a list."""
        values = dict(fields)
        if isinstance(values.get("issued_on"), str):
            values["issued_on"] = dt.date.fromisoformat(values["issued_on"])
        if isinstance(values.get("issuers"), list):
            values["issuers"] = tuple(values["issuers"])
        if values.pop("format", PAYLOAD_FORMAT) != PAYLOAD_FORMAT:
            raise ValueError(f"not a {PAYLOAD_FORMAT} payload")
        return cls(**values)

    def replace(self, **changes: Any) -> CertificateData:
        """A copy with some fields changed (a correction builds version n+1 this way)."""
        return dataclasses.replace(self, **changes)


def canonical_payload(data: CertificateData | Mapping[str, Any]) -> bytes:
    """The bytes that are signed: compact JSON, sorted keys, NFC strings, ISO date, UTF-8."""
    if not isinstance(data, CertificateData):
        data = CertificateData.from_mapping(data)
    body = {
        "format": PAYLOAD_FORMAT,
        "holder_name": data.holder_name,
        "school": data.school,
        "student_number": data.student_number,
        "course_title": data.course_title,
        "score": data.score,
        "serial": data.serial,
        "issued_on": data.issued_on.isoformat(),
        "verify_url": data.verify_url,
        "issuers": list(data.issuers),
        "version": data.version,
        "kind": data.kind,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- serials and tokens -------------------------------------------------------------------------

def format_serial(year: int, number: int) -> str:
    """The readable serial printed on the certificate: XW-2026-000123."""
    if type(year) is not int or not 2000 <= year <= 9999:
        raise ValueError("serial year must be an int from 2000 to 9999")
    if type(number) is not int or not 1 <= number <= 999_999:
        raise ValueError("serial number must be an int from 1 to 999999")
    return f"{SERIAL_PREFIX}-{year:04d}-{number:06d}"


def parse_serial(serial: str) -> tuple[int, int]:
    """(year, number) from a serial; ValueError for anything `format_serial` would not produce."""
    # Without re.ASCII, \d also matches other scripts' digits (e.g. '２０２６'): check ASCII first.
    if not isinstance(serial, str) or not serial.isascii():
        raise ValueError(f"malformed serial: {serial!r}")
    match = _SERIAL_RE.fullmatch(serial)
    if not match:
        raise ValueError(f"malformed serial: {serial!r}")
    year, number = int(match[1]), int(match[2])
    if year < 2000 or number < 1:
        raise ValueError(f"malformed serial: {serial!r}")
    return year, number


def new_verify_token() -> str:
    """An unguessable URL-safe token for the verify link (192 bits; the serial is guessable, this is not)."""
    return secrets.token_urlsafe(24)


# --- signatures ---------------------------------------------------------------------------------
#
# Ed25519 rather than HMAC-SHA256, because verification needs only the public key:
# - the signing key lives only where certificates are issued (the issuing job); web hosts that
#   serve the verify page hold the public key, so a leaked web config cannot mint certificates;
# - the public key can be published, so a school or employer can check an exported payload and
#   signature offline without trusting (or calling) our server;
# - it costs ~0.1 ms per signature, nothing next to rendering.
# A signature is "<key id>.<base64url signature>": the key id lets the app pick the right public
# key after a key rotation, so certificates signed with a retired key still verify.

def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


_SIGNATURE_RE = re.compile(r"([A-Za-z0-9_-]{8})\.([A-Za-z0-9_-]{86})")


def generate_signing_key() -> bytes:
    """A new Ed25519 private key as its raw 32-byte seed (store it base64-encoded in config)."""
    return secrets.token_bytes(32)


def public_key(signing_key: bytes) -> bytes:
    """The raw 32-byte Ed25519 public key for a raw 32-byte private key."""
    return Ed25519PrivateKey.from_private_bytes(signing_key).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw
    )


def key_id(public: bytes) -> str:
    """A short, stable name for a public key (first 48 bits of its SHA-256, base64url)."""
    return _b64(hashlib.sha256(public).digest()[:6])


def sign(payload: bytes, signing_key: bytes) -> str:
    """Sign a canonical payload with a raw 32-byte Ed25519 private key: '<key id>.<signature>'."""
    private = Ed25519PrivateKey.from_private_bytes(signing_key)
    return f"{key_id(public_key(signing_key))}.{_b64(private.sign(payload))}"


def signature_key_id(signature: str) -> str | None:
    """The key id a signature names, or None if the signature is malformed."""
    match = _SIGNATURE_RE.fullmatch(signature) if isinstance(signature, str) else None
    return match[1] if match else None


def verify(payload: bytes, signature: str, public: bytes) -> bool:
    """True only if `signature` is a valid signature of `payload` by the key `public` (raw 32 bytes)."""
    match = _SIGNATURE_RE.fullmatch(signature) if isinstance(signature, str) else None
    if match is None or not isinstance(public, bytes) or match[1] != key_id(public):
        return False
    raw = base64.urlsafe_b64decode(match[2] + "==")
    # One string per signature: reject encodings whose unused trailing bits are not zero.
    if _b64(raw) != match[2]:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(raw, payload)
    except (InvalidSignature, ValueError):
        return False
    return True

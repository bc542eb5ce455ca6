"""Webhook signatures and the safe-mode AES envelope (WeChat's 'message encryption')."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from wechatpy.crypto import PrpCrypto

# WeChat pads with PKCS#7 to a 32-byte block, not AES's 16.
_BLOCK = 32
# The decrypted envelope: 16 random bytes, 4-byte length, message, AppId.
_HEADER = 16 + 4


class CryptoError(ValueError):
    """The envelope could not be opened: bad base64, padding, length or AppId."""


def sign(token: str, *parts: str) -> str:
    """WeChat's signature: SHA-1 over the token and parts, sorted and concatenated."""
    return hashlib.sha1("".join(sorted((token, *parts))).encode("utf-8")).hexdigest()


def signature_holds(given: str | None, token: str, *parts: str) -> bool:
    """Constant-time comparison of a received signature with the expected one."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("ascii", "replace"), sign(token, *parts).encode("ascii"))


class MessageCrypto:
    """Opens and seals the Encrypt field for one official account.

    wechatpy's PrpCrypto does the AES work; its decrypt trusts the plaintext's padding
    and length bytes (an IndexError or a wrong slice on garbage), and its signature
    check is not constant-time, so the checks around it live here.
    """

    def __init__(self, encoding_aes_key: str, app_id: str) -> None:
        self._key = base64.b64decode(encoding_aes_key + "=")
        self._app_id = app_id
        self._prp = PrpCrypto(self._key)

    def decrypt(self, encrypted: str) -> str:
        try:
            raw = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CryptoError("Encrypt is not base64") from exc
        if not raw or len(raw) % 16:
            raise CryptoError("Encrypt length is not a whole number of AES blocks")
        plain = self._prp.cipher.decrypt(raw)
        pad = plain[-1]
        if not 1 <= pad <= _BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise CryptoError("bad padding (wrong key?)")
        body = plain[:-pad]
        if len(body) < _HEADER:
            raise CryptoError("envelope too short")
        (length,) = struct.unpack(">I", body[16:20])
        if length > len(body) - _HEADER:
            raise CryptoError("declared length exceeds the envelope")
        app_id = body[_HEADER + length :]
        if not hmac.compare_digest(app_id, self._app_id.encode("utf-8")):
            raise CryptoError("AppId in the envelope is not ours")
        try:
            return body[_HEADER : _HEADER + length].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CryptoError("message is not UTF-8") from exc

    def encrypt(self, plaintext: str) -> str:
        # Built here rather than with PrpCrypto.encrypt, whose pure-Python random string and
        # padding cost ~40 µs a reply; the envelope is the same (wechatpy decrypts it).
        message = plaintext.encode("utf-8")
        body = os.urandom(16) + struct.pack(">I", len(message)) + message + self._app_id.encode("utf-8")
        pad = _BLOCK - len(body) % _BLOCK
        return base64.b64encode(self._prp.cipher.encrypt(body + bytes([pad]) * pad)).decode("ascii")

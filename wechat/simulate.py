"""Deliveries as WeChat makes them (signed, optionally encrypted), for the simulator, tests and benches."""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from wechat.crypto import MessageCrypto, sign
from wechat.inbound import parse_xml


@dataclass(frozen=True)
class Delivery:
    query: str  # the query string WeChat appends to the callback URL
    body: bytes


class WeChatSide:
    """Plays WeChat's part towards one official account's callback."""

    def __init__(self, token: str, encoding_aes_key: str, app_id: str, account: str = "gh_xinwei_demo") -> None:
        self.token = token
        self.app_id = app_id
        self.account = account
        self.crypto = MessageCrypto(encoding_aes_key, app_id)

    @staticmethod
    def xml(fields: dict[str, str | int]) -> str:
        parts = []
        for name, value in fields.items():
            parts.append(f"<{name}>{value}</{name}>" if isinstance(value, int) else f"<{name}>{escape(value)}</{name}>")
        return "<xml>" + "".join(parts) + "</xml>"

    def event(self, openid: str, event: str, key: str | None = None, created: int | None = None) -> str:
        fields: dict[str, str | int] = {
            "ToUserName": self.account, "FromUserName": openid,
            "CreateTime": created if created is not None else int(time.time()),
            "MsgType": "event", "Event": event,
        }
        if key is not None:
            fields["EventKey"] = key
        return self.xml(fields)

    def text(self, openid: str, content: str, msg_id: int | None = None, created: int | None = None) -> str:
        return self.xml({
            "ToUserName": self.account, "FromUserName": openid,
            "CreateTime": created if created is not None else int(time.time()),
            "MsgType": "text", "Content": content,
            "MsgId": msg_id if msg_id is not None else secrets.randbelow(10**18),
        })

    def deliver(
        self, xml: str, *, mode: str = "plain", timestamp: int | None = None, nonce: str | None = None
    ) -> Delivery:
        """Sign (and in "safe" or "compatible" mode encrypt) `xml` as WeChat would."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = nonce or secrets.token_hex(8)
        query = {"signature": sign(self.token, ts, nonce), "timestamp": ts, "nonce": nonce, "openid": "o"}
        if mode == "plain":
            return Delivery(urlencode(query), xml.encode("utf-8"))
        encrypted = self.crypto.encrypt(xml)
        query.update(encrypt_type="aes", msg_signature=sign(self.token, ts, nonce, encrypted))
        if mode == "compatible":
            # Compatible mode carries the plaintext fields beside Encrypt.
            body = xml.replace("</xml>", f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
        elif mode == "safe":
            body = (f"<xml><ToUserName><![CDATA[{self.account}]]></ToUserName>"
                    f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
        else:
            raise ValueError(f"unknown mode {mode!r}")
        return Delivery(urlencode(query), body.encode("utf-8"))

    def open_reply(self, body: bytes | str) -> dict[str, object] | None:
        """The reply's fields, decrypted if sealed; None for "success" or an empty body."""
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        if text in ("", "success"):
            return None
        fields = parse_xml(text.encode("utf-8"))
        if "Encrypt" in fields:
            encrypted = str(fields["Encrypt"])
            expected = sign(self.token, str(fields["TimeStamp"]), str(fields["Nonce"]), encrypted)
            if fields.get("MsgSignature") != expected:
                raise ValueError("reply MsgSignature does not hold")
            fields = parse_xml(self.crypto.decrypt(encrypted).encode("utf-8"))
        return fields

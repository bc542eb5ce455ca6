"""Parsing WeChat's XML into an Inbound value, safely, and the dedup key of a delivery."""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from handlers.messages import Inbound

_MAX_FIELD = 8192  # characters; WeChat's text messages are limited to 2048


class BadMessage(ValueError):
    """The body is not a WeChat message we can trust; the message says why (no content)."""


def parse_xml(body: bytes | str) -> dict[str, object]:
    """A flat dict of the <xml> root's children. DTDs and entities are refused outright."""
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise BadMessage(f"forbidden XML construct: {type(exc).__name__}") from exc
    except (ParseError, ValueError, TypeError) as exc:
        raise BadMessage("malformed XML") from exc
    if root.tag != "xml":
        raise BadMessage("root element is not <xml>")
    return {child.tag: _value(child) for child in root}


def _value(element: Element) -> object:
    if len(element):
        return {child.tag: _value(child) for child in element}
    text = element.text or ""
    if len(text) > _MAX_FIELD:
        raise BadMessage(f"field <{element.tag}> too long")
    return text


def _text(fields: dict[str, object], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadMessage(f"<{name}> is not a text field")
    return value


def to_inbound(fields: dict[str, object]) -> Inbound:
    """Build the Inbound value; refuse deliveries missing what every WeChat message has."""
    openid = _text(fields, "FromUserName")
    account = _text(fields, "ToUserName")
    create_time = _text(fields, "CreateTime")
    msg_type = _text(fields, "MsgType")
    if not openid or not account or not msg_type or not create_time:
        raise BadMessage("missing ToUserName, FromUserName, CreateTime or MsgType")
    if len(openid) > 64 or len(account) > 64 or len(msg_type) > 32:
        raise BadMessage("identifier too long")
    if not create_time.isdigit() or len(create_time) > 12:
        raise BadMessage("CreateTime is not a timestamp")
    msg_type = msg_type.lower()
    event = _text(fields, "Event")
    known = {"ToUserName", "FromUserName", "CreateTime", "MsgType", "Event", "EventKey", "Content", "MsgId", "MsgID"}
    return Inbound(
        openid=openid,
        account=account,
        sent_at=datetime.fromtimestamp(int(create_time), timezone.utc),
        msg_type=msg_type,
        event=event.lower() if event else None,
        event_key=_text(fields, "EventKey") or None,
        content=_text(fields, "Content"),
        msg_id=_text(fields, "MsgId") or _text(fields, "MsgID") or None,
        fields={k: v for k, v in fields.items() if k not in known},
    )


def dedup_key(inbound: Inbound) -> str:
    """Messages dedup by sender + MsgId; events by sender + CreateTime + Event + EventKey."""
    created = str(int(inbound.sent_at.timestamp()))
    if inbound.msg_type != "event" and inbound.msg_id:
        key = f"msg:{inbound.openid}:{inbound.msg_id}"
    elif inbound.msg_type != "event":
        key = f"msg:{inbound.openid}:{created}:{inbound.msg_type}"
    else:
        key = f"evt:{inbound.openid}:{created}:{inbound.event or ''}:{inbound.event_key or ''}"
    if len(key) > 255:
        # Keep the readable head for operators; the hash keeps it unique.
        key = key[:190] + ":" + hashlib.sha256(key.encode("utf-8")).hexdigest()
    return key

"""The values a flow exchanges with the WeChat boundary: what arrived, and what to answer."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Mapping, Union

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Inbound:
    """One message or event a student sent to the official account, in domain names."""

    openid: str  # the sender (FromUserName)
    account: str  # the official account's own id (ToUserName)
    sent_at: datetime  # WeChat's CreateTime
    msg_type: str  # "text", "image", "event", ... (lower case)
    event: str | None = None  # "subscribe", "click", ... (lower case), events only
    event_key: str | None = None  # menu key for CLICK, URL for VIEW, scene for QR
    content: str | None = None  # text messages
    msg_id: str | None = None  # messages (and a few events) carry one
    fields: Mapping[str, object] = field(default_factory=dict)  # everything else WeChat sent


@dataclass(frozen=True)
class TextReply:
    content: str


@dataclass(frozen=True)
class NewsReply:
    """One article: WeChat shows a single article in a passive reply."""

    title: str
    description: str
    url: str
    image_url: str = ""


@dataclass(frozen=True)
class ImageReply:
    media_id: str


Reply = Union[TextReply, NewsReply, ImageReply]

# A flow answering one inbound message: it may write through the session (flush only)
# and returns what the student sees, or None for nothing.
Handler = Callable[[Session, Inbound], Reply | None]


def read_only(handler: Handler) -> Handler:
    """Mark a flow that only reads: the boundary may answer it without a write transaction
    (one INSERT of the dedup row, reply included). Flushing in such a flow is an error."""
    handler.read_only = True  # type: ignore[attr-defined]
    return handler


def is_read_only(handler: Handler | None) -> bool:
    return handler is None or bool(getattr(handler, "read_only", False))

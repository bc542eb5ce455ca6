"""The values a flow exchanges with the WeChat boundary: what arrived, and what to answer."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Mapping, Sequence, Union

from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable


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


@dataclass(frozen=True)
class Write:
    """One statement a planned flow asks to be run, with its values. The statement is built once
    (module level or cached), so a delivery only binds values."""

    statement: Executable
    values: Mapping[str, object]


@dataclass(frozen=True)
class Planned:
    """What a planned flow returns: the reply, decided from reads alone, and every write it needs,
    none of which depends on another's result (a later one finds an earlier one's row by its key)."""

    reply: Reply | None
    writes: Sequence[Write]


# A flow answering one inbound message: it may write through the session (flush only)
# and returns what the student sees, or None for nothing; a planned flow returns its Planned.
Handler = Callable[[Session, Inbound], Union[Reply, Planned, None]]


def read_only(handler: Handler) -> Handler:
    """Mark a flow that only reads: the boundary may answer it without a write transaction
    (one INSERT of the dedup row, reply included). Flushing in such a flow is an error."""
    handler.read_only = True  # type: ignore[attr-defined]
    return handler


def is_read_only(handler: Handler | None) -> bool:
    return handler is None or bool(getattr(handler, "read_only", False))


def planned(handler: Handler) -> Handler:
    """Mark a flow that knows its reply and all its writes before writing (a message stored for
    staff): the boundary runs the dedup row and the writes as one transaction sent in one batch,
    one round trip on PostgreSQL. The session it is given is for reading only."""
    handler.planned = True  # type: ignore[attr-defined]
    return handler


def is_planned(handler: Handler | None) -> bool:
    return bool(getattr(handler, "planned", False))


def run_planned(session: Session, outcome: Reply | Planned | None) -> Reply | None:
    """A planned flow's writes run through `session` (where no batch is at hand: a flow called
    from another, a test); any other flow's reply passes through."""
    if not isinstance(outcome, Planned):
        return outcome
    for write in outcome.writes:
        session.execute(write.statement, dict(write.values))
    return outcome.reply

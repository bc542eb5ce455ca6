"""Exactly-once delivery: the dedup row and the handler's work commit together, or not at all."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from handlers.messages import Inbound
from models import InboundEvent
from models.base import utcnow
from wechat.inbound import dedup_key
from wechat.replies import render
from wechat.router import Router

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    reply_xml: str | None  # plaintext reply XML, or None for "success"
    duplicate: bool  # True when an earlier delivery of the same event ran the handler


def deliver(session: Session, inbound: Inbound, router: Router, *, wait_seconds: float) -> Outcome:
    """Run the handler for `inbound` once across all processes and hosts.

    The dedup row is the transaction's first write. A concurrent retry of the same
    delivery blocks on that unique key (PostgreSQL) or on the write lock (SQLite)
    until the first transaction ends: if it committed, the retry finds its stored
    reply; if it rolled back, the retry runs the handler itself. The caller commits.
    """
    key = dedup_key(inbound)
    if session.get_bind().dialect.name == "postgresql":
        # Bound how long a retry waits for a slow first delivery; WeChat gives up at 5 s.
        session.execute(text(f"SET LOCAL lock_timeout = {int(wait_seconds * 1000)}"))
    event = InboundEvent(
        dedup_key=key,
        openid=inbound.openid,
        msg_type=inbound.msg_type,
        event=inbound.event,
        event_key=(inbound.event_key or "")[:255] or None,
        sent_at=inbound.sent_at,
        received_at=utcnow(),
    )
    session.add(event)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        stored = session.scalar(select(InboundEvent.reply_xml).where(InboundEvent.dedup_key == key))
        log.info("duplicate delivery %s answered from the first", key.split(":", 1)[0])
        return Outcome(stored, duplicate=True)
    except OperationalError as exc:
        if not _is_lock_timeout(exc):
            raise
        session.rollback()
        # The first delivery is still running past the window; it owns the reply.
        log.warning("duplicate delivery still in flight after %.1fs", wait_seconds)
        return Outcome(None, duplicate=True)
    reply = router.dispatch(session, inbound)
    if reply is not None:
        event.reply_xml = render(reply, inbound)
        session.flush()
    return Outcome(event.reply_xml, duplicate=False)


def _is_lock_timeout(exc: OperationalError) -> bool:
    # PostgreSQL lock_not_available (55P03); SQLite reports "database is locked".
    code = getattr(exc.orig, "sqlstate", None)
    return code == "55P03" or "database is locked" in str(exc.orig)

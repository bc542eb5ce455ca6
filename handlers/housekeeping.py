"""Housekeeping: pruning records that have served their purpose (old dedup rows)."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from models import InboundEvent
from models.base import utcnow

# WeChat retries within seconds; a week of dedup rows also answers "what did we reply?"
INBOUND_EVENT_RETENTION = timedelta(days=7)


def prune_inbound_events(session: Session, retention: timedelta = INBOUND_EVENT_RETENTION) -> int:
    cutoff = utcnow() - retention
    result = session.execute(delete(InboundEvent).where(InboundEvent.received_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]

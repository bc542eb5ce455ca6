"""Housekeeping: pruning records that have served their purpose (old dedup rows, finished jobs)."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from models import InboundEvent, Job
from models.base import utcnow

# WeChat retries within seconds; a week of dedup rows also answers "what did we reply?"
INBOUND_EVENT_RETENTION = timedelta(days=7)


def prune_inbound_events(session: Session, retention: timedelta = INBOUND_EVENT_RETENTION) -> int:
    cutoff = utcnow() - retention
    result = session.execute(delete(InboundEvent).where(InboundEvent.received_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# Finished jobs stay a month for "what happened?"; failed ones stay until staff act on them.
DONE_JOB_RETENTION = timedelta(days=30)


def prune_done_jobs(session: Session, retention: timedelta = DONE_JOB_RETENTION) -> int:
    cutoff = utcnow() - retention
    result = session.execute(delete(Job).where(Job.status == "done", Job.finished_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]

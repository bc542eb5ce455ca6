"""Rate limits kept in the database, so every web host counts the same actions."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import RateEvent

# Old events are deleted by the retention sweep (handlers/privacy/registry.py: rate_events), after
# a day: longer than the longest window any limit uses.


def key_of(*parts: object) -> str:
    """A stable, non-reversible key: addresses and ids are not stored in clear."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


def allow(session: Session, bucket: str, key: str, now: datetime, limit: int, window: timedelta) -> bool:
    """Count one action of `key` in `bucket` and say whether it is within `limit` per `window`.
    A refused action is not counted, so waiting always helps (flush only)."""
    used = session.scalar(select(func.count()).select_from(RateEvent).where(
        RateEvent.bucket == bucket, RateEvent.key == key, RateEvent.at > now - window)) or 0
    if used >= limit:
        return False
    session.add(RateEvent(bucket=bucket, key=key, at=now))
    session.flush()
    return True

"""Periodic work: each period's run is one job row with a dedup key, so N schedulers make one run."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from huey import crontab
from sqlalchemy.orm import Session

from handlers.outbox import record_job
from handlers.payments import notifications
from handlers.privacy.requests import has_due_erasures


@dataclass(frozen=True)
class Periodic:
    kind: str  # the job kind recorded each period
    schedule: str  # crontab fields "minute hour day month day_of_week", UTC
    period: str  # "minute", "hour" or "day": what one run covers (the dedup key)
    # A cheap check that there is anything to do: when it says no, no job row is written
    # (a minutely job would otherwise add 1,440 rows a day to an idle system).
    needed: Callable[[Session], bool] | None = None

    def crontab(self):  # type: ignore[no-untyped-def]
        minute, hour, day, month, dow = self.schedule.split()
        return crontab(minute=minute, hour=hour, day=day, month=month, day_of_week=dow)

    def period_key(self, now: datetime) -> str:
        fmt = {"minute": "%Y-%m-%dT%H:%M", "hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d"}[self.period]
        return f"periodic:{self.kind}:{now.strftime(fmt)}"


PERIODIC: tuple[Periodic, ...] = (
    # Retention of personal data (handlers/privacy/registry.py), at 03:23 China time: the quietest
    # hour of a student platform, so a large day of deletes meets little traffic.
    Periodic("privacy.retention_sweep", "23 19 * * *", "day"),
    Periodic("housekeeping.sweep_orphan_blobs", "43 4 * * *", "day"),
    # Erasures whose 7-day cooling-off is over, hourly: each becomes its own job (and transaction).
    Periodic("privacy.schedule_erasures", "13 * * * *", "hour", needed=has_due_erasures),
    Periodic("payments.reconcile", "* * * * *", "minute", needed=notifications.has_unsettled_orders),
    # Pass and approval notices every 10 minutes, a minute after each window closes (so changes
    # committed just after it still count); yesterday's digest at 09:05 China time.
    Periodic("pushes.notices", "1-59/10 * * * *", "minute"),
    Periodic("pushes.digests", "5 1 * * *", "day"),
)


def record_period(session: Session, periodic: Periodic, now: datetime) -> int | None:
    """Record this period's job unless another scheduler already did, or there is nothing for it
    to do; returns its id or None."""
    if periodic.needed is not None and not periodic.needed(session):
        return None
    job = record_job(session, periodic.kind, {"period": periodic.period_key(now)},
                     dedup_key=periodic.period_key(now), max_attempts=3)
    return job.id if job else None

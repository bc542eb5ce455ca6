"""Running one job: claim it with a lease, do it, and commit the effects with the `done` mark."""
from __future__ import annotations

import logging
import os
import secrets
import socket
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from jobs.context import JobContext, JobRegistry
from models import Job
from models.base import utcnow
from models.status import JobStatus

log = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"[:100]

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Policy:
    lease: timedelta = timedelta(minutes=5)
    retry_base: timedelta = timedelta(seconds=10)
    retry_max: timedelta = timedelta(hours=1)
    # A pending job handed to the queue this long ago and still pending was lost there.
    requeue_after: timedelta = timedelta(seconds=60)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Policy":
        return cls(
            lease=timedelta(seconds=float(config["JOB_LEASE_SECONDS"])),
            retry_base=timedelta(seconds=float(config["JOB_RETRY_BASE_SECONDS"])),
            retry_max=timedelta(seconds=float(config["JOB_RETRY_MAX_SECONDS"])),
            requeue_after=timedelta(seconds=float(config["JOB_REQUEUE_SECONDS"])),
        )

    def backoff(self, attempts: int) -> timedelta:
        """Exponential: base, 2×base, 4×base … capped."""
        return min(self.retry_base * (2 ** max(attempts - 1, 0)), self.retry_max)


@dataclass(frozen=True)
class Outcome:
    status: str  # "done", "retry", "failed", "skipped", "lost-lease"
    retry_in: timedelta | None = None
    kind: str = "-"


def run_job(
    sessions: sessionmaker[Session],
    registry: JobRegistry,
    job_id: int,
    *,
    config: Mapping[str, Any],
    policy: Policy,
    services: dict[str, Any] | None = None,
    clock: Clock = utcnow,
) -> Outcome:
    """Run job `job_id` if it is due and nobody else holds it. Safe to call any number of times."""
    token = secrets.token_hex(16)
    now = clock()
    with sessions() as session:
        # A dead worker's job that already had its last attempt is not run again: it fails for
        # good (staff see it in /console/jobs and may retry it by hand). Otherwise a job that
        # kills its worker (or a send that may have reached WeChat) would run without end.
        exhausted = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.lease_until < now,
                   Job.attempts >= Job.max_attempts)
            .values(status=JobStatus.FAILED, finished_at=now, lease_until=None,
                    last_error="the worker stopped during the last attempt (lease expired); not run again")
            .returning(Job.kind, Job.payload)
        ).first()
        if exhausted is not None and registry.abandoned(exhausted[0]) is not None:
            registry.abandoned(exhausted[0])(session, dict(exhausted[1]))  # type: ignore[misc]
        session.commit()
        if exhausted is not None:
            log.error("job %s: its worker died on the last attempt; marked failed", job_id)
            return Outcome("failed")
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id)
            .where(or_(
                and_(Job.status == JobStatus.PENDING, Job.run_after <= now),
                and_(Job.status == JobStatus.RUNNING, Job.lease_until < now),  # its worker died
            ))
            .values(status=JobStatus.RUNNING, claim_token=token, claimed_by=WORKER_ID, lease_until=now + policy.lease,
                    attempts=Job.attempts + 1)
        ).rowcount
        session.commit()
        if not claimed:
            return Outcome("skipped")
        job = session.scalars(select(Job).where(Job.id == job_id)).one()
        kind, payload, attempt, max_attempts = job.kind, dict(job.payload), job.attempts, job.max_attempts
        session.commit()

    fn = registry.get(kind)
    with sessions() as session:
        try:
            if fn is None:
                raise LookupError(f"no job kind {kind!r} in this worker")
            fn(JobContext(session, config, job_id, attempt, services or {}, clock), payload)
            done = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.claim_token == token)
                .values(status=JobStatus.DONE, finished_at=clock(), lease_until=None, last_error=None)
            ).rowcount
            if not done:
                # Our lease expired and another worker took the job: its run wins, ours is undone.
                session.rollback()
                log.warning("job %s (%s) lost its lease; effects rolled back", job_id, kind)
                return Outcome("lost-lease", kind=kind)
            session.commit()
            log.info("job %s (%s) done on attempt %s", job_id, kind, attempt)
            return Outcome("done", kind=kind)
        except Exception as exc:  # noqa: BLE001 - any failure is recorded on the job
            session.rollback()
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]
            return _record_failure(session, job_id, kind, token, attempt, max_attempts, error, policy, clock)


def _record_failure(
    session: Session, job_id: int, kind: str, token: str, attempt: int, max_attempts: int,
    error: str, policy: Policy, clock: Clock,
) -> Outcome:
    now = clock()
    if attempt >= max_attempts:
        values: dict[str, Any] = dict(status=JobStatus.FAILED, finished_at=now, lease_until=None, last_error=error)
        outcome = Outcome("failed", kind=kind)
        log.error("job %s (%s) failed for good after %s attempts: %s", job_id, kind, attempt, error)
    else:
        delay = policy.backoff(attempt)
        # enqueued_at = when the delayed hand-over is due, so the sweep leaves it alone until then.
        values = dict(status=JobStatus.PENDING, run_after=now + delay, lease_until=None, last_error=error,
                      enqueued_at=now + delay)
        outcome = Outcome("retry", delay, kind)
        log.warning("job %s (%s) attempt %s failed, retry in %ss: %s", job_id, kind, attempt,
                    delay.total_seconds(), error)
    session.execute(update(Job).where(Job.id == job_id, Job.claim_token == token).values(**values))
    session.commit()
    return outcome


def due_for_requeue(session: Session, policy: Policy, *, limit: int = 500, clock: Clock = utcnow) -> list[int]:
    """Jobs the queue should have run by now: recorded but never handed over (a crash between
    commit and enqueue), lost by the queue, due after a backoff, or held by a dead worker.
    Marks them enqueued now; the caller commits, then enqueues."""
    now = clock()
    stale = now - policy.requeue_after
    ids = list(session.scalars(
        select(Job.id)
        .where(or_(
            and_(Job.status == JobStatus.PENDING, Job.run_after <= now,
                 or_(Job.enqueued_at.is_(None), Job.enqueued_at < stale)),
            and_(Job.status == JobStatus.RUNNING, Job.lease_until < now),
        ))
        .order_by(Job.id)
        .limit(limit)
    ))
    if ids:
        session.execute(update(Job).where(Job.id.in_(ids)).values(enqueued_at=now))
    return ids

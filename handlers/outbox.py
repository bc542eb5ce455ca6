"""Recording background work: a job row written in the caller's transaction, handed to the queue after commit."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from models import Job
from models.base import utcnow
from models.status import JobStatus

# Where a session collects the ids it recorded; the boundary enqueues them after commit.
NEW_JOBS = "xinwei.new_jobs"


def record_job(
    session: Session,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    dedup_key: str | None = None,
    max_attempts: int = 5,
    run_after: datetime | None = None,
) -> Job | None:
    """Record `kind` to run after this transaction commits.

    With a `dedup_key`, a second recording of the same key (another host, a retry)
    is a no-op and returns None. Nothing reaches the queue unless the commit does.
    """
    # Job rows are stamped by the real clock, not a flow's `now`: the queue and its workers run on
    # it, whatever clock a test moves for the flows.
    now = utcnow()
    values = dict(kind=kind, payload=payload or {}, status=JobStatus.PENDING, attempts=0, max_attempts=max_attempts,
                  run_after=run_after or now, dedup_key=dedup_key, created_at=now)
    if dedup_key is None:
        job = Job(**values)
        session.add(job)
        session.flush()
    else:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        job_id = session.scalar(
            insert(Job).values(**values).on_conflict_do_nothing(index_elements=["dedup_key"]).returning(Job.id)
        )
        if job_id is None:
            return None
        job = session.scalars(select(Job).where(Job.id == job_id)).one()
    session.info.setdefault(NEW_JOBS, []).append(job.id)
    return job


def list_failed_jobs(session: Session, limit: int = 100) -> list[Job]:
    """Jobs that ran out of attempts, newest first, with their last error: for staff."""
    return list(session.scalars(
        select(Job).where(Job.status == JobStatus.FAILED).order_by(Job.finished_at.desc()).limit(limit)
    ))


def retry_failed_job(session: Session, job_id: int, extra_attempts: int = 3) -> Job | None:
    """Give a failed job more attempts (staff, after fixing the cause). History stays on the row."""
    job = session.scalar(select(Job).where(Job.id == job_id, Job.status == JobStatus.FAILED))
    if job is None:
        return None
    job.status = JobStatus.PENDING
    job.max_attempts = job.attempts + extra_attempts
    job.run_after = utcnow()
    job.finished_at = None
    job.enqueued_at = None
    session.flush()
    session.info.setdefault(NEW_JOBS, []).append(job.id)
    return job

"""Jobs: background work recorded in the same transaction as the change that causes it."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAtMixin, utcnow
from models.status import JobStatus


class Job(CreatedAtMixin, Base):
    """One unit of background work; the queue only carries its id.

    The row is the truth: a job is pending until a worker claims it (a lease with a
    claim token), and done only when the worker's own transaction, holding the same
    token, commits its effects and the `done` mark together.
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"), default=dict)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=5)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    # Set while a worker holds the job; an expired lease means that worker died.
    lease_until: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(32))
    # host:pid of the worker holding (or last holding) the job, for operators.
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    # When it was last handed to the queue; the sweep re-enqueues what sat too long.
    enqueued_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None]
    # Makes recording idempotent: one job per key (a periodic run, a push per event).
    dedup_key: Mapped[str | None] = mapped_column(String(200), unique=True)

    __table_args__ = (Index("ix_jobs_status_run_after", "status", "run_after"),)

"""Housekeeping: pruning records that have served their purpose (old dedup rows, finished jobs, export files)."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models import CertificateExport, InboundEvent, Job, StudentExport
from models.status import CertificateExportStatus, JobStatus, StudentExportStatus

# WeChat retries within seconds; a week of dedup rows also answers "what did we reply?"
INBOUND_EVENT_RETENTION = timedelta(days=7)


def prune_inbound_events(session: Session, retention: timedelta = INBOUND_EVENT_RETENTION, *, now: datetime) -> int:
    cutoff = now - retention
    result = session.execute(delete(InboundEvent).where(InboundEvent.received_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# Finished jobs stay a month for "what happened?"; failed ones stay until staff act on them.
DONE_JOB_RETENTION = timedelta(days=30)


def prune_done_jobs(session: Session, retention: timedelta = DONE_JOB_RETENTION, *, now: datetime) -> int:
    cutoff = now - retention
    result = session.execute(delete(Job).where(Job.status == JobStatus.DONE, Job.finished_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# Export files hold personal data (names, student numbers, phones): they are fetched right after
# they are built, so a week is ample; the row stays (who exported what, when) as "expired".
EXPORT_RETENTION = timedelta(days=7)


def prune_exports(session: Session, export_dir: Path, now: datetime, retention: timedelta = EXPORT_RETENTION) -> int:
    """Delete finished export files older than `retention` and mark their rows expired (flush only)."""
    removed = 0
    for model, status in ((StudentExport, StudentExportStatus), (CertificateExport, CertificateExportStatus)):
        for export in session.scalars(select(model).where(
                model.status == status.DONE, model.finished_at < now - retention)):
            if export.file_name:
                (export_dir / export.file_name).unlink(missing_ok=True)
            export.status, export.file_name = status.EXPIRED, None
            removed += 1
    session.flush()
    return removed

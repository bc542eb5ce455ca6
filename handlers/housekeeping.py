"""Housekeeping: pruning records that have served their purpose (old dedup rows, finished jobs, export files)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from blobstore import BlobStore
from models import (
    CertificateExport,
    CertificateFile,
    InboundEvent,
    Job,
    RosterFile,
    StudentExport,
    VideoUpload,
    VideoVersion,
)
from models.status import CertificateExportStatus, JobStatus, StudentExportStatus, VideoStatus

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


def prune_exports(session: Session, blobs: BlobStore, now: datetime, retention: timedelta = EXPORT_RETENTION) -> int:
    """Delete finished export files older than `retention` and mark their rows expired (flush only)."""
    removed = 0
    for model, status in ((StudentExport, StudentExportStatus), (CertificateExport, CertificateExportStatus)):
        for export in session.scalars(select(model).where(
                model.status == status.DONE, model.finished_at < now - retention)):
            if export.blob_key:
                blobs.delete(export.blob_key)
            export.status, export.file_name, export.blob_key = status.EXPIRED, None, None
            removed += 1
    session.flush()
    return removed


# A blob younger than this is never an orphan: its row may be in a transaction not committed yet
# (a certificate being issued, an upload being queued). Older and pointed at by no row, it is one:
# a rolled-back issue, a file replaced by a re-render, a half-written local upload.
ORPHAN_GRACE = timedelta(hours=6)
# Where rows point at blobs: (key prefix, the column holding the key).
BLOB_OWNERS = (
    ("certificates/", CertificateFile.blob_key),
    ("rosters/", RosterFile.blob_key),
    ("exports/certificates/", CertificateExport.blob_key),
    ("exports/students/", StudentExport.blob_key),
)


def sweep_orphan_blobs(session: Session, blobs: BlobStore, now: datetime, grace: timedelta = ORPHAN_GRACE) -> int:
    """Delete the blobs no row points at, older than `grace`; returns how many. Prefix by prefix,
    so only one table's keys are in memory at a time. Reads only: the deletes are in the store."""
    removed = 0
    for prefix, column in BLOB_OWNERS:
        owned = set(session.scalars(select(column).where(column.is_not(None), column.like(prefix + "%"))))
        session.rollback()  # ends the read before the (slow) listing
        removed += _sweep(blobs, prefix, lambda key: key in owned, now - grace)  # noqa: B023 - used at once
    # A lecture version owns its source and everything under its ladder's folder.
    lectures = {f"lectures/{asset}/v{number}/" for asset, number in session.execute(
        select(VideoVersion.asset_id, VideoVersion.number).where(VideoVersion.status != VideoStatus.FAILED))}
    # ...but of its subtitle files only the current one: a replaced file is an orphan.
    subtitles = set(session.scalars(select(VideoVersion.subtitles_key).where(VideoVersion.subtitles_key.is_not(None))))
    # An upload owns its chunks until its job has read them.
    uploading = {f"uploads/{upload_id}/" for (upload_id,) in session.execute(select(VideoUpload.id).join(
        VideoVersion, VideoVersion.id == VideoUpload.version_id).where(VideoVersion.status.in_(
            (VideoStatus.UPLOADING, VideoStatus.PROBING))))}
    session.rollback()
    removed += _sweep(blobs, "lectures/", lambda key: _folder(key, 3) in lectures and (
        not key.rsplit("/", 1)[-1].startswith("subtitles-") or key in subtitles), now - grace)
    removed += _sweep(blobs, "uploads/", lambda key: _folder(key, 2) in uploading, now - grace)
    return removed


def _folder(key: str, depth: int) -> str:
    return "/".join(key.split("/")[:depth]) + "/"


def _sweep(blobs: BlobStore, prefix: str, owned: Callable[[str], bool], before: datetime) -> int:
    removed = 0
    for blob in blobs.list(prefix):
        if not owned(blob.key) and blob.modified < before:
            blobs.delete(blob.key)
            removed += 1
    return removed

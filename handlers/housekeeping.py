"""Housekeeping: deleting blobs no row points at (retention of rows and their files: handlers/privacy/retention.py)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from blobstore import BlobStore
from models import CertificateExport, CertificateFile, DataRequest, RosterFile, StudentExport, VideoUpload, VideoVersion
from models.status import VideoStatus

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
    ("privacy/copies/", DataRequest.blob_key),
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

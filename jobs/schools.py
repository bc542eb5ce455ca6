"""School jobs: building a school's student export, and processing an uploaded roster."""
from __future__ import annotations

from typing import Any

from sqlalchemy import update

from handlers.schools import exports, roster
from jobs.context import JobContext, JobRegistry
from models import StudentExport
from models.status import StudentExportStatus


def _export_students(ctx: JobContext, payload: dict[str, Any]) -> None:
    export_id = int(payload["export_id"])

    def progress(done: int, total: int) -> None:
        # Kept apart from the job's transaction: the page polling the export sees it move.
        with ctx.separately() as side:
            side.execute(update(StudentExport).where(StudentExport.id == export_id)
                         .values(status=StudentExportStatus.RUNNING, done_count=done, total=total))

    exports.build_export(ctx.session, export_id, ctx.now, progress, blobs=ctx.services["blob_store"]())


def _process_roster_upload(ctx: JobContext, payload: dict[str, Any]) -> None:
    upload_id = int(payload["upload_id"])

    def progress(rows: int) -> None:
        # Kept apart from the job's transaction: the report page polling the upload sees the rows counted.
        with ctx.separately() as side:
            roster.record_progress(side, upload_id, rows)

    roster.process_upload(ctx.session, upload_id, progress, clock=ctx.now, blobs=ctx.services["blob_store"]())


def register(registry: JobRegistry) -> None:
    registry.register(exports.EXPORT_JOB, _export_students)
    registry.register(roster.UPLOAD_JOB, _process_roster_upload)

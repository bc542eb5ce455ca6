"""Certificate exports: staff ask for a zip of issued PDFs; a job builds it with progress."""
from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Callable
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from blobstore import BlobStore
from handlers.certificates.claims import certificate_file
from handlers.errors import Refused
from handlers.outbox import record_job
from models import (
    Certificate,
    CertificateExport,
    School,
)
from models.status import CertificateExportStatus, CertificateStatus

EXPORT_JOB = "certificates.export"


def request_export(session: Session, requested_by: str, *, school_id: int | None, issued_from: date | None,
                   issued_until: date | None, now: datetime) -> CertificateExport:
    """Record an export of valid certificates (one school or all, a period or all time); a job builds it."""
    export = CertificateExport(requested_by=requested_by[:100], school_id=school_id, issued_from=issued_from,
                               issued_until=issued_until, status=CertificateExportStatus.PENDING, created_at=now)
    session.add(export)
    session.flush()
    record_job(session, EXPORT_JOB, {"export_id": export.id})
    return export


def export_query(export: CertificateExport):  # type: ignore[no-untyped-def]
    """The certificates an export contains, in serial order."""
    query = select(Certificate.id, Certificate.serial, Certificate.version, Certificate.holder_name).where(
        Certificate.status == CertificateStatus.VALID)
    if export.school_id is not None:
        school_name = select(School.name).where(School.id == export.school_id).scalar_subquery()
        query = query.where(Certificate.school_name == school_name)
    if export.issued_from is not None:
        query = query.where(Certificate.issued_on >= export.issued_from)
    if export.issued_until is not None:
        query = query.where(Certificate.issued_on <= export.issued_until)
    return query.order_by(Certificate.serial, Certificate.version)


def build_export(
    session: Session, export_id: int, progress: Callable[[int, int], None], *,
    clock: Callable[[], datetime], blobs: BlobStore,
) -> CertificateExport:
    """Write the export's zip: each stored PDF, one at a time (memory stays flat however many),
    into a temporary file on this worker, then into the blob store whole. `progress(done, total)`
    is called every few certificates so a page can show how far it got.

    It only reads until the end, and ends its read transaction after every certificate: on
    SQLite a transaction holds the one write lock, which progress updates (and everyone else)
    need in between. The only write, the export's final state, comes last."""
    export = session.get(CertificateExport, export_id)
    if export is None:
        raise Refused("no_export", "导出记录不存在。")
    rows = session.execute(export_query(export)).all()
    session.rollback()
    total = len(rows)
    name = f"certificates-{export.id}.zip"
    key = f"exports/certificates/{export.id}/{name}"
    with tempfile.TemporaryFile() as partial:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as archive:
            for done, row in enumerate(rows, 1):
                stored = certificate_file(session, row.id, "pdf")
                pdf_key = stored.blob_key if stored is not None else None
                session.rollback()  # nothing written yet: ends the read, frees the lock and the row
                if pdf_key is not None:
                    suffix = f"-v{row.version}" if row.version > 1 else ""
                    # PDFs are compressed already: stored as they are.
                    archive.writestr(f"{row.serial}{suffix}.pdf", blobs.get(pdf_key))
                if done % 25 == 0 or done == total:
                    progress(done, total)
        partial.seek(0)
        size = blobs.put(key, partial, "application/zip")
    export = session.get(CertificateExport, export_id)
    assert export is not None
    export.status, export.total, export.done_count = CertificateExportStatus.DONE, total, total
    export.file_name, export.blob_key, export.size_bytes, export.finished_at = name, key, size, clock()
    session.flush()
    return export

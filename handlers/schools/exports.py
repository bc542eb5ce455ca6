"""Student table exports for school admins: requested, built by a job (formula-safe), fetched."""
from __future__ import annotations

import csv
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from blobstore import BlobStore
from handlers import china_time
from handlers.catalog.loader import current_version
from handlers.errors import Refused
from handlers.outbox import record_job
from handlers.schools.console import STATUS_NAMES, Filters, count_rows, student_page
from models import Course, StudentExport
from models.status import ProfileStatus, StudentExportStatus

EXPORT_JOB = "schools.export_students"
FORMATS = ("xlsx", "csv")
TYPES = {"csv": "text/csv; charset=utf-8",
         "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
# Each export is a job reading the whole table and a file on disk: a school has at most this many
# unfinished at once (one stuck by a failed job stops counting after EXPORT_BUSY_WINDOW).
MAX_UNFINISHED_EXPORTS = 3
EXPORT_BUSY_WINDOW = timedelta(hours=1)


# --- exports ---------------------------------------------------------------------------------


def request_export(session: Session, school_id: int, course_id: int, requested_by: str, file_format: str,
                   filters: Filters, *, now: datetime) -> StudentExport:
    """Record an export of the table as it is filtered now; a job writes the file."""
    if file_format not in FORMATS:
        raise Refused("bad_format", "请选择导出格式：Excel (XLSX) 或 CSV。")
    if session.get(Course, course_id) is None:
        raise Refused("no_course", "没有这门课程。")
    unfinished = session.scalar(select(func.count()).select_from(StudentExport).where(
        StudentExport.school_id == school_id,
        StudentExport.status.in_((StudentExportStatus.PENDING, StudentExportStatus.RUNNING)),
        StudentExport.created_at >= now - EXPORT_BUSY_WINDOW)) or 0
    if unfinished >= MAX_UNFINISHED_EXPORTS:
        raise Refused("exports_busy", f"已有 {unfinished} 个导出正在生成，请等它们完成后再导出。")
    export = StudentExport(school_id=school_id, course_id=course_id, requested_by=requested_by[:100],
                           file_format=file_format, filters=filters.as_dict(),
                           status=StudentExportStatus.PENDING)
    session.add(export)
    session.flush()
    record_job(session, EXPORT_JOB, {"export_id": export.id})
    return export


def exports_of(session: Session, school_id: int, limit: int = 10) -> list[StudentExport]:
    return list(session.scalars(select(StudentExport).where(StudentExport.school_id == school_id)
                                .order_by(StudentExport.id.desc()).limit(limit)))


def export_of(session: Session, school_id: int, export_id: int) -> StudentExport | None:
    return session.scalar(select(StudentExport).where(StudentExport.id == export_id,
                                                      StudentExport.school_id == school_id))


def safe_cell(value: Any) -> Any:
    """A text cell Excel would run as a formula (= + - @, or a tab/CR first) starts with ' instead."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def export_rows(session: Session, export: StudentExport, now: datetime, batch: int = 1000
                ) -> Iterator[tuple[list[str], list[list[Any]]]]:
    """The header once, then batches of rows, read by keyset like the page (flat memory)."""
    filters = Filters(**{k if k != "days" else "stuck_days": v for k, v in (export.filters or {}).items()})
    school_id, course_id = export.school_id, export.course_id
    course = session.get(Course, course_id)
    version = current_version(session, course.code) if course else None
    titles = [t.title for t in version.topics] if version else []
    header = ["姓名", "学号", "学院", "年级", "认证状态", "学习状态", "完成专题数"] + \
        [f"专题{i}：{title}" for i, title in enumerate(titles, 1)] + ["测试次数", "总分", "最近进度（UTC）"]
    after = None
    first = True
    while True:
        page = student_page(session, school_id, course_id, filters, after, now, limit=batch)
        out = []
        for r in page.rows:
            scores = list(r.topic_scores or []) + [None] * max(0, len(titles) - len(r.topic_scores or []))
            out.append([r.real_name, r.student_number, r.college, r.grade, STATUS_NAMES.get(r.status, r.status),
                        r.state_name if r.status == ProfileStatus.VERIFIED else "", r.topics_done or 0,
                        *scores[:len(titles)], r.attempts or 0, r.total_score,
                        china_time.text(r.last_progress_at)])
        yield (header if first else []), out
        first = False
        if page.next_after is None:
            return
        after = page.next_after


def build_export(session: Session, export_id: int, clock: Callable[[], datetime],
                 progress: Callable[[int, int], None], batch: int = 1000, *, blobs: BlobStore) -> StudentExport:
    """Write the file into a temporary file on this worker, then into the blob store whole;
    `progress(done, total)` after every batch. Reads end their transaction between batches (SQLite's one write
    lock stays free for the progress updates); the export's final state is the only write."""
    now = clock()  # the table as it stands when the job starts; `clock()` again when it ends
    export = session.get(StudentExport, export_id)
    if export is None:
        raise Refused("no_export", "导出记录不存在。")
    filters = Filters(**{k if k != "days" else "stuck_days": v for k, v in (export.filters or {}).items()})
    total = count_rows(session, export.school_id, export.course_id, filters, now)
    name = f"students-{export.school_id}-{export.id}.{export.file_format}"
    file_format = export.file_format
    session.rollback()  # ends the read: on SQLite it would hold the lock the progress update needs
    scratch = tempfile.TemporaryDirectory(prefix="xinwei-export-")
    partial = Path(scratch.name) / name
    done = 0
    progress(0, total)
    if file_format == "csv":
        # UTF-8 with a BOM: Excel opens it as UTF-8 (Chinese intact) instead of the local code page.
        with open(partial, "w", encoding="utf-8-sig", newline="") as out:
            writer = csv.writer(out)
            for header, rows in export_rows(session, export, now, batch):
                session.rollback()
                if header:
                    writer.writerow(header)
                writer.writerows([[safe_cell(v) for v in row] for row in rows])
                done += len(rows)
                progress(done, max(total, done))
    else:
        from openpyxl import Workbook  # imported here: only export jobs need it

        book = Workbook(write_only=True)
        sheet = book.create_sheet("学生")
        for header, rows in export_rows(session, export, now, batch):
            session.rollback()
            if header:
                sheet.append(header)
            for row in rows:
                sheet.append([safe_cell(v) for v in row])
            done += len(rows)
            progress(done, max(total, done))
        book.save(partial)
    key = f"exports/students/{export_id}/{name}"
    with scratch, partial.open("rb") as finished:
        size = blobs.put(key, finished, TYPES[file_format])
    export = session.get(StudentExport, export_id)
    assert export is not None
    export.status, export.total, export.done_count = StudentExportStatus.DONE, done, done
    export.file_name, export.blob_key, export.size_bytes, export.finished_at = name, key, size, clock()
    session.flush()
    return export

"""School rosters: an uploaded list queued, processed by a job and merged by student number; searching it."""
from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from blobstore import BlobMissing, BlobStore
from handlers.accounts.identity import verify_pending
from handlers.audit import Actor, record_audit
from handlers.errors import Refused
from handlers.outbox import record_job
from handlers.schools.roster_cells import LABELS
from handlers.schools.roster_files import REPORT_PROBLEMS_KEPT, ParsedRoster, parse_roster, sniff
from models import RosterEntry, RosterFile, RosterUpload, School
from models.status import RosterUploadStatus

MODES = ("merge", "replace")
# Primary keys per DELETE … IN (…): under SQLite's bound-parameter limit.
DELETE_CHUNK = 500

UPLOAD_JOB = "roster.process_upload"
UNFINISHED = (RosterUploadStatus.QUEUED, RosterUploadStatus.RUNNING)
# An upload still queued or running after this long is stuck (its job failed for good: staff see it
# under failed jobs); it no longer blocks the school's next upload.
BUSY_WINDOW = timedelta(minutes=30)


# ---------------------------------------------------------------------------------------------- merging


def merge_roster(session: Session, actor: Actor, school_id: int, parsed: ParsedRoster, file_name: str,
                 mode: str = "merge", upload: RosterUpload | None = None, *, now: datetime) -> RosterUpload:
    """Upsert the file's rows by (school, student number); rows the file does not mention are kept
    ("merge") or removed ("replace", only from a file without rejected rows, so a typo never deletes
    a student). Then verify pending profiles that now match, and record the upload (`upload`, the queued
    one, or a new row) with its report. Verified profiles stay verified whatever the roster loses. Flushes only."""
    if mode not in MODES:
        raise Refused("bad_mode", "未知的上传方式")
    if mode == "replace" and parsed.rejected:
        raise Refused("replace_with_rejections", f"替换方式要求文件中没有被拒绝的行（本文件有 {parsed.rejected} 行）："
                                                 "请修正后再上传，或改用合并方式")
    # One upload per school at a time (PostgreSQL; SQLite writers queue anyway): two merges of the
    # same school would otherwise race on the unique (school, number) rows.
    session.scalar(select(School.id).where(School.id == school_id).with_for_update())
    columns = (RosterEntry.id, RosterEntry.student_number, RosterEntry.real_name, RosterEntry.college,
               RosterEntry.grade, RosterEntry.phone)
    existing = {row.student_number: row for row in session.execute(
        select(*columns).where(RosterEntry.school_id == school_id))}
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for entry in parsed.entries:
        old = existing.get(entry["student_number"] or "")
        if old is None:
            inserts.append({"school_id": school_id, **entry})
            continue
        # An empty cell never erases what an earlier upload said.
        changes = {name: value for name, value in entry.items()
                   if value is not None and getattr(old, name) != value}
        if changes:
            updates.append({"id": old.id, **changes})
    if inserts:
        session.execute(insert(RosterEntry), inserts)
    for changed in _grouped(updates):
        session.execute(update(RosterEntry), changed)
    matched = len(parsed.entries) - len(inserts)
    listed = {entry["student_number"] for entry in parsed.entries}
    absent = [row for number, row in existing.items() if number not in listed] if mode == "replace" else []
    for start in range(0, len(absent), DELETE_CHUNK):
        chunk = [row.id for row in absent[start:start + DELETE_CHUNK]]
        session.execute(delete(RosterEntry).where(RosterEntry.id.in_(chunk)))
    verified = verify_pending(session, school_id, now=now)
    problems = parsed.problems[:REPORT_PROBLEMS_KEPT]
    report = {
        "kind": parsed.kind, "encoding": parsed.encoding, "delimiter": {",": "逗号", "\t": "制表符", ";": "分号"}.get(
            parsed.delimiter or "", None), "sheet": parsed.sheet, "header_row": parsed.header_row,
        "columns": {LABELS[name]: header for name, header in parsed.columns.items()},
        "blank": parsed.blank, "unchanged": matched - len(updates),
        "problems": [asdict(problem) for problem in problems],
        "problems_left_off": len(parsed.problems) - len(problems),
        "verified_profiles": [profile.id for profile in verified],
    }
    if upload is None:
        upload = RosterUpload(school_id=school_id, account_id=actor.account_id, uploaded_by=actor.name[:100],
                              file_name=(file_name or "roster")[:200], mode=mode)
        session.add(upload)
    upload.rows, upload.accepted, upload.fixed, upload.rejected = (parsed.rows, parsed.accepted, parsed.fixed,
                                                                   parsed.rejected)
    upload.added, upload.updated, upload.kept = len(inserts), len(updates), len(existing) - matched - len(absent)
    upload.removed, upload.verified, upload.report = len(absent), len(verified), report
    upload.status, upload.parsed_rows = RosterUploadStatus.DONE, parsed.rows
    upload.error, upload.finished_at = None, now
    session.flush()
    record_audit(session, actor, "roster.upload", "roster_upload", upload.id, school_id=school_id,
                 after={"file_name": upload.file_name, "rows": upload.rows, "accepted": upload.accepted,
                        "fixed": upload.fixed, "rejected": upload.rejected, "added": upload.added,
                        "updated": upload.updated, "kept": upload.kept, "mode": mode, "removed": upload.removed,
                        "verified_profiles": report["verified_profiles"]},
                 before={"removed": [{"student_number": row.student_number, "real_name": row.real_name}
                                     for row in absent]} if absent else None)
    return upload


def request_upload(session: Session, actor: Actor, school_id: int, data: bytes, file_name: str,
                   mode: str = "merge", *, now: datetime, blobs: BlobStore) -> RosterUpload:
    """The request's part: cheap checks (size, kind by magic bytes, mode), then the upload queued with
    its bytes and a job to parse and merge it. One upload per school at a time: while one is queued or
    running, another is refused (the admin reads the first report before sending the next file; in
    replace mode their order decides the result). Flushes only."""
    if mode not in MODES:
        raise Refused("bad_mode", "未知的上传方式")
    sniff(data)
    # The school row lock serialises two admins uploading at once, so only one of them is queued.
    session.scalar(select(School.id).where(School.id == school_id).with_for_update())
    busy = session.scalar(select(RosterUpload).where(
        RosterUpload.school_id == school_id, RosterUpload.status.in_(UNFINISHED),
        RosterUpload.created_at >= now - BUSY_WINDOW).order_by(RosterUpload.id).limit(1))
    if busy is not None:
        raise Refused("roster_busy", f"上一份名单（{busy.file_name}）还在处理中，请等它完成、看过报告后再上传")
    upload = RosterUpload(school_id=school_id, account_id=actor.account_id, uploaded_by=actor.name[:100],
                          file_name=(file_name or "roster")[:200], mode=mode, status=RosterUploadStatus.QUEUED,
                          report={})
    session.add(upload)
    session.flush()
    key = f"rosters/{upload.id}/{hashlib.sha256(data).hexdigest()[:16]}"
    blobs.put(key, data)  # before the row that points at it; a rollback leaves an orphan for the sweep
    session.add(RosterFile(upload_id=upload.id, blob_key=key, size_bytes=len(data)))
    record_job(session, UPLOAD_JOB, {"upload_id": upload.id}, dedup_key=f"roster-upload:{upload.id}",
               max_attempts=3)
    session.flush()
    return upload


def process_upload(session: Session, upload_id: int, progress: Callable[[int], None], *,
                   clock: Callable[[], datetime], blobs: BlobStore) -> RosterUpload | None:
    """The job's part: parse the stored bytes (telling `progress` the rows read; it commits on its own
    connection, so this session writes nothing until the merge), then merge, or record why not. The
    bytes are deleted either way; the caller commits once. A finished upload is left alone (a re-run)."""
    upload = session.get(RosterUpload, upload_id)
    if upload is None or upload.status not in UNFINISHED:
        return upload
    stored = session.get(RosterFile, upload_id)
    school_id, account_id, name, file_name, mode = (upload.school_id, upload.account_id, upload.uploaded_by,
                                                    upload.file_name, upload.mode)
    key = stored.blob_key if stored is not None else None
    session.rollback()  # no read transaction held while parsing (SQLite: the progress writes need the lock)
    try:
        try:
            data = blobs.get(key) if key else None
        except BlobMissing:
            data = None
        if data is None:
            raise Refused("lost", "上传的文件已丢失，请重新上传")
        progress(0)
        parsed = parse_roster(data, progress)
        if not parsed.entries:
            raise Refused("nothing", f"文件中没有可导入的行（{parsed.rejected} 行有问题，{parsed.blank} 行为空），"
                                     "名单未改变。请按表头“姓名、学号”整理后重新上传")
        upload = session.get(RosterUpload, upload_id)
        assert upload is not None
        merge_roster(session, Actor(account_id, name, school_id), school_id, parsed, file_name, mode, upload,
                     now=clock())
    except Refused as refused:
        session.rollback()
        upload = session.get(RosterUpload, upload_id)
        assert upload is not None
        upload.status, upload.error, upload.finished_at = RosterUploadStatus.FAILED, refused.message, clock()
    session.execute(delete(RosterFile).where(RosterFile.upload_id == upload_id))
    if key:
        # A school's list of students is not kept a moment longer than its processing needs.
        blobs.delete(key)
    session.flush()
    return upload


def record_progress(connection: Any, upload_id: int, rows: int) -> None:
    """An upload's job is running and has read `rows` rows (never moves a finished upload back)."""
    connection.execute(update(RosterUpload).where(RosterUpload.id == upload_id,
                                                  RosterUpload.status.in_(UNFINISHED))
                       .values(status=RosterUploadStatus.RUNNING, parsed_rows=rows))


def _grouped(updates: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Bulk UPDATEs by primary key need the same columns in every row of a batch."""
    batches: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in updates:
        batches.setdefault(tuple(sorted(row)), []).append(row)
    yield from batches.values()


# ---------------------------------------------------------------------------------------------- reading back


def uploads_of(session: Session, school_id: int, limit: int = 20) -> list[RosterUpload]:
    return list(session.scalars(select(RosterUpload).where(RosterUpload.school_id == school_id)
                                .order_by(RosterUpload.created_at.desc(), RosterUpload.id.desc()).limit(limit)))


def upload_of(session: Session, school_id: int, upload_id: int) -> RosterUpload | None:
    """One upload of this school; another school's is None, as if it did not exist."""
    return session.scalar(select(RosterUpload).where(RosterUpload.id == upload_id,
                                                     RosterUpload.school_id == school_id))


def search_roster(session: Session, school_id: int, query: str = "", page: int = 1,
                  per_page: int = 50) -> tuple[list[RosterEntry], int]:
    """A page of the school's roster, by student number; `query` matches a number prefix or part of a name."""
    where = [RosterEntry.school_id == school_id]
    query = unicodedata.normalize("NFKC", query or "").strip()[:50]
    if query:
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(or_(RosterEntry.student_number.like(escaped.upper() + "%", escape="\\"),
                         RosterEntry.real_name.like("%" + escaped + "%", escape="\\")))
    total = session.scalar(select(func.count()).select_from(RosterEntry).where(*where)) or 0
    rows = session.scalars(select(RosterEntry).where(*where).order_by(RosterEntry.student_number)
                           .offset((max(page, 1) - 1) * per_page).limit(per_page))
    return list(rows), total

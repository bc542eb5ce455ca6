"""Students' data requests (a copy, an erasure): asking, cancelling, carrying out, and the staff queue.

Deadlines are the notice's: every request is answered within 15 days (PIPL art. 50 asks for a timely
answer; the notice promises 15 working days and we hold ourselves to calendar days). A copy is
built at once by a job. An erasure waits out a 7-day cooling-off period in which the student may
cancel (a tap on the wrong button, or a friend with their phone, costs nothing), then the periodic
job carries it out; staff may carry it out sooner from the queue.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from blobstore import BlobStore
from handlers.audit import SYSTEM, Actor, record_audit
from handlers.errors import Refused
from handlers.outbox import record_job
from handlers.privacy import erase as erasure
from handlers.privacy.copy import build_copy
from models import DataRequest, User
from models.base import utcnow
from models.status import DataRequestStatus

COPY, ERASE = "copy", "erase"
KINDS = {COPY: "数据副本", ERASE: "注销"}
STATUS_LABELS = {"pending": "待处理", "running": "生成中", "done": "已完成", "failed": "失败", "cancelled": "已撤销",
                 "expired": "已过期（文件已删除）"}
ANSWER_WITHIN = timedelta(days=15)
COOLING_OFF = timedelta(days=7)
# A copy is the whole record, zipped: enough for a student, too many for a script.
COPIES_PER_DAY = 3
COPY_JOB = "privacy.build_copy"
ERASE_JOB = "privacy.erase"
COPY_LINK_SECONDS = 600


def _open(session: Session, user_id: int, kind: str) -> DataRequest | None:
    return session.scalar(select(DataRequest).where(
        DataRequest.user_id == user_id, DataRequest.kind == kind,
        DataRequest.status.in_((DataRequestStatus.PENDING, DataRequestStatus.RUNNING))).limit(1))


def _lock_user(session: Session, user_id: int) -> None:
    """Serialize one student's requests (two taps, two phones): a row lock on PostgreSQL, the
    write lock on SQLite."""
    session.execute(update(User).where(User.id == user_id).values(id=User.id))


def ask_copy(session: Session, user_id: int, now: datetime) -> DataRequest:
    """A copy of everything: one at a time, at most COPIES_PER_DAY a day; built by a job."""
    _lock_user(session, user_id)
    existing = _open(session, user_id, COPY)
    if existing is not None:
        return existing  # a double tap gets the one being built
    today = session.scalar(select(func.count()).select_from(DataRequest).where(
        DataRequest.user_id == user_id, DataRequest.kind == COPY, DataRequest.requested_at > now - timedelta(days=1)))
    if (today or 0) >= COPIES_PER_DAY:
        raise Refused("too_many", f"每天最多生成 {COPIES_PER_DAY} 份数据副本，请明天再试。")
    request = DataRequest(user_id=user_id, kind=COPY, requested_at=now, run_after=now, due_at=now + ANSWER_WITHIN)
    session.add(request)
    session.flush()
    record_job(session, COPY_JOB, {"request_id": request.id}, dedup_key=f"privacy-copy:{request.id}")
    return request


def ask_erasure(session: Session, user_id: int, now: datetime) -> DataRequest:
    """Ask to be erased: refused while an order still needs the student's details; carried out
    after the cooling-off period."""
    _lock_user(session, user_id)
    erasure.check_can_erase(session, user_id)
    existing = _open(session, user_id, ERASE)
    if existing is not None:
        return existing
    request = DataRequest(user_id=user_id, kind=ERASE, requested_at=now, run_after=now + COOLING_OFF,
                          due_at=now + ANSWER_WITHIN)
    session.add(request)
    session.flush()
    return request


def cancel_erasure(session: Session, user_id: int, now: datetime) -> DataRequest:
    _lock_user(session, user_id)
    request = _open(session, user_id, ERASE)
    if request is None or request.status != DataRequestStatus.PENDING:
        raise Refused("no_request", "没有可撤销的注销申请。")
    request.status, request.finished_at = DataRequestStatus.CANCELLED, now
    session.flush()
    return request


def requests_of(session: Session, user_id: int) -> list[DataRequest]:
    return list(session.scalars(select(DataRequest).where(DataRequest.user_id == user_id)
                                .order_by(DataRequest.id.desc()).limit(20)))


def pending_erasure(session: Session, user_id: int) -> DataRequest | None:
    return _open(session, user_id, ERASE)


# -- carrying out ---------------------------------------------------------------------------------

def make_copy(session: Session, request_id: int, blobs: BlobStore, now: datetime) -> DataRequest | None:
    """The job: build the zip, store it, mark the request done (flush only)."""
    request = session.get(DataRequest, request_id)
    if request is None or request.kind != COPY or request.status not in (
            DataRequestStatus.PENDING, DataRequestStatus.RUNNING):
        return request
    user = session.get(User, request.user_id)
    if user is None or erasure.is_erased(user):
        request.status, request.finished_at = DataRequestStatus.CANCELLED, now
        return request
    data = build_copy(session, user, blobs, now)
    # The key holds a random part: a key guessed from the id alone never names someone's copy.
    key = f"privacy/copies/{request.id}-{secrets.token_hex(8)}.zip"
    blobs.put(key, data, "application/zip")
    request.status, request.finished_at = DataRequestStatus.DONE, now
    request.blob_key, request.size_bytes = key, len(data)
    session.flush()
    return request


def copy_file_name(request: DataRequest) -> str:
    return f"我的数据-{request.id}.zip"


def carry_out_erasure(session: Session, request_id: int, blobs: BlobStore, now: datetime,
                      actor: Actor = SYSTEM) -> DataRequest | None:
    """Erase the student of a pending request (the job after the cooling-off, or staff sooner).
    An order still in flight leaves the request pending with the reason, for staff to see."""
    request = session.get(DataRequest, request_id)
    if request is None or request.kind != ERASE or request.status != DataRequestStatus.PENDING:
        return request
    try:
        result = erasure.erase(session, request.user_id, blobs, now, actor=f"staff:{actor.name}"
                               if actor.account_id else "system", reason=f"data_request:{request.id}")
    except erasure.OrderInFlight as held:
        request.error = held.message
        session.flush()
        return request
    request.status, request.finished_at, request.error = DataRequestStatus.DONE, now, None
    request.handled_by = actor.name if actor.account_id else None
    # The audit entry names the request, not the person: there is no one left to name.
    record_audit(session, actor, "privacy.erase", "data_request", request.id,
                 after={"rows": sum(result.rows.values()), "blobs": result.blobs, "redacted": result.redacted})
    session.flush()
    return request


def due_erasures(session: Session, now: datetime, limit: int = 100) -> list[int]:
    """Pending erasures whose cooling-off period is over (the periodic job's work list)."""
    return list(session.scalars(select(DataRequest.id).where(
        DataRequest.kind == ERASE, DataRequest.status == DataRequestStatus.PENDING, DataRequest.run_after <= now)
        .order_by(DataRequest.run_after).limit(limit)))


def has_due_erasures(session: Session) -> bool:
    """The periodic check: any erasure due now (no job row otherwise)."""
    return bool(due_erasures(session, utcnow(), limit=1))


def schedule_due_erasures(session: Session, now: datetime) -> int:
    """The periodic job: one erase job per due request (each its own transaction and retries)."""
    ids = due_erasures(session, now)
    for request_id in ids:
        record_job(session, ERASE_JOB, {"request_id": request_id}, dedup_key=f"privacy-erase:{request_id}")
    return len(ids)


# -- the staff queue ------------------------------------------------------------------------------

@dataclass(frozen=True)
class QueueItem:
    request: DataRequest
    overdue: bool


def queue(session: Session, now: datetime, *, open_only: bool = True, limit: int = 200) -> list[QueueItem]:
    """Requests by deadline, soonest first: what staff must answer. No names: the queue is about
    requests (the student is reached through the request when staff must act)."""
    query = select(DataRequest)
    if open_only:
        query = query.where(DataRequest.status.in_((DataRequestStatus.PENDING, DataRequestStatus.RUNNING,
                                                    DataRequestStatus.FAILED)))
    rows = session.scalars(query.order_by(DataRequest.due_at, DataRequest.id).limit(limit))
    return [QueueItem(r, r.due_at < now and r.status != DataRequestStatus.DONE) for r in rows]


def staff_erase_now(session: Session, actor: Actor, request_id: int, blobs: BlobStore, now: datetime) -> DataRequest:
    request = session.get(DataRequest, request_id)
    if request is None or request.kind != ERASE:
        raise Refused("no_request", "申请不存在。")
    if request.status != DataRequestStatus.PENDING:
        raise Refused("not_pending", "该申请已处理或已撤销。")
    result = carry_out_erasure(session, request_id, blobs, now, actor)
    assert result is not None
    if result.status != DataRequestStatus.DONE:
        raise Refused("held", result.error or "暂不能执行。")
    return result

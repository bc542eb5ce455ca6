"""Retention as data: every period the privacy registry declares is swept by one sweep, a row just past
it goes (or its file does) and a row just short of it stays; verified profiles never go, and the
school counters still equal a recount after unverified ones went."""
from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from blobstore import BlobStore
from database import get_database
from handlers.learning import school_progress
from handlers.outbox import record_job
from handlers.privacy import retention
from handlers.privacy.registry import BY_TABLE, DECLARATIONS, Expiry
from jobs.periodic import PERIODIC
from jobs.queue import get_queue
from models import (
    Base,
    CertificateExport,
    ConsoleAccount,
    Conversation,
    Course,
    DataRequest,
    InboundEvent,
    InboxMessage,
    Job,
    PushDelivery,
    RateEvent,
    RosterFile,
    RosterUpload,
    School,
    SchoolStat,
    SignInAttempt,
    StaffReply,
    StudentExport,
    StudentProfile,
    StudentProgress,
    User,
)
from models.base import UTCDateTime, utcnow
from web.blobs import get_blob_store

MARGIN = timedelta(minutes=1)


class World:
    """What the rows under test hang on: a school, a course, a school admin; fresh users on demand."""

    def __init__(self, session: Session, blobs: BlobStore) -> None:
        self.session, self.blobs, self.n = session, blobs, 0
        self.school, self.course = School(name="留存大学"), Course(code="retention", current_version=0)
        session.add_all([self.school, self.course])
        session.flush()
        self.account = ConsoleAccount(username="retention-admin", display_name="留存管理员", password_hash="x",
                                      role="school_admin", school_id=self.school.id)
        session.add(self.account)
        session.flush()

    def next(self) -> int:
        self.n += 1
        return self.n

    def user(self) -> User:
        user = User(openid=f"o_retention_{self.next()}")
        self.session.add(user)
        self.session.flush()
        return user

    def blob(self, key: str) -> str:
        self.blobs.put(key, "姓名,学号\n王小明,2024001\n".encode())
        return key


# One row per retained table, with its aged column at `at`: (the row, the blob it points at, if any).
Maker = Callable[[World, datetime], tuple[Any, str | None]]


def _inbound_event(w: World, at: datetime) -> tuple[Any, str | None]:
    return InboundEvent(dedup_key=f"msg:{w.next()}", openid="o_someone", msg_type="text", sent_at=at,
                        received_at=at), None


def _inbox_message(w: World, at: datetime) -> tuple[Any, str | None]:
    return InboxMessage(user_id=w.user().id, direction="in", msg_type="text", content="我想咨询", created_at=at), None


def _staff_reply(w: World, at: datetime) -> tuple[Any, str | None]:
    user = w.user()
    conversation = Conversation(user_id=user.id, last_message_at=utcnow())
    w.session.add(conversation)
    w.session.flush()
    return StaffReply(conversation_id=conversation.id, user_id=user.id, content="收到，请留言", created_at=at), None


def _conversation(w: World, at: datetime) -> tuple[Any, str | None]:
    return Conversation(user_id=w.user().id, last_message_at=at, last_preview="你好"), None


def _push_delivery(w: World, at: datetime) -> tuple[Any, str | None]:
    return PushDelivery(account_id=w.account.id, openid="o_admin", school_id=w.school.id, kind="digest",
                        template_id="t", client_msg_id=f"push:{w.next()}", payload={"summary": "昨日 3 人通过"},
                        created_at=at), None


def _roster_upload(w: World, at: datetime) -> tuple[Any, str | None]:
    upload = RosterUpload(school_id=w.school.id, uploaded_by="管理员", file_name="名单.csv", report={
        "problems": [{"row": 2, "student_number": "2024001", "real_name": "王小明", "notes": ["缺少学院"]}]},
        created_at=at)
    w.session.add(upload)
    w.session.flush()
    # A file its job never read (the job failed for good): it goes with the upload.
    key = w.blob(f"rosters/{upload.id}/left")
    w.session.add(RosterFile(upload_id=upload.id, blob_key=key, size_bytes=10))
    return upload, key


def _job(w: World, at: datetime) -> tuple[Any, str | None]:
    return Job(kind="test.done", payload={"user_id": 1}, status="done", finished_at=at, created_at=at), None


def _sign_in_attempt(w: World, at: datetime) -> tuple[Any, str | None]:
    return SignInAttempt(username="wang", ip="203.0.113.9", succeeded=False, at=at), None


def _rate_event(w: World, at: datetime) -> tuple[Any, str | None]:
    return RateEvent(bucket="verify_search", key=f"k{w.next()}", at=at), None


def _unverified_profile(w: World, at: datetime) -> tuple[Any, str | None]:
    n = w.next()
    return StudentProfile(user_id=w.user().id, school_id=w.school.id, real_name="王小明", college="心理学院",
                          student_number=f"P{n:04d}", grade="2024级", status="pending" if n % 2 else "rejected",
                          reject_reason=None if n % 2 else "学号不对", confirmed_at=at, created_at=at), None


def _copy(w: World, at: datetime) -> tuple[Any, str | None]:
    key = w.blob(f"privacy/copies/{w.next()}.zip")
    return DataRequest(user_id=w.user().id, kind="copy", status="done", requested_at=at, run_after=at, due_at=at,
                       finished_at=at, blob_key=key, size_bytes=10), key


def _student_export(w: World, at: datetime) -> tuple[Any, str | None]:
    key = w.blob(f"exports/students/{w.next()}.csv")
    return StudentExport(school_id=w.school.id, course_id=w.course.id, requested_by="school_admin:1",
                         file_format="csv", status="done", file_name="学生.csv", blob_key=key, finished_at=at), key


def _certificate_export(w: World, at: datetime) -> tuple[Any, str | None]:
    key = w.blob(f"exports/certificates/{w.next()}.zip")
    return CertificateExport(requested_by="staff:wang", school_id=w.school.id, status="done", file_name="证书.zip",
                             blob_key=key, finished_at=at), key


MAKERS: dict[str, Maker] = {
    "inbound_events": _inbound_event, "inbox_messages": _inbox_message, "staff_replies": _staff_reply,
    "conversations": _conversation, "push_deliveries": _push_delivery, "roster_uploads": _roster_upload,
    "jobs": _job, "console_sign_in_attempts": _sign_in_attempt, "rate_events": _rate_event,
    "student_profiles": _unverified_profile, "data_requests": _copy, "student_exports": _student_export,
    "certificate_exports": _certificate_export,
}


def test_every_retention_has_a_test_here() -> None:
    assert set(MAKERS) == {d.table for d in retention.retained()}


def test_every_retention_says_what_ages_and_the_column_exists() -> None:
    now = utcnow()
    for declaration in DECLARATIONS:
        if declaration.retention_days is None:
            assert declaration.aged_by is None and declaration.retention_where is None, declaration.table
            continue
        table = Base.metadata.tables[declaration.table]
        assert declaration.retention_days > 0, declaration.table
        assert declaration.aged_by in table.c, f"{declaration.table}.{declaration.aged_by} is no column"
        assert isinstance(table.c[declaration.aged_by].type, UTCDateTime), declaration.table
        assert "id" in table.c, declaration.table  # the sweep pages by id
        str(retention.expired(declaration, now))  # the condition builds
        if declaration.on_expiry == Expiry.FILE:
            assert {"status", retention.BLOB_COLUMN} <= set(table.c.keys()), declaration.table


# Foreign keys into a table whose rows the sweep deletes that are neither nullable (cut) nor cascading
# (their rows go first): only the declaration's condition keeps the sweep from breaking them.
GUARDED_BY_THE_CONDITION = {("staff_replies", "conversation_id"): "conversations go with no reply left"}


def test_every_link_into_a_swept_table_is_cut_cascaded_or_ruled_out() -> None:
    deleted = {d.table for d in retention.retained() if d.on_expiry == Expiry.DELETE}
    for table in Base.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column.table.name in deleted and not fk.parent.nullable and fk.ondelete != "CASCADE":
                assert (table.name, fk.parent.name) in GUARDED_BY_THE_CONDITION, f"{table.name}.{fk.parent.name}"


def test_rate_events_outlive_every_limit_window() -> None:
    from handlers.accounts.console import WINDOW
    from web.certificates import SEARCH_WINDOW
    from web.payments import REFRESH_WINDOW

    assert max(SEARCH_WINDOW, REFRESH_WINDOW) < timedelta(days=BY_TABLE["rate_events"].retention_days or 0)
    assert WINDOW < timedelta(days=BY_TABLE["console_sign_in_attempts"].retention_days or 0)


def _row(session: Session, table: Table, row_id: int) -> dict[str, Any] | None:
    row = session.execute(select(table).where(table.c.id == row_id)).mappings().first()
    return dict(row) if row is not None else None


@pytest.mark.parametrize("table", sorted(MAKERS))
def test_a_row_just_past_its_retention_goes_and_one_just_short_of_it_stays(app: Flask, table: str) -> None:
    declaration, blobs, now = BY_TABLE[table], get_blob_store(app), utcnow()
    assert declaration.retention_days is not None
    cutoff = now - timedelta(days=declaration.retention_days)
    with get_database(app).sessions() as session:
        world = World(session, blobs)
        old, old_key = MAKERS[table](world, cutoff - MARGIN)
        young, young_key = MAKERS[table](world, cutoff + MARGIN)
        session.add_all([old, young])
        session.commit()
        old_id, young_id = old.id, young.id
        removed = retention.sweep(session, blobs, now)
        session.commit()
        assert removed[table] == 1, removed

        rows = Base.metadata.tables[table]
        gone, kept = _row(session, rows, old_id), _row(session, rows, young_id)
        assert kept is not None
        if young_key:
            assert blobs.size(young_key) is not None and kept.get("blob_key", young_key) == young_key
        if declaration.on_expiry == Expiry.FILE:
            assert kept["status"] == "done"
            assert gone is not None  # the row stays as a record
            assert (gone["status"], gone["blob_key"], gone.get("file_name")) == ("expired", None, None)
        else:
            assert gone is None
        if old_key:
            assert blobs.size(old_key) is None
        # A second run finds nothing more.
        assert not any(retention.sweep(session, blobs, now).values())
        session.commit()


def test_a_roster_upload_goes_with_its_leftover_file(app: Flask) -> None:
    blobs, now = get_blob_store(app), utcnow()
    with get_database(app).sessions() as session:
        upload, key = _roster_upload(World(session, blobs), now - timedelta(days=181))
        session.add(upload)
        session.commit()
        removed = retention.sweep(session, blobs, now)
        session.commit()
        assert removed["roster_uploads"] == 1 and removed["roster_files"] == 1
        assert session.scalar(select(RosterFile).where(RosterFile.blob_key == key)) is None
        assert blobs.size(key) is None


def test_a_copy_of_a_students_data_expires_after_a_week(app: Flask) -> None:
    """The zip goes; the request stays (what was asked, when), marked expired. Other requests are
    left: an erasure's record, a copy still being built."""
    blobs, now = get_blob_store(app), utcnow()
    old = now - timedelta(days=7) - MARGIN
    with get_database(app).sessions() as session:
        world = World(session, blobs)
        copy, key = _copy(world, old)
        erasure = DataRequest(user_id=world.user().id, kind="erase", status="done", requested_at=old, run_after=old,
                              due_at=old, finished_at=old)
        building = DataRequest(user_id=world.user().id, kind="copy", status="running", requested_at=old,
                               run_after=old, due_at=old, blob_key=world.blob("privacy/copies/building.zip"))
        session.add_all([copy, erasure, building])
        session.commit()
        assert retention.sweep(session, blobs, now, tables=["data_requests"]) == {"data_requests": 1}
        session.commit()
        session.expire_all()
        assert (copy.status, copy.blob_key, copy.size_bytes) == ("expired", None, 10)
        assert blobs.size(key) is None
        assert erasure.status == "done"
        assert (building.status, building.blob_key) == ("running", "privacy/copies/building.zip")
        assert blobs.size("privacy/copies/building.zip") is not None


def test_a_conversation_goes_the_day_its_last_messages_do_and_not_before(app: Flask) -> None:
    blobs, now = get_blob_store(app), utcnow()
    old = now - timedelta(days=731)
    with get_database(app).sessions() as session:
        world = World(session, blobs)
        quiet, talking = world.user(), world.user()
        conversations = {}
        for user in (quiet, talking):
            conversations[user.id] = Conversation(user_id=user.id, last_message_at=old)
            session.add(conversations[user.id])
            session.flush()
            session.add_all([InboxMessage(user_id=user.id, direction="in", msg_type="text", content="在吗",
                                          created_at=old),
                             StaffReply(conversation_id=conversations[user.id].id, user_id=user.id, content="在",
                                        created_at=old)])
        # The other student's thread has one message younger than two years (an old last_message_at
        # cannot make it go while a message is left).
        session.add(InboxMessage(user_id=talking.id, direction="in", msg_type="text", content="还在吗",
                                 created_at=now - timedelta(days=10)))
        session.commit()
        removed = retention.sweep(session, blobs, now)
        session.commit()
        assert (removed["inbox_messages"], removed["staff_replies"], removed["conversations"]) == (2, 2, 1)
        left = set(session.scalars(select(Conversation.user_id)))
        assert left == {talking.id}


def _counters(session: Session, school_id: int) -> dict[tuple[int, str], int]:
    return {(r.course_id, r.name): r.value for r in session.scalars(
        select(SchoolStat).where(SchoolStat.school_id == school_id)) if r.value}


def test_unverified_profiles_go_verified_ones_never_and_the_counters_equal_a_recount(app: Flask, graduates) -> None:  # type: ignore[no-untyped-def]
    blobs, now = get_blob_store(app), utcnow()
    long_ago = now - timedelta(days=1000)
    with get_database(app).sessions() as session:
        school_id = session.scalar(select(StudentProfile.school_id).where(StudentProfile.user_id == graduates[0]))
        # The fixture marks passes directly: start from a recount, as a deploy's backfill would.
        school_progress.rebuild_progress(session)
        school_progress.recount(session)
        # Verified long ago: kept, however old.
        session.execute(update(StudentProfile).values(confirmed_at=long_ago, created_at=long_ago))
        # A profile rejected after its progress row was made (no flow does this today; the link must
        # still be cut, as after an erasure): it goes, the progress row stays, anonymous.
        rejected = session.scalar(select(StudentProfile).where(StudentProfile.user_id == graduates[1]))
        rejected.status, rejected.reject_reason = "rejected", "不是本校学生"
        world = World(session, blobs)
        unverified = []
        for school in (school_id, world.school.id):
            for status, age in (("pending", 181), ("rejected", 181), ("pending", 179)):
                profile = StudentProfile(user_id=world.user().id, school_id=school, real_name="李小红",
                                         college=f"学院{age}", student_number=f"U{world.next():04d}", grade="2023级",
                                         status=status, confirmed_at=now - timedelta(days=age),
                                         created_at=long_ago)
                session.add(profile)
                unverified.append((profile, age))
        session.commit()
        progress_before = session.scalar(select(StudentProgress.id).where(StudentProgress.user_id == graduates[1]))
        young = {p.user_id for p, age in unverified if age == 179}
        old = {p.user_id for p, age in unverified if age == 181}

        removed = retention.sweep(session, blobs, now)
        session.commit()
        session.expire_all()  # the sweep's Core statements changed rows this session holds

        assert removed["student_profiles"] == 5
        left = {p.user_id: p.status for p in session.scalars(select(StudentProfile))}
        assert [uid for uid in graduates if uid not in left] == [graduates[1]]
        assert all(left[uid] == "verified" for uid in graduates if uid != graduates[1])
        assert young <= set(left) and not old & set(left)
        progress = session.get(StudentProgress, progress_before)
        assert progress is not None and progress.profile_id is None
        for school in (school_id, world.school.id):
            kept = _counters(session, school)
            school_progress.recount(session, school)
            session.flush()
            assert _counters(session, school) == kept, school
        session.rollback()


def test_the_sweep_runs_as_a_daily_job_through_the_runner(app: Flask) -> None:
    blobs, now = get_blob_store(app), utcnow()
    assert [p.period for p in PERIODIC if p.kind == "privacy.retention_sweep"] == ["day"]
    with get_database(app).sessions() as session:
        world = World(session, blobs)
        rows = [MAKERS[t](world, now - timedelta(days=800))[0] for t in ("inbound_events", "rate_events", "jobs")]
        export, key = _student_export(world, now - timedelta(days=8))
        session.add_all([*rows, export])
        job = record_job(session, "privacy.retention_sweep")
        session.info.clear()  # run by hand below, not handed to the queue
        session.commit()
        job_id, export_id = job.id, export.id
    assert get_queue(app).execute(job_id) == "done"
    with get_database(app).sessions() as session:
        assert session.scalar(select(InboundEvent.id)) is None and session.scalar(select(RateEvent.id)) is None
        assert set(session.scalars(select(Job.kind))) == {"privacy.retention_sweep"}
        assert session.get(StudentExport, export_id).status == "expired"
        assert blobs.size(key) is None


def test_a_replaced_prune_kind_still_runs_as_its_part_of_the_sweep(app: Flask) -> None:
    """`housekeeping.prune_exports` passed the blob store twice (a TypeError every night); a row of it
    recorded before the deploy now expires the export files and nothing else."""
    blobs, now = get_blob_store(app), utcnow()
    with get_database(app).sessions() as session:
        world = World(session, blobs)
        export, key = _certificate_export(world, now - timedelta(days=8))
        event, _ = _inbound_event(world, now - timedelta(days=8))
        session.add_all([export, event])
        job = record_job(session, "housekeeping.prune_exports")
        session.info.clear()
        session.commit()
        job_id, export_id, event_id = job.id, export.id, event.id
    assert get_queue(app).execute(job_id) == "done"
    with get_database(app).sessions() as session:
        assert session.get(CertificateExport, export_id).status == "expired" and blobs.size(key) is None
        assert session.get(InboundEvent, event_id) is not None  # not this kind's table


def test_two_sweeps_at_once_do_not_fail_and_remove_each_row_once(app: Flask) -> None:
    blobs, now = get_blob_store(app), utcnow()
    with get_database(app).sessions() as session:
        world = World(session, blobs)
        made = []
        for table in sorted(MAKERS):
            for _ in range(3):
                row, _key = MAKERS[table](world, now - timedelta(days=800))
                session.add(row)
                made.append(table)
        session.commit()
    results: list[dict[str, int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            with get_database(app).sessions() as session:
                start.wait(5)
                results.append(retention.sweep(session, blobs, now))
                session.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    for table in MAKERS:
        assert sum(r.get(table, 0) for r in results) == made.count(table), table
    with get_database(app).sessions() as session:
        assert not any(retention.sweep(session, blobs, now).values())  # and a third finds nothing

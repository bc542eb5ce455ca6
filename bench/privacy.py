"""bench/privacy: a full student's copy (size, time, memory) and their erasure, each against a floor
measured in the same run on the same rows, on SQLite and PostgreSQL, among many other students.

A "full" student did everything a student can over a term: all 14 topics watched (several sessions
each), two rounds of tests, a certificate corrected once (two versions with their PDFs), a paper
order paid and posted, a long conversation with staff, a term of menu taps, pushes bound.
Around them, `--others` students with profiles, audit entries and finished jobs, so the erasure's
search of the audit log and job payloads runs over a realistic table, not an empty one.

Floors:
- copy: one plain `SELECT *` per student table of the same rows, fetched and discarded (what any
  export must at least read);
- erasure: a second, identical full student whose rows are removed with plain DELETEs by id,
  children first (what any deletion must at least do), without scrubbing, redaction or counters.
A ratio is floor time / measured time (1.0: as fast as the floor).

    .venv/bin/python -m bench.privacy                 # both databases
    .venv/bin/python -m bench.privacy --db sqlite --others 200
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from bench.databases import migrate, recreate_pg_database, sqlite_url
from bench.report import table, write_json
from bench.settings import DATABASES, DEFAULT_PG_URL

TOPICS = 14


def _app(url: str, blobs: Path):  # type: ignore[no-untyped-def]
    from app import create_app

    return create_app({"DATABASE_URL": url, "BLOB_STORE_URL": f"file://{blobs}", "TESTING": True,
                       "XINWEI_ENV": "development"})


COURSE = Path(__file__).resolve().parent.parent / "content" / "courses" / "xinwei-mooc.toml"


def _seed_others(session: Session, school_id: int, count: int) -> None:
    """Other students, with the audit entries and finished jobs a busy platform accumulates."""
    from handlers.accounts.identity import ProfileForm, submit_profile
    from models import AuditEntry, Job, User
    from models.base import utcnow

    now = utcnow()
    for i in range(count):
        user = User(openid=f"o_other_{i:06d}")
        session.add(user)
        session.flush()
        submit_profile(session, user.id, ProfileForm(school_id, "张" + "一二三四五六七八九十"[i % 10] + "甲乙丙丁戊己庚辛壬癸"[i // 10 % 10], "心理学院",
                                                     f"B{i:08d}", "2024级"), now=now)
        session.add_all([AuditEntry(actor="wang", action="school.approve", subject_type="profile",
                                    subject_id=str(user.id), after={"status": "verified"}),
                         AuditEntry(actor="li", action="certificate.correct", subject_type="certificate",
                                    subject_id=str(i), before={"holder_name": "张" + "一二三四五六七八九十"[i % 10]}),
                         Job(kind="accounts.sync_subscriber", payload={"openid": f"o_other_{i:06d}"}, status="done",
                             finished_at=now)])
        if i % 500 == 499:
            session.flush()


def _full_student(app, session: Session, school_id: int, admin_id: int, openid: str, name: str,  # type: ignore[no-untyped-def]
                  number: str) -> int:
    """One student who did everything over a term (see the module's docstring)."""
    from handlers.accounts.identity import ProfileForm, submit_profile
    from handlers.certificates.claims import claim
    from handlers.learning.enrolment import enroll
    from models import (
        AuditEntry,
        CertificateOrder,
        Consent,
        Conversation,
        CorrectionRequest,
        DataRequest,
        InboundEvent,
        InboxMessage,
        OrderEvent,
        PushDelivery,
        QuizAttempt,
        RosterEntry,
        StaffReply,
        User,
        WatchSession,
    )
    from models.base import utcnow
    from web.blobs import get_blob_store
    from web.certificates import issuer

    now = utcnow()
    user = User(openid=openid, subscribed=True, subscribed_at=now)
    session.add(user)
    session.flush()
    session.add(RosterEntry(school_id=school_id, student_number=number, real_name=name))
    session.flush()
    submit_profile(session, user.id, ProfileForm(school_id, name, "心理学院", number, "2024级", "13912345678"), now=now)
    enrollment = enroll(session, user.id, "xinwei-mooc")
    for t in range(1, TOPICS + 1):
        for s in range(3):
            session.add(WatchSession(enrollment_id=enrollment.id, user_id=user.id, round=1, topic_code=f"t{t:02d}",
                                     video_seconds=600, threshold=0.9, max_rate=1.25, started_at=now, active=False,
                                     last_seq=40, last_beat_at=now, position=200.0 * (s + 1),
                                     watched_seconds=200.0 * (s + 1), credit=0.0, paused=False))
        for r in range(2):
            session.add(QuizAttempt(enrollment_id=enrollment.id, user_id=user.id, round=r + 1, topic_code=f"t{t:02d}",
                                    version_id=1, draw=[f"t{t:02d}q{q}" for q in range(1, 5)], started_at=now,
                                    submitted_at=now, answers={f"t{t:02d}q{q}": ["甲"] for q in range(1, 5)},
                                    score=3, max_score=3, passed=True))
    enrollment.passed_at, enrollment.total_score = now, 92
    session.flush()
    with app.app_context():
        certificate = claim(session, user.id, "xinwei-mooc", "both", issuer(), date(2026, 12, 1),
                            blobs=get_blob_store(app))
    session.add(CorrectionRequest(certificate_id=certificate.id, user_id=user.id, changes={"holder_name": name},
                                  reason="姓名写错了", status="approved", decided_by="wang", created_at=now))
    order = CertificateOrder(out_trade_no=f"X{user.id:020d}", certificate_id=certificate.id, user_id=user.id,
                             school_id=school_id, status="shipped", fee_fen=2000, postage_fen=1000, total_fen=3000,
                             description="纸质证书", payer_openid=openid, expires_at=now, recipient_name=name,
                             recipient_phone="13912345678", mail_address="北京市海淀区学院路 1 号", created_at=now,
                             updated_at=now, paid_at=now, shipped_at=now, carrier="顺丰", tracking_number="SF1")
    session.add(order)
    session.flush()
    for status in ("created", "paying", "paid", "printing", "shipped"):
        session.add(OrderEvent(order_id=order.id, to_status=status, actor="system", detail={}, at=now))
    conversation = Conversation(user_id=user.id, last_preview="老师好")
    session.add(conversation)
    session.flush()
    for i in range(60):
        session.add(InboxMessage(user_id=user.id, direction="in", msg_type="text", content=f"老师好，第 {i} 个问题",
                                 created_at=now - timedelta(days=i)))
        session.add(StaffReply(conversation_id=conversation.id, user_id=user.id, content=f"同学你好，回答 {i}"))
    for i in range(300):
        session.add(InboundEvent(dedup_key=f"{openid}:{i}", openid=openid, msg_type="event", event="CLICK",
                                 event_key="MY_PROGRESS", sent_at=now, received_at=now - timedelta(minutes=i)))
    for i in range(20):
        session.add(PushDelivery(account_id=admin_id, openid=openid, school_id=school_id, kind="digest",
                                 template_id="t", client_msg_id=f"{openid}-{i}", payload={"first": name}))
    session.add_all([
        Consent(user_id=user.id, purpose="notice", notice_version=1, granted=True, at=now),
        Consent(user_id=user.id, purpose="school_sharing", notice_version=1, granted=True, at=now),
        DataRequest(user_id=user.id, kind="copy", status="done", run_after=now, due_at=now, finished_at=now),
        AuditEntry(actor="wang", action="certificate.correct", subject_type="certificate",
                   subject_id=str(certificate.id), before={"holder_name": name, "student_number": number}),
    ])
    session.flush()
    return int(user.id)


def _floor_read(session: Session, user_id: int, openid: str) -> int:
    """Every student table's rows for this student, fetched raw."""
    from handlers.privacy.registry import Student, rows_of, students_tables

    who, rows = Student(user_id, openid), 0
    for declaration in students_tables():
        rows += len(session.execute(rows_of(declaration, who)).all())
    return rows


def _floor_delete(session: Session, user_id: int, openid: str) -> int:
    """The same rows removed with plain DELETEs, children first (progress rows lose their profile)."""
    from handlers.privacy.registry import BY_TABLE, Student
    from models import Base

    who, removed = Student(user_id, openid), 0
    tables = [t for t in reversed(Base.metadata.sorted_tables) if t.name in BY_TABLE and BY_TABLE[t.name].find]
    ids = {t.name: list(session.scalars(select(t.c.id).where(BY_TABLE[t.name].find(t, who)))) for t in tables}
    session.execute(text("UPDATE student_progress SET profile_id = NULL WHERE user_id = :u"), {"u": user_id})
    session.execute(text("UPDATE certificates SET supersedes_id = NULL WHERE user_id = :u"), {"u": user_id})
    for t in tables:
        if t.name in ("users", "student_progress", "enrollments", "certificates") or not ids[t.name]:
            continue  # rows erasure keeps too (statistics, the certificate's record)
        removed += session.execute(delete(t).where(t.c.id.in_(ids[t.name]))).rowcount  # type: ignore[attr-defined]
    return removed


def _timed(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def run(db: str, others: int, repeat: int, pg_url: str) -> list[dict[str, Any]]:
    from database import get_database
    from handlers.catalog.loader import load_catalog, parse_catalog
    from handlers.privacy import erase as erasure
    from handlers.privacy.copy import build_copy
    from handlers.privacy.export import collect, student_of
    from models import ConsoleAccount, School, User
    from models.base import utcnow
    from web.blobs import get_blob_store

    work = Path(tempfile.mkdtemp(prefix="bench-privacy-"))
    url = sqlite_url(work) if db == "sqlite" else recreate_pg_database(pg_url, "xinwei_bench")
    migrate(url)
    app = _app(url, work / "blobs")
    database = get_database(app)
    seed_started = time.perf_counter()
    with database.sessions() as session:
        load_catalog(session, parse_catalog(COURSE.read_text(encoding="utf-8"), COURSE.name), COURSE.name)
        school = School(name="毫末示范大学", address="北京市海淀区学院路 1 号")
        session.add(school)
        session.flush()
        _seed_others(session, school.id, others)
        admin = ConsoleAccount(username="admin", display_name="管理员", password_hash="x", role="school_admin",
                               school_id=school.id)
        session.add(admin)
        session.flush()
        full = _full_student(app, session, school.id, admin.id, "o_full_a", "林小满", "2024018")
        twin = _full_student(app, session, school.id, admin.id, "o_full_b", "林大满", "2024019")
        session.commit()
    seeded = time.perf_counter() - seed_started
    rows: list[dict[str, Any]] = []
    with database.sessions() as session:
        who = student_of(session, full)
        assert who is not None
        count = sum(len(r) for r in collect(session, who).values())
        floor = _timed(lambda: _floor_read(session, full, "o_full_a"), repeat)
        user = session.get(User, full)
        built: list[bytes] = []
        measured = _timed(lambda: built.append(build_copy(session, user, get_blob_store(app), utcnow())), repeat)
        tracemalloc.start()
        build_copy(session, user, get_blob_store(app), utcnow())
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        session.rollback()
    rows.append({"db": db, "scenario": "copy (collect + zip)", "rows": count, "floor ms": statistics.median(floor),
                 "ms": statistics.median(measured), "x floor": statistics.median(floor) / statistics.median(measured),
                 "size KB": round(len(built[-1]) / 1024, 1), "peak MB": round(peak / 2**20, 1)})
    with database.sessions() as session:
        started = time.perf_counter()
        removed = _floor_delete(session, twin, "o_full_b")
        session.commit()
        floor_ms = (time.perf_counter() - started) * 1000
    with database.sessions() as session:
        started = time.perf_counter()
        result = erasure.erase(session, full, get_blob_store(app), utcnow())
        session.commit()
        erase_ms = (time.perf_counter() - started) * 1000
    rows.append({"db": db, "scenario": "erasure", "rows": sum(result.rows.values()), "floor ms": floor_ms,
                 "ms": erase_ms, "x floor": floor_ms / erase_ms, "size KB": None, "peak MB": None,
                 "redacted": result.redacted, "floor rows": removed})
    print(f"[{db}] seeded {others} other students and two full ones in {seeded:.1f} s")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=DATABASES, action="append")
    parser.add_argument("--others", type=int, default=5000, help="other students around the full one")
    parser.add_argument("--repeat", type=int, default=5, help="copies built (median reported)")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for db in args.db or DATABASES:
        rows += run(db, args.others, args.repeat, args.pg_url)
    print(table(rows, [("db", "db"), ("scenario", "scenario"), ("rows", "rows"), ("floor ms", "floor ms"),
                       ("ms", "ms"), ("x floor", "x floor"), ("size KB", "size KB"), ("peak MB", "peak MB")]))
    print("results:", write_json("privacy", {"rows": rows, "others": args.others}))


if __name__ == "__main__":
    main()

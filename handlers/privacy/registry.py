"""The privacy registry: per table, whose data it is, how a student's rows are found, what a copy and a deletion do.

Why one declaration for the whole schema: the platforms this follows (Moodle's privacy providers,
Open edX's retirement) let each part declare its own data, and their copies and deletions miss
whatever a part forgot to declare. Here `tests/test_privacy_registry.py` walks every mapped table
and every column: a table not listed here, or a column of a student's table without a kind, fails
the suite. The copy (`export.py`) and the deletion read only this file.

Kinds of column in a student's table:
- IDENTITY: names the person (name, phone, student number, openid, address). In the copy; on
  deletion erased with the row or overwritten.
- CONTENT: what the student wrote or what was written about them (messages, reasons, changes).
  In the copy; on deletion erased with the row or overwritten.
- LINK: a key to the student or their rows (user_id, certificate_id). In the copy; kept, so the
  anonymous rows still count, pointing at a user row that no longer names anyone.
- RECORD: facts without identity (scores, times, states, amounts). In the copy; kept.

Retention (`retention.py` sweeps daily): a declaration with `retention_days` names the column whose
age counts (`aged_by`), which rows it applies to (`retention_where`, else all) and what becomes of an
expired row (`on_expiry`): deleted, or, for a row that records a file, the file deleted and the row
kept as "expired".
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import ColumnElement, Select, Table, exists, select

from models import Base
from models.status import (
    CertificateExportStatus,
    DataRequestStatus,
    JobStatus,
    ProfileStatus,
    StudentExportStatus,
)


class Kind(StrEnum):
    IDENTITY = "identity"
    CONTENT = "content"
    LINK = "link"
    RECORD = "record"


class Subject(StrEnum):
    STUDENT = "student"  # rows about one student, reachable from their user row
    SCHOOL = "school"  # a school's records that may name students (rosters, exports); the school manages them
    STAFF = "staff"  # console accounts' own data
    NONE = "none"  # course content, configuration, counters: nobody's personal data


class OnErase(StrEnum):
    DELETE = "delete"  # the student's rows go
    SCRUB = "scrub"  # the rows stay (statistics, other people's records); IDENTITY and CONTENT are overwritten
    KEEP = "keep"  # kept as they are: links and records only, anonymous once the user row is scrubbed


@dataclass(frozen=True)
class Student:
    """Who is asked about: the user row's id and openid."""

    user_id: int
    openid: str


Finder = Callable[[Table, Student], ColumnElement[bool]]


def by_user(column: str = "user_id") -> Finder:
    return lambda table, who: table.c[column] == who.user_id


def by_openid(column: str = "openid") -> Finder:
    return lambda table, who: table.c[column] == who.openid


def through(column: str, parent: str, parent_finder: Finder) -> Finder:
    """Rows whose `column` is the id of one of the student's rows in `parent`."""
    def find(table: Table, who: Student) -> ColumnElement[bool]:
        owner = Base.metadata.tables[parent]
        return table.c[column].in_(select(owner.c.id).where(parent_finder(owner, who)))
    return find


class Expiry(StrEnum):
    DELETE = "delete"  # the expired rows go, with the files they point at
    FILE = "file"  # the file at `blob_key` goes; the row stays as a record, status "expired", no key


Condition = Callable[[Table], ColumnElement[bool]]


@dataclass(frozen=True)
class Declaration:
    table: str
    subject: Subject
    why: str  # what the table is for, in a line (the notice and the copy say it in Chinese)
    columns: dict[str, Kind] = field(default_factory=dict)
    find: Finder | None = None
    on_erase: OnErase = OnErase.KEEP
    # Retention of rows whose purpose has passed (handlers/privacy/retention.py), in days; None: kept
    # for as long as the account (or, for SCHOOL and STAFF, as long as their owner keeps them).
    retention_days: int | None = None
    # The column whose age counts against `retention_days` (a UTC time); required with it.
    aged_by: str | None = None
    # Which rows the retention applies to; None: every row once old enough.
    retention_where: Condition | None = None
    on_expiry: Expiry = Expiry.DELETE


# Short names for the table below: ID names a person, C is content, L a link, R a record.
ID, C, L, R = Kind.IDENTITY, Kind.CONTENT, Kind.LINK, Kind.RECORD
_USER = by_user()


def _cols(**kinds: Kind) -> dict[str, Kind]:
    return {"id": L, **kinds}


def _status_in(*statuses: str) -> Condition:
    return lambda table: table.c.status.in_(statuses)


def _no_messages_left(table: Table) -> ColumnElement[bool]:
    """A conversation none of whose messages (the student's, or staff replies) is left."""
    messages, replies = Base.metadata.tables["inbox_messages"], Base.metadata.tables["staff_replies"]
    return ~exists().where(messages.c.user_id == table.c.user_id) & ~exists().where(
        replies.c.conversation_id == table.c.id)


def _done_copy(table: Table) -> ColumnElement[bool]:
    return (table.c.kind == "copy") & (table.c.status == DataRequestStatus.DONE)


# Retention periods, and why each:
# - Unverified profiles (pending, rejected): 180 days after the student last submitted them
#   (`confirmed_at`; a resubmission after a rejection moves it, `created_at` would not). A claim no
#   school admin decided in a semester, or a rejection the student did not answer in one, will not
#   become a certificate; the name and number it holds serve nothing. Verified profiles stay with
#   the account: certificates are printed from them.
# - Messages, staff replies: two years (730 days), enough to answer "what did we tell this student"
#   across a student's time as 心理委员; the conversation goes once none of its messages is left.
# - WeChat deliveries (dedup): 7 days; WeChat retries within seconds, a week answers "what did we reply".
# - Pushes to admins: 180 days, a semester of delivery history for the pushes page.
# - Roster uploads: 180 days; their report lists rejected rows by name and number, and the audit log
#   keeps the upload's summary (who, when, counts). The row goes with its leftover file.
# - Exports and a student's copy: the file 7 days after it was built (fetched at once; the row stays).
# - Finished jobs: 30 days ("what happened?"); failed ones stay until staff act on them.
# - Console sign-in attempts: 90 days, for looking into a break-in attempt; the lockout reads 15 minutes.
# - Rate-limit events: 1 day, longer than any window a limit uses (web/: 10 minutes at most).


DECLARATIONS: tuple[Declaration, ...] = (
    # -- the student's own ------------------------------------------------------------------------
    Declaration("users", Subject.STUDENT, "the WeChat follower: the openid that ties every row to a person",
                _cols(openid=ID, unionid=ID, subscribed=R, subscribed_at=R, unsubscribed_at=R, subscribe_scene=R,
                      synced_at=R, signed_out_at=R, created_at=R),
                lambda table, who: table.c.id == who.user_id, OnErase.SCRUB),
    Declaration("student_profiles", Subject.STUDENT, "identity verification: who the student is, for the certificate",
                _cols(user_id=L, school_id=L, real_name=ID, college=ID, student_number=ID, grade=ID, phone=ID, status=R,
                      confirmed_at=R, verified_at=R, verified_via=R, reviewed_by=R, reject_reason=C, created_at=R),
                _USER, OnErase.DELETE, retention_days=180, aged_by="confirmed_at",
                retention_where=_status_in(ProfileStatus.PENDING, ProfileStatus.REJECTED)),
    Declaration("enrollments", Subject.STUDENT, "taking a course: rounds, total score, when passed",
                _cols(user_id=L, course_id=L, round=R, passed_at=R, total_score=R, created_at=R), _USER),
    Declaration("watch_sessions", Subject.STUDENT, "watching a topic's video: the server-verified position",
                _cols(enrollment_id=L, user_id=L, round=R, topic_code=R, video_version_id=L, video_seconds=R,
                      threshold=R, max_rate=R, started_at=R, active=R, last_seq=R, last_beat_at=R, position=R,
                      watched_seconds=R, credit=R, paused=R, completed_at=R), _USER),
    Declaration("quiz_attempts", Subject.STUDENT, "topic tests: the questions drawn, the answers, the score",
                _cols(enrollment_id=L, user_id=L, round=R, topic_code=R, version_id=L, draw=R, started_at=R,
                      submitted_at=R, answers=R, score=R, max_score=R, passed=R), _USER),
    Declaration("student_progress", Subject.STUDENT, "each student's stage, for their school's dashboard",
                _cols(user_id=L, course_id=L, school_id=L, profile_id=L, stage=R, topics_done=R, topic_scores=R,
                      attempts=R, total_score=R, passed_at=R, last_progress_at=R), _USER),
    Declaration("certificates", Subject.STUDENT, "certificates issued: what is printed on them and their signature",
                _cols(user_id=L, course_id=L, serial=R, version=R, supersedes_id=L, verify_token=R, status=R,
                      channel=R, paper_status=R, holder_name=ID, school_name=R, student_number=ID, course_title=R,
                      score=R, issued_on=R, issuers=R, verify_url=R, signature=R, issued_at=R, revoked_at=R,
                      revoke_reason=C),
                _USER, OnErase.SCRUB),
    Declaration("certificate_files", Subject.STUDENT, "the certificate's PDF and image, in the blob store",
                _cols(certificate_id=L, kind=R, blob_key=R, size_bytes=R, sha256=R, created_at=R),
                through("certificate_id", "certificates", _USER), OnErase.DELETE),
    Declaration("certificate_events", Subject.STUDENT, "a certificate's history: issued, corrected, revoked",
                _cols(certificate_id=L, action=R, actor=R, reason=C, details=C, at=R),
                through("certificate_id", "certificates", _USER), OnErase.SCRUB),
    Declaration("correction_requests", Subject.STUDENT, "requests to correct a printed certificate",
                _cols(certificate_id=L, user_id=L, changes=C, reason=C, status=R, decided_by=R, decision_note=C,
                      created_at=R, decided_at=R), _USER, OnErase.SCRUB),
    Declaration("certificate_orders", Subject.STUDENT,
                "paper certificate orders: kept for accounting (会计档案), the mailing details erased",
                _cols(out_trade_no=R, certificate_id=L, user_id=L, school_id=L, status=R, fee_fen=R, postage_fen=R,
                      total_fen=R, description=R, payer_openid=ID, prepay_id=R, expires_at=R, transaction_id=R,
                      paid_at=R, closed_at=R, recipient_name=ID, recipient_phone=ID, mail_address=ID, carrier=R,
                      tracking_number=R, shipped_at=R, delivered_at=R, paper_status_before=R, out_refund_no=R,
                      refund_id=R, refund_reason=C, refunded_at=R, created_at=R, updated_at=R),
                _USER, OnErase.SCRUB),
    Declaration("order_events", Subject.STUDENT, "an order's history",
                _cols(order_id=L, from_status=R, to_status=R, actor=R, detail=C, at=R),
                through("order_id", "certificate_orders", _USER), OnErase.SCRUB),
    Declaration("payment_flags", Subject.STUDENT, "payments that need a person's look (kept for accounting)",
                _cols(reason=R, key=R, out_trade_no=R, transaction_id=R, order_id=L, detail=C, seen_count=R,
                      created_at=R, resolved_at=R, resolved_by=R),
                through("order_id", "certificate_orders", _USER), OnErase.SCRUB),
    Declaration("conversations", Subject.STUDENT, "the student's conversation with staff",
                _cols(user_id=L, status=R, last_student_message_at=R, replies_in_window=R, last_message_at=R,
                      last_preview=C, unread=R, waiting_since=R, assigned_to=L, created_at=R),
                _USER, OnErase.DELETE, retention_days=730, aged_by="last_message_at",
                retention_where=_no_messages_left),
    Declaration("inbox_messages", Subject.STUDENT, "what the student wrote to the account",
                _cols(user_id=L, direction=R, msg_type=R, content=C, wechat_msg_id=R, created_at=R),
                _USER, OnErase.DELETE, retention_days=730, aged_by="created_at"),
    Declaration("staff_replies", Subject.STUDENT, "what staff wrote back",
                _cols(conversation_id=L, user_id=L, account_id=L, kind=R, content=C, status=R, errcode=R, error=R,
                      attempts=R, job_id=L, sent_at=R, created_at=R),
                _USER, OnErase.DELETE, retention_days=730, aged_by="created_at"),
    Declaration("inbound_events", Subject.STUDENT, "WeChat's deliveries, kept to answer each once (dedup)",
                _cols(dedup_key=R, openid=ID, msg_type=R, event=R, event_key=R, sent_at=R, received_at=R,
                      reply_xml=C),
                by_openid(), OnErase.DELETE, retention_days=7, aged_by="received_at"),
    Declaration("push_bind_tokens", Subject.STUDENT, "a WeChat user binding an admin's pushes",
                _cols(account_id=L, token_hash=R, expires_at=R, used_at=R, used_by_user_id=L, created_at=R),
                by_user("used_by_user_id"), OnErase.DELETE),
    Declaration("push_deliveries", Subject.STUDENT, "template messages sent to a bound WeChat user",
                _cols(account_id=L, openid=ID, school_id=L, kind=R, template_id=R, client_msg_id=R, payload=C,
                      status=R, errcode=R, errmsg=R, msgid=R, attempts=R, created_at=R, sent_at=R, finished_at=R,
                      updated_at=R),
                by_openid(), OnErase.DELETE, retention_days=180, aged_by="created_at"),
    Declaration("consents", Subject.STUDENT, "consents given to the privacy notice and to sharing with the school",
                _cols(user_id=L, purpose=R, notice_version=R, granted=R, at=R), _USER),
    Declaration("data_requests", Subject.STUDENT, "the student's requests for a copy or for deletion",
                _cols(user_id=L, kind=R, status=R, requested_at=R, run_after=R, due_at=R, finished_at=R,
                      handled_by=R, blob_key=R, size_bytes=R, error=R), _USER,
                retention_days=7, aged_by="finished_at", retention_where=_done_copy, on_expiry=Expiry.FILE),
    # -- records that name students, kept by their owner --------------------------------------------
    Declaration("roster_entries", Subject.SCHOOL, "the school's own list of its 心理委员; the school manages it",
                _cols(school_id=L, student_number=ID, real_name=ID, college=ID, grade=ID, phone=ID)),
    Declaration("roster_uploads", Subject.SCHOOL, "a roster file's processing and its report",
                _cols(school_id=L, account_id=L, uploaded_by=R, file_name=R, mode=R, rows=R, accepted=R, fixed=R,
                      rejected=R, added=R, updated=R, kept=R, removed=R, verified=R, report=C, status=R,
                      parsed_rows=R, error=R, finished_at=R, created_at=R), retention_days=180, aged_by="created_at"),
    Declaration("roster_files", Subject.SCHOOL, "an uploaded roster file until its job has read it",
                {"upload_id": L, "blob_key": R, "size_bytes": R}),
    Declaration("student_exports", Subject.SCHOOL, "a school admin's export of its students",
                _cols(school_id=L, course_id=L, requested_by=R, file_format=R, filters=R, status=R, total=R,
                      done_count=R, file_name=R, blob_key=R, size_bytes=R, created_at=R, finished_at=R),
                retention_days=7, aged_by="finished_at", retention_where=_status_in(StudentExportStatus.DONE),
                on_expiry=Expiry.FILE),
    Declaration("certificate_exports", Subject.SCHOOL, "an export of issued certificates",
                _cols(requested_by=R, school_id=L, issued_from=R, issued_until=R, status=R, total=R, done_count=R,
                      file_name=R, blob_key=R, size_bytes=R, created_at=R, finished_at=R),
                retention_days=7, aged_by="finished_at", retention_where=_status_in(CertificateExportStatus.DONE),
                on_expiry=Expiry.FILE),
    Declaration("audit_entries", Subject.STAFF,
                "who did what in the console (accountability); a deleted student's values are redacted",
                _cols(at=R, account_id=L, actor=R, action=R, subject_type=R, subject_id=L, school_id=L, before=C,
                      after=C, note=C)),
    Declaration("audit_redactions", Subject.STAFF, "which audit entries were redacted, when and why"),
    Declaration("jobs", Subject.NONE, "background work; finished jobs' payloads may name a user",
                _cols(kind=R, payload=C, status=R, attempts=R, max_attempts=R, run_after=R, lease_until=R,
                      claim_token=R, claimed_by=R, enqueued_at=R, last_error=R, finished_at=R, dedup_key=R,
                      created_at=R),
                retention_days=30, aged_by="finished_at", retention_where=_status_in(JobStatus.DONE)),
    Declaration("rate_events", Subject.NONE, "rate-limit counters under one-way hashed keys",
                retention_days=1, aged_by="at"),
    # -- staff ----------------------------------------------------------------------------------------
    Declaration("console_accounts", Subject.STAFF, "staff and school admin accounts"),
    Declaration("console_invites", Subject.STAFF, "invitations to the console"),
    Declaration("console_sign_in_attempts", Subject.STAFF, "console sign-in attempts (brute-force defence)",
                retention_days=90, aged_by="at"),
    # -- nobody's -------------------------------------------------------------------------------------
    Declaration("schools", Subject.NONE, "schools and their billing details (an organisation's, not a person's)"),
    Declaration("school_stats", Subject.NONE, "each school's counters (numbers only)"),
    Declaration("push_watermarks", Subject.NONE, "how far a school's notices were pushed"),
    Declaration("courses", Subject.NONE, "course content"),
    Declaration("course_versions", Subject.NONE, "course content"),
    Declaration("topics", Subject.NONE, "course content"),
    Declaration("questions", Subject.NONE, "course content"),
    Declaration("video_assets", Subject.NONE, "lecture videos"),
    Declaration("video_versions", Subject.NONE, "lecture videos (the uploader is staff)"),
    Declaration("video_uploads", Subject.NONE, "lecture uploads in progress"),
    Declaration("auto_reply_rules", Subject.NONE, "automatic replies"),
    Declaration("quick_replies", Subject.NONE, "staff's reply templates"),
    Declaration("serial_counters", Subject.NONE, "certificate serial numbers"),
    Declaration("wechat_tokens", Subject.NONE, "the account's own WeChat access tokens"),
    Declaration("privacy_notices", Subject.NONE, "the privacy notice's published versions"),
)

BY_TABLE = {d.table: d for d in DECLARATIONS}


def students_tables() -> list[Declaration]:
    """The student's tables, parents before children (the copy reads them in this order)."""
    return [d for d in DECLARATIONS if d.subject == Subject.STUDENT]


def rows_of(declaration: Declaration, who: Student) -> Select:  # type: ignore[type-arg]
    """SELECT of the student's rows in this table."""
    table = Base.metadata.tables[declaration.table]
    assert declaration.find is not None
    return select(table).where(declaration.find(table, who)).order_by(table.c.id)

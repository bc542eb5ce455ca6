"""Erasing a student: afterwards no text column of any table holds their name, number, phone or openid
(except the school's own records, which the notice says the school keeps), counters equal a
recount, the certificate still verifies as genuine, and a returning follower is a new user."""
from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import JSON, String, Text, select, update

from blobstore import BlobError
from database import get_database
from handlers.learning import school_progress
from handlers.payments.shipping import mark_shipped, start_printing
from handlers.privacy.erase import OrderInFlight, erase
from models import (
    AuditEntry,
    AuditRedaction,
    Base,
    Certificate,
    CertificateFile,
    CertificateOrder,
    ConsoleAccount,
    SchoolStat,
    StudentProfile,
    StudentProgress,
    User,
)
from models.base import utcnow
from tests.console_helpers import make_school_admin, make_staff
from tests.console_helpers import sign_in as console_sign_in
from tests.test_accounts import subscribe
from tests.test_privacy_export import everything
from web.auth import CHECKED_USERS
from web.blobs import get_blob_store

# The school's own records about its students: the school manages them (the notice says so).
SCHOOLS_OWN = {"roster_entries", "roster_uploads"}
PHONE = "13912345678"


def _texts(session) -> list[tuple[str, str, int, str]]:  # type: ignore[no-untyped-def]
    """Every text and JSON value in the database: (table, column, row id, text)."""
    found = []
    for table in Base.metadata.sorted_tables:
        columns = [c for c in table.columns if isinstance(c.type, (String, Text, JSON))]
        if not columns:
            continue
        key = table.c.id if "id" in table.c else list(table.primary_key.columns)[0]
        for row in session.execute(select(key, *columns)):
            for column, value in zip(columns, row[1:], strict=True):
                if value is not None:
                    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                    found.append((table.name, column.name, row[0], text))
    return found


def _snapshot(session) -> tuple[Any, Any]:  # type: ignore[no-untyped-def]
    counters = {(s, c, n): v for s, c, n, v in session.execute(
        select(SchoolStat.school_id, SchoolStat.course_id, SchoolStat.name, SchoolStat.value)) if v}
    return counters, sorted(session.execute(select(StudentProgress.user_id, StudentProgress.stage)).all())


@pytest.fixture
def erased(shop, graduates):  # type: ignore[no-untyped-def]
    """The graduate who did everything, with a phone of their own, their paper certificate posted,
    an admin account bound to their WeChat, and an audit entry that quotes them: erased."""
    app, user_id = shop["app"], shop["user_id"]
    with get_database(app).sessions() as session:
        session.execute(update(StudentProfile).where(StudentProfile.user_id == user_id).values(phone=PHONE))
        session.commit()
    everything(shop)
    admin = make_school_admin(app, 1)
    with get_database(app).sessions() as session:
        order = session.scalars(select(CertificateOrder)).one()
        start_printing(session, [order.id], "staff:wang", utcnow())
        mark_shipped(session, order.id, "顺丰", "SF1234567890", "staff:wang", utcnow())
        session.execute(update(ConsoleAccount).where(ConsoleAccount.id == admin).values(wechat_user_id=user_id))
        session.add(AuditEntry(actor="wang", action="certificate.correct", subject_type="certificate",
                               before={"holder_name": "林小满一", "student_number": "C000"},
                               after={"holder_name": "林大满"}, note="林小满一 来电更正"))
        certificate = session.scalars(select(Certificate).where(Certificate.user_id == user_id)).first()
        keys = list(session.scalars(select(CertificateFile.blob_key)))
        session.commit()
    assert certificate is not None
    values = ("林小满一", "林大满", "C000", PHONE, "o_cert_0")
    found = [t for t in _texts_of(app) if any(v in t[3] for v in values)]
    assert {t[0] for t in found} >= {"student_profiles", "certificates", "push_deliveries", "audit_entries", "users"}
    with get_database(app).sessions() as session:
        # The graduates fixture sets passing by hand: counters made true first, so any difference
        # after the erasure is the erasure's.
        school_progress.rebuild_progress(session)
        school_progress.recount(session)
        session.commit()
        before = _snapshot(session)
        result = erase(session, user_id, get_blob_store(app), utcnow(), actor="student")
        session.commit()
    return {"app": app, "user_id": user_id, "values": values, "token": certificate.verify_token, "keys": keys,
            "before": before, "result": result, "admin": admin, "client": shop["client"]}


def _texts_of(app):  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        return _texts(session)


def test_no_text_anywhere_names_the_student_after_erasure(erased, graduates) -> None:  # type: ignore[no-untyped-def]
    app = erased["app"]
    left = [t for t in _texts_of(app) if any(v in t[3] for v in erased["values"]) and t[0] not in SCHOOLS_OWN]
    assert left == [], left
    with get_database(app).sessions() as session:
        user = session.get(User, erased["user_id"])
        assert user is not None and user.openid.startswith("erased:") and user.signed_out_at is not None
        admin = session.get(ConsoleAccount, erased["admin"])
        assert admin is not None and admin.wechat_user_id is None
        # Other students are untouched.
        other = session.scalar(select(StudentProfile.real_name).where(StudentProfile.user_id == graduates[1]))
        assert other == "林小满二"
    for key in erased["keys"]:
        with pytest.raises(BlobError):
            get_blob_store(app).get(key)
    assert erased["result"].rows["student_profiles.deleted"] == 1 and erased["result"].redacted >= 1


def test_counters_still_equal_a_recount_and_the_statistics_stay(erased) -> None:  # type: ignore[no-untyped-def]
    with get_database(erased["app"]).sessions() as session:
        counters, progress = _snapshot(session)
        assert progress == erased["before"][1]  # the progress rows stay, anonymous
        assert session.scalar(select(StudentProgress.profile_id).where(
            StudentProgress.user_id == erased["user_id"])) is None
        school_progress.rebuild_progress(session)
        school_progress.recount(session)
        session.flush()
        assert _snapshot(session) == (counters, progress)
        # The profile is gone from the school's counts, the learning is not.
        gone = {k: v - counters.get(k, 0) for k, v in erased["before"][0].items() if counters.get(k, 0) != v}
        assert {k[2] for k in gone} == {"profiles.verified", "college.心理学院", "grade.2024级"}
        session.rollback()


def test_the_certificate_still_verifies_as_genuine_without_a_name(erased) -> None:  # type: ignore[no-untyped-def]
    page = erased["app"].test_client().get(f"/verify/{erased['token']}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-verdict="erased"' in html
    assert "该证书持有人已注销个人信息" in html and "证书真实有效" in html and "林小满" not in html


def test_a_returning_follower_is_a_new_user_and_the_old_sign_in_is_over(erased, client, wechat) -> None:  # type: ignore[no-untyped-def]
    # The erasure ran in a job (another process): this process notices within H5_USER_CHECK_SECONDS.
    erased["app"].extensions.pop(CHECKED_USERS, None)
    assert erased["client"].get("/h5/").status_code == 302  # the erased student's cookie no longer signs in
    subscribe(client, wechat, "o_cert_0")
    with get_database(erased["app"]).sessions() as session:
        users = session.scalars(select(User).where(User.openid == "o_cert_0")).all()
        assert len(users) == 1 and users[0].id != erased["user_id"]


def test_the_consoles_still_open_after_erasure(erased) -> None:  # type: ignore[no-untyped-def]
    app = erased["app"]
    staff = app.test_client()
    console_sign_in(staff, app, make_staff(app))
    with get_database(app).sessions() as session:
        serial = session.scalar(select(Certificate.serial))
        order_id = session.scalar(select(CertificateOrder.id))
    for path in ("/console/certificates/", f"/console/certificates/serial/{serial}", "/console/payments/",
                 f"/console/payments/orders/{order_id}", "/console/inbox", "/console/audit/",
                 "/console/certificates/corrections"):
        assert staff.get(path).status_code == 200, path
    admin = app.test_client()
    console_sign_in(admin, app, erased["admin"])
    for path in ("/console/school/", "/console/school/students", "/console/school/approvals"):
        assert admin.get(path).status_code == 200, path


def test_erasure_is_idempotent(erased) -> None:  # type: ignore[no-untyped-def]
    with get_database(erased["app"]).sessions() as session:
        assert erase(session, erased["user_id"], get_blob_store(erased["app"]), utcnow()).rows == {}


def test_an_order_still_to_be_posted_holds_the_erasure(shop) -> None:  # type: ignore[no-untyped-def]
    everything(shop)  # a paid order, not yet printed or posted
    with get_database(shop["app"]).sessions() as session:
        with pytest.raises(OrderInFlight):
            erase(session, shop["user_id"], get_blob_store(shop["app"]), utcnow())
        session.rollback()
        assert session.scalar(select(StudentProfile.id).where(StudentProfile.user_id == shop["user_id"]))


def test_the_audit_log_yields_only_to_a_recorded_redaction_of_its_quotes(app) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import DBAPIError

    with get_database(app).sessions() as session:
        entry = AuditEntry(actor="wang", action="certificate.correct", before={"holder_name": "林小满"})
        session.add(entry)
        session.commit()
        entry_id = entry.id
    engine = get_database(app).engine
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:  # no redaction recorded
        conn.execute(update(AuditEntry).where(AuditEntry.id == entry_id).values(before={}))
    with engine.begin() as conn:
        conn.execute(AuditRedaction.__table__.insert().values(entry_id=entry_id, reason="test", at=utcnow()))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:  # who and what stay
        conn.execute(update(AuditEntry).where(AuditEntry.id == entry_id).values(actor="someone-else", before={}))
    with engine.begin() as conn:
        conn.execute(update(AuditEntry).where(AuditEntry.id == entry_id).values(before={"holder_name": "[已注销]"}))
    with get_database(app).sessions() as session:
        row = session.get(AuditEntry, entry_id)
        assert row is not None and row.actor == "wang" and row.before == {"holder_name": "[已注销]"}

"""Every state a public verify page can show, what a student's own old version says, and what
follows a correction (the profile, the paper order's recipient), through the pages."""
from __future__ import annotations

from sqlalchemy import select

import certs
from database import get_database
from handlers.certificates.claims import repair_signatures
from handlers.certificates.corrections import revoke
from models import Certificate, CertificateOrder, OrderEvent, StudentProfile
from models.base import utcnow
from tests.factories import CSRF, ISSUER, ask, claim_as, get_file, sign_in, staff_client
from web.blobs import get_blob_store


def verdict(client, token: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    page = client.get(f"/verify/{token}")
    text = page.get_data(as_text=True)
    found = text.split('data-verdict="', 1)[1].split('"', 1)[0] if 'data-verdict="' in text else ""
    return page.status_code, found


def approve(app, client, user_id: int, certificate_id: int, changes: dict[str, str]) -> Certificate:  # type: ignore[no-untyped-def]
    request_id = ask(app, user_id, certificate_id, changes)
    _, token, _ = staff_client(app, client)
    response = client.post(f"/console/certificates/corrections/{request_id}/decide",
                           data={"csrf_token": token, "decision": "approve", "note": ""})
    assert response.status_code == 302
    with get_database(app).sessions() as session:
        return session.scalars(select(Certificate).where(Certificate.supersedes_id == certificate_id)).one()


def test_every_state_of_a_verify_page(app, client, graduates) -> None:  # type: ignore[no-untyped-def]
    first = claim_as(app, graduates[0])
    anyone = app.test_client()
    assert verdict(anyone, first.verify_token) == (200, "valid")
    second = approve(app, client, graduates[0], first.id, {"holder_name": "林大满"})
    # The QR on the first printed copy: genuine, corrected, the newest one counts.
    status, seen = verdict(anyone, first.verify_token)
    page = anyone.get(f"/verify/{first.verify_token}").get_data(as_text=True)
    assert (status, seen) == (200, "corrected")
    assert "已更正，以最新版本为准" in page and 'data-field="签名">有效' in page and "无效" not in page
    assert f"/verify/{second.verify_token}" in page
    assert verdict(anyone, second.verify_token) == (200, "valid")
    # Revoked after the correction: both links say revoked, and no staff-typed reason is public.
    with get_database(app).sessions() as session:
        revoke(session, second.id, "wang", "学号 C000 电话 13800000000 冒用", now=utcnow())
        session.commit()
    for token in (first.verify_token, second.verify_token):
        status, seen = verdict(anyone, token)
        page = anyone.get(f"/verify/{token}").get_data(as_text=True)
        assert (status, seen) == (200, "revoked") and "13800000000" not in page and "冒用" not in page
    # A version whose stored data no longer matches its signature really fails.
    with get_database(app).sessions() as session:
        session.get(Certificate, first.id).score = 100
        session.commit()
    assert verdict(anyone, first.verify_token) == (200, "invalid")
    assert anyone.get("/verify/no-such-token").status_code == 404


def test_a_revoked_certificate_is_never_a_forgery_and_cannot_be_downloaded(app, client, graduates) -> None:  # type: ignore[no-untyped-def]
    first = claim_as(app, graduates[1])
    with get_database(app).sessions() as session:
        revoke(session, first.id, "wang", "内部原因", now=utcnow())
        session.commit()
    assert verdict(app.test_client(), first.verify_token) == (200, "revoked")
    sign_in(client, graduates[1], "o_cert_1")
    for kind in ("pdf", "png"):
        assert client.get(f"/h5/certificates/{first.id}.{kind}").status_code == 410
    page = client.get(f"/h5/certificates/{first.id}").get_data(as_text=True)
    assert "该证书已撤销" in page and ".pdf" not in page


def test_the_students_old_version_says_corrected_and_records_follow(app, client, graduates) -> None:  # type: ignore[no-untyped-def]
    first = claim_as(app, graduates[0])
    second = approve(app, client, graduates[0], first.id, {"holder_name": "林大满", "student_number": "C0007"})
    student = app.test_client()
    sign_in(student, graduates[0], "o_cert_0")
    old = student.get(f"/h5/certificates/{first.id}").get_data(as_text=True)
    assert "此版本已更正" in old and f"/h5/certificates/{second.id}" in old and "提交更正申请" not in old
    new = student.get(f"/h5/certificates/{second.id}").get_data(as_text=True)
    assert "此版本已更正" not in new and "提交更正申请" in new
    with get_database(app).sessions() as session:
        profile = session.scalar(select(StudentProfile).where(StudentProfile.user_id == graduates[0]))
        assert (profile.real_name, profile.student_number) == ("林大满", "C0007")


def test_a_paid_paper_order_follows_the_corrected_name_and_logs_no_same_state_step(app, client, graduates) -> None:  # type: ignore[no-untyped-def]
    first = claim_as(app, graduates[2], channel="paper")
    with get_database(app).sessions() as session:
        from handlers.payments.orders import open_order

        order = open_order(session, graduates[2], first.id, {"*": (2000, 1000)}, utcnow(), 1800)
        session.commit()
        order_id = order.id
    second = approve(app, client, graduates[2], first.id, {"holder_name": "林大满"})
    with get_database(app).sessions() as session:
        order = session.get(CertificateOrder, order_id)
        assert order.certificate_id == second.id and order.recipient_name == "林大满"
        events = session.scalars(select(OrderEvent).where(OrderEvent.order_id == order_id)).all()
        assert all(e.from_status != e.to_status for e in events)


def test_a_channel_change_signs_again_and_old_rows_are_repaired(app, client, graduates) -> None:  # type: ignore[no-untyped-def]
    first = claim_as(app, graduates[3])
    sign_in(client, graduates[3], "o_cert_3")
    assert client.post(f"/h5/certificates/{first.id}/channel",
                       data={"channel": "paper", "csrf_token": CSRF}).status_code == 302
    assert verdict(app.test_client(), first.verify_token) == (200, "valid")
    # A row changed before this fix: channel moved, signature left for the old kind.
    with get_database(app).sessions() as session:
        session.get(Certificate, first.id).channel = "electronic"
        session.commit()
    assert verdict(app.test_client(), first.verify_token) == (200, "invalid")
    public = certs.public_key(ISSUER.signing_key)
    with get_database(app).sessions() as session:
        assert repair_signatures(session, ISSUER.signing_key, {certs.key_id(public): public},
                                 blobs=get_blob_store(app)) == [f"{first.serial} v1"]
        session.commit()
        assert repair_signatures(session, ISSUER.signing_key, {certs.key_id(public): public},
                                 blobs=get_blob_store(app)) == []
    assert verdict(app.test_client(), first.verify_token) == (200, "valid")


def test_the_serials_cannot_be_walked(app, graduates) -> None:  # type: ignore[no-untyped-def]
    walker = app.test_client()
    answers = [walker.get(f"/verify?serial=XW-2026-{n:06d}&name=林小满").status_code for n in range(1, 25)]
    assert answers[:10] == [404] * 10 and set(answers[10:]) == {429}


def test_staff_read_labels_not_codes(app, client, graduates) -> None:  # type: ignore[no-untyped-def]
    first = claim_as(app, graduates[4], channel="paper")
    approve(app, client, graduates[4], first.id, {"holder_name": "林大满"})
    audit = client.get("/console/audit/").get_data(as_text=True)
    assert "批准证书更正" in audit and "<b>姓名</b>：林小满五 → 林大满" in audit
    assert ">certificate.correction_approve<" not in audit and '{"holder_name"' not in audit
    history = client.get(f"/console/certificates/serial/{first.serial}").get_data(as_text=True)
    assert "工作人员" in history and ">staff:" not in history


def test_a_certificate_issued_at_2330_utc_is_dated_the_next_day_in_china(app, graduates) -> None:  # type: ignore[no-untyped-def]
    """23:30 UTC is 07:30 the next morning in China: the printed date, the verify page and the
    console all say the China date."""
    from datetime import datetime, timedelta, timezone

    import pypdfium2 as pdfium

    from tests.console_helpers import make_staff
    from tests.console_helpers import sign_in as console_sign_in
    from web import clock

    real = datetime.now(timezone.utc)
    target = real.replace(hour=23, minute=30, second=0, microsecond=0)
    if target <= real:
        target += timedelta(days=1)
    clock.advance(app, (target - real).total_seconds())
    china_day = (target + timedelta(hours=8)).date()
    student = app.test_client()
    sign_in(student, graduates[0], "o_cert_0")
    claimed = student.post("/h5/courses/demo-course/certificate", data={"channel": "electronic", "csrf_token": CSRF})
    cert_id = int(claimed.headers["Location"].rsplit("/", 1)[1])
    with get_database(app).sessions() as session:
        certificate = session.get(Certificate, cert_id)
        assert certificate.issued_on == china_day != target.date()
        token, serial = certificate.verify_token, certificate.serial
    printed = f"{china_day.year}年{china_day.month}月{china_day.day}日"
    pdf = pdfium.PdfDocument(get_file(student, f"/h5/certificates/{cert_id}.pdf").data)
    text = pdf[0].get_textpage().get_text_range()
    assert printed in text.replace(" ", "")
    assert printed in app.test_client().get(f"/verify/{token}").get_data(as_text=True)
    staff = app.test_client()
    console_sign_in(staff, app, make_staff(app))
    assert china_day.isoformat() in staff.get(f"/console/certificates/serial/{serial}").get_data(as_text=True)

"""The security review's findings, each as the attack it stops: another school's ids on every school route,
out-of-range numbers in query strings, forged payment notifications flooding the staff flags, secrets in
access logs, words put on a console page by a link, formulas in the billing CSV."""
from __future__ import annotations

import csv
import io
import logging
import re
from datetime import date

import pytest
from flask import Flask
from sqlalchemy import func, select

from database import get_database
from handlers.accounts.identity import ProfileForm, submit_profile
from handlers.audit import Actor
from handlers.catalog.loader import load_catalog, parse_catalog
from handlers.payments import billing, flags
from handlers.schools import roster, roster_files
from models import ConsoleAccount, Course, PaymentFlag, StudentExport, StudentProfile, User
from models.base import utcnow
from models.console import SCHOOL_ADMIN
from tests.console_helpers import make_school, make_school_admin, make_staff, sign_in
from tests.factories import course, get_file, to_toml
from web.blobs import get_blob_store

# The id each `<int:name>` parameter of a school-admin route takes, here always school A's object.
# A new route with a new parameter must be added here (the walk fails on an unknown one).
PARAMETERS = ("profile_id", "upload_id", "export_id")


@pytest.fixture
def two_schools(app: Flask):  # type: ignore[no-untyped-def]
    """School A with a pending student, a roster upload and a finished export; school B's admin."""
    a, b = make_school(app, "甲安全大学"), make_school(app, "乙安全大学")
    admin_a, admin_b = make_school_admin(app, a), make_school_admin(app, b)
    with get_database(app).sessions() as session:
        load_catalog(session, parse_catalog(to_toml(course()), "demo.toml"), "demo.toml")
        user = User(openid="o_sec_a")
        session.add(user)
        session.flush()
        profile = submit_profile(
            session, user.id, ProfileForm(a, "甲学生", "心理学院", "S001", "2024级", "13800138000"), now=utcnow()
        )
        upload = roster.merge_roster(session, Actor.of(session.get(ConsoleAccount, admin_a)), a,
                                     roster_files.parse_roster("姓名,学号\n乙同学,S002\n".encode()), "名单.csv",
                                     now=utcnow())
        export = StudentExport(school_id=a, course_id=session.scalar(select(Course.id)), requested_by="test",
                               file_format="csv", filters={}, status="done", file_name=f"students-{a}-sec.csv",
                               blob_key=f"exports/students/sec-{a}/students-{a}-sec.csv")
        get_blob_store(app).put(export.blob_key, "\ufeff姓名\n甲学生\n".encode())
        session.add(export)
        session.commit()
        ids = {"profile_id": profile.id, "upload_id": upload.id, "export_id": export.id}
    return {"a": a, "b": b, "admin_a": admin_a, "admin_b": admin_b, "ids": ids}


def _school_admin_routes(app: Flask) -> list[tuple[str, str, set[str]]]:
    """(endpoint, URL with school A's ids, methods) of every console route a school admin may use that takes an id."""
    routes = []
    for rule in app.url_map.iter_rules():
        roles = getattr(app.view_functions[rule.endpoint], "console_roles", ())
        if not rule.rule.startswith("/console/") or SCHOOL_ADMIN not in roles or not rule.arguments:
            continue
        unknown = set(rule.arguments) - set(PARAMETERS)
        assert not unknown, f"{rule.endpoint} takes {unknown}: give the walk another school's object for it"
        routes.append((rule.endpoint, rule.rule, set(rule.methods or ()) - {"HEAD", "OPTIONS"}))
    return sorted(routes)


def _url(template: str, ids: dict[str, int]) -> str:
    return re.sub(r"<int:([a-z_]+)>", lambda m: str(ids[m.group(1)]), template)


def test_a_school_admin_given_another_schools_ids_gets_404_on_every_route(app: Flask, two_schools) -> None:  # type: ignore[no-untyped-def]
    ids = two_schools["ids"]
    routes = _school_admin_routes(app)
    assert {"console_school.student", "console_school.download", "console_roster.upload_report",
            "console_approvals.approve", "console_approvals.reject"} <= {endpoint for endpoint, *_ in routes}
    owner, stranger = app.test_client(), app.test_client()
    sign_in(owner, app, two_schools["admin_a"])
    token = sign_in(stranger, app, two_schools["admin_b"])
    for endpoint, template, methods in routes:
        url = _url(template, ids)
        if "GET" in methods:
            # The ids are real: A's admin sees them (a download through its signed link).
            assert get_file(owner, url).status_code == 200, endpoint
            assert stranger.get(url).status_code == 404, endpoint
        for method in methods - {"GET"}:
            response = stranger.open(url, method=method, data={"csrf_token": token, "reason": "不是本校学生"})
            assert response.status_code == 404, (endpoint, method, response.status_code)
    # Bulk approval takes ids in the form: another school's is not found, and nothing changed.
    assert stranger.post("/console/school/approvals/bulk-approve",
                         data={"csrf_token": token, "profile_id": str(ids["profile_id"])}).status_code == 404
    with get_database(app).sessions() as session:
        assert session.get(StudentProfile, ids["profile_id"]).status == "pending"


def test_a_school_admin_cannot_choose_another_school_by_the_staff_parameter(app: Flask, two_schools) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    sign_in(client, app, two_schools["admin_b"])
    a = two_schools["a"]
    for url in (f"/console/school/?school={a}", f"/console/school/students?school={a}",
                f"/console/school/students/{two_schools['ids']['profile_id']}?school={a}",
                f"/console/school/exports/{two_schools['ids']['export_id']}/download?school={a}"):
        response = client.get(url)
        assert response.status_code in (200, 404), url
        assert "甲安全大学" not in response.get_data(as_text=True) and "甲学生" not in response.get_data(
            as_text=True
        ), url


OUT_OF_RANGE = "99999999999999999999999"


def test_out_of_range_page_numbers_and_ids_are_not_server_errors(app: Flask, two_schools) -> None:  # type: ignore[no-untyped-def]
    """A page or id past a 64-bit integer (or a Unicode digit such as '²') was a 500 on both databases."""
    app.config["PROPAGATE_EXCEPTIONS"] = False
    staff = app.test_client()
    token = sign_in(staff, app, make_staff(app))
    searched = staff.post("/console/certificates/", data={"csrf_token": token, "q": "x"}).headers["Location"]
    for url in (f"/console/inbox?page={OUT_OF_RANGE}", f"{searched}&page={OUT_OF_RANGE}",
                f"/console/certificates/corrections?page={OUT_OF_RANGE}", f"/console/schools/?page={OUT_OF_RANGE}",
                f"/console/audit/?page={OUT_OF_RANGE}", f"/console/audit/?school_id={OUT_OF_RANGE}",
                "/console/audit/?school_id=%C2%B2"):
        assert staff.get(url).status_code == 200, url
    for url in (f"/console/school/?school={OUT_OF_RANGE}", "/console/school/students?school=%C2%B2"):
        assert staff.get(url).status_code == 404, url
    a = two_schools["a"]
    assert (
        staff.get(f"/console/school/students?school={a}&course={OUT_OF_RANGE}&after={OUT_OF_RANGE}").status_code == 200
    )
    for path, data in (("/console/inbox/quick-replies", {"id": "²", "title": "t", "body": "b"}),
                       ("/console/auto-replies", {"id": OUT_OF_RANGE, "keywords": "k", "match_mode": "contains",
                                                  "reply": "r"}),
                       ("/console/payments/print", {"order_id": OUT_OF_RANGE})):
        assert staff.post(path, data={**data, "csrf_token": token}).status_code < 500, path
    admin = app.test_client()
    sign_in(admin, app, two_schools["admin_a"])
    assert admin.get(f"/console/school/pushes?page={OUT_OF_RANGE}").status_code == 200


def test_forged_notifications_with_ever_new_serials_make_one_flag_a_day(app: Flask, client) -> None:  # type: ignore[no-untyped-def]
    """The serial header is the sender's choice: keyed by it, each forgery added a row, and a few hundred
    pushed the real flags (money to refund) off the staff page, which shows the newest 200."""
    with get_database(app).sessions() as session:
        flags.record_flag(
            session, "paid_after_close", out_trade_no="XW-REAL", transaction_id="42", order_id=None, detail={}
        )
        session.commit()
    for n in range(30):
        response = client.post("/pay/notify", data=b'{"id": "x"}', headers={
            "Content-Type": "application/json", "Wechatpay-Timestamp": "0", "Wechatpay-Serial": f"FORGED-{n}"})
        assert response.status_code == 401
    with get_database(app).sessions() as session:
        rows = session.execute(select(PaymentFlag.reason, PaymentFlag.seen_count).order_by(PaymentFlag.id)).all()
        assert [tuple(row) for row in rows] == [("paid_after_close", 1), ("notify_stale", 30)]
        assert session.scalar(select(func.count()).select_from(PaymentFlag)) == 2


def test_the_access_log_keeps_no_invite_or_bind_token(app: Flask, client, caplog) -> None:  # type: ignore[no-untyped-def]
    secret = "Invite-Secret-0123456789abcdef"
    with caplog.at_level(logging.INFO, logger="xinwei.access"):
        client.get(f"/console/invite/{secret}")
        client.get(f"/h5/push-bind/{secret}")
    lines = [record.getMessage() for record in caplog.records if record.name == "xinwei.access"]
    assert any("/console/invite/" in line for line in lines) and any("/h5/push-bind/" in line for line in lines)
    assert not any(secret in line for line in lines)


def test_a_link_cannot_put_words_on_the_payments_pages(app: Flask) -> None:
    staff = app.test_client()
    sign_in(staff, app, make_staff(app))
    lure = "系统升级：请把所有订单退款到账户 6222"
    for url in (f"/console/payments/?message={lure}", f"/console/payments/flags?error={lure}"):
        response = staff.get(url)
        assert response.status_code == 200 and lure not in response.get_data(as_text=True), url


def test_billing_csv_neutralises_a_formula_behind_a_tab(app: Flask) -> None:
    text = billing.billing_csv([billing.BillingRow("\t=HYPERLINK(\"http://evil\")", 1)], date(2026, 11, 1),
                                date(2026, 11, 30))
    assert list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))[1][0] == "'\t=HYPERLINK(\"http://evil\")"


def test_a_school_cannot_queue_exports_without_end(app: Flask, two_schools) -> None:  # type: ignore[no-untyped-def]
    """Each export reads the whole table into a file: unfinished ones are capped per school."""
    client = app.test_client()
    token = sign_in(client, app, two_schools["admin_b"])
    answers = [client.post("/console/school/exports", data={"csrf_token": token, "format": "csv"}).status_code
               for _ in range(5)]
    assert answers == [302, 302, 302, 400, 400]
    with get_database(app).sessions() as session:
        assert session.scalar(select(func.count()).select_from(StudentExport).where(
            StudentExport.school_id == two_schools["b"])) == 3


def test_a_console_sign_in_is_not_a_student_sign_in(app: Flask, two_schools) -> None:  # type: ignore[no-untyped-def]
    """The console identity lives beside the student's in one cookie: it opens no student page or action."""
    client = app.test_client()
    token = sign_in(client, app, two_schools["admin_a"])
    for url in ("/h5/", "/h5/profile", f"/h5/push-bind/{'x' * 32}"):
        response = client.get(url)
        assert response.status_code == 302 and "/h5/login" in response.headers["Location"], url
    for url in ("/h5/certificates/1/pay", "/h5/orders/1/refresh", "/h5/api/watch"):
        assert client.post(url, data={"csrf_token": token}, headers={"X-CSRF-Token": token}).status_code in (
            302,
            401,
        ), url


def test_an_oversized_payment_notification_is_refused_before_it_is_read(client) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/pay/notify", data=b"{" + b" " * (70 * 1024) + b"}",
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.get_json()["code"] == "FAIL"

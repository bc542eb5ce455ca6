"""Least privilege in the consoles (#15): student numbers and phones masked in lists and pages, in full only
on an audited POST (who looked at whom, when, which fields; never the values), and no number or phone in
a console URL, the access log or the metrics."""
from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from flask import Flask
from sqlalchemy import select

from database import get_database
from handlers.accounts.identity import ProfileForm, submit_profile
from handlers.audit import SYSTEM
from handlers.catalog.loader import load_catalog, parse_catalog
from handlers.privacy.masking import REVEAL, mask_name, mask_number, mask_phone, record_reveal
from handlers.schools import exports as school_exports
from jobs.queue import get_queue
from models import AuditEntry, ConsoleAccount, Conversation, Job, RosterEntry, School, User
from models.base import utcnow
from tests.console_helpers import csrf, make_school_admin, make_staff, search, sign_in
from tests.factories import course, get_file, paid_order, to_toml
from web.console.searches import KEY as SEARCHES

NUMBER, PHONE = "2024018", "13812345678"
MASKED_NUMBER, MASKED_PHONE = "20***18", "138****5678"
PENDING_NUMBER, PENDING_PHONE, PENDING_MASKED = "2024099", "13987654321", "139****4321"
THEIR_NUMBER, THEIR_PHONE = "2099001", "13700001111"
# What must never be in a URL, a log line or a metric.
SECRETS = (NUMBER, PHONE, PENDING_PHONE, THEIR_NUMBER, THEIR_PHONE)


@pytest.mark.parametrize("phone,masked", [
    ("13812345678", "138****5678"), ("+8613812345678", "+86*******5678"), ("010-6275", "****6275"),
    ("0106275123", "01****5123"), ("1234567", "*******"), ("", ""), (None, ""),
])
def test_mask_phone(phone: str | None, masked: str) -> None:
    assert mask_phone(phone) == masked
    assert sum(1 for a, b in zip(phone or "", masked) if a != b) >= min(4, len(phone or ""))


def test_one_name_per_mask_and_the_verify_page_uses_it() -> None:
    from handlers.certificates import verify

    assert verify.mask_number is mask_number and verify.mask_name is mask_name
    assert mask_number(NUMBER) == MASKED_NUMBER and mask_number(None) == "" and mask_number("C001") == "****"


def test_a_reveal_names_known_fields_only(app: Flask) -> None:
    """A caller passing a value where a field name goes would write the value into the log: refused."""
    with get_database(app).sessions() as session:
        for fields in (["phone", PHONE], []):
            with pytest.raises(ValueError):
                record_reveal(session, SYSTEM, "student_profile", 1, fields)


@pytest.fixture
def campus(app: Flask) -> dict[str, int]:
    """School A: a verified student (on the roster, with a phone) and a pending one; school B: one of its own."""
    with get_database(app).sessions() as session:
        load_catalog(session, parse_catalog(to_toml(course()), "demo.toml"), "demo.toml")
        a, b = School(name="甲大学"), School(name="乙大学")
        session.add_all([a, b])
        session.flush()
        ids = {"a": a.id, "b": b.id}

        def student(school: School, openid: str, name: str, number: str, phone: str, listed: bool) -> int:
            user = User(openid=openid)
            session.add(user)
            session.flush()
            if listed:
                session.add(RosterEntry(school_id=school.id, student_number=number, real_name=name, phone=phone))
                session.flush()
            form = ProfileForm(school.id, name, "心理学院", number, "2024级", phone)
            profile = submit_profile(session, user.id, form, now=utcnow())
            ids[f"user_{openid}"] = user.id
            return profile.id

        ids["verified"] = student(a, "o_mask_1", "林小满", NUMBER, PHONE, listed=True)
        ids["pending"] = student(a, "o_mask_2", "王小明", PENDING_NUMBER, PENDING_PHONE, listed=False)
        ids["theirs"] = student(b, "o_mask_3", "赵六", THEIR_NUMBER, THEIR_PHONE, listed=True)
        session.commit()
    ids["admin_a"] = make_school_admin(app, ids["a"])
    ids["admin_b"] = make_school_admin(app, ids["b"])
    return ids


def reveals(app: Flask) -> list[AuditEntry]:
    with get_database(app).sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == REVEAL).order_by(AuditEntry.id)))


def links(html: str) -> list[str]:
    """Every URL a page hands the browser: links, form targets, scripts, and the URLs scripts fetch."""
    return [unquote(url) for url in re.findall(r'(?:href|action|src|data-[a-z-]*url)="([^"]*)"', html)]


def assert_nothing_personal_in(urls: list[str]) -> None:
    for url in urls:
        assert not any(secret in url for secret in SECRETS), url


# --- lists -------------------------------------------------------------------------------------------


def test_school_lists_show_masked_values_only(app: Flask, client, campus) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, app, campus["admin_a"])
    table = client.get("/console/school/students").get_data(as_text=True)
    assert "林小满" in table and MASKED_NUMBER in table and NUMBER not in table and PHONE not in table
    assert "20***99" in table and PENDING_NUMBER not in table

    roster = client.get("/console/school/roster").get_data(as_text=True)
    assert MASKED_NUMBER in roster and MASKED_PHONE in roster and NUMBER not in roster and PHONE not in roster

    # The queue: the phone masked; the numbers in full, since comparing them with the roster is what it is for.
    queue = client.get("/console/school/approvals").get_data(as_text=True)
    assert PENDING_MASKED in queue and PENDING_PHONE not in queue and PENDING_NUMBER in queue

    page = client.get(f"/console/school/students/{campus['verified']}").get_data(as_text=True)
    assert MASKED_NUMBER in page and MASKED_PHONE in page and NUMBER not in page and PHONE not in page
    assert "显示完整信息" in page
    for html in (table, roster, queue, page):
        assert "赵六" not in html and THEIR_NUMBER not in html and THEIR_PHONE not in html
    assert reveals(app) == []  # looking at masked values is not a reveal


# --- the reveal ----------------------------------------------------------------------------------------


def test_the_reveal_shows_the_full_values_and_records_who_whom_when(app: Flask, client, campus) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, campus["admin_a"])
    url = f"/console/school/students/{campus['verified']}/reveal"
    started = utcnow()
    response = client.post(url, data={"csrf_token": token})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    assert f'id="student-number">{NUMBER}<' in page and f'id="phone">{PHONE}<' in page
    assert "本次查看已记入操作日志" in page and "重新隐藏" in page

    [entry] = reveals(app)
    with get_database(app).sessions() as session:
        username = session.get(ConsoleAccount, campus["admin_a"]).username
    assert (entry.account_id, entry.actor) == (campus["admin_a"], username)  # who
    assert (entry.subject_type, entry.subject_id, entry.school_id) == ("student_profile", str(campus["verified"]),
                                                                       campus["a"])  # whom
    assert started - timedelta(seconds=1) <= entry.at <= utcnow() + timedelta(seconds=1)  # when
    assert entry.note == "学号、手机"  # which fields
    recorded = json.dumps([entry.before, entry.after, entry.note, entry.subject_id], ensure_ascii=False)
    assert NUMBER not in recorded and PHONE not in recorded and MASKED_PHONE not in recorded  # never the values

    # The page itself stays masked; each reveal is its own entry.
    assert PHONE not in client.get(f"/console/school/students/{campus['verified']}").get_data(as_text=True)
    client.post(url, data={"csrf_token": token})
    assert len(reveals(app)) == 2


def test_another_schools_admin_gets_404_and_leaves_no_entry(app: Flask, client, campus) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, campus["admin_b"])
    for url in (f"/console/school/students/{campus['verified']}/reveal",
                f"/console/school/approvals/{campus['pending']}/reveal",
                "/console/school/students/999999/reveal"):
        response = client.post(url, data={"csrf_token": token})
        assert response.status_code == 404, url
        assert NUMBER not in response.get_data(as_text=True) and PENDING_PHONE not in response.get_data(as_text=True)
    assert reveals(app) == []
    # Their own student, for contrast, is revealed.
    assert THEIR_PHONE in client.post(f"/console/school/students/{campus['theirs']}/reveal",
                                      data={"csrf_token": token}).get_data(as_text=True)
    assert [e.subject_id for e in reveals(app)] == [str(campus["theirs"])]


def test_a_get_to_a_reveal_does_nothing_and_a_post_needs_the_token(app: Flask, client, campus) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, campus["admin_a"])
    urls = (f"/console/school/students/{campus['verified']}/reveal",
            f"/console/school/approvals/{campus['pending']}/reveal")
    for url in urls:
        response = client.get(url)
        assert response.status_code == 405, url
        assert PHONE not in response.get_data(as_text=True) and PENDING_PHONE not in response.get_data(as_text=True)
        assert client.post(url).status_code == 400, url  # no CSRF token
        assert client.post(url, data={"csrf_token": "0" * 32}).status_code == 400, url  # someone else's
        assert client.post(url, headers={"X-CSRF-Token": token}).status_code == 200, url  # as a script would send it
    assert [e.note for e in reveals(app)] == ["学号、手机", "手机"]
    client.post("/console/sign-out", data={"csrf_token": token})
    assert client.post(urls[0], data={"csrf_token": token}).status_code == 401  # signed out
    assert len(reveals(app)) == 2


def test_the_approval_queue_reveals_one_rows_phone(app: Flask, client, campus) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, campus["admin_a"])
    with get_database(app).sessions() as session:
        user = User(openid="o_mask_4")
        session.add(user)
        session.flush()
        form = ProfileForm(campus["a"], "钱七", "心理学院", "2024100", "2024级", "13600006666")
        submit_profile(session, user.id, form, now=utcnow())
        session.commit()
    queue = client.post(f"/console/school/approvals/{campus['pending']}/reveal", data={"csrf_token": token})
    assert queue.status_code == 200
    html = queue.get_data(as_text=True)
    assert PENDING_PHONE in html and "136****6666" in html and "13600006666" not in html  # that row only
    assert "已显示 王小明 的完整手机号" in html
    [entry] = reveals(app)
    assert (entry.subject_type, entry.subject_id, entry.school_id, entry.note) == (
        "student_profile", str(campus["pending"]), campus["a"], "手机")
    assert PENDING_PHONE not in json.dumps([entry.before, entry.after, entry.note])


def test_staff_reveal_an_orders_phone_and_school_admins_cannot(shop, graduates) -> None:  # type: ignore[no-untyped-def]
    app = shop["app"]
    order = paid_order(shop)
    staff = app.test_client()
    token = sign_in(staff, app, make_staff(app))
    index = staff.get("/console/payments/").get_data(as_text=True)
    assert "138****0000" in index and "13800000000" not in index
    page = staff.get(f"/console/payments/orders/{order.id}").get_data(as_text=True)
    assert 'id="phone">138****0000<' in page and "13800000000" not in page
    assert staff.get(f"/console/payments/orders/{order.id}/reveal").status_code == 405
    assert staff.post(f"/console/payments/orders/{order.id}/reveal").status_code == 400
    assert reveals(app) == []
    shown = staff.post(f"/console/payments/orders/{order.id}/reveal", data={"csrf_token": token})
    assert shown.status_code == 200 and 'id="phone">13800000000<' in shown.get_data(as_text=True)
    [entry] = reveals(app)
    assert (entry.subject_type, entry.subject_id, entry.school_id, entry.note) == (
        "certificate_order", str(order.id), order.school_id, "手机")
    assert "13800000000" not in json.dumps([entry.before, entry.after, entry.note])
    assert staff.post("/console/payments/orders/999999/reveal", data={"csrf_token": token}).status_code == 404

    school_admin = app.test_client()
    admin_token = sign_in(school_admin, app, make_school_admin(app, order.school_id))
    assert school_admin.post(f"/console/payments/orders/{order.id}/reveal",
                             data={"csrf_token": admin_token}).status_code == 403
    assert len(reveals(app)) == 1


def test_staff_reveal_a_students_number_and_phone_beside_their_conversation(app: Flask, client, campus) -> None:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        conversation = Conversation(user_id=campus["user_o_mask_1"], last_preview="证书什么时候寄出？")
        session.add(conversation)
        session.commit()
        cid = conversation.id
    token = sign_in(client, app, make_staff(app))
    listed = client.get("/console/inbox?view=all").get_data(as_text=True)
    assert "林小满" in listed and MASKED_NUMBER in listed and NUMBER not in listed
    page = client.get(f"/console/inbox/{cid}").get_data(as_text=True)
    assert MASKED_NUMBER in page and MASKED_PHONE in page and NUMBER not in page and PHONE not in page
    assert client.get(f"/console/inbox/{cid}/reveal").status_code == 405
    shown = client.post(f"/console/inbox/{cid}/reveal", data={"csrf_token": token}).get_data(as_text=True)
    assert NUMBER in shown and PHONE in shown
    [entry] = reveals(app)
    assert (entry.subject_type, entry.subject_id, entry.school_id) == ("student_profile", str(campus["verified"]),
                                                                       campus["a"])


def test_staff_looking_at_a_school_reveal_with_the_school_in_the_url(app: Flask, client, campus) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, make_staff(app))
    base = f"/console/school/students/{campus['verified']}"
    assert client.post(base + "/reveal", data={"csrf_token": token}).status_code == 404  # no school chosen
    assert client.post(base + f"/reveal?school={campus['b']}", data={"csrf_token": token}).status_code == 404
    page = client.get(base + f"?school={campus['a']}").get_data(as_text=True)
    assert f'action="{base}/reveal?school={campus["a"]}"' in page
    shown = client.post(base + f"/reveal?school={campus['a']}", data={"csrf_token": token})
    assert shown.status_code == 200 and PHONE in shown.get_data(as_text=True)
    assert [(e.subject_id, e.school_id) for e in reveals(app)] == [(str(campus["verified"]), campus["a"])]


# --- URLs, logs, metrics -------------------------------------------------------------------------------


def test_searches_keep_numbers_out_of_urls(app: Flask, client, campus) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, campus["admin_a"])
    pages = []
    # By number and by name: each search posts, and the list it redirects to names a handle.
    for term, expected in ((NUMBER, MASKED_NUMBER), ("林小满", MASKED_NUMBER)):
        found = search(client, "/console/school/students", term)
        table = found.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
        assert "林小满" in table and expected in table and "王小明" not in table and NUMBER not in table
        assert f'value="{term}"' in found  # the box still shows what was typed (in the page, not its URL)
        pages.append(found)
        pages.append(search(client, "/console/school/roster", term))
    # Other filters travel with the term; a new search starts on the first page.
    posted = client.post("/console/school/students", data={"csrf_token": token, "q": NUMBER, "state": "verified",
                                                           "after": "5"})
    query = parse_qs(urlsplit(posted.headers["Location"]).query)
    assert query["state"] == ["verified"] and "after" not in query and set(query) == {"state", "s"}
    # An old link with the term in it is answered with a redirect to its handle.
    old = client.get(f"/console/school/students?q={NUMBER}&state=verified")
    assert old.status_code == 302 and NUMBER not in unquote(old.headers["Location"])
    assert "林小满" in client.get(old.headers["Location"]).get_data(as_text=True)
    # The export form posts the filters (the term in the body) and comes back with a handle.
    exported = client.post("/console/school/exports", data={"csrf_token": token, "q": NUMBER, "format": "csv"})
    assert exported.status_code == 302 and NUMBER not in unquote(exported.headers["Location"])
    for url in ("/console/school/", "/console/school/students", f"/console/school/students/{campus['verified']}",
                "/console/school/roster", "/console/school/approvals"):
        pages.append(client.get(url).get_data(as_text=True))
    pages.append(client.post(f"/console/school/students/{campus['verified']}/reveal",
                             data={"csrf_token": token}).get_data(as_text=True))
    for html in pages:
        assert_nothing_personal_in(links(html))


def test_staff_searches_keep_numbers_out_of_urls(app: Flask, client, campus, graduates) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import claim_as

    claim_as(app, graduates[0])
    sign_in(client, app, make_staff(app))
    found = search(client, "/console/certificates/", "C000")
    assert "林小满一" in found and "C000" not in found.split("<tbody>", 1)[1]  # masked in the results
    inbox = search(client, "/console/inbox", NUMBER, view="all")
    for html in (found, inbox, client.get("/console/payments/").get_data(as_text=True)):
        assert_nothing_personal_in(links(html))
        assert "C000" not in "".join(links(html))


def test_a_handle_from_another_session_finds_nothing(app: Flask, client, campus) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, app, campus["admin_a"])
    posted = client.post("/console/school/students", data={"csrf_token": csrf(client), "q": NUMBER})
    location = posted.headers["Location"]
    other = app.test_client()
    sign_in(other, app, make_school_admin(app, campus["a"]))
    page = other.get(location).get_data(as_text=True)
    assert "搜索条件只在当初搜索的浏览器里有效" in page and "王小明" in page  # unsearched, and said so
    with client.session_transaction() as session:
        assert [term for _, term in session[SEARCHES]] == [NUMBER]
    client.post("/console/sign-out", data={"csrf_token": csrf(client)})
    with client.session_transaction() as session:
        assert SEARCHES not in session  # signing out forgets the terms


def test_no_number_or_phone_in_the_access_log_or_metrics(app: Flask, client, campus, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    token = sign_in(client, app, campus["admin_a"])
    search(client, "/console/school/students", NUMBER)
    search(client, "/console/school/roster", PHONE[:7])
    client.get(f"/console/school/students?q={THEIR_NUMBER}")  # an old link: the term is in this request only
    client.post(f"/console/school/students/{campus['verified']}/reveal", data={"csrf_token": token})
    client.post(f"/console/school/approvals/{campus['pending']}/reveal", data={"csrf_token": token})
    access = [r.getMessage() for r in caplog.records if r.name == "xinwei.access"]
    assert any("/reveal 200" in line for line in access) and any("/console/school/students 302" in line
                                                                   for line in access)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(secret in logged for secret in SECRETS), logged
    assert not any(secret[:7] in logged for secret in (PHONE, PENDING_PHONE))
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "console_school.reveal_student" in metrics  # requests are counted by endpoint, not by URL
    assert not any(secret in metrics for secret in SECRETS)


def test_exports_stay_whole_and_each_creation_and_download_is_audited(app: Flask, client, campus) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, campus["admin_a"])
    assert client.post("/console/school/exports", data={"csrf_token": token, "format": "csv"}).status_code == 302
    with get_database(app).sessions() as session:
        job_ids = list(session.scalars(select(Job.id).where(Job.kind == school_exports.EXPORT_JOB)))
    for job_id in job_ids:
        get_queue(app).execute(job_id)
    with get_database(app).sessions() as session:
        export_id = session.scalar(select(AuditEntry.subject_id).where(AuditEntry.action == "school.students_export"))
    download = get_file(client, f"/console/school/exports/{export_id}/download")
    assert download.status_code == 200
    text = download.data.decode("utf-8-sig")
    assert NUMBER in text and "林小满" in text  # the on-purpose download is whole
    with get_database(app).sessions() as session:
        entries = list(session.scalars(select(AuditEntry).where(AuditEntry.action.startswith("school.students_export"))
                                       .order_by(AuditEntry.id)))
    assert [(e.action, e.account_id, e.subject_id, e.school_id) for e in entries] == [
        ("school.students_export", campus["admin_a"], export_id, campus["a"]),
        ("school.students_export_download", campus["admin_a"], export_id, campus["a"])]
    assert NUMBER not in json.dumps([[e.before, e.after, e.note] for e in entries])
    other = app.test_client()
    sign_in(other, app, campus["admin_b"])
    assert other.get(f"/console/school/exports/{export_id}/download").status_code == 404

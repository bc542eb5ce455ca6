"""The student's privacy rights over HTTP: consent (asked, re-asked, withdrawn), a copy of their data
(built by a job, fetched through a short-lived link, only by them), erasure (cooling-off, cancel,
carried out by the job or by staff), and the staff queue — each rule with the attempt to beat it."""
from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from database import get_database
from handlers.privacy import consent, requests
from jobs.queue import get_queue
from models import AuditEntry, Consent, DataRequest, Job, User
from models.base import utcnow
from tests.console_helpers import make_school_admin, make_staff
from tests.console_helpers import sign_in as console_sign_in
from tests.factories import CSRF, get_file, sign_in
from tests.test_privacy_export import everything


def _jobs(app, kind: str) -> list[str]:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        ids = list(session.scalars(select(Job.id).where(Job.kind == kind, Job.status == "pending").order_by(Job.id)))
    return [get_queue(app).execute(job_id) for job_id in ids]


NOTICE = consent.NOTICE_FILE  # the shipped notice, before any test swaps it


def _notice(tmp_path: Path, version: int, consent_from: int) -> Path:
    text = NOTICE.read_text(encoding="utf-8")
    text = text.replace("version: 1", f"version: {version}", 1)
    text = text.replace("consent_from: 1", f"consent_from: {consent_from}")
    path = tmp_path / f"notice-{version}.md"
    path.write_text(text + f"\n（第 {version} 版的修改）\n", encoding="utf-8")
    return path


# -- consent --------------------------------------------------------------------------------------

@pytest.mark.no_auto_consent
def test_a_student_without_consent_is_asked_first_and_the_boxes_are_never_pre_ticked(shop) -> None:  # type: ignore[no-untyped-def]
    client = shop["client"]
    asked = client.get("/h5/courses/demo-course")
    assert asked.status_code == 302 and asked.headers["Location"].startswith("/h5/privacy/consent?next=")
    page = client.get(asked.headers["Location"]).get_data(as_text=True)
    assert "请阅读隐私政策" in page and 'name="agree_notice" value="1">' in page and "checked" not in page
    # Only the notice ticked: refused, with why the school's box is needed; nothing recorded.
    half = client.post("/h5/privacy/consent", data=dict(csrf_token=CSRF, agree_notice="1", next="/h5/progress"))
    assert half.status_code == 400 and "身份需由所在学校核验" in half.get_data(as_text=True)
    assert client.post("/h5/privacy/consent", data=dict(agree_notice="1", agree_sharing="1")).status_code == 400
    with get_database(shop["app"]).sessions() as session:
        assert session.scalar(select(Consent.id)) is None
    # An outside `next` never leaves the site (open redirect).
    done = client.post("/h5/privacy/consent", data=dict(csrf_token=CSRF, agree_notice="1", agree_sharing="1",
                                                        next="https://evil.example/h5/"))
    assert done.status_code == 302 and done.headers["Location"] == "/h5/"
    assert client.get("/h5/courses/demo-course").status_code == 200
    # A double tap records each consent once.
    client.post("/h5/privacy/consent", data=dict(csrf_token=CSRF, agree_notice="1", agree_sharing="1"))
    with get_database(shop["app"]).sessions() as session:
        rows = session.execute(select(Consent.purpose, Consent.notice_version, Consent.granted)).all()
        assert sorted(rows) == [("notice", 1, True), ("school_sharing", 1, True)]


def test_a_material_new_notice_asks_again_and_a_wording_fix_does_not(shop, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = shop["client"]
    assert client.get("/h5/courses/demo-course").status_code == 200  # consented to version 1 with the profile
    monkeypatch.setattr(consent, "NOTICE_FILE", _notice(tmp_path, 2, consent_from=1))
    assert client.get("/h5/courses/demo-course").status_code == 200
    monkeypatch.setattr(consent, "NOTICE_FILE", _notice(tmp_path, 3, consent_from=3))
    asked = client.get("/h5/courses/demo-course")
    assert asked.status_code == 302
    page = client.get(asked.headers["Location"]).get_data(as_text=True)
    assert "隐私政策已更新" in page and "第 3 版" in page
    client.post("/h5/privacy/consent", data=dict(csrf_token=CSRF, agree_notice="1", agree_sharing="1"))
    assert client.get("/h5/courses/demo-course").status_code == 200
    # What the student agreed to stays readable, word for word, after the file moved on.
    monkeypatch.setattr(consent, "NOTICE_FILE", _notice(tmp_path, 4, consent_from=3))
    old = client.get("/h5/privacy?v=3").get_data(as_text=True)
    assert "（第 3 版的修改）" in old and "查看现行版本（第 4 版）" in old
    assert client.get("/h5/privacy?v=99").status_code == 404


def test_a_notice_edited_without_a_new_number_is_refused(app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = consent.parse_notice(consent.NOTICE_FILE.read_text(encoding="utf-8"))
    edited = consent.parse_notice(consent.NOTICE_FILE.read_text(encoding="utf-8") + "\n悄悄改了一句。\n")
    with get_database(app).sessions() as session:
        consent.notice_row(session, first)
        with pytest.raises(RuntimeError, match="without a new version number"):
            consent.notice_row(session, edited)


def test_withdrawing_is_as_easy_as_giving_and_says_what_follows(shop) -> None:  # type: ignore[no-untyped-def]
    client = shop["client"]
    page = client.get("/h5/my-data").get_data(as_text=True)
    assert "撤回后平台将停止为你提供培训服务" in page
    assert client.post("/h5/my-data/consents/notice/withdraw").status_code == 400  # no CSRF
    gone = client.post("/h5/my-data/consents/notice/withdraw", data=dict(csrf_token=CSRF))
    assert gone.status_code == 302
    assert "平台将不再为你提供培训服务" in client.get(gone.headers["Location"]).get_data(as_text=True)
    assert client.get("/h5/courses/demo-course").status_code == 302  # asked again before learning
    assert client.post("/h5/my-data/consents/nonsense/withdraw", data=dict(csrf_token=CSRF)).status_code == 404


def test_the_notice_is_public_and_linked_from_every_page(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/h5/privacy")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "谁能看到你的信息" in html and "保存多久" in html and "联系我们" in html
    assert 'href="/h5/privacy"' in client.get("/verify").get_data(as_text=True)


# -- a copy ---------------------------------------------------------------------------------------

def test_a_copy_is_built_by_a_job_and_only_its_owner_fetches_it(shop, graduates) -> None:  # type: ignore[no-untyped-def]
    app, client = shop["app"], shop["client"]
    everything(shop)
    assert client.post("/h5/my-data/copies").status_code == 400  # no CSRF
    assert client.post("/h5/my-data/copies", data=dict(csrf_token=CSRF)).status_code == 302
    assert client.post("/h5/my-data/copies", data=dict(csrf_token=CSRF)).status_code == 302  # a double tap
    with get_database(app).sessions() as session:
        [request] = session.scalars(select(DataRequest).where(DataRequest.status == "pending")).all()
    assert _jobs(app, requests.COPY_JOB) == ["done"]
    page = client.get("/h5/my-data").get_data(as_text=True)
    assert f'/h5/my-data/copies/{request.id}"' in page and "林小满一" in page  # the readable record
    fetched = get_file(client, f"/h5/my-data/copies/{request.id}")
    assert fetched.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(fetched.data))
    names = set(archive.namelist())
    assert {"data.json", "index.html"} <= names and any(n.startswith("certificates/") and n.endswith(".pdf")
                                                        for n in names)
    data = json.loads(archive.read("data.json"))
    assert data["tables"]["student_profiles"]["rows"][0]["real_name"] == "林小满一"
    assert "林小满一" in archive.read("index.html").decode() and "<script" not in archive.read("index.html").decode()
    text = archive.read("data.json").decode()
    assert "o_cert_1" not in text and "林小满二" not in text
    # Another student: no such copy, as far as they know.
    other = app.test_client()
    sign_in(other, graduates[1], "o_cert_1")
    assert other.get(f"/h5/my-data/copies/{request.id}").status_code == 404
    assert other.get(f"/h5/my-data/copies/{request.id}/status").status_code == 404


def test_copies_are_bounded_per_day(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop["app"], shop["client"]
    for _ in range(requests.COPIES_PER_DAY):
        assert client.post("/h5/my-data/copies", data=dict(csrf_token=CSRF)).status_code == 302
        _jobs(app, requests.COPY_JOB)
    refused = client.post("/h5/my-data/copies", data=dict(csrf_token=CSRF))
    assert refused.status_code == 429 and "每天最多" in refused.get_data(as_text=True)


# -- erasure --------------------------------------------------------------------------------------

def _ship(app) -> None:  # type: ignore[no-untyped-def]
    from handlers.payments.shipping import mark_shipped, start_printing
    from models import CertificateOrder

    with get_database(app).sessions() as session:
        order = session.scalars(select(CertificateOrder)).one()
        start_printing(session, [order.id], "staff:wang", utcnow())
        mark_shipped(session, order.id, "顺丰", "SF1", "staff:wang", utcnow())
        session.commit()


def test_erasure_waits_out_its_cooling_off_can_be_cancelled_then_the_job_erases(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop["app"], shop["client"]
    everything(shop)
    held = client.get("/h5/erase").get_data(as_text=True)
    assert "暂时不能注销" in held and "正在支付、制作或等待寄出" in held  # the paid order is not posted yet
    assert client.post("/h5/erase", data=dict(csrf_token=CSRF, confirm="1")).status_code == 409
    _ship(app)
    page = client.get("/h5/erase").get_data(as_text=True)
    assert "证书不会被撤销" in page and "申请注销" in page
    unconfirmed = client.post("/h5/erase", data=dict(csrf_token=CSRF))
    assert "unconfirmed" in unconfirmed.headers["Location"]
    assert client.post("/h5/erase", data=dict(csrf_token=CSRF, confirm="1")).status_code == 302
    assert "注销申请已提交" in client.get("/h5/erase").get_data(as_text=True)
    assert client.post("/h5/erase/cancel", data=dict(csrf_token=CSRF)).status_code == 302
    assert client.post("/h5/erase/cancel", data=dict(csrf_token=CSRF)).status_code == 409  # nothing left to cancel
    client.post("/h5/erase", data=dict(csrf_token=CSRF, confirm="1"))
    with get_database(app).sessions() as session:
        statuses = sorted(session.scalars(select(DataRequest.status).where(DataRequest.kind == "erase")))
        assert statuses == ["cancelled", "pending"]
        assert requests.due_erasures(session, utcnow()) == []  # not before the cooling-off ends
        session.execute(update(DataRequest).where(DataRequest.status == "pending")
                        .values(run_after=utcnow() - timedelta(seconds=1)))
        session.commit()
    assert _jobs(app, "privacy.schedule_erasures") == []  # not scheduled by hand: recorded by the period
    with get_database(app).sessions() as session:
        assert requests.schedule_due_erasures(session, utcnow()) == 1
        session.commit()
    assert _jobs(app, requests.ERASE_JOB) == ["done"]
    with get_database(app).sessions() as session:
        user = session.get(User, shop["user_id"])
        assert user is not None and user.openid.startswith("erased:")
        done = session.scalars(select(DataRequest).where(DataRequest.kind == "erase",
                                                         DataRequest.status == "done")).one()
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "privacy.erase")).one()
        assert entry.subject_id == str(done.id) and entry.actor == "system"


def test_staff_see_the_queue_by_deadline_and_may_erase_sooner(shop) -> None:  # type: ignore[no-untyped-def]
    app, client = shop["app"], shop["client"]
    everything(shop)
    _ship(app)
    client.post("/h5/erase", data=dict(csrf_token=CSRF, confirm="1"))
    client.post("/h5/my-data/copies", data=dict(csrf_token=CSRF))
    staff = app.test_client()
    console_sign_in(staff, app, make_staff(app))
    queue = staff.get("/console/privacy/").get_data(as_text=True)
    assert "注销" in queue and "数据副本" in queue and "林**一" in queue and "林小满一" not in queue
    admin = app.test_client()
    console_sign_in(admin, app, make_school_admin(app, 1))
    assert admin.get("/console/privacy/").status_code in (403, 404)
    with get_database(app).sessions() as session:
        erase_id = session.scalar(select(DataRequest.id).where(DataRequest.kind == "erase"))
    assert admin.post(f"/console/privacy/{erase_id}/erase").status_code in (400, 403, 404)
    from tests.console_helpers import csrf
    token = csrf(staff)
    assert staff.post(f"/console/privacy/{erase_id}/erase", data=dict(csrf_token=token)).status_code == 302
    again = staff.post(f"/console/privacy/{erase_id}/erase", data=dict(csrf_token=token))
    assert again.status_code == 409 and "已处理" in again.get_data(as_text=True)
    with get_database(app).sessions() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "privacy.erase")).one()
        assert entry.account_id is not None and entry.subject_id == str(erase_id)
    # The copy the student asked for before erasure is never built for the erased account.
    assert _jobs(app, requests.COPY_JOB) == ["done"]
    with get_database(app).sessions() as session:
        assert session.scalar(select(DataRequest.status).where(DataRequest.kind == "copy")
                              .order_by(DataRequest.id.desc()).limit(1)) == "cancelled"


def test_withdrawing_school_sharing_hides_the_student_from_the_school_but_keeps_the_count(shop) -> None:  # type: ignore[no-untyped-def]
    from models import Course, StudentProfile

    app, client = shop["app"], shop["client"]
    with get_database(app).sessions() as session:
        profile = session.scalars(select(StudentProfile).where(StudentProfile.user_id == shop["user_id"])).one()
        school_id, profile_id = profile.school_id, profile.id
        course_id = session.scalar(select(Course.id))
    admin = app.test_client()
    console_sign_in(admin, app, make_school_admin(app, school_id))
    listed = admin.get(f"/console/school/students?course={course_id}").get_data(as_text=True)
    assert "林小满一" in listed and admin.get(f"/console/school/students/{profile_id}").status_code == 200
    client.post("/h5/my-data/consents/school_sharing/withdraw", data=dict(csrf_token=CSRF))
    listed = admin.get(f"/console/school/students?course={course_id}").get_data(as_text=True)
    assert "林小满一" not in listed and "（已撤回向学校共享）" in listed and "林小满二" in listed
    assert admin.get(f"/console/school/students/{profile_id}").status_code == 404
    assert "林小满一" not in admin.get("/console/school/").get_data(as_text=True)
    # Given again, the school sees them again.
    client.post("/h5/privacy/consent", data=dict(csrf_token=CSRF, agree_notice="1", agree_sharing="1"))
    assert "林小满一" in admin.get(f"/console/school/students?course={course_id}").get_data(as_text=True)


def test_a_pending_student_who_withdrew_sharing_leaves_the_schools_approval_queue(app) -> None:  # type: ignore[no-untyped-def]
    from handlers.schools import approvals
    from models import School, StudentProfile
    from tests.factories import pending

    with get_database(app).sessions() as session:
        school = School(name="测试大学")
        session.add(school)
        session.commit()
        school_id = school.id
    profile_id = pending(app, school_id, "周八", "2024099", "o_pending")
    with get_database(app).sessions() as session:
        assert approvals.pending_count(session, school_id) == 1
        user_id = session.scalar(select(StudentProfile.user_id).where(StudentProfile.id == profile_id))
        consent.withdraw(session, user_id, consent.SCHOOL_SHARING, utcnow())
        session.commit()
        assert approvals.pending_count(session, school_id) == 0
        assert approvals.queue(session, school_id) == ([], 0)

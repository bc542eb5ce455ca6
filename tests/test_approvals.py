"""The approval queue: pending students beside their closest roster lines, approve, reject with a reason the
student sees, bulk approval, decisions that never apply twice, and every route's gate and tenant rule."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from database import get_database
from handlers.audit import Actor
from handlers.errors import Refused
from handlers.schools import approvals
from models import AuditEntry, RosterEntry, StudentProfile, User
from models.base import utcnow
from tests.console_helpers import make_school, make_school_admin, make_staff, sign_in
from tests.factories import CSRF, pending, run_upload_jobs
from tests.factories import sign_in as student_sign_in


def status_of(app, profile_id: int) -> tuple:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        profile = session.get(StudentProfile, profile_id)
        return profile.status, profile.verified_via, profile.reviewed_by, profile.reject_reason


def audits(app, action: str) -> list[AuditEntry]:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


@pytest.fixture
def world(app, client):  # type: ignore[no-untyped-def]
    school, other = make_school(app, "审核大学"), make_school(app, "别的大学")
    with get_database(app).sessions() as session:
        session.add_all([RosterEntry(school_id=school, student_number="2024001", real_name="张三", college="心理学院"),
                         RosterEntry(school_id=school, student_number="2024777", real_name="李四")])
        session.commit()
    admin = make_school_admin(app, school)
    ids = {"school": school, "other": other, "admin": admin,
           "wrong_name": pending(app, school, "张三丰", "2024001", "o_a1"),
           "wrong_number": pending(app, school, "李四", "2024002", "o_a2"),
           "unlisted": pending(app, school, "王五", "2024003", "o_a3"),
           "theirs": pending(app, other, "赵六", "2024001", "o_a4")}
    ids["token"] = sign_in(client, app, admin)
    return ids


def test_the_queue_lists_own_pending_students_oldest_first_with_roster_hints(client, world) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/console/school/approvals")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "待审核学生（3）" in html
    assert html.index("张三丰") < html.index("李四</td>") < html.index("王五")
    assert "赵六" not in html  # another school's
    row = html[html.index(f'id="profile-{world["wrong_name"]}"'):]
    assert "同学号</span> 张三" in row[:row.index("</tr>")]
    row = html[html.index(f'id="profile-{world["wrong_number"]}"'):]
    assert "同名</span> 2024777" in row[:row.index("</tr>")]
    row = html[html.index(f'id="profile-{world["unlisted"]}"'):]
    assert "名单中没有" in row[:row.index("</tr>")]


def test_approve_then_a_second_decision_is_refused_not_applied(app, client, world) -> None:  # type: ignore[no-untyped-def]
    response = client.post(f"/console/school/approvals/{world['wrong_name']}/approve",
                           data={"csrf_token": world["token"]})
    assert response.status_code == 302
    assert "已通过 张三丰（2024001）" in client.get("/console/school/approvals").get_data(as_text=True)
    status, via, reviewer, _ = status_of(app, world["wrong_name"])
    assert (status, via) == ("verified", "admin") and reviewer.startswith("schooladmin")
    again = client.post(f"/console/school/approvals/{world['wrong_name']}/reject",
                        data={"csrf_token": world["token"], "reason": "改主意了"})
    assert again.status_code == 409 and "已处理过" in again.get_data(as_text=True)
    assert status_of(app, world["wrong_name"])[0] == "verified"
    [entry] = audits(app, "approvals.approve")
    assert entry.subject_id == str(world["wrong_name"]) and entry.school_id == world["school"]
    assert entry.account_id == world["admin"] and audits(app, "approvals.reject") == []


def test_reject_needs_a_reason_the_student_then_sees_and_can_resubmit(app, client, world) -> None:  # type: ignore[no-untyped-def]
    url = f"/console/school/approvals/{world['unlisted']}/reject"
    empty = client.post(url, data={"csrf_token": world["token"], "reason": "   "})
    assert empty.status_code == 400 and "请填写驳回原因" in empty.get_data(as_text=True)
    assert status_of(app, world["unlisted"])[0] == "pending"
    assert client.post(url, data={"csrf_token": world["token"], "reason": "x" * 501}).status_code == 400
    assert client.post(url, data={"csrf_token": world["token"],
                                  "reason": "学号与学籍系统不符，请核对"}).status_code == 302
    assert status_of(app, world["unlisted"])[::3] == ("rejected", "学号与学籍系统不符，请核对")
    assert audits(app, "approvals.reject")[0].after == {"status": "rejected", "reason": "学号与学籍系统不符，请核对"}

    # The student's side: the reason on the home page and the profile form, which takes a new submission.
    student = app.test_client()
    with get_database(app).sessions() as session:
        user_id = session.scalar(select(StudentProfile.user_id).where(StudentProfile.id == world["unlisted"]))
    student_sign_in(student, user_id, "o_a3")
    assert "原因：学号与学籍系统不符，请核对" in student.get("/h5/").get_data(as_text=True)
    assert "上次提交未通过：学号与学籍系统不符，请核对" in student.get("/h5/profile").get_data(as_text=True)
    fields = dict(school_id=str(world["school"]), real_name="王五", college="心理学院", student_number="2024013",
                  grade="2024级", agree_notice="1", agree_sharing="1", csrf_token=CSRF, step="confirm")
    assert student.post("/h5/profile", data=fields).status_code == 302
    assert status_of(app, world["unlisted"]) == ("pending", None, None, None)
    assert "2024013" in client.get("/console/school/approvals").get_data(as_text=True)


def test_bulk_approve_skips_what_was_decided_meanwhile(app, client, world) -> None:  # type: ignore[no-untyped-def]
    client.post(f"/console/school/approvals/{world['unlisted']}/reject",
                data={"csrf_token": world["token"], "reason": "不是本校学生"})
    response = client.post("/console/school/approvals/bulk-approve", data={
        "csrf_token": world["token"], "profile_id": [str(world["wrong_name"]), str(world["wrong_number"]),
                                                     str(world["unlisted"]), str(world["wrong_name"])]})
    assert response.status_code == 302
    html = client.get("/console/school/approvals").get_data(as_text=True)
    assert "已批量通过 2 人；1 人已被处理过，已跳过" in html and "王五（2024003）的申请已处理过" in html
    assert [status_of(app, world[k])[0] for k in ("wrong_name", "wrong_number", "unlisted")] == \
        ["verified", "verified", "rejected"]
    assert len(audits(app, "approvals.approve")) == 2
    nothing = client.post("/console/school/approvals/bulk-approve", data={"csrf_token": world["token"]})
    assert nothing.status_code == 400 and "请先勾选" in nothing.get_data(as_text=True)


def test_two_admins_deciding_at_once_apply_exactly_one_decision(app, world) -> None:  # type: ignore[no-untyped-def]
    """The first admin's transaction holds the profile; the second waits, then is told it was decided."""
    sessions = get_database(app).sessions
    first = sessions()
    approvals.decide(first, Actor(1, "admin-a", world["school"]), world["school"], world["unlisted"], approve=True,
                     now=utcnow())
    outcome: dict[str, object] = {}

    def second_admin() -> None:
        with sessions() as session:
            try:
                approvals.decide(session, Actor(2, "admin-b", world["school"]), world["school"], world["unlisted"],
                                 approve=False, reason="重复", now=utcnow())
                session.commit()
                outcome["result"] = "applied"
            except Refused as refused:
                outcome["result"] = refused.message

    thread = threading.Thread(target=second_admin)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive(), "the second decision must wait for the first"
    first.commit()
    first.close()
    thread.join(20)
    assert "已由 admin-a 通过" in str(outcome["result"])
    assert status_of(app, world["unlisted"])[:3] == ("verified", "admin", "admin-a")
    assert len(audits(app, "approvals.approve")) == 1 and audits(app, "approvals.reject") == []


def test_an_upload_and_an_admin_deciding_the_same_student_do_not_collide(app, client, world) -> None:  # type: ignore[no-untyped-def]
    # The roster now lists 王五 under his number: the upload verifies him; the admin's late rejection is refused.
    import io

    upload = client.post("/console/school/roster/upload", data={
        "csrf_token": world["token"], "file": (io.BytesIO("姓名,学号\n王五,2024003\n".encode("gbk")), "a.csv")},
        content_type="multipart/form-data")
    assert upload.status_code == 302 and run_upload_jobs(app) == ["done"]  # the job merges it
    assert "待审核学生自动通过" in client.get(upload.headers["Location"]).get_data(as_text=True)
    late = client.post(f"/console/school/approvals/{world['unlisted']}/reject",
                       data={"csrf_token": world["token"], "reason": "查无此人"})
    assert late.status_code == 409 and "名单自动核验" in late.get_data(as_text=True)
    assert status_of(app, world["unlisted"])[:2] == ("verified", "roster")


ROUTES = ["approve", "reject"]


def test_another_schools_student_is_a_404_on_every_route(app, client, world) -> None:  # type: ignore[no-untyped-def]
    theirs = world["theirs"]
    for action in ROUTES:
        response = client.post(f"/console/school/approvals/{theirs}/{action}",
                               data={"csrf_token": world["token"], "reason": "越权"})
        assert response.status_code == 404, action
    assert (
        client.post("/console/school/approvals/999999/approve", data={"csrf_token": world["token"]}).status_code == 404
    )
    bulk = client.post("/console/school/approvals/bulk-approve",
                       data={"csrf_token": world["token"], "profile_id": [str(world["wrong_name"]), str(theirs)]})
    assert bulk.status_code == 404
    # Nothing applied: the bulk request was all or nothing.
    assert status_of(app, theirs)[0] == "pending" and status_of(app, world["wrong_name"])[0] == "pending"
    assert audits(app, "approvals.approve") == []


def test_approval_routes_are_gated(app, client, world) -> None:  # type: ignore[no-untyped-def]
    anonymous = app.test_client()
    response = anonymous.get("/console/school/approvals")
    assert response.status_code == 302 and "/console/sign-in" in response.headers["Location"]
    posts = [f"/console/school/approvals/{world['unlisted']}/{action}" for action in ROUTES] + \
        ["/console/school/approvals/bulk-approve"]
    for path in posts:
        assert anonymous.post(path, data={"reason": "x", "profile_id": str(world["unlisted"])}).status_code == 401
        # Signed in, but without the CSRF token.
        assert client.post(path, data={"reason": "x", "profile_id": str(world["unlisted"])}).status_code == 400
    staff = app.test_client()
    token = sign_in(staff, app, make_staff(app))
    assert staff.get("/console/school/approvals").status_code == 403
    for path in posts:
        assert staff.post(path, data={"csrf_token": token, "reason": "x",
                                      "profile_id": str(world["unlisted"])}).status_code == 403
    assert status_of(app, world["unlisted"])[0] == "pending"


def test_the_menu_shows_roster_and_approvals_to_school_admins_only(app, client, world) -> None:  # type: ignore[no-untyped-def]
    home = client.get("/console/").get_data(as_text=True)
    assert home.index("学生名单") < home.index("待审核学生")
    staff = app.test_client()
    sign_in(staff, app, make_staff(app))
    assert "待审核学生" not in staff.get("/console/").get_data(as_text=True)


def test_markup_in_what_students_declared_is_rendered_harmless(app, client, world) -> None:  # type: ignore[no-untyped-def]
    pending(app, world["school"], "孙七", "2024010", "o_x1", college="<script>alert(1)</script>")
    with get_database(app).sessions() as session:
        # Straight into the table, past the profile form's checks.
        user = User(openid="o_x2")
        session.add(user)
        session.flush()
        session.add(StudentProfile(user_id=user.id, school_id=world["school"], real_name="<img src=x onerror=alert(2)>",
                                   college="学院", student_number="2024011", grade="<b>年级</b>", phone="1",
                                   confirmed_at=utcnow()))
        session.commit()
    html = client.get("/console/school/approvals").get_data(as_text=True)
    assert "<script>alert(1)" not in html and "<img src=x" not in html and "<b>年级" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(2)&gt;" in html

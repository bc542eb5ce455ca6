"""Staff keep the schools (billing included), invite and disable their admins; platform admins keep staff accounts."""
from __future__ import annotations

import re

from flask import Flask
from sqlalchemy import select

from database import get_database
from models import AuditEntry, ConsoleAccount, School
from tests.console_helpers import make_platform_admin, make_school, make_school_admin, make_staff, sign_in

SCRIPT = "<script>alert(1)</script>"


def audit(app: Flask, action: str) -> list[AuditEntry]:
    with get_database(app).sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def school_named(app: Flask, name: str) -> School | None:
    with get_database(app).sessions() as session:
        return session.scalar(select(School).where(School.name == name))


def test_create_and_edit_a_school_with_billing(app, client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, make_staff(app))
    created = client.post(
        "/console/schools/",
        data={
            "csrf_token": token,
            "name": "  华东 示范大学 ",
            "address": "上海市某路 1 号 心理中心",
            "billing_name": "华东示范大学",
            "billing_tax_id": "12310000MB0000000X",
            "billing_contact": "王老师 021-00000000",
            "pays_electronic": "1",
        },
    )
    assert created.status_code == 302
    school = school_named(app, "华东 示范大学")
    assert school is not None and school.pays_electronic and school.billing_tax_id == "12310000MB0000000X"
    [entry] = audit(app, "school.create")
    assert entry.subject_id == str(school.id) and entry.after["billing_name"] == "华东示范大学"
    assert "学校已创建" in client.get(created.headers["Location"]).get_data(as_text=True)

    edited = client.post(f"/console/schools/{school.id}", data={
        "csrf_token": token, "name": "华东示范大学", "address": "上海市某路 2 号", "billing_name": "华东示范大学",
        "billing_tax_id": "12310000MB0000000X", "billing_contact": "王老师 021-00000000"})
    assert edited.status_code == 302
    [entry] = audit(app, "school.update")
    assert entry.before == {"name": "华东 示范大学", "address": "上海市某路 1 号 心理中心", "pays_electronic": True}
    assert entry.after == {"name": "华东示范大学", "address": "上海市某路 2 号", "pays_electronic": False}
    # Saving without a change writes no audit entry.
    client.post(f"/console/schools/{school.id}", data={
        "csrf_token": token, "name": "华东示范大学", "address": "上海市某路 2 号", "billing_name": "华东示范大学",
        "billing_tax_id": "12310000MB0000000X", "billing_contact": "王老师 021-00000000"})
    assert len(audit(app, "school.update")) == 1
    listing = client.get("/console/schools/?q=示范").get_data(as_text=True)
    assert "华东示范大学" in listing and "<td>学生支付</td>" in listing and "<td>学校支付</td>" not in listing


def test_bad_school_input_is_refused_and_loses_nothing(app, client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, make_staff(app))
    other = make_school(app, "已有大学")
    mine = make_school(app, "我的大学")
    nameless = client.post("/console/schools/", data={"csrf_token": token, "name": " ", "address": "某地"})
    assert nameless.status_code == 422 and "请填写学校名称" in nameless.get_data(as_text=True)
    assert 'value="某地"' in nameless.get_data(as_text=True)  # the form keeps what was typed
    taken = client.post("/console/schools/", data={"csrf_token": token, "name": "已有大学"})
    assert taken.status_code == 422 and "已有同名学校" in taken.get_data(as_text=True)
    rename = client.post(f"/console/schools/{mine}", data={"csrf_token": token, "name": "已有大学"})
    assert rename.status_code == 422 and "已有同名学校" in rename.get_data(as_text=True)
    long = client.post(
        f"/console/schools/{mine}", data={"csrf_token": token, "name": "我的大学", "billing_tax_id": "9" * 40}
    )
    assert long.status_code == 422 and "纳税人识别号最多" in long.get_data(as_text=True)
    assert school_named(app, "我的大学") is not None and other
    assert client.get("/console/schools/99999").status_code == 404
    assert audit(app, "school.update") == [] and audit(app, "school.create") == []


def test_invite_a_school_admin_shows_the_link_once_and_it_works(app, client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, make_staff(app))
    school = make_school(app, "邀请大学")
    page = client.post(f"/console/schools/{school}/invites", data={"csrf_token": token, "display_name": "李老师"})
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "只显示这一次" in body
    link = re.search(r'id="invite-link" value="([^"]+)"', body).group(1)
    assert "/console/invite/" in link
    again = client.get(f"/console/schools/{school}").get_data(as_text=True)
    assert link not in again and "李老师" in again  # pending, but the link is gone
    [entry] = audit(app, "invite.create")
    assert entry.school_id == school and entry.after["role"] == "school_admin"

    other = app.test_client()
    path = link.split("localhost", 1)[-1]
    form = other.get(path)
    assert form.status_code == 200
    from tests.console_helpers import csrf_of
    accepted = other.post(path, data={"csrf_token": csrf_of(form.get_data(as_text=True)), "username": "li.teacher",
                                      "password": "a long pass phrase 9", "password2": "a long pass phrase 9"})
    assert accepted.status_code == 302
    with get_database(app).sessions() as session:
        account = session.scalar(select(ConsoleAccount).where(ConsoleAccount.username == "li.teacher"))
        assert account.role == "school_admin" and account.school_id == school
    listed = client.get(f"/console/schools/{school}").get_data(as_text=True)
    assert "li.teacher" in listed
    assert (
        client.post(f"/console/schools/{school}/invites", data={"csrf_token": token, "display_name": " "}).status_code
        == 422
    )


def test_disable_and_enable_a_school_admin_only_of_that_school(app, client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, make_staff(app))
    school, other_school = make_school(app), make_school(app)
    admin = make_school_admin(app, school)
    other = make_school_admin(app, other_school)
    staff = make_staff(app)
    assert client.post(f"/console/schools/{school}/accounts/{admin}/disabled",
                       data={"csrf_token": token, "disabled": "1"}).status_code == 302
    with get_database(app).sessions() as session:
        assert session.get(ConsoleAccount, admin).disabled
    [entry] = audit(app, "account.disable")
    assert entry.before == {"disabled": False} and entry.after == {"disabled": True} and entry.school_id == school
    # The disabled admin's session ends at once.
    assert client.post(f"/console/schools/{school}/accounts/{admin}/disabled",
                       data={"csrf_token": token, "disabled": "0"}).status_code == 302
    assert len(audit(app, "account.enable")) == 1
    # Another school's admin, or a staff account, through this school's page: not found.
    for account_id in (other, staff):
        assert client.post(f"/console/schools/{school}/accounts/{account_id}/disabled",
                           data={"csrf_token": token, "disabled": "1"}).status_code == 404
    with get_database(app).sessions() as session:
        assert not session.get(ConsoleAccount, other).disabled and not session.get(ConsoleAccount, staff).disabled


def test_a_disabled_school_admin_is_signed_out(app, client) -> None:  # type: ignore[no-untyped-def]
    school = make_school(app)
    admin = make_school_admin(app, school)
    admin_client = app.test_client()
    sign_in(admin_client, app, admin)
    assert admin_client.get("/console/").status_code == 200
    token = sign_in(client, app, make_staff(app))
    client.post(f"/console/schools/{school}/accounts/{admin}/disabled", data={"csrf_token": token, "disabled": "1"})
    assert admin_client.get("/console/").status_code == 302


def test_platform_admins_invite_and_disable_staff(app, client) -> None:  # type: ignore[no-untyped-def]
    me = make_platform_admin(app)
    token = sign_in(client, app, me)
    staff = make_staff(app)
    page = client.post("/console/accounts/invites", data={"csrf_token": token, "display_name": "张三", "role": "staff"})
    assert page.status_code == 200 and "/console/invite/" in page.get_data(as_text=True)
    bad = client.post(
        "/console/accounts/invites", data={"csrf_token": token, "display_name": "张三", "role": "school_admin"}
    )
    assert bad.status_code == 422
    assert (
        client.post(f"/console/accounts/{staff}/disabled", data={"csrf_token": token, "disabled": "1"}).status_code
        == 302
    )
    myself = client.post(f"/console/accounts/{me}/disabled", data={"csrf_token": token, "disabled": "1"})
    assert myself.status_code == 422 and "不能停用自己的账号" in myself.get_data(as_text=True)
    school_admin = make_school_admin(app, make_school(app))
    assert client.post(f"/console/accounts/{school_admin}/disabled",
                       data={"csrf_token": token, "disabled": "1"}).status_code == 404
    assert [e.subject_id for e in audit(app, "account.disable")] == [str(staff)]
    listing = client.get("/console/accounts/").get_data(as_text=True)
    assert "张三" in listing and "已停用" in listing


def test_a_script_in_a_school_name_is_text(app, client) -> None:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, make_staff(app))
    client.post("/console/schools/", data={"csrf_token": token, "name": SCRIPT + "大学"})
    school = school_named(app, SCRIPT + "大学")
    for url in ("/console/schools/", f"/console/schools/{school.id}", "/console/audit/"):
        body = client.get(url).get_data(as_text=True)
        assert SCRIPT not in body and "&lt;script&gt;" in body, url


def test_a_pending_invite_can_be_cancelled_and_its_link_stops_working(app, client) -> None:  # type: ignore[no-untyped-def]
    from models import ConsoleInvite

    token = sign_in(client, app, make_staff(app))
    school, elsewhere = make_school(app, "邀请大学"), make_school(app, "别的大学")
    body = client.post(f"/console/schools/{school}/invites",
                       data={"csrf_token": token, "display_name": "李老师"}).get_data(as_text=True)
    link = re.search(r'id="invite-link" value="([^"]+)"', body).group(1)
    with get_database(app).sessions() as session:
        invite_id = session.scalar(select(ConsoleInvite.id))
    # Another school's URL, a missing CSRF token: nothing happens.
    assert client.post(f"/console/schools/{elsewhere}/invites/{invite_id}/cancel",
                       data={"csrf_token": token}).status_code == 404
    assert client.post(f"/console/schools/{school}/invites/{invite_id}/cancel").status_code == 400
    done = client.post(f"/console/schools/{school}/invites/{invite_id}/cancel", data={"csrf_token": token})
    assert done.status_code == 302
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "邀请已取消" in page and "取消邀请" not in page
    assert app.test_client().get(link).status_code in (404, 410, 400)
    assert "无效" in app.test_client().get(link).get_data(as_text=True)
    [entry] = audit(app, "invite.cancel")
    assert entry.before == {"display_name": "李老师", "role": "school_admin"}
    assert client.post(f"/console/schools/{school}/invites/{invite_id}/cancel",
                       data={"csrf_token": token}).status_code == 409

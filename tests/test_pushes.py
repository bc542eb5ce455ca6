"""Progress pushes: binding an admin's WeChat, batched notices, digests, sends to the fake WeChat, finish events."""

from __future__ import annotations

import re
import threading
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, update

from database import get_database
from handlers.catalog.loader import load_catalog, parse_catalog
from handlers.errors import Refused
from handlers.outbox import record_job
from handlers.pushes import bindings, compose
from handlers.pushes import deliveries as push_deliveries
from jobs.periodic import PERIODIC, record_period
from jobs.queue import get_queue
from models import (
    AuditEntry,
    Certificate,
    ConsoleAccount,
    Course,
    CourseVersion,
    Enrollment,
    Job,
    PushBindToken,
    PushDelivery,
    QuizAttempt,
    StudentProfile,
    User,
)
from models.base import utcnow
from tests.console_helpers import make_school, make_school_admin, make_staff, sign_in
from tests.factories import authorize, course, to_toml
from web import clock
from wechat.services import get_wechat_client

SEND = "/cgi-bin/message/template/send"
# 14:40 UTC closes the window [14:30, 14:40).
WINDOW_END = datetime(2026, 11, 29, 14, 40, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _no_queue_handover(app, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    # Jobs are run by hand below (get_queue(app).execute), in the order a test needs.
    get_queue(app).kick = lambda ids, delay=None: None  # type: ignore[method-assign]
    # A token valid at the (reset) fake, so the counted template sends are only ours.
    get_wechat_client(app).fetch_access_token()


# -- set-up helpers ---------------------------------------------------------------------------

def sessions(app):  # type: ignore[no-untyped-def]
    return get_database(app).sessions()


def bound_admin(app, school_id: int, openid: str, *, subscribed: bool = True) -> int:  # type: ignore[no-untyped-def]
    account_id = make_school_admin(app, school_id)
    with sessions(app) as session:
        user = User(openid=openid, subscribed=subscribed)
        session.add(user)
        session.flush()
        session.get(ConsoleAccount, account_id).wechat_user_id = user.id
        session.commit()
    return account_id


def course_ids(app) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with sessions(app) as session:
        if session.scalar(select(Course.id)) is None:
            load_catalog(session, parse_catalog(to_toml(course()), "demo.toml"), "demo.toml")
            session.commit()
        return session.scalar(select(Course.id)), session.scalar(select(CourseVersion.id))


_n = [0]


def student(app, school_id: int, name: str, *, status: str = "verified", verified_at: datetime | None = None,  # type: ignore[no-untyped-def]
            confirmed_at: datetime | None = None, passed_at: datetime | None = None) -> int:
    _n[0] += 1
    course_id, _ = course_ids(app)
    with sessions(app) as session:
        user = User(openid=f"o_stu_{_n[0]}")
        session.add(user)
        session.flush()
        session.add(StudentProfile(user_id=user.id, school_id=school_id, real_name=name, college="心理学院",
                                   student_number=f"S{_n[0]:04d}", grade="2024级", phone="13800000000",
                                   status=status, confirmed_at=confirmed_at or utcnow(), verified_at=verified_at))
        if passed_at is not None:
            session.add(Enrollment(user_id=user.id, course_id=course_id, passed_at=passed_at, total_score=90))
        session.commit()
        return user.id


def run_jobs(app, kind: str | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    """Run every pending job (of `kind`) now, backoff or not; their outcomes in order."""
    with sessions(app) as session:
        query = select(Job.id).where(Job.status == "pending").order_by(Job.id)
        ids = list(session.scalars(query.where(Job.kind == kind) if kind else query))
        if ids:
            session.execute(update(Job).where(Job.id.in_(ids)).values(run_after=utcnow() - timedelta(seconds=1)))
        session.commit()
    return [get_queue(app).execute(job_id) for job_id in ids]


def compose_notices(app, at: datetime = WINDOW_END) -> None:  # type: ignore[no-untyped-def]
    with sessions(app) as session:
        record_job(session, compose.NOTICES_JOB, {"period": f"periodic:{compose.NOTICES_JOB}:{at:%Y-%m-%dT%H:%M}"})
        session.commit()
    assert run_jobs(app, compose.NOTICES_JOB) == ["done"]


def deliveries(app) -> list[PushDelivery]:  # type: ignore[no-untyped-def]
    with sessions(app) as session:
        rows = list(session.scalars(select(PushDelivery).order_by(PushDelivery.id)))
        session.expunge_all()
        return rows


def templates_sent(fake_wechat) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return [m for m in fake_wechat.sent_messages if m["kind"] == "template"]


def one_queued_notice(app, openid: str = "o_admin") -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """A school whose bound admin has one pass notice queued: (school id, account id)."""
    school_id = make_school(app)
    account_id = bound_admin(app, school_id, openid)
    student(app, school_id, "张三", passed_at=WINDOW_END - timedelta(minutes=3))
    compose_notices(app)
    return school_id, account_id


# -- binding --------------------------------------------------------------------------------------

def bind_link(client, app, account_id: int) -> str:  # type: ignore[no-untyped-def]
    token = sign_in(client, app, account_id)
    page = client.post("/console/school/pushes/link", data={"csrf_token": token})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<svg" in html and "绑定二维码" in html
    match = re.search(r'<code id="bind-url">http://[^<]+(/h5/push-bind/[A-Za-z0-9_-]+)</code>', html)
    assert match, html
    return match.group(1)


def open_in_wechat(phone, path: str, openid: str):  # type: ignore[no-untyped-def]
    """The admin's phone opens the link: OAuth through the fake, then the confirm page."""
    resp = phone.get(path)
    if resp.status_code == 302 and resp.headers["Location"].startswith("/h5/login"):
        login = phone.get(resp.headers["Location"])
        callback = phone.get(authorize(login.headers["Location"], openid))
        assert callback.status_code == 302 and callback.headers["Location"] == path
        resp = phone.get(path)
    return resp


def confirm(phone, path: str):  # type: ignore[no-untyped-def]
    with phone.session_transaction() as sess:
        csrf = sess["csrf"]
    return phone.post(path, data={"csrf_token": csrf})


def test_binding_over_oauth_then_follow_status_synced(app, client, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    school_id = make_school(app, "绑定大学")
    account_id = make_school_admin(app, school_id)
    path = bind_link(client, app, account_id)
    phone = app.test_client()
    page = open_in_wechat(phone, path, "o_admin_phone")
    assert page.status_code == 200 and "绑定大学" in page.get_data(as_text=True)
    done = confirm(phone, path)
    assert done.status_code == 200
    # Known only through OAuth: not (yet) known to follow, so the page says what to do.
    assert "请先关注公众号，否则收不到推送" in done.get_data(as_text=True)
    with sessions(app) as session:
        user = session.scalar(select(User).where(User.openid == "o_admin_phone"))
        assert session.get(ConsoleAccount, account_id).wechat_user_id == user.id
        token = session.scalars(select(PushBindToken)).one()
        assert token.used_at is not None and token.used_by_user_id == user.id and len(token.token_hash) == 64
        assert path.rsplit("/", 1)[1] not in token.token_hash
        actions = list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
        assert "pushes.bind_link" in actions and "pushes.bind" in actions
    html = client.get("/console/school/pushes").get_data(as_text=True)
    assert "请先关注公众号，否则收不到推送" in html and "未关注公众号" in html
    # The sync job asks WeChat: the fake says this user follows.
    assert run_jobs(app, "accounts.sync_subscriber") == ["done"]
    html = client.get("/console/school/pushes").get_data(as_text=True)
    assert "已关注公众号" in html and "请先关注公众号" not in html


def test_a_bind_link_works_once(app, client, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    account_id = make_school_admin(app, make_school(app))
    path = bind_link(client, app, account_id)
    phone = app.test_client()
    open_in_wechat(phone, path, "o_first")
    assert confirm(phone, path).status_code == 200
    again = confirm(phone, path)
    assert again.status_code == 409 and "已经用过" in again.get_data(as_text=True)
    other = app.test_client()
    page = open_in_wechat(other, path, "o_second")
    assert page.status_code == 409
    assert confirm(other, path).status_code == 409
    with sessions(app) as session:
        first = session.scalar(select(User.id).where(User.openid == "o_first"))
        assert session.get(ConsoleAccount, account_id).wechat_user_id == first


def test_a_bind_link_expires(app, client, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    account_id = make_school_admin(app, make_school(app))
    path = bind_link(client, app, account_id)
    phone = app.test_client()
    assert open_in_wechat(phone, path, "o_late").status_code == 200
    clock.advance(app, 31 * 60)
    page = phone.get(path)
    assert page.status_code == 409 and "已过期" in page.get_data(as_text=True)
    assert confirm(phone, path).status_code == 409
    with sessions(app) as session:
        assert session.get(ConsoleAccount, account_id).wechat_user_id is None


def test_a_token_binds_only_its_own_account(app, client, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    mine = make_school_admin(app, make_school(app, "甲大学"))
    theirs = make_school_admin(app, make_school(app, "乙大学"))
    path = bind_link(client, app, theirs)
    phone = app.test_client()
    page = open_in_wechat(phone, path, "o_someone")
    assert "乙大学" in page.get_data(as_text=True) and "甲大学" not in page.get_data(as_text=True)
    confirm(phone, path)
    with sessions(app) as session:
        assert session.get(ConsoleAccount, theirs).wechat_user_id is not None
        assert session.get(ConsoleAccount, mine).wechat_user_id is None
    # Forged or malformed tokens find nothing.
    assert phone.get("/h5/push-bind/" + "A" * 32).status_code == 409
    assert phone.get("/h5/push-bind/short").status_code == 404
    with phone.session_transaction() as sess:
        csrf = sess["csrf"]
    assert phone.post(path, data={"csrf_token": "forged" + csrf}).status_code == 400


def test_unbind_stops_pushes(app, client, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    school_id = make_school(app)
    account_id = bound_admin(app, school_id, "o_unbind")
    token = sign_in(client, app, account_id)
    resp = client.post("/console/school/pushes/unbind", data={"csrf_token": token})
    assert resp.status_code == 303
    assert "已解除绑定" in client.get(resp.headers["Location"]).get_data(as_text=True)
    with sessions(app) as session:
        assert session.get(ConsoleAccount, account_id).wechat_user_id is None
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "pushes.unbind")).one()
        assert entry.after == {"wechat_user_id": None} and entry.school_id == school_id
    student(app, school_id, "张三", passed_at=WINDOW_END - timedelta(minutes=1))
    compose_notices(app)
    assert deliveries(app) == []


def test_routes_are_for_school_admins_with_csrf(app, client) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/console/school/pushes")
    assert resp.status_code == 302 and "/console/sign-in" in resp.headers["Location"]
    assert client.post("/console/school/pushes/link").status_code == 401
    staff = app.test_client()
    sign_in(staff, app, make_staff(app))
    assert staff.get("/console/school/pushes").status_code == 403
    admin = app.test_client()
    sign_in(admin, app, make_school_admin(app, make_school(app)))
    assert admin.post("/console/school/pushes/link", data={}).status_code == 400
    assert admin.post("/console/school/pushes/unbind", data={"csrf_token": "nope"}).status_code == 400
    with sessions(app) as session:
        assert session.scalars(select(PushBindToken)).all() == []
    # The menu shows the page to school admins.
    assert "进度推送" in admin.get("/console/").get_data(as_text=True)


def test_a_push_queued_before_unbinding_is_not_sent(app, client, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    _, account_id = one_queued_notice(app)
    token = sign_in(client, app, account_id)
    client.post("/console/school/pushes/unbind", data={"csrf_token": token})
    assert run_jobs(app, push_deliveries.SEND_JOB) == ["done"]
    assert fake_wechat.requests(SEND) == []
    (row,) = deliveries(app)
    assert (row.status, row.errmsg) == ("failed", "unbound")
    assert "发送前已解除绑定" in client.get("/console/school/pushes").get_data(as_text=True)


def test_history_is_paged_newest_first_and_per_school(app, client) -> None:  # type: ignore[no-untyped-def]
    school_id = make_school(app)
    account_id = bound_admin(app, school_id, "o_pager")
    other_id = bound_admin(app, make_school(app), "o_elsewhere")
    with sessions(app) as session:
        for i in range(25):
            session.add(PushDelivery(account_id=account_id, openid="o_pager", school_id=school_id, kind="digest",
                                     template_id="t", client_msg_id=f"xwpage{i}", payload={"summary": f"本校第{i}条"}))
        other_school = session.get(ConsoleAccount, other_id).school_id
        session.add(PushDelivery(account_id=other_id, openid="o_elsewhere", school_id=other_school, kind="digest",
                                 template_id="t", client_msg_id="xwother", payload={"summary": "外校的推送"}))
        session.commit()
    sign_in(client, app, account_id)
    first = client.get("/console/school/pushes").get_data(as_text=True)
    assert "共 25 条" in first and "本校第24条" in first and "本校第5条" in first and "本校第4条" not in first
    assert "第 1 / 2 页" in first and "外校的推送" not in first
    second = client.get("/console/school/pushes?page=2").get_data(as_text=True)
    assert "本校第4条" in second and "本校第0条" in second and "本校第5条" not in second
    assert client.get("/console/school/pushes?page=abc").status_code == 200


def test_concurrent_confirmations_bind_once(app) -> None:  # type: ignore[no-untyped-def]
    account_id = make_school_admin(app, make_school(app))
    with sessions(app) as session:
        token = bindings.create_bind_token(session, session.get(ConsoleAccount, account_id), utcnow())
        users = [User(openid=f"o_race_{i}") for i in range(4)]
        session.add_all(users)
        session.commit()
        user_ids = [u.id for u in users]
    results: list[str] = []

    def attempt(user_id: int) -> None:
        with sessions(app) as session:
            try:
                bindings.bind(session, token, user_id, utcnow())
                session.commit()
                results.append("bound")
            except Refused as refused:
                session.rollback()
                results.append(refused.code)

    threads = [threading.Thread(target=attempt, args=(uid,)) for uid in user_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == ["bind_used"] * 3 + ["bound"]
    with sessions(app) as session:
        assert session.get(ConsoleAccount, account_id).wechat_user_id in user_ids
        assert len(session.scalars(select(AuditEntry).where(AuditEntry.action == "pushes.bind")).all()) == 1


# -- batching and idempotency -------------------------------------------------------------------

def test_ten_passes_make_one_notice_per_admin_per_window(app, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    school_id = make_school(app, "通过大学")
    admins = [bound_admin(app, school_id, "o_admin_a"), bound_admin(app, school_id, "o_admin_b")]
    other_school = make_school(app, "别的大学")
    bound_admin(app, other_school, "o_admin_other")
    names = ["张三", "李四", "王五", "赵六", "钱七", "孙八", "周九", "吴十", "郑一", "冯二"]
    for i, name in enumerate(names):
        student(app, school_id, name, passed_at=WINDOW_END - timedelta(minutes=9, seconds=-i * 30))
    student(app, other_school, "外校生", passed_at=WINDOW_END - timedelta(minutes=1))
    # Outside the window: before it (not composed, the first window starts 10 minutes back) and after it.
    student(app, school_id, "早到者", passed_at=WINDOW_END - timedelta(minutes=11))
    student(app, school_id, "晚到者", passed_at=WINDOW_END + timedelta(seconds=1))
    compose_notices(app)
    rows = [d for d in deliveries(app) if d.school_id == school_id]
    assert sorted(d.account_id for d in rows) == sorted(admins)
    assert {d.kind for d in rows} == {"pass_notice"}
    assert rows[0].payload["summary"] == "10 名学生通过考核：张三、李四、王五…"
    assert run_jobs(app, push_deliveries.SEND_JOB) == ["done"] * 3
    sent = templates_sent(fake_wechat)
    assert sorted(m["touser"] for m in sent) == ["o_admin_a", "o_admin_b", "o_admin_other"]
    message = next(m for m in sent if m["touser"] == "o_admin_a")
    assert message["template_id"] == "dev-template-pass-notice"
    assert message["data"]["number2"] == {"value": "10"}
    assert message["data"]["thing1"] == {"value": "通过大学"}
    assert message["data"]["time4"] == {"value": "2026-11-29 22:40"}  # China time
    # The next window carries the late one alone.
    compose_notices(app, WINDOW_END + timedelta(minutes=10))
    later = [d for d in deliveries(app) if d.school_id == school_id][2:]
    assert [d.payload["summary"] for d in later] == ["1 名学生通过考核：晚到者"] * 2


def test_pending_approvals_are_noticed_separately(app, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    school_id = make_school(app)
    bound_admin(app, school_id, "o_approver")
    student(app, school_id, "待审甲", status="pending", confirmed_at=WINDOW_END - timedelta(minutes=2))
    student(app, school_id, "待审乙", status="pending", confirmed_at=WINDOW_END - timedelta(minutes=1))
    student(app, school_id, "已认证", status="verified", confirmed_at=WINDOW_END - timedelta(minutes=1))
    compose_notices(app)
    (row,) = deliveries(app)
    assert row.kind == "approval_notice" and row.payload["summary"] == "2 名学生等待审核：待审甲、待审乙"
    assert row.template_id == "dev-template-approval-notice"


def test_a_rerun_sends_nothing_twice(app, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    one_queued_notice(app)
    assert run_jobs(app, push_deliveries.SEND_JOB) == ["done"]
    # The same period composed again (another scheduler, a retried job): no new delivery, no new send.
    compose_notices(app)
    with sessions(app) as session:
        compose.compose_notices(session, app.config, WINDOW_END + timedelta(minutes=5))  # same window
        session.commit()
    assert len(deliveries(app)) == 1 and run_jobs(app, push_deliveries.SEND_JOB) == []
    # A send job re-run after its delivery was sent does not call WeChat again.
    with sessions(app) as session:
        session.execute(update(Job).where(Job.kind == push_deliveries.SEND_JOB).values(status="pending"))
        session.commit()
    assert run_jobs(app, push_deliveries.SEND_JOB) == ["done"] and len(fake_wechat.requests(SEND)) == 1
    # WeChat accepted but the job's commit was lost (a crash): the re-run calls again, WeChat dedups
    # by client_msg_id.
    with sessions(app) as session:
        session.execute(update(Job).where(Job.kind == push_deliveries.SEND_JOB).values(status="pending"))
        session.execute(update(PushDelivery).values(status="queued", msgid=None, sent_at=None))
        session.commit()
    assert run_jobs(app, push_deliveries.SEND_JOB) == ["done"]
    calls = fake_wechat.requests(SEND)
    assert len(calls) == 2 and calls[0]["json"]["client_msg_id"] == calls[1]["json"]["client_msg_id"]
    assert len(templates_sent(fake_wechat)) == 1
    (row,) = deliveries(app)
    assert row.status == "sent" and row.msgid == str(templates_sent(fake_wechat)[0]["msgid"])


def test_client_msg_id_is_deterministic() -> None:
    a = compose.client_msg_id("pass_notice", 7, "2026-11-29T14:40")
    assert a == compose.client_msg_id("pass_notice", 7, "2026-11-29T14:40")
    assert a != compose.client_msg_id("pass_notice", 8, "2026-11-29T14:40")
    assert a != compose.client_msg_id("approval_notice", 7, "2026-11-29T14:40")
    assert a != compose.client_msg_id("pass_notice", 7, "2026-11-29T14:50")


# -- failures from WeChat ---------------------------------------------------------------------

def test_43004_is_final_and_marks_the_admin_not_following(app, client, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    fake_wechat.set_user("o_admin", following=False)
    _, account_id = one_queued_notice(app)
    assert run_jobs(app, push_deliveries.SEND_JOB) == ["done"]
    assert run_jobs(app, push_deliveries.SEND_JOB) == []  # nothing left to retry
    (row,) = deliveries(app)
    assert (row.status, row.errcode, row.attempts) == ("failed", 43004, 1)
    assert len(fake_wechat.requests(SEND)) == 1
    with sessions(app) as session:
        assert session.scalar(select(User.subscribed).where(User.openid == "o_admin")) is False
    sign_in(client, app, account_id)
    html = client.get("/console/school/pushes").get_data(as_text=True)
    assert "请先关注公众号，否则收不到推送" in html and "发送失败" in html and "43004" in html


def test_43101_is_recorded_and_not_retried(app, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    one_queued_notice(app)
    fake_wechat.fail(SEND, errcode=43101)
    assert run_jobs(app, push_deliveries.SEND_JOB) == ["done"]
    (row,) = deliveries(app)
    assert (row.status, row.errcode) == ("failed", 43101)
    assert push_deliveries.explain(row.errcode, row.errmsg) == "已在微信中拒收此类消息"
    assert templates_sent(fake_wechat) == []


def test_a_timeout_is_retried_then_sent_once(app, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    get_wechat_client(app).timeout = 0.5  # as WECHAT_HTTP_TIMEOUT would set it
    one_queued_notice(app)
    fake_wechat.fail(SEND, delay=1.5)
    assert run_jobs(app, push_deliveries.SEND_JOB) == ["retry"]
    (row,) = deliveries(app)
    assert (row.status, row.attempts, row.errcode) == ("queued", 1, None)
    assert "timed out" in (row.errmsg or "")
    assert push_deliveries.explain(row.errcode, row.errmsg).startswith("微信接口无应答")
    assert run_jobs(app, push_deliveries.SEND_JOB) == ["done"]
    (row,) = deliveries(app)
    assert (row.status, row.attempts, row.errcode, row.errmsg) == ("sent", 2, None, None)
    # The slow first request still reached WeChat; the retry carried the same client_msg_id.
    ids = {call["json"]["client_msg_id"] for call in fake_wechat.requests(SEND)}
    assert len(fake_wechat.requests(SEND)) == 2 and len(ids) == 1


def test_system_errors_retry_until_the_last_attempt_then_fail(app, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    one_queued_notice(app)
    fake_wechat.fail(SEND, errcode=-1, times=push_deliveries.MAX_ATTEMPTS)
    outcomes = [run_jobs(app, push_deliveries.SEND_JOB) for _ in range(push_deliveries.MAX_ATTEMPTS)]
    assert outcomes == [["retry"]] * (push_deliveries.MAX_ATTEMPTS - 1) + [["done"]]
    (row,) = deliveries(app)
    assert (row.status, row.errcode, row.attempts) == ("failed", -1, push_deliveries.MAX_ATTEMPTS)
    assert templates_sent(fake_wechat) == []


# -- TEMPLATESENDJOBFINISH -------------------------------------------------------------------------

def finish_event(wechat, openid: str, msgid: str, status: str, created: int):  # type: ignore[no-untyped-def]
    return wechat.deliver(wechat.xml({"ToUserName": wechat.account, "FromUserName": openid, "CreateTime": created,
                                      "MsgType": "event", "Event": "TEMPLATESENDJOBFINISH", "MsgID": msgid,
                                      "Status": status}), mode="safe")


@pytest.mark.parametrize("status,expected,reason", [
    ("success", "delivered", None),
    ("failed:user block", "rejected", "user block"),
    ("failed: system failed", "rejected", "system failed"),
])
def test_the_finish_event_updates_the_delivery(app, client, wechat, fake_wechat, status, expected,  # type: ignore[no-untyped-def]
                                               reason) -> None:
    one_queued_notice(app)
    run_jobs(app, push_deliveries.SEND_JOB)
    (row,) = deliveries(app)
    delivery = finish_event(wechat, "o_admin", row.msgid, status, 1_900_000_000)
    resp = client.post("/wechat?" + delivery.query, data=delivery.body)
    assert resp.status_code == 200
    (row,) = deliveries(app)
    assert (row.status, row.errmsg) == (expected, reason) and row.finished_at is not None
    if reason:
        assert push_deliveries.explain(row.errcode, row.errmsg) in ("管理员在微信中屏蔽了推送", "微信系统原因未送达")


def test_a_finish_event_for_another_message_changes_nothing(app, client, wechat, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    one_queued_notice(app)
    run_jobs(app, push_deliveries.SEND_JOB)
    (row,) = deliveries(app)
    for openid, msgid in (("o_admin", "999999999"), ("o_stranger", row.msgid)):
        delivery = finish_event(wechat, openid, msgid, "failed:user block", 1_900_000_100)
        assert client.post("/wechat?" + delivery.query, data=delivery.body).status_code == 200
    assert deliveries(app)[0].status == "sent"


def test_two_messages_finishing_in_the_same_second_are_both_recorded(app, client, wechat, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    school_id, _ = one_queued_notice(app)
    student(app, school_id, "待审", status="pending", confirmed_at=WINDOW_END + timedelta(minutes=5))
    compose_notices(app, WINDOW_END + timedelta(minutes=10))
    run_jobs(app, push_deliveries.SEND_JOB)
    rows = deliveries(app)
    assert len(rows) == 2 and len({row.msgid for row in rows}) == 2
    for row in rows:
        delivery = finish_event(wechat, "o_admin", row.msgid, "success", 1_900_000_200)
        assert client.post("/wechat?" + delivery.query, data=delivery.body).status_code == 200
    assert [row.status for row in deliveries(app)] == ["delivered", "delivered"]


# -- digests ------------------------------------------------------------------------------------

def at_china(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=compose.CHINA).astimezone(timezone.utc)


def test_the_daily_digest_counts_yesterday_in_china_time(app, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    yesterday, today = date(2026, 11, 28), date(2026, 11, 29)
    school_id = make_school(app, "简报大学")
    bound_admin(app, school_id, "o_digest")
    quiet_school = make_school(app, "安静大学")
    bound_admin(app, quiet_school, "o_quiet")
    course_id, version_id = course_ids(app)
    first = student(app, school_id, "甲", verified_at=at_china(yesterday, 0, 0), passed_at=at_china(yesterday, 23, 59))
    student(app, school_id, "乙", verified_at=at_china(yesterday, 23, 59))
    student(
        app, school_id, "丙", verified_at=at_china(today, 0, 0), passed_at=at_china(today, 0, 1)
    )  # today: not counted
    student(app, school_id, "丁", verified_at=at_china(yesterday, 0, 0) - timedelta(seconds=1))  # the day before
    student(app, quiet_school, "静", verified_at=at_china(today, 9))
    with sessions(app) as session:
        enrollment = session.scalar(select(Enrollment).where(Enrollment.user_id == first))
        for topic, passed, when in (("t01", True, at_china(yesterday, 10)), ("t02", True, at_china(yesterday, 11)),
                                    ("t02", False, at_china(yesterday, 10, 30)), ("t01", True, at_china(today, 1))):
            session.add(QuizAttempt(enrollment_id=enrollment.id, user_id=first, round=1, topic_code=topic,
                                    version_id=version_id, draw=[], started_at=when, submitted_at=when, max_score=100,
                                    score=90 if passed else 40, passed=passed))
        for version, issued in ((1, at_china(yesterday, 12)), (2, at_china(yesterday, 13))):
            session.add(
                Certificate(
                    user_id=first,
                    course_id=course_id,
                    serial="XW2026000001",
                    version=version,
                    verify_token=f"tok{version}",
                    status="valid" if version == 2 else "superseded",
                    holder_name="甲",
                    school_name="简报大学",
                    student_number="S1",
                    course_title="示例课程",
                    score=90,
                    issued_on=yesterday,
                    issuers=["平台"],
                    verify_url="http://x/verify",
                    signature="sig",
                    issued_at=issued,
                )
            )
        session.commit()
    with sessions(app) as session:
        digest = compose.digest_for(session, school_id, yesterday)
    assert (digest.verified, digest.topics, digest.passed, digest.certificates) == (2, 2, 1, 1)
    with sessions(app) as session:
        record_job(session, compose.DIGESTS_JOB, {"period": f"periodic:{compose.DIGESTS_JOB}:{today.isoformat()}"})
        session.commit()
    assert run_jobs(app, compose.DIGESTS_JOB) == ["done"]
    (row,) = deliveries(app)  # the quiet school had an all-zero day: nothing to it
    assert row.kind == "digest" and row.openid == "o_digest"
    assert row.payload["summary"] == "11月28日：新认证 2 人，完成专题 2 个，通过考核 1 人，颁发证书 1 张"
    assert run_jobs(app, push_deliveries.SEND_JOB) == ["done"]
    (message,) = templates_sent(fake_wechat)
    assert message["template_id"] == "dev-template-daily-digest"
    assert {k: v["value"] for k, v in message["data"].items()} == {
        "thing1": "简报大学", "time2": "2026-11-28", "number3": "2", "number4": "2", "number5": "1", "number6": "1"}


def test_the_periodic_notice_job_closes_the_window_a_minute_before(app, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    periodic = next(p for p in PERIODIC if p.kind == compose.NOTICES_JOB)
    fires = [m for m in range(60) if periodic.crontab()(datetime(2026, 11, 29, 14, m))]
    assert fires == [1, 11, 21, 31, 41, 51]
    school_id = make_school(app)
    bound_admin(app, school_id, "o_periodic")
    # Passed just before 14:40, committed just after: the 14:41 run still counts it, once.
    student(app, school_id, "踩线者", passed_at=WINDOW_END - timedelta(milliseconds=1))
    with sessions(app) as session:
        for _ in range(3):  # three schedulers fire the same minute
            record_period(session, periodic, WINDOW_END + timedelta(minutes=1, seconds=2))
        session.commit()
    assert run_jobs(app, compose.NOTICES_JOB) == ["done"]
    (row,) = deliveries(app)
    assert row.payload["summary"] == "1 名学生通过考核：踩线者"
    assert row.payload["data"]["time4"] == {"value": "2026-11-29 22:40"}


def test_period_time_reads_the_periodic_key() -> None:
    fallback = datetime(2000, 1, 1, tzinfo=timezone.utc)
    assert compose.period_time({"period": "periodic:pushes.notices:2026-11-29T14:40"}, fallback) == WINDOW_END
    assert compose.period_time({"period": "periodic:pushes.digests:2026-11-30"}, fallback) == datetime(
        2026, 11, 30, tzinfo=timezone.utc)
    assert compose.period_time({}, fallback) == fallback
    assert compose.window_end(datetime(2026, 11, 29, 14, 49, 59, tzinfo=timezone.utc)) == WINDOW_END


# -- hostile names --------------------------------------------------------------------------------

def test_script_in_a_student_name_is_plain_text_in_the_push_and_page(app, client, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    school_id = make_school(app)
    account_id = bound_admin(app, school_id, "o_admin_xss")
    name = "<script>alert(1)</script>"
    student(app, school_id, name, passed_at=WINDOW_END - timedelta(minutes=2))
    compose_notices(app)
    run_jobs(app, push_deliveries.SEND_JOB)
    (message,) = templates_sent(fake_wechat)
    # Template fields are plain text on WeChat's side: the name goes as text, cut to the field's limit.
    assert message["data"]["thing3"]["value"] == name[:compose.FIELD_LIMIT - 1] + "…"
    sign_in(client, app, account_id)
    html = client.get("/console/school/pushes").get_data(as_text=True)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html

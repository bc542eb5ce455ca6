"""Staff's inbox: conversations from the webhook, replies within WeChat's window against the fake
server, failures kept and retried, keyword auto-replies, roles, audit and escaping."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from handlers import conversations
from jobs.queue import get_queue
from models import AuditEntry, Conversation, Job, StaffReply, User
from tests.console_helpers import csrf, make_staff, sign_in
from tests.conftest import count
from web import clock

CUSTOM = "/cgi-bin/message/custom/send"
HOUR = 3600


def post(client, delivery):  # type: ignore[no-untyped-def]
    return client.post("/wechat?" + delivery.query, data=delivery.body, content_type="text/xml")


def student_writes(app, client, wechat, fake_wechat, openid: str, text: str) -> dict:  # type: ignore[no-untyped-def]
    """The student sends a text: our webhook gets it, and WeChat (the fake) opens its 48-hour window."""
    with app.app_context():
        created = int(clock.now().timestamp())
    resp = post(client, wechat.deliver(wechat.text(openid, text, created=created), mode="safe"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    fake_wechat.set_user(openid, in_window=True)
    return wechat.open_reply(resp.get_data())


def advance(app, fake_wechat, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """Time passes for us and for WeChat alike."""
    clock.advance(app, seconds)
    fake_wechat.advance(seconds)


def later(app, fake_wechat, client, account_id: int, seconds: float) -> str:  # type: ignore[no-untyped-def]
    """Time passes for us and for WeChat; the staff member (signed out by idleness) signs in again."""
    advance(app, fake_wechat, seconds)
    if client.get("/console/").status_code == 302:
        return sign_in(client, app, account_id)
    return csrf(client)


def conversation_of(db_session, openid: str) -> Conversation:  # type: ignore[no-untyped-def]
    db_session.rollback()
    return db_session.scalars(select(Conversation).join(User, User.id == Conversation.user_id)
                              .where(User.openid == openid)).one()


def run_send_jobs(app, db_session) -> list[str]:  # type: ignore[no-untyped-def]
    """What a worker does: run every pending send job once."""
    db_session.rollback()
    ids = db_session.scalars(select(Job.id).where(Job.kind == conversations.SEND_JOB, Job.status == "pending")
                             .order_by(Job.id)).all()
    db_session.rollback()
    return [get_queue(app).execute(job_id) for job_id in ids]


def sent(fake_wechat, kind: str = "custom") -> list[dict]:  # type: ignore[type-arg]
    """What WeChat (the fake) accepted and would deliver."""
    return [m for m in fake_wechat.sent_messages if m["kind"] == kind]


def replies(db_session) -> list[StaffReply]:  # type: ignore[no-untyped-def]
    db_session.rollback()
    return list(db_session.scalars(select(StaffReply).order_by(StaffReply.id)))


def audit_actions(db_session) -> list[str]:  # type: ignore[no-untyped-def]
    db_session.rollback()
    return list(db_session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


@pytest.fixture
def staff(app, client):  # type: ignore[no-untyped-def]
    account_id = make_staff(app)
    return account_id, sign_in(client, app, account_id)


def reply(client, token: str, conversation_id: int, text: str, kind: str = "custom"):  # type: ignore[no-untyped-def]
    return client.post(f"/console/inbox/{conversation_id}/reply",
                       data={"csrf_token": token, "content": text, "kind": kind})


# --- conversations from the webhook -------------------------------------------------------------------

def test_student_messages_open_one_waiting_conversation(app, client, wechat, fake_wechat, db_session, staff) -> None:
    account_id, _ = staff
    answer = student_writes(app, client, wechat, fake_wechat, "o_inbox_1", "证书上的名字写错了")
    assert "已收到你的留言" in answer["Content"]
    student_writes(app, client, wechat, fake_wechat, "o_inbox_1", "学号是 2024001")
    conversation = conversation_of(db_session, "o_inbox_1")
    assert conversation.unread == 2 and conversation.waiting_since is not None
    assert conversation.replies_in_window == 0 and conversation.last_preview == "学号是 2024001"
    assert count(db_session, Conversation) == 1

    later(app, fake_wechat, client, account_id, 2 * HOUR + 60)
    page = client.get("/console/inbox").get_data(as_text=True)
    assert "学号是 2024001" in page and "等待 2 小时" in page and "可回复" in page
    page = client.get(f"/console/inbox/{conversation.id}").get_data(as_text=True)
    assert "证书上的名字写错了" in page and "发送回复" in page


def test_staff_reply_goes_out_as_a_customer_service_message(app, client, wechat, fake_wechat, db_session,
                                                            staff) -> None:
    account_id, token = staff
    student_writes(app, client, wechat, fake_wechat, "o_inbox_2", "纸质证书寄到哪里？")
    conversation = conversation_of(db_session, "o_inbox_2")
    resp = reply(client, token, conversation.id, "寄到你所在的学校，请留意学校通知。")
    assert resp.status_code == 302
    (queued,) = replies(db_session)
    assert queued.status == "queued" and queued.account_id == account_id and queued.job_id
    conversation = conversation_of(db_session, "o_inbox_2")
    assert conversation.waiting_since is None and conversation.unread == 0 and conversation.replies_in_window == 1
    assert conversation.assigned_to == account_id  # who answers an unassigned conversation takes it

    assert run_send_jobs(app, db_session) == ["done"]
    (done,) = replies(db_session)
    assert done.status == "sent" and done.sent_at is not None
    (message,) = sent(fake_wechat)
    assert message["touser"] == "o_inbox_2"
    assert message["text"]["content"] == "寄到你所在的学校，请留意学校通知。"
    assert "已发送" in client.get(f"/console/inbox/{conversation.id}").get_data(as_text=True)
    assert run_send_jobs(app, db_session) == []  # nothing left; sending again is not possible
    assert audit_actions(db_session) == ["inbox.reply"]


# --- WeChat's window: 48 hours, 5 messages ---------------------------------------------------------------

def test_a_reply_at_47_59_goes_out_and_at_48_01_is_refused_for_a_template_notice(app, client, wechat, fake_wechat,
                                                                                db_session, staff) -> None:
    account_id, _ = staff
    student_writes(app, client, wechat, fake_wechat, "o_window", "请问证书怎么改？")
    conversation_id = conversation_of(db_session, "o_window").id

    token = later(app, fake_wechat, client, account_id, 47 * HOUR + 59 * 60)
    assert "剩余" not in client.get("/console/inbox?view=all").get_data(as_text=True)
    assert reply(client, token, conversation_id, "请回复姓名和学号").status_code == 302
    assert run_send_jobs(app, db_session) == ["done"]
    assert [r.status for r in replies(db_session)] == ["sent"]
    assert len(sent(fake_wechat)) == 1  # WeChat (the fake) agreed: still inside its window

    token = later(app, fake_wechat, client, account_id, 2 * 60)
    page = client.get(f"/console/inbox/{conversation_id}").get_data(as_text=True)
    assert "已超过 48 小时" in page and "发送模板通知" in page
    resp = reply(client, token, conversation_id, "再补充一句")
    assert resp.status_code == 409 and "已超过 48 小时" in resp.get_data(as_text=True)
    assert "再补充一句" in resp.get_data(as_text=True)  # the draft is kept
    assert len(replies(db_session)) == 1 and len(sent(fake_wechat)) == 1  # refused up front

    assert reply(client, token, conversation_id, "工作人员已为你修改证书信息，请在「我的」查看", "template").status_code == 302
    assert run_send_jobs(app, db_session) == ["done"]
    notice = replies(db_session)[-1]
    assert notice.kind == "template" and notice.status == "sent"
    (body,) = sent(fake_wechat, "template")
    assert body["touser"] == "o_window" and body["template_id"] == app.config["WECHAT_TEMPLATE_STAFF_REPLY"]
    assert body["client_msg_id"] == f"staff-reply-{notice.id}"
    assert body["data"]["keyword1"]["value"].startswith("工作人员已为你修改证书信息") and len(body["data"]["keyword1"]["value"]) <= 20
    assert audit_actions(db_session) == ["inbox.reply", "inbox.notice"]


def test_a_template_notice_is_refused_while_a_reply_is_possible(app, client, wechat, fake_wechat, db_session,
                                                                staff) -> None:
    _, token = staff
    student_writes(app, client, wechat, fake_wechat, "o_tpl", "你好")
    conversation_id = conversation_of(db_session, "o_tpl").id
    assert reply(client, token, conversation_id, "通知", "template").status_code == 409
    assert replies(db_session) == []


def test_the_sixth_reply_in_the_window_is_refused_and_a_new_message_gives_five_more(app, client, wechat, fake_wechat,
                                                                                  db_session, staff) -> None:
    _, token = staff
    student_writes(app, client, wechat, fake_wechat, "o_quota", "有几个问题")
    conversation_id = conversation_of(db_session, "o_quota").id
    for n in range(1, 6):
        assert reply(client, token, conversation_id, f"第 {n} 条").status_code == 302
        if n == 3:
            assert "剩余 2 条" in client.get("/console/inbox?view=all").get_data(as_text=True)
    assert run_send_jobs(app, db_session) == ["done"] * 5
    assert len(sent(fake_wechat)) == 5
    resp = reply(client, token, conversation_id, "第 6 条")
    assert resp.status_code == 409 and "已回复满 5 条" in resp.get_data(as_text=True)
    assert len(replies(db_session)) == 5

    student_writes(app, client, wechat, fake_wechat, "o_quota", "还有一个问题")
    assert conversation_of(db_session, "o_quota").replies_in_window == 0
    assert reply(client, token, conversation_id, "第 6 条").status_code == 302
    assert run_send_jobs(app, db_session) == ["done"]
    assert len(sent(fake_wechat)) == 6


# --- failures: shown with their errcode, retried by hand ------------------------------------------------------

@pytest.mark.parametrize("errcode,text", [(45015, "已超过 48 小时回复时限"), (45047, "48 小时内已回复满 5 条")])
def test_wechat_refusals_are_kept_with_their_errcode_and_retried(app, client, wechat, fake_wechat, db_session, staff,
                                                                errcode: int, text: str) -> None:
    _, token = staff
    student_writes(app, client, wechat, fake_wechat, "o_fail", "在吗")
    conversation_id = conversation_of(db_session, "o_fail").id
    fake_wechat.fail(CUSTOM, errcode=errcode)
    reply(client, token, conversation_id, "在的，请说")
    assert run_send_jobs(app, db_session) == ["done"]  # the job did its work: it recorded the refusal
    (failed,) = replies(db_session)
    assert failed.status == "failed" and failed.errcode == errcode
    conversation = conversation_of(db_session, "o_fail")
    assert conversation.replies_in_window == 0  # WeChat counted nothing
    assert conversation.waiting_since is not None  # the student still has no answer
    page = client.get(f"/console/inbox/{conversation_id}").get_data(as_text=True)
    assert "发送失败" in page and text in page and f"（{errcode}）" in page and "重试" in page

    assert client.post(f"/console/inbox/replies/{failed.id}/retry", data={"csrf_token": token}).status_code == 302
    assert run_send_jobs(app, db_session) == ["done"]
    (done,) = replies(db_session)
    assert done.status == "sent" and done.id == failed.id and done.attempts == 2
    assert len(sent(fake_wechat)) == 1  # the refused one never counted
    assert client.post(f"/console/inbox/replies/{failed.id}/retry", data={"csrf_token": token}).status_code == 409
    assert audit_actions(db_session) == ["inbox.reply", "inbox.retry"]


def test_the_fake_refuses_outside_its_own_window_even_when_our_clock_disagrees(app, client, wechat, fake_wechat,
                                                                              db_session, staff) -> None:
    _, token = staff
    student_writes(app, client, wechat, fake_wechat, "o_skew", "你好")
    fake_wechat.advance(49 * HOUR)  # only WeChat's clock moved: our records still say "in window"
    reply(client, token, conversation_of(db_session, "o_skew").id, "你好，请问有什么问题？")
    run_send_jobs(app, db_session)
    (failed,) = replies(db_session)
    assert failed.status == "failed" and failed.errcode == 45015


def test_a_timeout_is_shown_as_possibly_undelivered_and_can_be_retried(app, client, wechat, fake_wechat, db_session,
                                                                       staff) -> None:
    _, token = staff
    app.config["WECHAT_HTTP_TIMEOUT"] = 0.3  # read when the client is built, on first use
    student_writes(app, client, wechat, fake_wechat, "o_slow", "在吗")
    conversation_id = conversation_of(db_session, "o_slow").id
    fake_wechat.fail(CUSTOM, delay=1.0)
    reply(client, token, conversation_id, "在的")
    run_send_jobs(app, db_session)
    (failed,) = replies(db_session)
    assert failed.status == "failed" and failed.errcode is None and failed.error
    assert conversation_of(db_session, "o_slow").replies_in_window == 1  # it may have been delivered
    page = client.get(f"/console/inbox/{conversation_id}").get_data(as_text=True)
    assert "发送超时" in page
    time.sleep(1.0)  # let the fake finish the slow answer
    client.post(f"/console/inbox/replies/{failed.id}/retry", data={"csrf_token": token})
    assert run_send_jobs(app, db_session) == ["done"]
    assert replies(db_session)[0].status == "sent"

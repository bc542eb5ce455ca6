"""Staff's inbox: conversations from the webhook, replies within WeChat's window against the fake
server, failures kept and retried, keyword auto-replies, roles, audit and escaping."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from handlers.inbox import replies as inbox_replies
from jobs.queue import get_queue
from models import AuditEntry, AutoReplyRule, Conversation, InboxMessage, Job, QuickReply, StaffReply, User
from tests.conftest import count
from tests.console_helpers import csrf, make_school, make_school_admin, make_staff, search, sign_in
from tests.factories import PROD_ENV, log_in
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
    ids = db_session.scalars(select(Job.id).where(Job.kind == inbox_replies.SEND_JOB, Job.status == "pending")
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

    assert (
        reply(client, token, conversation_id, "工作人员已为你修改证书信息，请在「我的」查看", "template").status_code
        == 302
    )
    assert run_send_jobs(app, db_session) == ["done"]
    notice = replies(db_session)[-1]
    assert notice.kind == "template" and notice.status == "sent"
    (body,) = sent(fake_wechat, "template")
    assert body["touser"] == "o_window" and body["template_id"] == app.config["WECHAT_TEMPLATE_STAFF_REPLY"]
    assert body["client_msg_id"] == f"staff-reply-{notice.id}"
    assert (
        body["data"]["keyword1"]["value"].startswith("工作人员已为你修改证书信息")
        and len(body["data"]["keyword1"]["value"]) <= 20
    )
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


# --- keyword auto-replies through the real webhook ---------------------------------------------------------

def save_rule(client, token: str, keywords: str, reply_text: str, mode: str = "contains", priority: int = 0,
              enabled: bool = True, rule_id: int | None = None):  # type: ignore[no-untyped-def]
    data = {"csrf_token": token, "action": "save", "keywords": keywords, "match_mode": mode, "reply": reply_text,
            "priority": str(priority)}
    if enabled:
        data["enabled"] = "on"
    if rule_id is not None:
        data["id"] = str(rule_id)
    return client.post("/console/auto-replies", data=data)


def test_a_keyword_rule_answers_in_the_webhook_and_nobody_needs_to_look(app, client, wechat, fake_wechat, db_session,
                                                                        staff) -> None:
    _, token = staff
    assert (
        save_rule(client, token, "证书在哪\n显示证书", "点「我的」→「显示证书」即可查看。", priority=5).status_code
        == 302
    )
    assert save_rule(client, token, "证书", "证书问题请留言。", priority=1).status_code == 302
    assert save_rule(client, token, "你好", "你好！有问题请直接留言。", mode="exact").status_code == 302
    assert save_rule(client, token, "邮寄", "停用的规则", enabled=False).status_code == 302

    answer = student_writes(app, client, wechat, fake_wechat, "o_auto", "请问我的证书在哪里看？")
    assert answer["Content"] == "点「我的」→「显示证书」即可查看。"  # the higher priority wins
    conversation = conversation_of(db_session, "o_auto")
    assert conversation.waiting_since is None and conversation.unread == 0
    assert conversation.last_student_message_at is not None  # the window opened all the same
    db_session.rollback()
    thread = [(m.direction, m.msg_type, m.content) for m in
              db_session.scalars(select(InboxMessage).order_by(InboxMessage.id))]
    assert thread == [
        ("in", "text", "请问我的证书在哪里看？"),
        ("out", "auto_reply", "点「我的」→「显示证书」即可查看。"),
    ]

    assert (
        student_writes(app, client, wechat, fake_wechat, "o_auto", "  你好 ")["Content"] == "你好！有问题请直接留言。"
    )
    # "你好" is exact, so not this one; "证书" (contains) is:
    assert (
        student_writes(app, client, wechat, fake_wechat, "o_auto", "你好，证书能改吗")["Content"] == "证书问题请留言。"
    )
    assert conversation_of(db_session, "o_auto").waiting_since is None
    # Exact rules need the whole message; disabled rules never answer; no rule: a person is needed.
    assert "已收到你的留言" in student_writes(app, client, wechat, fake_wechat, "o_auto", "纸质版要邮寄吗")["Content"]
    conversation = conversation_of(db_session, "o_auto")
    assert conversation.waiting_since is not None and conversation.unread == 1
    page = client.get(f"/console/inbox/{conversation.id}").get_data(as_text=True)
    assert "自动回复" in page and "点「我的」→「显示证书」即可查看。" in page


def test_an_edited_rule_answers_at_once_in_this_process(app, client, wechat, fake_wechat, db_session, staff) -> None:
    _, token = staff
    save_rule(client, token, "85", "不满 85 分需要重新学习 14 个专题。")
    assert student_writes(app, client, wechat, fake_wechat, "o_edit", "没到85分怎么办")["Content"].startswith(
        "不满 85 分"
    )
    rule_id = db_session.scalars(select(AutoReplyRule.id)).one()
    assert save_rule(client, token, "85", "新的答案", rule_id=rule_id).status_code == 302
    assert student_writes(app, client, wechat, fake_wechat, "o_edit", "没到85分怎么办？")["Content"] == "新的答案"
    assert client.post("/console/auto-replies", data={"csrf_token": token, "action": "delete",
                                                      "id": str(rule_id)}).status_code == 302
    assert "已收到你的留言" in student_writes(app, client, wechat, fake_wechat, "o_edit", "85 分")["Content"]
    assert audit_actions(db_session) == ["auto_reply.create", "auto_reply.update", "auto_reply.delete"]
    db_session.rollback()
    update = db_session.scalars(select(AuditEntry).where(AuditEntry.action == "auto_reply.update")).one()
    assert update.before["reply"].startswith("不满 85 分") and update.after["reply"] == "新的答案"


@pytest.mark.parametrize("keywords,mode,reply_text,priority,error", [
    ("", "contains", "回复", "0", "至少填写一个关键词"),
    ("证书", "regex", "回复", "0", "匹配方式无效"),
    ("证书", "contains", "  ", "0", "请填写回复内容"),
    ("证书", "contains", "回复", "high", "优先级必须是整数"),
    ("证书", "contains", "长" * 601, "0", "最多 600 字"),
])
def test_bad_rules_are_refused_with_a_reason(client, db_session, staff, keywords, mode, reply_text, priority,
                                             error) -> None:
    _, token = staff
    resp = client.post("/console/auto-replies", data={"csrf_token": token, "action": "save", "keywords": keywords,
                                                      "match_mode": mode, "reply": reply_text, "priority": priority})
    assert resp.status_code == 400 and error in resp.get_data(as_text=True)
    assert count(db_session, AutoReplyRule) == 0


def test_the_guides_questions_can_be_imported_once(client, db_session, staff) -> None:
    _, token = staff
    assert client.post("/console/auto-replies", data={"csrf_token": token, "action": "import"}).status_code == 302
    added = count(db_session, AutoReplyRule)
    assert added >= 4
    client.post("/console/auto-replies", data={"csrf_token": token, "action": "import"})
    assert count(db_session, AutoReplyRule) == added
    page = client.get("/console/auto-replies").get_data(as_text=True)
    assert "显示证书" in page and "纸质证书" in page


# --- assignment, read, close, search ------------------------------------------------------------------------

def test_assign_read_close_and_reopen_are_audited(app, client, wechat, fake_wechat, db_session, staff) -> None:
    account_id, token = staff
    colleague = make_staff(app)
    school_admin = make_school_admin(app, make_school(app))
    student_writes(app, client, wechat, fake_wechat, "o_flow", "你好，我要改证书")
    cid = conversation_of(db_session, "o_flow").id
    url = f"/console/inbox/{cid}"

    assert "你好，我要改证书" in client.get("/console/inbox?view=unassigned").get_data(as_text=True)
    assert client.post(url + "/assign", data={"csrf_token": token, "account_id": "me"}).status_code == 302
    assert conversation_of(db_session, "o_flow").assigned_to == account_id
    assert "你好，我要改证书" in client.get("/console/inbox?view=mine").get_data(as_text=True)
    assert "你好，我要改证书" not in client.get("/console/inbox?view=unassigned").get_data(as_text=True)
    assert client.post(url + "/assign", data={"csrf_token": token, "account_id": str(colleague)}).status_code == 302
    assert conversation_of(db_session, "o_flow").assigned_to == colleague
    resp = client.post(url + "/assign", data={"csrf_token": token, "account_id": str(school_admin)})
    assert resp.status_code == 400 and "只能分配给" in resp.get_data(as_text=True)
    assert conversation_of(db_session, "o_flow").assigned_to == colleague

    assert client.post(url + "/read", data={"csrf_token": token}).status_code == 302
    assert conversation_of(db_session, "o_flow").unread == 0
    assert client.post(url + "/status", data={"csrf_token": token, "status": "closed"}).status_code == 302
    conversation = conversation_of(db_session, "o_flow")
    assert conversation.status == "closed" and conversation.waiting_since is None
    assert "你好，我要改证书" not in client.get("/console/inbox").get_data(as_text=True)  # not waiting
    assert "已关闭" in client.get("/console/inbox?view=all").get_data(as_text=True)
    student_writes(app, client, wechat, fake_wechat, "o_flow", "还在吗")  # a new message reopens it
    conversation = conversation_of(db_session, "o_flow")
    assert conversation.status == "open" and conversation.waiting_since is not None
    assert client.post(url + "/status", data={"csrf_token": token, "status": "closed"}).status_code == 302
    assert client.post(url + "/status", data={"csrf_token": token, "status": "open"}).status_code == 302

    assert audit_actions(db_session) == ["inbox.assign", "inbox.assign", "inbox.read", "inbox.close", "inbox.close",
                                         "inbox.reopen"]
    db_session.rollback()
    first = db_session.scalars(select(AuditEntry).order_by(AuditEntry.id)).first()
    assert first.account_id == account_id and first.subject_type == "conversation" and first.subject_id == str(cid)
    assert first.before["assigned_to"] is None and first.after["assigned_to"] == account_id


def test_search_by_name_number_and_message_text_with_the_students_context(app, client, wechat, fake_wechat,
                                                                          db_session, staff, graduates) -> None:
    _, token = staff
    for i in range(3):
        student_writes(app, client, wechat, fake_wechat, f"o_cert_{i}", f"第 {i} 位同学的问题：纸质证书{'ABC'[i]}")
    page = search(client, "/console/inbox", "林小满二", view="all")
    assert "林小满二" in page and "林小满一" not in page and "林小满三" not in page
    page = search(client, "/console/inbox", "C002", view="all")
    assert "林小满三" in page and "林小满一" not in page
    page = search(client, "/console/inbox", "纸质证书A", view="all")
    assert "林小满一" in page and "林小满二" not in page
    page = search(client, "/console/inbox", "100%_", view="all")  # LIKE wildcards are literal
    assert "没有符合条件的会话" in page

    cid = conversation_of(db_session, "o_cert_1").id
    page = client.get(f"/console/inbox/{cid}").get_data(as_text=True)
    assert "林小满二" in page and "证书大学" in page and "已通过" in page
    # The number is masked beside the conversation (4 characters: all hidden) until shown on purpose.
    assert 'id="student-number">****<' in page and "C001" not in page and "显示完整信息" in page


def test_quick_replies_are_edited_by_staff_and_offered_in_the_reply_box(app, client, wechat, fake_wechat, db_session,
                                                                       staff) -> None:
    _, token = staff
    before = count(db_session, QuickReply)
    resp = client.post("/console/inbox/quick-replies", data={"csrf_token": token, "action": "save",
                                                             "title": "证书查看", "body": "「我的」→「显示证书」",
                                                             "position": "0"})
    assert resp.status_code == 302
    quick_id = db_session.scalars(select(QuickReply.id).where(QuickReply.title == "证书查看")).one()
    client.post("/console/inbox/quick-replies", data={"csrf_token": token, "action": "save", "id": str(quick_id),
                                                      "title": "证书在哪看", "body": "点「我的」→「显示证书」"})
    assert client.post("/console/inbox/quick-replies", data={"csrf_token": token, "action": "save", "title": "",
                                                             "body": "x"}).status_code == 400
    student_writes(app, client, wechat, fake_wechat, "o_quick", "证书在哪")
    page = client.get(f"/console/inbox/{conversation_of(db_session, 'o_quick').id}").get_data(as_text=True)
    assert 'data-body="点「我的」→「显示证书」">证书在哪看</button>' in page
    client.post("/console/inbox/quick-replies", data={"csrf_token": token, "action": "delete", "id": str(quick_id)})
    assert count(db_session, QuickReply) == before
    assert audit_actions(db_session) == ["quick_reply.create", "quick_reply.update", "quick_reply.delete"]


# --- escaping, roles, CSRF -------------------------------------------------------------------------------------

def test_script_in_a_students_message_is_rendered_as_text(app, client, wechat, fake_wechat, db_session, staff) -> None:
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    student_writes(app, client, wechat, fake_wechat, "o_xss", evil)
    for url in ("/console/inbox", f"/console/inbox/{conversation_of(db_session, 'o_xss').id}",
                "/console/inbox?view=all&q=script"):  # an old search link: the term moves to a handle
        page = client.get(url, follow_redirects=True).get_data(as_text=True)
        assert "<script>alert(1)" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def routes(conversation_id: int, reply_id: int) -> list[tuple[str, str]]:
    base = f"/console/inbox/{conversation_id}"
    return [("GET", "/console/inbox"), ("GET", base), ("POST", base + "/reply"), ("POST", base + "/assign"),
            ("POST", base + "/read"), ("POST", base + "/status"), ("POST", f"/console/inbox/replies/{reply_id}/retry"),
            ("GET", "/console/inbox/quick-replies"), ("POST", "/console/inbox/quick-replies"),
            ("GET", "/console/auto-replies"), ("POST", "/console/auto-replies")]


def test_every_route_is_for_staff_only(app, wechat, fake_wechat, db_session) -> None:

    client = app.test_client()
    staff_id = make_staff(app)
    token = sign_in(client, app, staff_id)
    student_writes(app, client, wechat, fake_wechat, "o_roles", "你好")
    cid = conversation_of(db_session, "o_roles").id
    reply(client, token, cid, "你好")
    reply_id = replies(db_session)[0].id
    table = routes(cid, reply_id)

    anonymous = app.test_client()
    student = app.test_client()
    log_in(student, "o_roles")  # a student signed in to the H5 pages is nobody to the console
    for who in (anonymous, student):
        for method, url in table:
            resp = who.open(url, method=method, data={})
            if method == "GET":
                assert resp.status_code == 302 and "/console/sign-in" in resp.location, url
            else:
                assert resp.status_code == 401, url

    school_admin = app.test_client()
    admin_token = sign_in(school_admin, app, make_school_admin(app, make_school(app)))
    for method, url in table:
        assert school_admin.open(url, method=method, data={"csrf_token": admin_token}).status_code == 403, url

    for method, url in table:
        if method == "POST":  # staff without the CSRF token
            assert client.post(url, data={"content": "x", "status": "closed", "account_id": "me"}).status_code == 400, (
                url
            )
    assert len(replies(db_session)) == 1 and conversation_of(db_session, "o_roles").status == "open"
    for method, url in table:
        if method == "GET":
            assert client.get(url).status_code == 200, url
    assert client.get("/console/inbox/999999").status_code == 404
    assert client.post("/console/inbox/999999/read", data={"csrf_token": token}).status_code == 404
    assert client.post("/console/inbox/replies/999999/retry", data={"csrf_token": token}).status_code == 404


def test_the_menu_shows_inbox_and_auto_replies_to_staff_only(app, client, staff) -> None:
    page = client.get("/console/").get_data(as_text=True)
    assert "/console/inbox" in page and "/console/auto-replies" in page
    other = app.test_client()
    sign_in(other, app, make_school_admin(app, make_school(app)))
    page = other.get("/console/").get_data(as_text=True)
    assert "/console/inbox" not in page and "/console/auto-replies" not in page


def test_two_staff_members_racing_for_the_fifth_reply_cannot_both_send(app, client, wechat, fake_wechat,
                                                                        db_session, staff) -> None:
    _, token = staff
    student_writes(app, client, wechat, fake_wechat, "o_race", "问题")
    cid = conversation_of(db_session, "o_race").id
    for n in range(4):
        assert reply(client, token, cid, f"第 {n + 1} 条").status_code == 302
    other = app.test_client()
    other_token = sign_in(other, app, make_staff(app))
    barrier = threading.Barrier(2)
    results: list[int] = []

    def send(who, who_token: str) -> None:  # type: ignore[no-untyped-def]
        barrier.wait()
        results.append(reply(who, who_token, cid, "第 5 条").status_code)

    threads = [threading.Thread(target=send, args=(c, t)) for c, t in ((client, token), (other, other_token))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [302, 409]
    assert len(replies(db_session)) == 5 and conversation_of(db_session, "o_race").replies_in_window == 5


def test_without_a_template_id_no_notice_is_offered(app, client, wechat, fake_wechat, db_session, staff) -> None:
    from app import create_app

    assert create_app(dict(PROD_ENV)).config["WECHAT_TEMPLATE_STAFF_REPLY"] is None  # production sets its own
    account_id, _ = staff
    app.config["WECHAT_TEMPLATE_STAFF_REPLY"] = None
    student_writes(app, client, wechat, fake_wechat, "o_notpl", "你好")
    cid = conversation_of(db_session, "o_notpl").id
    token = later(app, fake_wechat, client, account_id, 49 * HOUR)
    page = client.get(f"/console/inbox/{cid}").get_data(as_text=True)
    assert "未配置模板通知" in page and "发送模板通知" not in page
    resp = reply(client, token, cid, "你好", "template")
    assert resp.status_code == 409 and "未配置" in resp.get_data(as_text=True)
    assert replies(db_session) == [] and sent(fake_wechat, "template") == []


def test_a_send_job_that_dies_after_wechat_accepted_never_sends_twice_and_staff_see_it(
        app, client, wechat, fake_wechat, db_session, staff, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The worker dies between WeChat's "ok" and our commit: its lease runs out and the runner hands the
    job to another worker. A customer-service message has no dedup at WeChat, so the re-run must not
    send again; the reply shows as possibly delivered, for staff to decide."""
    from sqlalchemy import update

    from models.base import utcnow

    _, token = staff
    student_writes(app, client, wechat, fake_wechat, "o_crash", "在吗")
    cid = conversation_of(db_session, "o_crash").id
    reply(client, token, cid, "在的")

    def die(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt  # not an Exception: the runner records nothing, like a killed process

    monkeypatch.setattr(inbox_replies, "record_sent", die)
    with pytest.raises(KeyboardInterrupt):
        run_send_jobs(app, db_session)
    monkeypatch.undo()
    assert len(sent(fake_wechat)) == 1
    db_session.rollback()
    db_session.execute(update(Job).where(Job.kind == inbox_replies.SEND_JOB)
                       .values(lease_until=utcnow().replace(year=2000)))
    db_session.commit()
    ids = db_session.scalars(select(Job.id).where(Job.kind == inbox_replies.SEND_JOB)).all()
    db_session.rollback()
    # The dead worker had its one attempt: the job is not run again (max_attempts holds), and the
    # reply is recorded as perhaps delivered by the kind's on_abandoned.
    assert [get_queue(app).execute(job_id) for job_id in ids] == ["failed"]
    assert len(sent(fake_wechat)) == 1  # still one message at WeChat
    (left,) = replies(db_session)
    assert left.status == "failed" and left.errcode is None and left.error
    assert conversation_of(db_session, "o_crash").replies_in_window == 1  # it was delivered: still counted
    page = client.get(f"/console/inbox/{cid}").get_data(as_text=True)
    assert "学生可能没有收到" in page or "可能已收到" in page


def test_an_unexpected_error_while_sending_leaves_the_reply_visible_as_failed(app, client, wechat, fake_wechat,
                                                                             db_session, staff, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Not a WeChat errcode nor a timeout (a bug, a bad answer): the reply must not sit "sending" forever
    with no retry button; it shows as possibly delivered, still counted."""
    from wechatpy.client.api import WeChatMessage

    _, token = staff
    student_writes(app, client, wechat, fake_wechat, "o_oops", "在吗")
    cid = conversation_of(db_session, "o_oops").id
    reply(client, token, cid, "在的")

    def broken(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise ValueError("unexpected answer")

    monkeypatch.setattr(WeChatMessage, "send_text", broken)
    run_send_jobs(app, db_session)
    (left,) = replies(db_session)
    assert left.status == "failed" and left.errcode is None and left.error
    assert "重试" in client.get(f"/console/inbox/{cid}").get_data(as_text=True)


def test_a_retry_refused_after_the_student_wrote_again_gives_its_reply_back(app, client, wechat, fake_wechat,
                                                                           db_session, staff) -> None:  # type: ignore[no-untyped-def]
    """A retry takes one of the new window's five; WeChat refusing it counted nothing, so our count
    must give it back even though the reply itself was written in the previous window."""
    account_id, token = staff
    student_writes(app, client, wechat, fake_wechat, "o_again", "在吗")
    cid = conversation_of(db_session, "o_again").id
    fake_wechat.fail(CUSTOM, errcode=45047)
    reply(client, token, cid, "在的")
    run_send_jobs(app, db_session)
    (failed,) = replies(db_session)
    assert failed.status == "failed" and conversation_of(db_session, "o_again").replies_in_window == 0
    token = later(app, fake_wechat, client, account_id, 60)
    student_writes(app, client, wechat, fake_wechat, "o_again", "还在吗")
    fake_wechat.fail(CUSTOM, errcode=45047)
    assert client.post(f"/console/inbox/replies/{failed.id}/retry", data={"csrf_token": token}).status_code == 302
    assert conversation_of(db_session, "o_again").replies_in_window == 1
    run_send_jobs(app, db_session)
    assert replies(db_session)[0].status == "failed"
    assert conversation_of(db_session, "o_again").replies_in_window == 0  # WeChat counted nothing

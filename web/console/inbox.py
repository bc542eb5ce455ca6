"""Staff's inbox pages: the conversation list, a conversation with the student beside it, replies, quick replies.

Student numbers and phones are masked (a conversation shows them in full on an audited POST), and the
list's search term travels by a handle, never in the URL (web.console.searches)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, flash, jsonify, redirect, request, url_for
from sqlalchemy.orm import Session

from database import get_session
from handlers import china_time
from handlers.errors import Refused
from handlers.inbox import quick_replies as inbox_quick_replies
from handlers.inbox import replies, staff
from handlers.privacy import masking
from models import Conversation, StaffReply
from web.boundary import on_refused
from web.clock import now
from web.console import (
    STAFF_ROLES,
    console_required,
    current_account,
    current_actor,
    id_value,
    page_arg,
    register_nav,
    render_console,
    searches,
)

bp = Blueprint("console_inbox", __name__, url_prefix="/console/inbox", template_folder="../templates")

register_nav("消息", "console_inbox.inbox", STAFF_ROLES, 20)

# Refusals that are about WeChat's window (the request was fine, the moment is not).
CONFLICTS = {"window_closed", "window_open", "not_failed", "no_template"}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.app_template_filter("inbox_time")
def inbox_time(moment: datetime | None) -> str:
    """A time as staff read it: Beijing time, to the minute."""
    return china_time.text(moment, "%m-%d %H:%M")


@bp.route("", methods=["GET", "POST"])
@console_required(*STAFF_ROLES)
def inbox() -> Response:
    account = current_account()
    assert account is not None
    if searches.carries_term():
        # The search box posts (a name, a number, an openid); the list answers a GET with its handle.
        return searches.to_handle()
    view = request.args.get("view", "waiting")
    if view not in staff.FILTERS:
        view = "waiting"
    handle = request.args.get(searches.HANDLE)
    query = searches.term_of(handle)
    page = page_arg()
    session = get_session()
    rows, total = staff.list_conversations(session, account.id, view, query or "", page)
    moment = now()
    return render_console(
        "console/inbox/list.html",
        rows=rows,
        total=total,
        view=view,
        query=query or "",
        handle=handle if query else None,
        search_lost=query is None,
        page=page,
        pages=max(1, -(-total // staff.PAGE_SIZE)),
        filters=staff.FILTERS,
        counters=staff.counters(session, account.id),
        window=lambda c: replies.window(c, moment),
        waiting=lambda c: staff.waiting_label(c.waiting_since if c.status == "open" else None, moment),
    )


@bp.get("/<int:conversation_id>")
@console_required(*STAFF_ROLES)
def conversation(conversation_id: int) -> Response:
    return _conversation_page(conversation_id)


@bp.post("/<int:conversation_id>/reveal")
@console_required(*STAFF_ROLES)
def reveal(conversation_id: int) -> Response:
    """The conversation with the student's number and phone in full, recorded in the audit log."""
    return _conversation_page(conversation_id, revealed=True)


def _conversation_page(conversation_id: int, status: int = 200, error: str | None = None, draft: str = "",
                       revealed: bool = False) -> Response:
    session = get_session()
    # Looked up here, not through staff.get_conversation: a refusal's responder renders this page
    # too, and a Refused raised from a responder would not be answered as a 404.
    item = session.get(Conversation, conversation_id)
    if item is None:
        abort(404)
    student = staff.student_context(session, item)
    if revealed:
        profile = student.profile
        if profile is None:
            abort(404)  # nothing to reveal: the student has not filled in a profile
        masking.record_reveal(session, current_actor(), "student_profile", profile.id,
                              ["student_number"] + (["phone"] if profile.phone else []), school_id=profile.school_id)
    moment = now()
    template_id = current_app.config.get("WECHAT_TEMPLATE_STAFF_REPLY")
    return render_console(
        "console/inbox/conversation.html",
        status,
        conversation=item,
        thread=staff.thread(session, item),
        student=student,
        revealed=revealed,
        window=replies.window(item, moment),
        waiting=staff.waiting_label(item.waiting_since if item.status == "open" else None, moment),
        quick_replies=inbox_quick_replies.list_quick_replies(session),
        staff=staff.staff_accounts(session),
        errcode_text=replies.errcode_text,
        can_notify=bool(template_id),
        error=error,
        draft=draft,
        max_chars=replies.MAX_REPLY_CHARS,
    )


def _refused_page(conversation_id: int, refused: Refused, draft: str = "") -> Response:
    """The conversation again with the reason: 409 when it is WeChat's window, 400 when it is the request."""
    return _conversation_page(conversation_id, 409 if refused.code in CONFLICTS else 400, refused.message, draft)


def _on_conversation(*, keep_draft: bool = False) -> Callable[..., Response]:
    """The responder of an action on a conversation; `keep_draft`: the reply as typed goes back into the box."""

    def respond(refused: Refused, conversation_id: int, **_: Any) -> Response:
        return _refused_page(conversation_id, refused, request.form.get("content", "")[:5000] if keep_draft else "")

    return respond


def _act(conversation_id: int, action: Callable[[Session], object], done: str) -> Response:
    action(get_session())
    flash(done)
    return redirect(url_for("console_inbox.conversation", conversation_id=conversation_id))


@bp.post("/<int:conversation_id>/reply")
@console_required(*STAFF_ROLES)
@on_refused(_on_conversation(keep_draft=True))
def reply(conversation_id: int) -> Response:
    text = request.form.get("content", "")[:5000]
    kind = request.form.get("kind", "custom")
    if kind == "template":
        template_id = current_app.config.get("WECHAT_TEMPLATE_STAFF_REPLY")
        return _act(
            conversation_id,
            lambda s: replies.notify(s, current_actor(), conversation_id, text, now(), template_id),
            "模板通知已排队发送",
        )
    return _act(conversation_id, lambda s: replies.reply(s, current_actor(), conversation_id, text, now()),
                "回复已排队发送")


@bp.post("/<int:conversation_id>/assign")
@console_required(*STAFF_ROLES)
@on_refused(_on_conversation())
def assign(conversation_id: int) -> Response:
    value = request.form.get("account_id", "")
    if value == "me":
        target: int | None = current_actor().account_id
    elif value == "":
        target = None
    elif id_value(value) is not None:
        target = id_value(value)
    else:
        abort(400)
    return _act(conversation_id, lambda s: staff.assign(s, current_actor(), conversation_id, target),
                "已分配" if target else "已取消分配")


@bp.post("/<int:conversation_id>/read")
@console_required(*STAFF_ROLES)
@on_refused(_on_conversation())
def mark_read(conversation_id: int) -> Response:
    return _act(conversation_id, lambda s: staff.mark_read(s, current_actor(), conversation_id), "已标记为已读")


@bp.post("/<int:conversation_id>/status")
@console_required(*STAFF_ROLES)
@on_refused(_on_conversation())
def set_status(conversation_id: int) -> Response:
    status = request.form.get("status", "")
    return _act(conversation_id, lambda s: staff.set_status(s, current_actor(), conversation_id, status),
                "会话已关闭" if status == "closed" else "会话已重新打开")


REPLY_STATES = {
    "queued": ("排队中", ""),
    "sending": ("发送中", ""),
    "sent": ("已发送", "ok"),
    "failed": ("发送失败", "bad"),
}


@bp.get("/replies/<int:reply_id>/status")
@console_required(*STAFF_ROLES)
def reply_status(reply_id: int) -> Response:
    """What the conversation page polls while a reply is on its way, so 排队中 turns into 已发送
    (or 发送失败, then the page reloads to offer 重试) without a reload by hand."""
    staff_reply = get_session().get(StaffReply, reply_id)
    if staff_reply is None:
        abort(404)
    label, badge = REPLY_STATES.get(staff_reply.status, (staff_reply.status, ""))
    return jsonify(status=staff_reply.status, label=label, badge=badge)


def _conversation_of(reply_id: int) -> int:
    """The conversation a staff reply belongs to: the page to return to."""
    staff_reply = get_session().get(StaffReply, reply_id)
    if staff_reply is None:
        abort(404)
    return staff_reply.conversation_id


def _retry_refused(refused: Refused, reply_id: int, **_: Any) -> Response:
    return _refused_page(_conversation_of(reply_id), refused)


@bp.post("/replies/<int:reply_id>/retry")
@console_required(*STAFF_ROLES)
@on_refused(_retry_refused)
def retry(reply_id: int) -> Response:
    conversation_id = _conversation_of(reply_id)
    return _act(conversation_id, lambda s: replies.retry(s, current_actor(), reply_id, now()), "已重新排队发送")


def _quick_replies_page(error: str | None = None) -> Response:
    return render_console(
        "console/inbox/quick_replies.html",
        400 if error else 200,
        items=inbox_quick_replies.list_quick_replies(get_session()),
        error=error,
        max_chars=replies.MAX_REPLY_CHARS,
    )


def _quick_replies_refused(refused: Refused, **_: Any) -> Response:
    return _quick_replies_page(refused.message)


@bp.route("/quick-replies", methods=["GET", "POST"])
@console_required(*STAFF_ROLES)
@on_refused(_quick_replies_refused)
def quick_replies() -> Response:
    if request.method == "GET":
        return _quick_replies_page()
    session = get_session()
    quick_id = id_value(request.form.get("id", ""))
    if request.form.get("action") == "delete" and quick_id is not None:
        inbox_quick_replies.delete_quick_reply(session, current_actor(), quick_id)
        flash("已删除")
    else:
        inbox_quick_replies.save_quick_reply(
            session, current_actor(), quick_id, request.form.get("title", "")[:200],
            request.form.get("body", "")[:5000], request.form.get("position", "0")[:10])
        flash("已保存")
    return redirect(url_for("console_inbox.quick_replies"))

"""Inbox jobs: sending a staff reply to a student, once."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from wechatpy.exceptions import WeChatClientException

from handlers.inbox import replies
from jobs.context import JobContext, JobRegistry
from wechat.client import WeChatTransportError


def _send_staff_reply(ctx: JobContext, payload: dict[str, Any]) -> None:
    # Sent once: a customer-service message has no dedup at WeChat and each one spends the
    # student's 5-message quota, so a failure (errcode or timeout) is shown to staff with a
    # retry button instead of being retried blind.
    item = replies.outgoing(ctx.session, int(payload["reply_id"]))
    if item is None:
        replies.record_interrupted(ctx.session, int(payload["reply_id"]))  # a dead worker's send
        return
    if not replies.start_sending(ctx.session, item.reply_id):
        return
    ctx.keep_so_far()  # "sending" is kept even if this worker dies; no transaction held while WeChat answers
    client = ctx.services["wechat_client"]()
    try:
        if item.kind == "template":
            client.post("message/template/send",
                        data=replies.template_body(item, ctx.config.get("WECHAT_TEMPLATE_STAFF_REPLY") or ""))
        else:
            client.message.send_text(item.openid, item.content)
    except WeChatClientException as exc:
        errcode = None if isinstance(exc, WeChatTransportError) else int(exc.errcode)
        replies.record_failed(ctx.session, item.reply_id, errcode, str(exc.errmsg or exc))
        return
    except Exception as exc:  # noqa: BLE001 - anything else: it may have gone out, staff decide
        replies.record_failed(ctx.session, item.reply_id, None, f"{type(exc).__name__}: {exc}")
        return
    replies.record_sent(ctx.session, item.reply_id, ctx.now())


def _abandoned(session: Session, payload: dict[str, Any]) -> None:
    replies.record_interrupted(session, int(payload["reply_id"]))


def register(registry: JobRegistry) -> None:
    registry.register(replies.SEND_JOB, _send_staff_reply, on_abandoned=_abandoned)

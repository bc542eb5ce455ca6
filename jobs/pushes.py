"""Push jobs: compose notices and digests each period, and send one template message with retries."""
from __future__ import annotations

import logging
from typing import Any

from wechatpy.exceptions import WeChatClientException

from handlers.pushes import compose, deliveries
from jobs.context import JobContext, JobRegistry

log = logging.getLogger(__name__)


class PushRetry(RuntimeError):
    """The send failed in a way a later attempt may fix; the runner retries with backoff."""


def compose_notices(ctx: JobContext, payload: dict[str, Any]) -> None:
    compose.compose_notices(ctx.session, ctx.config, compose.period_time(payload, ctx.now()))


def compose_digests(ctx: JobContext, payload: dict[str, Any]) -> None:
    compose.compose_digests(ctx.session, ctx.config, compose.period_time(payload, ctx.now()))


def send(ctx: JobContext, payload: dict[str, Any]) -> None:
    """One template send. The delivery is checked first (a short read), then WeChat is called with no
    transaction open, then the outcome is written; `client_msg_id` makes a repeated call (a crash
    after WeChat accepted) one message."""
    delivery_id = int(payload["delivery_id"])
    if not deliveries.still_to_send(ctx.session, delivery_id):
        return  # already sent (a re-run), or the admin unbound meanwhile: marked, committed by the runner
    # End the read before WeChat is called: on SQLite it holds the write lock.
    ctx.session.rollback()
    body = {"touser": payload["openid"], "template_id": payload["template_id"], "url": payload.get("url") or "",
            "data": payload["data"], "client_msg_id": payload["client_msg_id"]}
    try:
        result = ctx.services["wechat_client"]().post("message/template/send", data=body)
    except WeChatClientException as exc:
        errcode = int(exc.errcode) if exc.errcode is not None else None
        errmsg = str(exc.errmsg or "")
        if deliveries.is_final(errcode, ctx.attempt):
            deliveries.record_attempt_failed(ctx.session, delivery_id, errcode, errmsg, ctx.now(), final=True)
            return
        # The job's own transaction rolls back when it raises; the attempt is recorded on its own
        # so the console shows the delivery being retried, and why.
        with ctx.separately() as side:
            deliveries.record_attempt_failed(side, delivery_id, errcode, errmsg, ctx.now(), final=False)
        raise PushRetry(f"template send failed (errcode={errcode}); will retry") from None
    deliveries.record_sent(ctx.session, delivery_id, str(result.get("msgid", "")), ctx.now())


def register(registry: JobRegistry) -> None:
    registry.register(deliveries.SEND_JOB, send)
    registry.register(compose.NOTICES_JOB, compose_notices)
    registry.register(compose.DIGESTS_JOB, compose_digests)

"""Job kinds: the name a job is recorded under, and the function that does it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import update
from wechatpy.exceptions import WeChatClientException

from handlers import accounts, certificate_desk, certificates, conversations, housekeeping, payments, pushes, ratelimit
from jobs import pushes as push_jobs
from jobs.context import JobContext, JobRegistry
from models import CertificateExport, CertificateOrder, Job
from models.base import utcnow
from wechat.client import WeChatTransportError


def _prune_inbound_events(ctx: JobContext, payload: dict[str, Any]) -> None:
    housekeeping.prune_inbound_events(ctx.session)


def _prune_done_jobs(ctx: JobContext, payload: dict[str, Any]) -> None:
    housekeeping.prune_done_jobs(ctx.session)


def _prune_exports(ctx: JobContext, payload: dict[str, Any]) -> None:
    housekeeping.prune_exports(ctx.session, Path(ctx.config["EXPORT_DIR"]), utcnow())


def _prune_rate_events(ctx: JobContext, payload: dict[str, Any]) -> None:
    ratelimit.prune(ctx.session, utcnow())


def _sync_subscriber(ctx: JobContext, payload: dict[str, Any]) -> None:
    # The API call comes before any write, so no lock is held while WeChat answers.
    info = ctx.services["wechat_client"]().user.get(payload["openid"])
    accounts.apply_user_info(ctx.session, payload["openid"], info)


def _export_certificates(ctx: JobContext, payload: dict[str, Any]) -> None:
    export_id = int(payload["export_id"])
    engine = ctx.session.get_bind()

    def progress(done: int, total: int) -> None:
        # Progress commits on its own (the job's own transaction commits once, at the end), so
        # a page polling the export sees it move.
        with engine.begin() as conn:
            conn.execute(update(CertificateExport).where(CertificateExport.id == export_id)
                         .values(status="running", done_count=done, total=total))

    directory = Path(ctx.config["EXPORT_DIR"])
    certificates.build_export(ctx.session, export_id, directory, progress)


def _merchant(ctx: JobContext) -> payments.Merchant:
    return payments.Merchant(ctx.config["WECHAT_APP_ID"], ctx.config["WECHAT_PAY_MCHID"])


def _query_order(ctx: JobContext, payload: dict[str, Any]) -> None:
    """No notification yet: ask WeChat Pay. Paid → apply (once, like a notification);
    expired and unpaid → close it there first, then here. WeChat Pay is asked before any
    write, so no lock is held while it answers."""
    order = ctx.session.get(CertificateOrder, int(payload["order_id"]))
    if order is None or order.status not in payments.UNPAID:
        return
    order_id, out_trade_no, expired = order.id, order.out_trade_no, order.expires_at <= utcnow()
    pay = ctx.services["wechat_pay"]()
    ctx.session.rollback()  # end the read before calling out
    transaction = pay.query_order(out_trade_no)
    if transaction is not None and transaction.get("trade_state") == "SUCCESS":
        payments.apply_transaction(ctx.session, transaction, _merchant(ctx), "job:query", utcnow())
        return
    if not expired:
        return
    if transaction is not None:
        try:
            pay.close_order(out_trade_no)
        except Exception:
            # Paid in the meantime? Ask once more; otherwise retry the job later.
            transaction = pay.query_order(out_trade_no)
            if transaction is not None and transaction.get("trade_state") == "SUCCESS":
                payments.apply_transaction(ctx.session, transaction, _merchant(ctx), "job:query", utcnow())
                return
            raise
    payments.close(ctx.session, order_id, "job:timeout", utcnow(), "timeout")


def _reconcile(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Every minute: a query job for each unpaid order that is overdue or expired (backing off)."""
    payments.schedule_queries(ctx.session, utcnow(), int(ctx.config["PAY_QUERY_AFTER_SECONDS"]))


def _close_remote(ctx: JobContext, payload: dict[str, Any]) -> None:
    """The order closed here (the student chose electronic): close it at WeChat Pay too, so
    its payment page cannot be paid. Paid in between: the payment is applied and flagged."""
    order = ctx.session.get(CertificateOrder, int(payload["order_id"]))
    if order is None:
        return
    out_trade_no = order.out_trade_no
    ctx.session.rollback()
    pay = ctx.services["wechat_pay"]()
    try:
        pay.close_order(out_trade_no)
    except Exception:
        transaction = pay.query_order(out_trade_no)
        if transaction is None or transaction.get("trade_state") != "SUCCESS":
            raise
        payments.apply_transaction(ctx.session, transaction, _merchant(ctx), "job:close", utcnow())


def _check_refund(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Follow a refund WeChat Pay accepted until it settles; retried (with backoff) while it processes."""
    order = ctx.session.get(CertificateOrder, int(payload["order_id"]))
    if order is None or not order.out_refund_no:
        return
    number = order.out_refund_no
    ctx.session.rollback()
    result = ctx.services["wechat_pay"]().refund_status(number)
    if result.get("status") == "PROCESSING":
        raise RuntimeError("refund still processing at WeChat Pay")  # the runner retries later
    payments.refund_outcome(ctx.session, int(payload["order_id"]), result, utcnow())


def _notify_shipped(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Tell the student: a customer-service message while WeChat's 48-hour window is open,
    else the shipping template message (if one is configured); the order page shows it anyway."""
    notice = payments.shipped_notice(ctx.session, int(payload["order_id"]))
    if notice is None:
        return
    # A retry whose previous attempt recorded no error: that worker died mid-way, perhaps after
    # WeChat took the customer-service message (which has no dedup). Only the template, which
    # WeChat dedups by client_msg_id, may go out now: the student never gets the text twice.
    job = ctx.session.get(Job, ctx.job_id)
    maybe_sent = ctx.attempt > 1 and job is not None and job.last_error is None
    ctx.session.rollback()
    client = ctx.services["wechat_client"]()
    try:
        if not maybe_sent:
            client.message.send_text(notice.openid, notice.text)
            return
    except WeChatClientException as exc:
        if exc.errcode not in (45015, 45047):  # outside the window, or its 5 messages used
            raise
    template_id = ctx.config.get("WECHAT_TEMPLATE_SHIPPED")
    if not template_id:
        return
    public_url = str(ctx.config["PUBLIC_URL"]).rstrip("/")
    client.post("message/template/send", data={
        "touser": notice.openid, "template_id": template_id, "url": f"{public_url}/h5/orders/{notice.order_id}",
        "client_msg_id": f"shipped-{notice.order_id}",  # WeChat drops a repeat within 10 minutes
        "data": {"first": {"value": "你的纸质证书已寄出"}, "keyword1": {"value": notice.carrier},
                 "keyword2": {"value": notice.tracking_number}, "remark": {"value": "证书寄到学校，请留意学校通知。"}},
    })
def _certificate_notice(ctx: JobContext, payload: dict[str, Any]) -> None:
    certificate_id = int(payload["certificate_id"])
    body = certificate_desk.notice_message(ctx.session, certificate_id, ctx.config["WECHAT_TEMPLATE_CERT_NOTICE"],
                                           ctx.config["PUBLIC_URL"], str(payload["client_msg_id"]),
                                           payload.get("reason"))
    if body is None:
        return
    # Read, then call WeChat (no write lock held), then record; client_msg_id makes a repeat harmless.
    ctx.session.rollback()
    result = ctx.services["wechat_client"]().post("message/template/send", data=body)
    certificate_desk.record_notice_sent(ctx.session, certificate_id, result.get("msgid"))
def _send_staff_reply(ctx: JobContext, payload: dict[str, Any]) -> None:
    # Sent once: a customer-service message has no dedup at WeChat and each one spends the
    # student's 5-message quota, so a failure (errcode or timeout) is shown to staff with a
    # retry button instead of being retried blind.
    item = conversations.outgoing(ctx.session, int(payload["reply_id"]))
    if item is None:
        conversations.record_interrupted(ctx.session, int(payload["reply_id"]))  # a dead worker's send
        return
    if not conversations.start_sending(ctx.session, item.reply_id):
        return
    ctx.session.commit()  # "sending" is kept even if this worker dies; no transaction held while WeChat answers
    client = ctx.services["wechat_client"]()
    try:
        if item.kind == "template":
            client.post("message/template/send",
                        data=conversations.template_body(item, ctx.config.get("WECHAT_TEMPLATE_STAFF_REPLY") or ""))
        else:
            client.message.send_text(item.openid, item.content)
    except WeChatClientException as exc:
        errcode = None if isinstance(exc, WeChatTransportError) else int(exc.errcode)
        conversations.record_failed(ctx.session, item.reply_id, errcode, str(exc.errmsg or exc))
        return
    except Exception as exc:  # noqa: BLE001 - anything else: it may have gone out, staff decide
        conversations.record_failed(ctx.session, item.reply_id, None, f"{type(exc).__name__}: {exc}")
        return
    conversations.record_sent(ctx.session, item.reply_id, utcnow())
def _export_students(ctx: JobContext, payload: dict[str, Any]) -> None:
    from handlers import school_console
    from models import StudentExport

    export_id = int(payload["export_id"])
    engine = ctx.session.get_bind()

    def progress(done: int, total: int) -> None:
        # Its own commit, as for certificate exports: the page polling the export sees it move.
        with engine.begin() as conn:
            conn.execute(update(StudentExport).where(StudentExport.id == export_id)
                         .values(status="running", done_count=done, total=total))

    school_console.build_export(ctx.session, export_id, Path(ctx.config["EXPORT_DIR"]), utcnow(), progress)


def _process_roster_upload(ctx: JobContext, payload: dict[str, Any]) -> None:
    from handlers import roster

    upload_id = int(payload["upload_id"])
    engine = ctx.session.get_bind()

    def progress(rows: int) -> None:
        # Its own commit, as for exports: the report page polling the upload sees the rows counted.
        with engine.begin() as conn:
            roster.record_progress(conn, upload_id, rows)

    roster.process_upload(ctx.session, upload_id, progress)


def build_registry() -> JobRegistry:
    registry = JobRegistry()
    registry.register("housekeeping.prune_inbound_events", _prune_inbound_events)
    registry.register("housekeeping.prune_done_jobs", _prune_done_jobs)
    registry.register("housekeeping.prune_rate_events", _prune_rate_events)
    registry.register("housekeeping.prune_exports", _prune_exports)
    registry.register(accounts.SYNC_SUBSCRIBER, _sync_subscriber)
    registry.register(certificates.EXPORT_JOB, _export_certificates)
    registry.register(payments.QUERY_JOB, _query_order)
    registry.register(payments.RECONCILE_JOB, _reconcile)
    registry.register(payments.CLOSE_REMOTE_JOB, _close_remote)
    registry.register(payments.NOTIFY_SHIPPED_JOB, _notify_shipped)
    registry.register(pushes.SEND_JOB, push_jobs.send)
    registry.register(pushes.NOTICES_JOB, push_jobs.compose_notices)
    registry.register(pushes.DIGESTS_JOB, push_jobs.compose_digests)
    registry.register(payments.REFUND_CHECK_JOB, _check_refund)
    registry.register(certificate_desk.NOTICE_JOB, _certificate_notice)
    registry.register(conversations.SEND_JOB, _send_staff_reply,
                      on_abandoned=lambda session, payload: conversations.record_interrupted(
                          session, int(payload["reply_id"])))
    registry.register("schools.export_students", _export_students)
    registry.register("roster.process_upload", _process_roster_upload)
    return registry

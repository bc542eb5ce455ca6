"""Job kinds: the name a job is recorded under, and the function that does it."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session
from wechatpy.exceptions import WeChatClientException

from handlers import accounts, certificates, conversations, housekeeping
from models import CertificateExport
from models.base import utcnow
from wechat.client import WeChatTransportError


@dataclass
class JobContext:
    """What a job function gets: the job's session (the runner commits it) and the config."""

    session: Session
    config: Mapping[str, Any]
    job_id: int
    attempt: int
    services: dict[str, Any] = field(default_factory=dict)


JobFunction = Callable[[JobContext, dict[str, Any]], None]


class JobRegistry:
    def __init__(self) -> None:
        self._kinds: dict[str, JobFunction] = {}

    def register(self, kind: str, fn: JobFunction) -> None:
        if kind in self._kinds:
            raise ValueError(f"job kind {kind!r} is already registered")
        self._kinds[kind] = fn

    def get(self, kind: str) -> JobFunction | None:
        return self._kinds.get(kind)

    def __contains__(self, kind: str) -> bool:
        return kind in self._kinds


def _prune_inbound_events(ctx: JobContext, payload: dict[str, Any]) -> None:
    housekeeping.prune_inbound_events(ctx.session)


def _prune_done_jobs(ctx: JobContext, payload: dict[str, Any]) -> None:
    housekeeping.prune_done_jobs(ctx.session)


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


def _send_staff_reply(ctx: JobContext, payload: dict[str, Any]) -> None:
    # Sent once: a customer-service message has no dedup at WeChat and each one spends the
    # student's 5-message quota, so a failure (errcode or timeout) is shown to staff with a
    # retry button instead of being retried blind.
    item = conversations.outgoing(ctx.session, int(payload["reply_id"]))
    if item is None:
        return
    ctx.session.rollback()  # no read transaction held while WeChat answers
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
    conversations.record_sent(ctx.session, item.reply_id, utcnow())


def build_registry() -> JobRegistry:
    registry = JobRegistry()
    registry.register("housekeeping.prune_inbound_events", _prune_inbound_events)
    registry.register("housekeeping.prune_done_jobs", _prune_done_jobs)
    registry.register(accounts.SYNC_SUBSCRIBER, _sync_subscriber)
    registry.register(certificates.EXPORT_JOB, _export_certificates)
    registry.register(conversations.SEND_JOB, _send_staff_reply)
    return registry

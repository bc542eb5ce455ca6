"""Certificate jobs: building staff exports of issued PDFs, and sending the certificate notice."""
from __future__ import annotations

from typing import Any

from sqlalchemy import update

from handlers.certificates import desk, exports
from jobs.context import JobContext, JobRegistry
from models import CertificateExport
from models.status import CertificateExportStatus


def _export_certificates(ctx: JobContext, payload: dict[str, Any]) -> None:
    export_id = int(payload["export_id"])

    def progress(done: int, total: int) -> None:
        # Kept apart from the job's transaction (committed once, at the end): a page polling the
        # export sees it move.
        with ctx.separately() as side:
            side.execute(update(CertificateExport).where(CertificateExport.id == export_id)
                         .values(status=CertificateExportStatus.RUNNING, done_count=done, total=total))

    exports.build_export(ctx.session, export_id, progress, clock=ctx.now, blobs=ctx.services["blob_store"]())
def _certificate_notice(ctx: JobContext, payload: dict[str, Any]) -> None:
    certificate_id = int(payload["certificate_id"])
    body = desk.notice_message(ctx.session, certificate_id, ctx.config["WECHAT_TEMPLATE_CERT_NOTICE"],
                               ctx.config["PUBLIC_URL"], str(payload["client_msg_id"]), payload.get("reason"))
    if body is None:
        return
    # Read, then call WeChat (no write lock held), then record; client_msg_id makes a repeat harmless.
    ctx.session.rollback()
    result = ctx.services["wechat_client"]().post("message/template/send", data=body)
    desk.record_notice_sent(ctx.session, certificate_id, result.get("msgid"))


def register(registry: JobRegistry) -> None:
    registry.register(exports.EXPORT_JOB, _export_certificates)
    registry.register(desk.NOTICE_JOB, _certificate_notice)

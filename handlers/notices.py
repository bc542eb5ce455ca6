"""Certificate notices: the template message that tells a student their certificate was issued, paid or updated."""
from __future__ import annotations

import secrets

from sqlalchemy.orm import Session

from handlers.outbox import record_job

NOTICE_JOB = "certificates.notice"
REASONS = ("issued", "paid", "updated")


def queue_notice(session: Session, certificate_id: int, reason: str) -> None:
    """Once per certificate and reason; the client_msg_id rides in the payload, so a retried job
    is the same message to WeChat."""
    record_job(session, NOTICE_JOB, {"certificate_id": certificate_id, "client_msg_id": secrets.token_hex(12),
                                     "reason": reason}, dedup_key=f"cert-notice:{certificate_id}:{reason}")

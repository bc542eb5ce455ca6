"""Progress pushes to school admins: WeChat bindings, each template message's delivery, the notice watermark."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAtMixin, utcnow
from models.certificate import Certificate
from models.learning import Enrollment, QuizAttempt
from models.status import PushDeliveryStatus
from models.student import StudentProfile

DIGEST = "digest"
PASS_NOTICE = "pass_notice"
APPROVAL_NOTICE = "approval_notice"
KINDS = (DIGEST, PASS_NOTICE, APPROVAL_NOTICE)


class PushBindToken(CreatedAtMixin, Base):
    """A one-time link that binds the WeChat user who opens it to a console account."""

    __tablename__ = "push_bind_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("console_accounts.id"), index=True)
    # SHA-256 of the token in the link: a leaked table does not leak usable links.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class PushDelivery(Base):
    """One template message to one admin: what was asked of WeChat and what became of it."""

    __tablename__ = "push_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("console_accounts.id"))
    openid: Mapped[str] = mapped_column(String(64))
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"))
    kind: Mapped[str] = mapped_column(String(16))  # digest, pass_notice, approval_notice
    template_id: Mapped[str] = mapped_column(String(64))
    # Derived from (kind, account, window): the same push composed twice is one row and one send.
    client_msg_id: Mapped[str] = mapped_column(String(64), unique=True)
    # {"data": {...template fields...}, "url": "...", "summary": "readable line for the console"}
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=PushDeliveryStatus.QUEUED)
    errcode: Mapped[int | None]
    errmsg: Mapped[str | None] = mapped_column(Text)
    # WeChat's msgid from the send; TEMPLATESENDJOBFINISH names the message by it.
    msgid: Mapped[str | None] = mapped_column(String(32), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]  # when TEMPLATESENDJOBFINISH arrived
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_push_deliveries_school_id_id", "school_id", "id"),)


class PushWatermark(Base):
    """Up to when a school's pass and approval notices have been composed (the last window's end)."""

    __tablename__ = "push_watermarks"

    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id"), primary_key=True, autoincrement=False)
    notices_until: Mapped[datetime]


# The digests and notices select by these timestamps every period; the tables belong to other
# aggregates, so their indexes are declared here, beside the queries that need them.
Index("ix_student_profiles_school_id_verified_at", StudentProfile.school_id, StudentProfile.verified_at)
Index("ix_student_profiles_school_id_confirmed_at", StudentProfile.school_id, StudentProfile.confirmed_at)
Index("ix_enrollments_passed_at", Enrollment.passed_at)
Index("ix_quiz_attempts_submitted_at", QuizAttempt.submitted_at)
Index("ix_certificates_issued_at", Certificate.issued_at)

"""Console accounts (platform admins, staff, school admins), their invites, sign-in attempts and the audit log."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAtMixin, utcnow

PLATFORM_ADMIN = "platform_admin"
STAFF = "staff"
SCHOOL_ADMIN = "school_admin"
ROLES = (PLATFORM_ADMIN, STAFF, SCHOOL_ADMIN)


class ConsoleAccount(CreatedAtMixin, Base):
    """One person who signs in to the console. A school admin sees one school only."""

    __tablename__ = "console_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Lower-cased at creation; the sign-in form lower-cases too.
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    school_id: Mapped[int | None] = mapped_column(ForeignKey("schools.id"), index=True)
    # The WeChat user this admin bound (pushes go to that openid); see the schools issue.
    wechat_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    # Base32 TOTP secret; when set, sign-in asks for a code.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    disabled: Mapped[bool] = mapped_column(default=False)
    # Bumped on password change or disable: every session signed with an older epoch ends.
    session_epoch: Mapped[int] = mapped_column(default=0)
    last_sign_in_at: Mapped[datetime | None]


class ConsoleInvite(CreatedAtMixin, Base):
    """A one-time link that lets someone choose a username and password for a given role."""

    __tablename__ = "console_invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    # SHA-256 of the token in the link: a leaked table does not leak usable links.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    school_id: Mapped[int | None] = mapped_column(ForeignKey("schools.id"))
    display_name: Mapped[str] = mapped_column(String(64))
    invited_by: Mapped[int | None] = mapped_column(ForeignKey("console_accounts.id"))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    account_id: Mapped[int | None] = mapped_column(ForeignKey("console_accounts.id"))


class SignInAttempt(Base):
    """Every console sign-in attempt, kept for rate limiting across hosts (and for the audit)."""

    __tablename__ = "console_sign_in_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64))
    succeeded: Mapped[bool]
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_console_sign_in_attempts_username_at", "username", "at"),
                      Index("ix_console_sign_in_attempts_ip_at", "ip", "at"))


class AuditEntry(Base):
    """One console action: who, when, what, before and after. Rows are only ever inserted."""

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # None for the system itself (a job) or for a failed sign-in by an unknown name.
    account_id: Mapped[int | None] = mapped_column(ForeignKey("console_accounts.id"), index=True)
    # Kept as text too: the log must still say who when an account is renamed.
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject_type: Mapped[str | None] = mapped_column(String(32))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    school_id: Mapped[int | None] = mapped_column(ForeignKey("schools.id"), index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_audit_entries_subject", "subject_type", "subject_id"),)


class AuditRedaction(Base):
    """Leave to rewrite one audit entry's before/after/note, and the trace of it: the database lets an
    audit entry change only where a row here names it, and only in those three columns (a student
    who erased their data is no longer quoted in the log; who did what, when, stays)."""

    __tablename__ = "audit_redactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("audit_entries.id"), index=True)
    reason: Mapped[str] = mapped_column(String(64))  # e.g. "data_request:12"
    at: Mapped[datetime] = mapped_column(default=utcnow)

"""Erasing a student's personal data everywhere the privacy registry says it is, in one transaction.

What happens to each table is the registry's `on_erase`:
- DELETE: the student's rows go (profile, conversations, messages, replies, deliveries, bindings,
  certificate files and their blobs). Rows that stay and point at them lose the link (NULL): a
  progress row outlives its profile, anonymous, so the school's counters still equal a recount.
- SCRUB: the rows stay because they count something or are someone else's record (the user row,
  certificates, orders kept for accounting, corrections, events); their IDENTITY and CONTENT
  columns are overwritten.
- KEEP: links and records only (watching, attempts, enrolments, progress, consents, requests):
  anonymous once the user row no longer names anyone.
Outside the student's own tables, the values that named them (name, student number, phone, openid)
are redacted wherever they were quoted: the audit log and job payloads.

Certificates: an issued certificate is not revoked (it was honestly earned). Its printed name and
number are blanked and its signature dropped: the signature is over the name, so with the public
key anyone could test guessed names against it. The verify page then says the certificate is
genuine and its holder erased their personal information (handlers/certificates/verify.py).
"""
from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Table, Text, cast, delete, or_, select, update
from sqlalchemy.orm import Session

from blobstore import BlobStore
from handlers.errors import Refused
from handlers.learning import school_progress
from handlers.privacy.registry import BY_TABLE, Declaration, Kind, OnErase, Student, students_tables
from models import (
    AuditEntry,
    AuditRedaction,
    Base,
    Certificate,
    CertificateEvent,
    CertificateOrder,
    ConsoleAccount,
    CorrectionRequest,
    Job,
    StudentProfile,
    User,
)
from models.certificate import ERASED_SIGNATURE
from models.status import OrderStatus

ERASED_OPENID_PREFIX = "erased:"
# What a certificate prints once its holder erased their data: no real name is empty (NAME in
# handlers/accounts/identity.py wants two characters), so "" cannot be mistaken for a person.
ERASED_TEXT = ""
REDACTED = "[已注销]"
# An order in these states still needs the student's name, phone and address (paying, or paid and
# not yet posted): erasure waits until it is posted, refunded or closed.
ORDER_IN_FLIGHT = (OrderStatus.CREATED, OrderStatus.PAYING, OrderStatus.PAID, OrderStatus.PRINTING)
# Columns whose value is a blob key: the blob goes with the row, or with the value when the row stays.
BLOB_COLUMNS = {"certificate_files": "blob_key", "data_requests": "blob_key"}
# Links into the user row from outside the student's tables that mean "this person": cut.
LINKS_TO_PERSON = ((ConsoleAccount.__table__, "wechat_user_id"),)


class OrderInFlight(Refused):
    MESSAGE = "你有一份纸质证书订单正在支付、制作或等待寄出，完成（或退款）后才能注销。"

    def __init__(self) -> None:
        super().__init__("order_in_flight", self.MESSAGE)


@dataclass
class Erasure:
    """What an erasure did: rows per table and action, blobs deleted, quoted values redacted."""

    rows: dict[str, int] = field(default_factory=dict)
    blobs: int = 0
    redacted: int = 0


def is_erased(user: User) -> bool:
    return user.openid.startswith(ERASED_OPENID_PREFIX)


def check_can_erase(session: Session, user_id: int) -> None:
    """Refused while an order still needs the student's details."""
    if session.scalar(select(CertificateOrder.id).where(CertificateOrder.user_id == user_id,
                                                        CertificateOrder.status.in_(ORDER_IN_FLIGHT)).limit(1)):
        raise OrderInFlight()


def _quoted_values(session: Session, user: User) -> set[str]:
    """The strings that name this student wherever they may be quoted: openid, unionid, and every
    name, number and phone the profile, certificates and orders hold."""
    values = {user.openid, user.unionid or ""}
    profile = session.scalar(select(StudentProfile).where(StudentProfile.user_id == user.id))
    if profile is not None:
        values |= {profile.real_name, profile.student_number, profile.phone or ""}
    for name, number in session.execute(select(Certificate.holder_name, Certificate.student_number)
                                        .where(Certificate.user_id == user.id)):
        values |= {name, number}
    for name, phone in session.execute(select(CertificateOrder.recipient_name, CertificateOrder.recipient_phone)
                                       .where(CertificateOrder.user_id == user.id)):
        values |= {name or "", phone or ""}
    # A correction asks for the name or number the student says is right: that names them too.
    for changes in session.scalars(select(CorrectionRequest.changes).where(CorrectionRequest.user_id == user.id)):
        values |= {v for v in (changes or {}).values() if isinstance(v, str)}
    # Two characters and more only: a one-character value would redact half the log.
    return {v for v in values if len(v) >= 2}


def _neutral(column: Column[Any]) -> Any:
    """What an overwritten column holds: NULL where allowed, else empty."""
    if column.nullable:
        return None
    if isinstance(column.type, JSON):
        return {}
    return ERASED_TEXT


# Overwrites that are not "neutral": the user row's openid stays unique (a returning follower is a
# new user), and a certificate's signature is dropped with the name it signed.
def _overrides(table: str) -> dict[str, Any]:
    if table == "users":
        return {"openid": ERASED_OPENID_PREFIX + secrets.token_hex(16), "subscribed": False}
    if table == "certificates":
        return {"signature": ERASED_SIGNATURE}
    return {}


def _redact(value: Any, values: Iterable[str]) -> Any:
    """`value` (JSON or text) with every occurrence of the values replaced."""
    if isinstance(value, str):
        for v in values:
            value = value.replace(v, REDACTED)
        return value
    if isinstance(value, list):
        return [_redact(item, values) for item in value]
    if isinstance(value, dict):
        return {_redact(k, values): _redact(item, values) for k, item in value.items()}
    return value


def _json_forms(value: str) -> set[str]:
    """How a value looks inside a stored JSON document (escaped non-ASCII) and as plain text."""
    return {value, json.dumps(value)[1:-1]}


def _redact_quotes(session: Session, values: set[str], reason: str, now: datetime) -> int:
    """Redact the values in the audit log and in job payloads: rows found by a text match in SQL,
    rewritten in Python. Returns how many rows changed."""
    changed = 0
    targets: tuple[tuple[type[Any], tuple[str, ...]], ...] = (
        (AuditEntry, ("before", "after", "note")), (Job, ("payload", "last_error")))
    for model, columns in targets:
        conditions = [cast(getattr(model, c), Text).contains(form, autoescape=True)
                      for c in columns for v in values for form in _json_forms(v)]
        if not conditions:
            continue
        for row in session.scalars(select(model).where(or_(*conditions))):
            if isinstance(row, AuditEntry):
                # The database lets an audit entry change only where a redaction names it
                # (migration b8e4d2a61c07): the leave and its trace, in one row.
                session.add(AuditRedaction(entry_id=row.id, reason=reason, at=now))
                session.flush()
            for c in columns:
                setattr(row, c, _redact(getattr(row, c), values))
            changed += 1
    session.flush()
    return changed


def _delete_blobs(session: Session, declaration: Declaration, table: Table, who: Student,
                  blobs: BlobStore) -> int:
    column = BLOB_COLUMNS.get(declaration.table)
    if column is None or declaration.find is None:
        return 0
    keys = [k for k in session.scalars(select(table.c[column]).where(declaration.find(table, who))) if k]
    # Deleted before the commit, on purpose: an erasure that fails after this is retried by its job
    # and deletes the rows then; a row left pointing at a missing file of a person who asked to be
    # forgotten is the lesser harm than the file outliving the request.
    for key in keys:
        blobs.delete(key)
    return len(keys)


def _cut_links_to(session: Session, table: Table, ids: list[int]) -> None:
    """Rows that stay and point at rows about to go: the link becomes NULL (progress → profile)."""
    for other in Base.metadata.sorted_tables:
        for fk in other.foreign_keys:
            if fk.column.table is table and fk.parent.nullable:
                session.execute(update(other).where(fk.parent.in_(ids)).values({fk.parent.name: None}))


def erase(session: Session, user_id: int, blobs: BlobStore, now: datetime, actor: str = "system",
          reason: str = "erasure") -> Erasure:
    """Erase the student's personal data (flush only: the caller's boundary commits). Idempotent:
    an erased user is left as it is."""
    user = session.get(User, user_id)
    if user is None or is_erased(user):
        return Erasure()
    check_can_erase(session, user_id)
    session.flush()
    who = Student(user.id, user.openid)
    values = _quoted_values(session, user)
    result = Erasure()
    declarations = students_tables()
    tables = {d.table: Base.metadata.tables[d.table] for d in declarations}

    # A note on the certificates' history, while the finder still finds them (staff see why a
    # certificate no longer has a name).
    for certificate_id in session.scalars(select(Certificate.id).where(Certificate.user_id == user_id)):
        session.add(CertificateEvent(certificate_id=certificate_id, action="holder_erased", actor=actor, at=now))
    session.flush()

    for d in declarations:
        result.blobs += _delete_blobs(session, d, tables[d.table], who, blobs)

    # Children before parents: a child's finder may go through its parent's rows.
    order = [t for t in reversed(Base.metadata.sorted_tables) if t.name in tables]
    for table in order:
        d = BY_TABLE[table.name]
        assert d.find is not None
        if d.on_erase != OnErase.DELETE:
            continue
        ids = list(session.scalars(select(table.c.id).where(d.find(table, who))))
        if not ids:
            continue
        _cut_links_to(session, table, ids)
        if table.name == "student_profiles":
            # Through the ORM: the school counters follow a profile's deletion in the flush hook.
            assert school_progress.counting()
            for profile in session.scalars(select(StudentProfile).where(StudentProfile.id.in_(ids))):
                session.delete(profile)
            session.flush()
        else:
            session.execute(delete(table).where(table.c.id.in_(ids)))
        result.rows[f"{table.name}.deleted"] = len(ids)

    for table in order:
        d = BY_TABLE[table.name]
        assert d.find is not None
        blob_column = BLOB_COLUMNS.get(table.name)
        values_to_set: dict[str, Any] = {}
        if d.on_erase == OnErase.SCRUB:
            values_to_set = {name: _neutral(table.c[name]) for name, kind in d.columns.items()
                             if kind in (Kind.IDENTITY, Kind.CONTENT)}
            values_to_set.update(_overrides(table.name))
        if blob_column and d.on_erase != OnErase.DELETE:
            values_to_set[blob_column] = None
        if not values_to_set or table.name == "users":
            continue  # the user row last: every finder by openid needs it as it was
        n = session.execute(update(table).where(d.find(table, who)).values(values_to_set)).rowcount  # type: ignore[attr-defined]
        if n:
            result.rows[f"{table.name}.scrubbed"] = int(n)

    for link_table, column in LINKS_TO_PERSON:
        session.execute(update(link_table).where(link_table.c[column] == user_id).values({column: None}))
    result.redacted = _redact_quotes(session, values, reason, now)

    users = tables["users"]
    scrub = {name: _neutral(users.c[name]) for name, kind in BY_TABLE["users"].columns.items()
             if kind in (Kind.IDENTITY, Kind.CONTENT)}
    # Every H5 sign-in of this person ends now (web/auth.py checks signed_out_at).
    scrub |= _overrides("users") | {"signed_out_at": now}
    session.execute(update(users).where(users.c.id == user_id).values(scrub))
    result.rows["users.scrubbed"] = 1
    session.flush()
    # Core statements changed rows the session may hold: read them afresh.
    session.expire_all()
    return result

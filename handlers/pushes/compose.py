"""Composing pushes: notices per window and daily digests, each a queued delivery per admin."""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from handlers import china_time
from handlers.outbox import record_job
from handlers.pushes.deliveries import MAX_ATTEMPTS, SEND_JOB
from models import (
    Certificate,
    ConsoleAccount,
    Enrollment,
    PushDelivery,
    PushWatermark,
    QuizAttempt,
    School,
    StudentProfile,
    User,
)
from models.console import SCHOOL_ADMIN
from models.push import APPROVAL_NOTICE, DIGEST, PASS_NOTICE
from models.status import ProfileStatus, PushDeliveryStatus

NOTICES_JOB = "pushes.notices"
DIGESTS_JOB = "pushes.digests"
CHINA = china_time.CHINA
# Notices are gathered per window: an admin gets at most one notice of each kind per window.
NOTICE_WINDOW = timedelta(minutes=10)
# Names shown in a notice before "等 N 名"; WeChat cuts template fields short anyway.
NAMES_SHOWN = 3
FIELD_LIMIT = 20


# -- configuration --------------------------------------------------------------------------

@dataclass(frozen=True)
class Template:
    template_id: str
    fields: tuple[str, ...]  # WeChat's field names for this template's slots, in order

    def data(self, *values: str) -> dict[str, dict[str, str]]:
        return {name: {"value": value} for name, value in zip(self.fields, values)}


def templates(config: Mapping[str, Any]) -> dict[str, Template]:
    """The template for each kind of push, from WECHAT_TEMPLATE_* and WECHAT_TEMPLATE_*_FIELDS (see README)."""
    def one(key: str) -> Template:
        names = tuple(n.strip() for n in str(config[f"WECHAT_TEMPLATE_{key}_FIELDS"]).split(",") if n.strip())
        return Template(str(config[f"WECHAT_TEMPLATE_{key}"]), names)
    return {DIGEST: one("DIGEST"), PASS_NOTICE: one("PASS"), APPROVAL_NOTICE: one("APPROVAL")}


def _clip(text: str, limit: int = FIELD_LIMIT) -> str:
    # Template fields are plain text; control characters would only garble the card.
    text = re.sub(r"[\x00-\x1f\x7f]", "", text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


# -- composing --------------------------------------------------------------------------------

def client_msg_id(kind: str, account_id: int, window: str) -> str:
    """Deterministic per (kind, account, window): composing the same push twice sends it once."""
    return "xw" + hashlib.sha256(f"{kind}:{account_id}:{window}".encode("utf-8")).hexdigest()[:32]


def _recipients(session: Session, school_id: int | None = None) -> dict[int, list[tuple[ConsoleAccount, str]]]:
    """Bound, enabled school admins by school: (account, openid)."""
    query = (select(ConsoleAccount, User.openid).join(User, User.id == ConsoleAccount.wechat_user_id)
             .where(ConsoleAccount.role == SCHOOL_ADMIN, ConsoleAccount.disabled.is_(False),
                    ConsoleAccount.school_id.is_not(None)).order_by(ConsoleAccount.id))
    if school_id is not None:
        query = query.where(ConsoleAccount.school_id == school_id)
    by_school: dict[int, list[tuple[ConsoleAccount, str]]] = {}
    for account, openid in session.execute(query):
        by_school.setdefault(int(account.school_id), []).append((account, openid))
    return by_school


def queue_push(session: Session, *, account: ConsoleAccount, openid: str, school_id: int, kind: str,
               template: Template, window: str, data: dict[str, dict[str, str]], summary: str,
               url: str) -> PushDelivery | None:
    """Record one delivery and its send job, unless this (kind, account, window) was queued before."""
    msg_id = client_msg_id(kind, account.id, window)
    now = datetime.now(timezone.utc)
    payload = {"data": data, "url": url, "summary": summary}
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    delivery_id = session.scalar(
        insert(PushDelivery).values(account_id=account.id, openid=openid, school_id=school_id, kind=kind,
                                    template_id=template.template_id, client_msg_id=msg_id, payload=payload,
                                    status=PushDeliveryStatus.QUEUED, attempts=0, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["client_msg_id"]).returning(PushDelivery.id))
    if delivery_id is None:
        return None
    # Everything the send needs rides in the job, so the job calls WeChat before touching the database.
    record_job(session, SEND_JOB, {"delivery_id": delivery_id, "openid": openid,
                                   "template_id": template.template_id, "client_msg_id": msg_id,
                                   "data": data, "url": url},
               dedup_key=f"push:{msg_id}", max_attempts=MAX_ATTEMPTS)
    return session.get(PushDelivery, delivery_id)


def window_end(now: datetime) -> datetime:
    """The end of the notice window `now` closes (windows are aligned to 10 minutes, UTC)."""
    now = now.astimezone(timezone.utc)
    return now.replace(minute=now.minute - now.minute % 10, second=0, microsecond=0)


def period_time(payload: Mapping[str, Any], fallback: datetime) -> datetime:
    """When a periodic job's period began ("periodic:<kind>:2026-11-29T14:40"), so a re-run of one
    period composes exactly what the first run did."""
    period = str(payload.get("period") or "")
    stamp = period.rsplit(":", 2)
    for fmt, text in (("%Y-%m-%dT%H:%M", ":".join(stamp[-2:])), ("%Y-%m-%d", stamp[-1])):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return fallback


def _names(names: list[str]) -> str:
    shown = "、".join(names[:NAMES_SHOWN])
    return shown + ("…" if len(names) > NAMES_SHOWN else "")


def _local(moment: datetime) -> str:
    return moment.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")


def compose_notices(session: Session, config: Mapping[str, Any], now: datetime) -> int:
    """Gather each school's passes and new pending approvals since its watermark, up to the end of
    the window `now` closes, into at most one notice of each kind per bound admin. Returns the
    number of deliveries queued."""
    end = window_end(now)
    window = end.strftime("%Y-%m-%dT%H:%M")
    tpl = templates(config)
    base = str(config["PUBLIC_URL"]).rstrip("/")
    queued = 0
    for school_id, admins in _recipients(session).items():
        mark = session.get(PushWatermark, school_id, with_for_update=True)
        start = mark.notices_until if mark is not None else end - NOTICE_WINDOW
        if start >= end:
            continue
        school = session.get(School, school_id)
        school_name = school.name if school else ""
        passed = list(session.scalars(
            select(StudentProfile.real_name).join(Enrollment, Enrollment.user_id == StudentProfile.user_id)
            .where(StudentProfile.school_id == school_id, Enrollment.passed_at >= start, Enrollment.passed_at < end)
            .order_by(Enrollment.passed_at, Enrollment.id)))
        pending = list(session.scalars(
            select(StudentProfile.real_name)
            .where(StudentProfile.school_id == school_id, StudentProfile.status == ProfileStatus.PENDING,
                   StudentProfile.confirmed_at >= start, StudentProfile.confirmed_at < end)
            .order_by(StudentProfile.confirmed_at, StudentProfile.id)))
        for account, openid in admins:
            if passed:
                summary = f"{len(passed)} 名学生通过考核：{_names(passed)}"
                data = tpl[PASS_NOTICE].data(_clip(school_name), str(len(passed)), _clip(_names(passed)),
                                             _local(end))
                queued += queue_push(session, account=account, openid=openid, school_id=school_id, kind=PASS_NOTICE,
                                     template=tpl[PASS_NOTICE], window=window, data=data, summary=summary,
                                     url=f"{base}/console/") is not None
            if pending:
                summary = f"{len(pending)} 名学生等待审核：{_names(pending)}"
                data = tpl[APPROVAL_NOTICE].data(_clip(school_name), str(len(pending)), _clip(_names(pending)),
                                                 _local(end))
                queued += queue_push(session, account=account, openid=openid, school_id=school_id,
                                     kind=APPROVAL_NOTICE, template=tpl[APPROVAL_NOTICE], window=window, data=data,
                                     summary=summary, url=f"{base}/console/") is not None
        if mark is None:
            session.add(PushWatermark(school_id=school_id, notices_until=end))
        else:
            mark.notices_until = end
    session.flush()
    return queued


@dataclass(frozen=True)
class Digest:
    day: date
    verified: int
    topics: int
    passed: int
    certificates: int

    @property
    def empty(self) -> bool:
        return not (self.verified or self.topics or self.passed or self.certificates)

    @property
    def summary(self) -> str:
        return (f"{self.day:%m月%d日}：新认证 {self.verified} 人，完成专题 {self.topics} 个，"
                f"通过考核 {self.passed} 人，颁发证书 {self.certificates} 张")


def china_day_bounds(day: date) -> tuple[datetime, datetime]:
    """A day in China time as a UTC [start, end)."""
    start = datetime.combine(day, time(0), tzinfo=CHINA)
    return start.astimezone(timezone.utc), (start + timedelta(days=1)).astimezone(timezone.utc)


def digest_for(session: Session, school_id: int, day: date) -> Digest:
    """What happened at a school on `day` (China time)."""
    start, end = china_day_bounds(day)
    of_school = StudentProfile.school_id == school_id
    verified = session.scalar(select(func.count()).select_from(StudentProfile).where(
        of_school, StudentProfile.status == ProfileStatus.VERIFIED, StudentProfile.verified_at >= start,
        StudentProfile.verified_at < end))
    topics = session.scalar(select(func.count()).select_from(QuizAttempt)
                            .join(StudentProfile, StudentProfile.user_id == QuizAttempt.user_id).where(
        of_school, QuizAttempt.passed.is_(True), QuizAttempt.submitted_at >= start, QuizAttempt.submitted_at < end))
    passed = session.scalar(select(func.count()).select_from(Enrollment)
                            .join(StudentProfile, StudentProfile.user_id == Enrollment.user_id).where(
        of_school, Enrollment.passed_at >= start, Enrollment.passed_at < end))
    # Version 1 only: a correction re-issues a certificate, it does not issue another.
    certificates = session.scalar(select(func.count()).select_from(Certificate)
                                  .join(StudentProfile, StudentProfile.user_id == Certificate.user_id).where(
        of_school, Certificate.version == 1, Certificate.issued_at >= start, Certificate.issued_at < end))
    return Digest(day, int(verified or 0), int(topics or 0), int(passed or 0), int(certificates or 0))


def compose_digests(session: Session, config: Mapping[str, Any], now: datetime) -> int:
    """Yesterday's digest (China time) for each school with bound admins; an all-zero day sends
    nothing. Returns the number of deliveries queued."""
    day = now.astimezone(CHINA).date() - timedelta(days=1)
    tpl = templates(config)[DIGEST]
    base = str(config["PUBLIC_URL"]).rstrip("/")
    queued = 0
    for school_id, admins in _recipients(session).items():
        digest = digest_for(session, school_id, day)
        if digest.empty:
            continue
        school = session.get(School, school_id)
        data = tpl.data(_clip(school.name if school else ""), day.isoformat(), str(digest.verified),
                        str(digest.topics), str(digest.passed), str(digest.certificates))
        for account, openid in admins:
            queued += queue_push(session, account=account, openid=openid, school_id=school_id, kind=DIGEST,
                                 template=tpl, window=day.isoformat(), data=data, summary=digest.summary,
                                 url=f"{base}/console/") is not None
    session.flush()
    return queued

"""Progress pushes to school admins: binding their WeChat, composing digests and notices, recording deliveries."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from handlers import china_time
from handlers.accounts import SYNC_SUBSCRIBER
from handlers.console_accounts import Actor, record_audit
from handlers.learning import Refused
from handlers.messages import Inbound
from handlers.outbox import record_job
from models import (
    Certificate,
    ConsoleAccount,
    Enrollment,
    PushBindToken,
    PushDelivery,
    PushWatermark,
    QuizAttempt,
    School,
    StudentProfile,
    User,
)
from models.console import SCHOOL_ADMIN
from models.push import APPROVAL_NOTICE, DELIVERED, DIGEST, FAILED, PASS_NOTICE, QUEUED, REJECTED, SENT

log = logging.getLogger(__name__)

SEND_JOB = "pushes.send"
NOTICES_JOB = "pushes.notices"
DIGESTS_JOB = "pushes.digests"

# A send is tried this often (timeouts, WeChat busy) before its delivery is marked failed.
MAX_ATTEMPTS = 5
CHINA = china_time.CHINA
# Notices are gathered per window: an admin gets at most one notice of each kind per window.
NOTICE_WINDOW = timedelta(minutes=10)
BIND_TOKEN_TTL = timedelta(minutes=30)
# Names shown in a notice before "等 N 名"; WeChat cuts template fields short anyway.
NAMES_SHOWN = 3
FIELD_LIMIT = 20

# Errcodes that no retry can fix: the delivery fails at once.
FINAL_ERRCODES = frozenset({
    40003,  # invalid openid
    40036, 40037,  # invalid template_id
    43004,  # the admin does not follow the account
    43101,  # the admin refused this kind of message
    47003,  # template data invalid
})
NOT_FOLLOWING = 43004

STATUS_TEXT = {QUEUED: "排队中", SENT: "已发送", FAILED: "发送失败", DELIVERED: "已送达", REJECTED: "未送达"}
KIND_TEXT = {DIGEST: "每日简报", PASS_NOTICE: "考核通过通知", APPROVAL_NOTICE: "待审核通知"}
ERRCODE_TEXT = {
    -1: "微信系统繁忙，已自动重试",
    40003: "微信号无效，请重新绑定",
    40036: "模板无效，请联系平台工作人员",
    40037: "模板无效，请联系平台工作人员",
    43004: "未关注公众号，收不到推送：请先关注公众号",
    43101: "已在微信中拒收此类消息",
    45009: "今日微信接口调用已达上限，已自动重试",
    47003: "推送内容不符合模板要求，请联系平台工作人员",
}
TRANSPORT_TEXT = "微信接口无应答（超时或网络中断），已自动重试"
FINISH_TEXT = {"user block": "管理员在微信中屏蔽了推送", "system failed": "微信系统原因未送达",
               "unbound": "发送前已解除绑定或停用账号，未发送"}


def explain(errcode: int | None, errmsg: str | None) -> str:
    """A delivery's failure in Chinese, for the console."""
    if errcode is None:
        if errmsg in FINISH_TEXT:
            return FINISH_TEXT[errmsg]
        return TRANSPORT_TEXT if errmsg else ""
    return ERRCODE_TEXT.get(errcode, f"微信返回错误 {errcode}")


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


# -- binding ------------------------------------------------------------------------------------

def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_bind_token(session: Session, account: ConsoleAccount, now: datetime) -> str:
    """A fresh one-time bind link's token for this account (only its hash is stored)."""
    if account.role != SCHOOL_ADMIN:
        raise Refused("not_school_admin", "只有学校管理员可以绑定微信接收推送")
    token = secrets.token_urlsafe(24)
    session.add(PushBindToken(account_id=account.id, token_hash=_hash(token), expires_at=now + BIND_TOKEN_TTL))
    record_audit(session, Actor.of(account), "pushes.bind_link", "console_account", account.id)
    session.flush()
    return token


def peek_bind_token(session: Session, token: str, now: datetime) -> ConsoleAccount:
    """The account a bind link belongs to, if the link can still be used (Refused otherwise)."""
    row = session.scalar(select(PushBindToken).where(PushBindToken.token_hash == _hash(token)))
    return _usable(session, row, now)


def _usable(session: Session, row: PushBindToken | None, now: datetime) -> ConsoleAccount:
    if row is None:
        raise Refused("bind_unknown", "绑定链接无效，请在管理后台重新生成。")
    if row.used_at is not None:
        raise Refused("bind_used", "这个绑定链接已经用过了，请在管理后台重新生成。")
    if row.expires_at <= now:
        raise Refused("bind_expired", "绑定链接已过期（30 分钟内有效），请在管理后台重新生成。")
    account = session.get(ConsoleAccount, row.account_id)
    if account is None or account.disabled or account.role != SCHOOL_ADMIN:
        raise Refused("bind_unknown", "绑定链接无效，请在管理后台重新生成。")
    return account


def bind(session: Session, token: str, user_id: int, now: datetime) -> ConsoleAccount:
    """Bind the WeChat user who opened the link to its account; the link is used up (once, even
    under two concurrent openings). A job then asks WeChat whether the user follows the account."""
    row = session.scalar(select(PushBindToken).where(PushBindToken.token_hash == _hash(token)))
    account = _usable(session, row, now)
    assert row is not None
    taken = session.execute(update(PushBindToken).where(PushBindToken.id == row.id, PushBindToken.used_at.is_(None))
                            .values(used_at=now, used_by_user_id=user_id)).rowcount
    if not taken:
        raise Refused("bind_used", "这个绑定链接已经用过了，请在管理后台重新生成。")
    before = account.wechat_user_id
    account.wechat_user_id = user_id
    user = session.get(User, user_id)
    record_audit(session, Actor.of(account), "pushes.bind", "console_account", account.id,
                 before={"wechat_user_id": before}, after={"wechat_user_id": user_id}, note="在微信中打开绑定链接")
    if user is not None:
        record_job(session, SYNC_SUBSCRIBER, {"openid": user.openid})
    session.flush()
    return account


def unbind(session: Session, account: ConsoleAccount) -> bool:
    """Stop pushes to this account's WeChat; False when nothing was bound."""
    if account.wechat_user_id is None:
        return False
    before = account.wechat_user_id
    account.wechat_user_id = None
    record_audit(session, Actor.of(account), "pushes.unbind", "console_account", account.id,
                 before={"wechat_user_id": before}, after={"wechat_user_id": None})
    session.flush()
    return True


@dataclass(frozen=True)
class Binding:
    bound: bool
    following: bool
    openid_hint: str = ""  # the openid's last characters, so an admin can tell two phones apart


def binding_of(session: Session, account: ConsoleAccount) -> Binding:
    if account.wechat_user_id is None:
        return Binding(False, False)
    user = session.get(User, account.wechat_user_id)
    if user is None:
        return Binding(False, False)
    return Binding(True, bool(user.subscribed), "…" + user.openid[-4:])


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
                                    status=QUEUED, attempts=0, created_at=now, updated_at=now)
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
            .where(StudentProfile.school_id == school_id, StudentProfile.status == "pending",
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
        of_school, StudentProfile.status == "verified", StudentProfile.verified_at >= start,
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


# -- sending results -------------------------------------------------------------------------

def record_sent(session: Session, delivery_id: int, msgid: str, now: datetime) -> None:
    """WeChat accepted the message. A delivery already finished (an event raced ahead) keeps its state."""
    delivery = session.get(PushDelivery, delivery_id)
    if delivery is None:
        return
    delivery.attempts += 1
    delivery.updated_at = now
    if delivery.status in (QUEUED, FAILED):
        delivery.status, delivery.msgid, delivery.sent_at = SENT, msgid[:32], now
        delivery.errcode = delivery.errmsg = None
    session.flush()


UNBOUND = "unbound"


def still_to_send(session: Session, delivery_id: int) -> bool:
    """Whether a delivery should go out now: still queued, and its admin still bound to the same
    WeChat user and enabled. One that should not is marked failed here (the caller commits)."""
    delivery = session.get(PushDelivery, delivery_id)
    if delivery is None or delivery.status != QUEUED:
        return False
    account = session.get(ConsoleAccount, delivery.account_id)
    user = session.get(User, account.wechat_user_id) if account and account.wechat_user_id else None
    if account is None or account.disabled or user is None or user.openid != delivery.openid:
        delivery.status, delivery.errcode, delivery.errmsg = FAILED, None, UNBOUND
        delivery.updated_at = datetime.now(timezone.utc)
        session.flush()
        return False
    return True


def record_attempt_failed(session: Session, delivery_id: int, errcode: int | None, errmsg: str, now: datetime,
                          *, final: bool) -> None:
    """A send that failed: retried later (the delivery stays queued, the error is shown) or for good.
    43004 also records that the admin's WeChat does not follow the account."""
    delivery = session.get(PushDelivery, delivery_id)
    if delivery is None or delivery.status not in (QUEUED, FAILED):
        return
    delivery.attempts += 1
    delivery.errcode, delivery.errmsg, delivery.updated_at = errcode, errmsg[:500], now
    if final:
        delivery.status = FAILED
    if errcode == NOT_FOLLOWING:
        session.execute(update(User).where(User.openid == delivery.openid).values(subscribed=False))
    session.flush()


def is_final(errcode: int | None, attempt: int) -> bool:
    return errcode in FINAL_ERRCODES or attempt >= MAX_ATTEMPTS


def template_finished(session: Session, inbound: Inbound) -> None:
    """TEMPLATESENDJOBFINISH: WeChat's word on a sent template message, matched by msgid and openid."""
    msgid = str(inbound.msg_id or "")
    status = str(inbound.fields.get("Status") or "")
    if not msgid:
        return None
    delivery = session.scalar(select(PushDelivery).where(PushDelivery.msgid == msgid[:32],
                                                         PushDelivery.openid == inbound.openid))
    if delivery is None:
        log.info("TEMPLATESENDJOBFINISH for an unknown msgid; ignored")
        return None
    delivery.finished_at = delivery.updated_at = inbound.sent_at
    if status == "success":
        delivery.status, delivery.errcode, delivery.errmsg = DELIVERED, None, None
    else:
        reason = status.split(":", 1)[1].strip() if ":" in status else status
        delivery.status, delivery.errcode, delivery.errmsg = REJECTED, None, reason[:500] or "failed"
    session.flush()
    return None


# -- history ----------------------------------------------------------------------------------

PAGE_SIZE = 20


def deliveries(session: Session, school_id: int, page: int = 1) -> tuple[list[PushDelivery], int]:
    """A school's deliveries, newest first, one page; and how many there are."""
    page = max(page, 1)
    total = session.scalar(select(func.count()).select_from(PushDelivery).where(PushDelivery.school_id == school_id))
    rows = list(session.scalars(select(PushDelivery).where(PushDelivery.school_id == school_id)
                                .order_by(PushDelivery.id.desc()).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)))
    return rows, int(total or 0)

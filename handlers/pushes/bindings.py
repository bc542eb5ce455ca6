"""Binding a school admin's WeChat to their console account: one-time tokens, bind and unbind."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from handlers.accounts.followers import SYNC_SUBSCRIBER
from handlers.audit import Actor, record_audit
from handlers.errors import Refused
from handlers.outbox import record_job
from models import (
    ConsoleAccount,
    PushBindToken,
    User,
)
from models.console import SCHOOL_ADMIN

BIND_TOKEN_TTL = timedelta(minutes=30)


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

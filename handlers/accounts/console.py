"""Console accounts: password hashing, sign-in with rate limits, invites and TOTP."""
from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from handlers.accounts import identity
from handlers.audit import SYSTEM, Actor, record_audit
from handlers.errors import Refused
from models import ConsoleAccount, ConsoleInvite, School, SignInAttempt
from models.console import PLATFORM_ADMIN, ROLES, SCHOOL_ADMIN, STAFF

# argon2id with the library's defaults (RFC 9106 "low memory": 64 MiB, 3 passes): a sign-in
# costs ~50 ms of one core, which the rate limit below keeps far from a denial of service.
_hasher = PasswordHasher()
# Verifying against this keeps an unknown username as slow as a wrong password (no user probing).
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))

MIN_PASSWORD_LENGTH = 10
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
# Failures counted over this window: per username (guessing one account's password) and per
# address (trying many accounts). Counted in the database so every host shares them.
WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USERNAME = 5
MAX_FAILURES_PER_IP = 30
# An address over its limit (a password spray, or many honest people behind one NAT) still lets
# through a name that has failed fewer times than this: one address cannot lock everyone out.
FEW_FAILURES = 2
INVITE_DAYS = 7

STAFF_ROLES = (PLATFORM_ADMIN, STAFF)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password_strength(password: str, username: str = "") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Refused("weak_password", f"密码至少 {MIN_PASSWORD_LENGTH} 位")
    if username and username.lower() in password.lower():
        raise Refused("weak_password", "密码不能包含用户名")
    if len(set(password)) < 5:
        raise Refused("weak_password", "密码过于简单")


def normalise_username(username: str) -> str:
    return username.strip().lower()


def _check_role(session: Session, role: str, school_id: int | None) -> None:
    if role not in ROLES:
        raise Refused("bad_role", "未知的角色")
    if role == SCHOOL_ADMIN:
        if school_id is None or session.get(School, school_id) is None:
            raise Refused("no_school", "学校管理员必须属于一所学校")
    elif school_id is not None:
        raise Refused("bad_role", "平台账号不属于任何学校")


def create_account(session: Session, *, username: str, password: str, role: str, display_name: str,
                   school_id: int | None = None, actor: Actor = SYSTEM) -> ConsoleAccount:
    username = normalise_username(username)
    if not USERNAME.match(username):
        raise Refused("bad_username", "用户名须为 3–64 位小写字母、数字、点、下划线或连字符")
    if session.scalar(select(ConsoleAccount.id).where(ConsoleAccount.username == username)) is not None:
        raise Refused("username_taken", "该用户名已被使用")
    _check_role(session, role, school_id)
    check_password_strength(password, username)
    display_name = _display_name(display_name) or username
    account = ConsoleAccount(username=username, display_name=display_name, password_hash=hash_password(password),
                             role=role, school_id=school_id)
    session.add(account)
    session.flush()
    record_audit(session, actor, "account.create", "console_account", account.id, school_id=school_id,
                 after={"username": username, "role": role, "school_id": school_id})
    return account


def _display_name(value: str) -> str:
    try:
        return identity.display_name(value)
    except ValueError as exc:
        raise Refused("bad_display_name", f"显示名称{exc}") from exc


def _failures(session: Session, column: Any, value: str, since: datetime) -> int:
    return session.scalar(select(func.count()).select_from(SignInAttempt)
                          .where(column == value, SignInAttempt.at >= since, SignInAttempt.succeeded.is_(False))) or 0


def authenticate(session: Session, username: str, password: str, ip: str, now: datetime,
                 totp_code: str | None = None) -> ConsoleAccount:
    """The account for these credentials, or Refused. Every attempt is recorded (the caller
    commits either way, so failures count even when the answer is a refusal)."""
    username = normalise_username(username)[:64]
    since = now - WINDOW
    own = _failures(session, SignInAttempt.username, username, since)
    if own >= MAX_FAILURES_PER_USERNAME or (
            own >= FEW_FAILURES and _failures(session, SignInAttempt.ip, ip, since) >= MAX_FAILURES_PER_IP):
        raise Refused("rate_limited", "尝试次数过多，请 15 分钟后再试")
    account = session.scalar(select(ConsoleAccount).where(ConsoleAccount.username == username))
    ok = _password_matches(account.password_hash if account else _DUMMY_HASH, password) and account is not None
    if ok and account is not None and account.totp_secret:
        ok = totp_code is not None and pyotp.TOTP(account.totp_secret).verify(totp_code.strip(), for_time=now,
                                                                               valid_window=1)
        if not ok:
            session.add(SignInAttempt(username=username, ip=ip, succeeded=False, at=now))
            raise Refused("totp_required" if not totp_code else "bad_totp",
                          "请输入身份验证器中的 6 位动态码" if not totp_code else "动态码不正确")
    if not ok or account is None or account.disabled:
        session.add(SignInAttempt(username=username, ip=ip, succeeded=False, at=now))
        raise Refused("bad_credentials", "用户名或密码不正确")
    session.add(SignInAttempt(username=username, ip=ip, succeeded=True, at=now))
    if _hasher.check_needs_rehash(account.password_hash):
        account.password_hash = hash_password(password)
    account.last_sign_in_at = now
    return account


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def change_password(session: Session, account: ConsoleAccount, old: str, new: str) -> None:
    if not _password_matches(account.password_hash, old):
        raise Refused("bad_credentials", "原密码不正确")
    check_password_strength(new, account.username)
    account.password_hash = hash_password(new)
    account.session_epoch += 1
    record_audit(session, Actor.of(account), "account.password", "console_account", account.id,
                 school_id=account.school_id)


def set_disabled(session: Session, actor: Actor, account_id: int, disabled: bool) -> ConsoleAccount:
    account = session.get(ConsoleAccount, account_id)
    if account is None:
        raise Refused("not_found", "账号不存在")
    before = {"disabled": account.disabled}
    account.disabled = disabled
    account.session_epoch += 1
    record_audit(session, actor, "account.disable" if disabled else "account.enable", "console_account", account.id,
                 school_id=account.school_id, before=before, after={"disabled": disabled})
    return account


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(account: ConsoleAccount, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account.username, issuer_name="心委培训平台")


def enable_totp(session: Session, account: ConsoleAccount, secret: str, code: str, now: datetime) -> None:
    if not pyotp.TOTP(secret).verify(code.strip(), for_time=now, valid_window=1):
        raise Refused("bad_totp", "动态码不正确，请核对手机时间后重试")
    account.totp_secret = secret
    account.session_epoch += 1
    record_audit(session, Actor.of(account), "account.totp_enable", "console_account", account.id)


# -- invites ------------------------------------------------------------------------------------

def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_invite(session: Session, actor: Actor, *, role: str, display_name: str, school_id: int | None,
                  now: datetime) -> tuple[ConsoleInvite, str]:
    """An invite and its one-time token (only its hash is stored: show the link once)."""
    _check_role(session, role, school_id)
    token = secrets.token_urlsafe(24)
    invite = ConsoleInvite(token_hash=_token_hash(token), role=role, school_id=school_id,
                           display_name=_display_name(display_name) or "未命名", invited_by=actor.account_id,
                           expires_at=now + timedelta(days=INVITE_DAYS))
    session.add(invite)
    session.flush()
    record_audit(session, actor, "invite.create", "console_invite", invite.id, school_id=school_id,
                 after={"role": role, "school_id": school_id, "display_name": invite.display_name})
    return invite, token


def open_invite(session: Session, token: str, now: datetime, *, lock: bool = False) -> ConsoleInvite:
    query = select(ConsoleInvite).where(ConsoleInvite.token_hash == _token_hash(token))
    if lock:
        query = query.with_for_update()
    invite = session.scalar(query)
    if invite is None or invite.used_at is not None or invite.expires_at <= now:
        raise Refused("invite_invalid", "邀请链接无效、已使用或已过期，请联系平台工作人员重新邀请")
    return invite


def accept_invite(session: Session, token: str, *, username: str, password: str, now: datetime) -> ConsoleAccount:
    invite = open_invite(session, token, now, lock=True)
    account = create_account(session, username=username, password=password, role=invite.role,
                             display_name=invite.display_name, school_id=invite.school_id,
                             actor=Actor(invite.invited_by, "invite"))
    # Single use even under a double submit: the row lock (PostgreSQL) or the write lock (SQLite)
    # serialises the two, and the second sees used_at.
    invite.used_at = now
    invite.account_id = account.id
    return account

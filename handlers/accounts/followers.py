"""Accounts: the user behind an openid, following and unfollowing the official account."""
from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from handlers.messages import Inbound, Reply, TextReply, Write
from handlers.outbox import record_job
from models import User

WELCOME = (
    "欢迎关注毫末高校心理委员工作平台！\n\n"
    "点击左下角「毫末平台」→「心委培训」开始学习：先完善个人信息并完成身份认证，"
    "再按顺序观看 14 个专题视频并完成测试，总分达到 85 分即可领取心理委员培训合格证书。\n\n"
    "证书在右下角「我的」→「显示证书」查看；有问题直接在这里留言，工作人员会回复你。"
)


# Built once (the webhook's hot path: building a statement per message cost more than running it).
_BY_OPENID = select(User).where(User.openid == bindparam("openid"))


@lru_cache(maxsize=4)
def _create_quietly(dialect: str):  # type: ignore[no-untyped-def]
    """INSERT ... ON CONFLICT (openid) DO NOTHING: the follower, unless already there."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(User).values(openid=bindparam("openid"), subscribed=False, created_at=bindparam("now")) \
        .on_conflict_do_nothing(index_elements=["openid"])


@lru_cache(maxsize=4)
def _create(dialect: str):  # type: ignore[no-untyped-def]
    """The same, RETURNING the new user as an ORM entity."""
    return _create_quietly(dialect).returning(User)


def ensure_user_write(dialect: str, openid: str, *, now: datetime) -> Write:
    """`ensure_user` as a planned flow's write: the follower's row, created if new. The flow's
    later writes find it by openid (`USER_ID_BY_OPENID`), so nothing waits for its id."""
    return Write(_create_quietly(dialect), {"openid": openid, "now": now})


# The follower's id where a statement needs it and has only the openid (bind "openid").
USER_ID_BY_OPENID = select(User.id).where(User.openid == bindparam("openid")).scalar_subquery()


def ensure_user(session: Session, openid: str, *, now: datetime) -> User:
    """The user for `openid`, created if new; safe when two deliveries race. One round trip for a
    known follower, two for a new one (the insert returns the row); three only when another
    delivery created it in between."""
    user = session.scalar(_BY_OPENID, {"openid": openid})
    if user is not None:
        return user
    created = session.scalar(_create(session.get_bind().dialect.name), {"openid": openid, "now": now})
    if created is not None:
        return created
    return session.scalars(_BY_OPENID, {"openid": openid}).one()


def subscribe(session: Session, inbound: Inbound) -> Reply:
    user = ensure_user(session, inbound.openid, now=inbound.sent_at)
    user.subscribed = True
    user.subscribed_at = inbound.sent_at
    # Calling WeChat back would eat into the 5-second reply window: a job does it.
    record_job(session, SYNC_SUBSCRIBER, {"openid": inbound.openid})
    session.flush()
    return TextReply(WELCOME)


SYNC_SUBSCRIBER = "accounts.sync_subscriber"


def apply_user_info(session: Session, openid: str, info: dict[str, object], *, now: datetime) -> User:
    """Store what /cgi-bin/user/info says about a follower (a job calls WeChat, then this)."""
    user = ensure_user(session, openid, now=now)
    user.subscribed = bool(info.get("subscribe"))
    unionid = info.get("unionid")
    scene = info.get("subscribe_scene")
    user.unionid = str(unionid)[:64] if unionid else user.unionid
    user.subscribe_scene = str(scene)[:32] if scene else user.subscribe_scene
    user.synced_at = now
    session.flush()
    return user


def unsubscribe(session: Session, inbound: Inbound) -> None:
    # The user can no longer see replies; recording it stops pushes (43004) and
    # keeps their training history intact for when they come back.
    user = ensure_user(session, inbound.openid, now=inbound.sent_at)
    user.subscribed = False
    user.unsubscribed_at = inbound.sent_at
    session.flush()
    return None


def sign_out(session: Session, user_id: int, now: datetime) -> None:
    """Signed out on the server: every cookie issued before `now` stops working (web/auth.py)."""
    session.execute(update(User).where(User.id == user_id).values(signed_out_at=now))

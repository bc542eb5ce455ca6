"""Push deliveries: recording each send's outcome, what an errcode means, and the list a school admin reads."""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from handlers.messages import Inbound
from models import (
    ConsoleAccount,
    PushDelivery,
    User,
)
from models.push import APPROVAL_NOTICE, DIGEST, PASS_NOTICE
from models.status import PushDeliveryStatus

log = logging.getLogger(__name__)

SEND_JOB = "pushes.send"

# A send is tried this often (timeouts, WeChat busy) before its delivery is marked failed.
MAX_ATTEMPTS = 5

# Errcodes that no retry can fix: the delivery fails at once.
FINAL_ERRCODES = frozenset({
    40003,  # invalid openid
    40036, 40037,  # invalid template_id
    43004,  # the admin does not follow the account
    43101,  # the admin refused this kind of message
    47003,  # template data invalid
})
NOT_FOLLOWING = 43004

STATUS_TEXT = {PushDeliveryStatus.QUEUED: "排队中", PushDeliveryStatus.SENT: "已发送",
               PushDeliveryStatus.FAILED: "发送失败", PushDeliveryStatus.DELIVERED: "已送达",
               PushDeliveryStatus.REJECTED: "未送达"}
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


# -- sending results -------------------------------------------------------------------------

def record_sent(session: Session, delivery_id: int, msgid: str, now: datetime) -> None:
    """WeChat accepted the message. A delivery already finished (an event raced ahead) keeps its state."""
    delivery = session.get(PushDelivery, delivery_id)
    if delivery is None:
        return
    delivery.attempts += 1
    delivery.updated_at = now
    if delivery.status in (PushDeliveryStatus.QUEUED, PushDeliveryStatus.FAILED):
        delivery.status, delivery.msgid, delivery.sent_at = PushDeliveryStatus.SENT, msgid[:32], now
        delivery.errcode = delivery.errmsg = None
    session.flush()


UNBOUND = "unbound"


def still_to_send(session: Session, delivery_id: int) -> bool:
    """Whether a delivery should go out now: still queued, and its admin still bound to the same
    WeChat user and enabled. One that should not is marked failed here (the caller commits)."""
    delivery = session.get(PushDelivery, delivery_id)
    if delivery is None or delivery.status != PushDeliveryStatus.QUEUED:
        return False
    account = session.get(ConsoleAccount, delivery.account_id)
    user = session.get(User, account.wechat_user_id) if account and account.wechat_user_id else None
    if account is None or account.disabled or user is None or user.openid != delivery.openid:
        delivery.status, delivery.errcode, delivery.errmsg = PushDeliveryStatus.FAILED, None, UNBOUND
        delivery.updated_at = datetime.now(timezone.utc)
        session.flush()
        return False
    return True


def record_attempt_failed(session: Session, delivery_id: int, errcode: int | None, errmsg: str, now: datetime,
                          *, final: bool) -> None:
    """A send that failed: retried later (the delivery stays queued, the error is shown) or for good.
    43004 also records that the admin's WeChat does not follow the account."""
    delivery = session.get(PushDelivery, delivery_id)
    if delivery is None or delivery.status not in (PushDeliveryStatus.QUEUED, PushDeliveryStatus.FAILED):
        return
    delivery.attempts += 1
    delivery.errcode, delivery.errmsg, delivery.updated_at = errcode, errmsg[:500], now
    if final:
        delivery.status = PushDeliveryStatus.FAILED
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
        delivery.status, delivery.errcode, delivery.errmsg = PushDeliveryStatus.DELIVERED, None, None
    else:
        reason = status.split(":", 1)[1].strip() if ":" in status else status
        delivery.status, delivery.errcode = PushDeliveryStatus.REJECTED, None
        delivery.errmsg = reason[:500] or "failed"
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

"""A student's copy of their data: a student who did everything gets each of those rows, and nothing of anyone else."""
from __future__ import annotations

import json

from sqlalchemy import select

from database import get_database
from handlers.learning.enrolment import enroll
from handlers.learning.quiz import start_attempt
from handlers.privacy.export import collect, student_of
from handlers.privacy.registry import students_tables
from models import (
    Consent,
    Conversation,
    DataRequest,
    InboundEvent,
    InboxMessage,
    PaymentFlag,
    PushBindToken,
    PushDelivery,
    StaffReply,
    WatchSession,
)
from models.base import utcnow
from tests.console_helpers import make_staff
from tests.factories import ask, at, paid_order, watch_fully


def everything(shop) -> int:  # type: ignore[no-untyped-def]
    """The shop's first graduate also watched, tested, asked for a correction, wrote to staff and
    got answers, bound an admin's pushes: one row (at least) in every table that can hold a student."""
    app, user_id = shop["app"], shop["user_id"]
    order = paid_order(shop)
    ask(app, user_id, shop["cert_id"], {"holder_name": "林大满"})
    staff_id = make_staff(app)
    now = utcnow()
    with get_database(app).sessions() as session:
        enrollment = enroll(session, user_id, "demo-course")
        done = watch_fully(session, enrollment, "t01", 0, 10)
        start_attempt(session, enrollment, "t01", at(done + 1))
        conversation = Conversation(user_id=user_id, last_preview="想问证书的事")
        session.add(conversation)
        session.flush()
        session.add_all([
            InboxMessage(user_id=user_id, direction="in", msg_type="text", content="老师好，想问证书的事"),
            StaffReply(conversation_id=conversation.id, user_id=user_id, account_id=staff_id, content="同学你好"),
            InboundEvent(dedup_key="msg:1", openid="o_cert_0", msg_type="text", sent_at=now),
            PushBindToken(account_id=staff_id, token_hash="f" * 64, expires_at=now, used_at=now,
                          used_by_user_id=user_id),
            PushDelivery(account_id=staff_id, openid="o_cert_0", school_id=order.school_id, kind="digest",
                         template_id="t", client_msg_id="c1", payload={"name": "林小满一"}),
            PaymentFlag(reason="wrong_amount", key="wrong_amount:x", order_id=order.id, detail={}),
            Consent(user_id=user_id, purpose="notice", notice_version=1, granted=True, at=now),
            DataRequest(user_id=user_id, kind="copy", status="done", run_after=now, due_at=now, finished_at=now),
        ])
        session.commit()
    return user_id


def test_a_student_who_did_everything_gets_every_row_and_nobody_elses(shop, graduates) -> None:  # type: ignore[no-untyped-def]
    app = shop["app"]
    user_id = everything(shop)
    with get_database(app).sessions() as session:
        copy = collect(session, student_of(session, user_id))
        # Every table the registry says can hold a student's data has this student's rows in the copy.
        empty = [d.table for d in students_tables() if not copy[d.table]]
        assert empty == [], f"no rows in the copy for {empty}: the fixture or the registry's finder is wrong"
        assert copy["users"][0]["openid"] == "o_cert_0"
        assert copy["student_profiles"][0]["real_name"] == "林小满一"
        assert copy["roster_entries"][0]["student_number"] == "C000"
        assert copy["watch_sessions"][0]["id"] == session.scalar(select(WatchSession.id))
        assert copy["inbox_messages"][0]["content"] == "老师好，想问证书的事"
        assert copy["certificate_orders"][0]["recipient_name"]
        assert copy["users"][0]["created_at"].endswith("+08:00")  # China time, said so

        # ...and nothing of the other graduates, anywhere in it.
        text = json.dumps(copy, ensure_ascii=False)
        for other in range(1, 5):
            for value in (f"o_cert_{other}", f"林小满{'一二三四五'[other]}", f"C00{other}"):
                assert value not in text, value
        others = collect(session, student_of(session, graduates[1]))
        assert others["certificate_orders"] == [] and others["inbox_messages"] == []

"""Features built apart, checked together: the school counters stay equal to a recount through
payments, refunds, roster uploads and approvals, and pushes and the inbox see the same students."""
from __future__ import annotations

from sqlalchemy import select

from database import get_database
from handlers.accounts.identity import ProfileForm, submit_profile
from handlers.audit import Actor
from handlers.learning import school_progress
from handlers.payments import refunds
from handlers.schools.approvals import decide
from handlers.schools.roster import merge_roster
from handlers.schools.roster_files import parse_roster
from models import SchoolStat, StudentProfile, User
from models.base import utcnow
from tests.factories import start_paying, the_order
from wechat.pay import get_wechat_pay

# The payments tests' fixture, used here by name (a paper certificate claimed, the app over HTTP).


def _counters(session, school_id):  # type: ignore[no-untyped-def]
    return {(r.course_id, r.name): r.value for r in session.scalars(
        select(SchoolStat).where(SchoolStat.school_id == school_id)) if r.value}


def _equal_to_a_recount(app, school_id):  # type: ignore[no-untyped-def]
    """The maintained counters, after checking they equal what a recount from the rows gives."""
    with get_database(app).sessions() as session:
        kept = _counters(session, school_id)
        school_progress.recount(session, school_id)
        session.flush()
        assert _counters(session, school_id) == kept
        session.rollback()
    return {name: value for (_, name), value in kept.items()}


def test_counters_follow_payments_refunds_roster_uploads_and_approvals(shop) -> None:  # type: ignore[no-untyped-def]
    app = shop["app"]
    with get_database(app).sessions() as session:
        school_id = session.scalar(select(StudentProfile.school_id).where(StudentProfile.user_id == shop["user_id"]))
        # The graduates fixture marks passes directly, not through the quiz flow that counts them:
        # start from a recount, as a deploy's backfill would.
        school_progress.rebuild_progress(session, school_id)
        school_progress.recount(session, school_id)
        session.commit()
    assert _equal_to_a_recount(app, school_id)["cert.paper.awaiting_payment"] == 1

    # Paid through WeChat Pay's notification: the dashboard's payment state moves with it.
    start_paying(shop)
    order = the_order(app)
    fake = shop["fake"].pay
    assert fake.pay(fake.find(order.out_trade_no)) == [204]
    counted = _equal_to_a_recount(app, school_id)
    assert counted["cert.paper.paid"] == 1 and "cert.paper.awaiting_payment" not in counted

    # Refunded by staff: back to awaiting payment, in the counters too.
    with get_database(app).sessions() as session:
        plan = refunds.refund_plan(session, order.id)
        session.rollback()
        result = get_wechat_pay(app).refund_order(
            out_trade_no=plan.out_trade_no,
            out_refund_no=refunds.refund_number(plan),
            total_fen=plan.total_fen,
            refund_fen=plan.total_fen,
            reason="测试",
        )
        refunds.apply_refund(session, order.id, result, "staff:wang", "测试", utcnow())
        session.commit()
    counted = _equal_to_a_recount(app, school_id)
    assert counted["cert.paper.awaiting_payment"] == 1 and "cert.paper.paid" not in counted

    # Two students wait for approval; a roster upload verifies one, the admin rejects the other.
    with get_database(app).sessions() as session:
        waiting = []
        for i, (name, number) in enumerate((("周末", "R001"), ("吴雨", "R002"))):
            user = User(openid=f"o_cross_{i}")
            session.add(user)
            session.flush()
            waiting.append(submit_profile(session, user.id, ProfileForm(school_id, name, "心理学院", number, "2025级",
                                                                        "13900000000"), now=utcnow()).id)
        session.commit()
    before = _equal_to_a_recount(app, school_id)
    assert before["profiles.pending"] == 2
    admin = Actor(None, "school:test", school_id)
    with get_database(app).sessions() as session:
        upload = merge_roster(session, admin, school_id, parse_roster("姓名,学号\n周末,R001\n".encode()), "r.csv",
                              now=utcnow())
        assert upload.verified == 1
        session.commit()
    with get_database(app).sessions() as session:
        decide(session, admin, school_id, waiting[1], approve=False, reason="不是本校学生", now=utcnow())
        session.commit()
    after = _equal_to_a_recount(app, school_id)
    assert after["profiles.verified"] == before["profiles.verified"] + 1
    assert (
        after.get("profiles.pending", 0) == 0 and after["profiles.rejected"] == before.get("profiles.rejected", 0) + 1
    )

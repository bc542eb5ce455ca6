"""Identity: profiles checked field by field, verified against rosters or by the school admin, one holder per number."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from database import get_database
from handlers.accounts.identity import (
    NumberTaken,
    ProfileForm,
    ProfileInvalid,
    ProfileLocked,
    printed_fields,
    profile_of,
    review,
    submit_profile,
)
from models import RosterEntry, School, StudentProfile, User
from models.base import utcnow


@pytest.fixture
def world(app):  # type: ignore[no-untyped-def]
    """Two schools (one with a roster) and three WeChat users."""
    with get_database(app).sessions() as session:
        rostered, plain = School(name="毫末示范大学"), School(name="无名单学院")
        users = [User(openid=f"o_id_{i}") for i in range(3)]
        session.add_all([rostered, plain, *users])
        session.flush()
        session.add(RosterEntry(school_id=rostered.id, student_number="2024001", real_name="张 三", college="心理学院"))
        session.commit()
        return {"rostered": rostered.id, "plain": plain.id, "users": [u.id for u in users]}


def form(school_id: int, **changes: str) -> ProfileForm:
    values = dict(real_name="张三", college="心理学院", student_number="2024001", grade="2024级", phone="13800138000")
    values.update(changes)
    return ProfileForm(school_id=school_id, **values)


def submit(app, user_id: int, f: ProfileForm) -> StudentProfile:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        profile = submit_profile(session, user_id, f, now=utcnow())
        session.commit()
        return profile


def test_a_roster_match_is_verified_at_once_after_normalising(app, world) -> None:  # type: ignore[no-untyped-def]
    # Full-width digits and stray spaces, as phones type them.
    profile = submit(
        app,
        world["users"][0],
        form(world["rostered"], student_number="２０２４００１ ", real_name=" 张三 ", phone="+86 138-0013-8000"),
    )
    assert (profile.status, profile.verified_via) == ("verified", "roster")
    assert (profile.student_number, profile.phone) == ("2024001", "13800138000")


def test_a_roster_mismatch_waits_for_the_admin(app, world) -> None:  # type: ignore[no-untyped-def]
    profile = submit(app, world["users"][0], form(world["rostered"], real_name="李四"))
    assert profile.status == "pending"


def test_without_a_roster_the_admin_approves_or_rejects(app, world) -> None:  # type: ignore[no-untyped-def]
    sessions = get_database(app).sessions
    profile = submit(app, world["users"][0], form(world["plain"]))
    assert profile.status == "pending"
    with sessions() as session:
        # Another school's admin cannot see it, let alone approve it.
        assert review(session, profile.id, world["rostered"], "admin@other", approve=True, now=utcnow()) is None
        with pytest.raises(ProfileInvalid):
            review(session, profile.id, world["plain"], "admin@plain", approve=False, reason="  ", now=utcnow())
        rejected = review(session, profile.id, world["plain"], "admin@plain", approve=False, reason="学号与学籍不符",
                          now=utcnow())
        session.commit()
        assert rejected is not None and rejected.status == "rejected"
    # A rejected student may submit again (and the number is free again meanwhile).
    again = submit(app, world["users"][0], form(world["plain"], student_number="2024009"))
    assert again.status == "pending" and again.reject_reason is None
    with sessions() as session:
        approved = review(session, again.id, world["plain"], "admin@plain", approve=True, now=utcnow())
        session.commit()
        assert approved is not None and (approved.status, approved.verified_via) == ("verified", "admin")


def test_a_confirmed_profile_is_never_silently_edited(app, world) -> None:  # type: ignore[no-untyped-def]
    submit(app, world["users"][0], form(world["rostered"]))
    with pytest.raises(ProfileLocked):
        submit(app, world["users"][0], form(world["rostered"], real_name="张三丰"))
    with get_database(app).sessions() as session:
        assert profile_of(session, world["users"][0]).real_name == "张三"


def test_one_student_number_one_wechat_user(app, world) -> None:  # type: ignore[no-untyped-def]
    submit(app, world["users"][0], form(world["rostered"]))
    with pytest.raises(NumberTaken) as err:
        submit(app, world["users"][1], form(world["rostered"], real_name="张三"))
    assert "工作人员" in err.value.message
    # The same number at another school is another student.
    assert submit(app, world["users"][1], form(world["plain"])).status == "pending"


def test_concurrent_claims_leave_one_holder(app, world) -> None:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(3)
    outcomes: list[str] = []

    def claim(user_id: int) -> None:
        barrier.wait()
        try:
            submit(app, user_id, form(world["plain"], student_number="2024777"))
            outcomes.append("held")
        except NumberTaken:
            outcomes.append("taken")

    threads = [threading.Thread(target=claim, args=(u,)) for u in world["users"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["held", "taken", "taken"]
    with get_database(app).sessions() as session:
        assert len(session.scalars(select(StudentProfile)).all()) == 1


@pytest.mark.parametrize("field,value", [
    ("real_name", "<script>alert(1)</script>"), ("real_name", "张"), ("real_name", "张三123"),
    ("student_number", "../../etc"), ("student_number", "1"), ("phone", "1380013800"), ("phone", "23800138000"),
    ("college", "x"), ("grade", ""),
])
def test_bad_fields_are_named(app, world, field: str, value: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProfileInvalid) as err:
        submit(app, world["users"][0], form(world["plain"], **{field: value}))
    assert field in err.value.errors
    with get_database(app).sessions() as session:
        assert session.scalars(select(StudentProfile)).all() == []


def test_unknown_school_is_refused(app, world) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProfileInvalid) as err:
        submit(app, world["users"][0], form(999_999))
    assert "school_id" in err.value.errors


def test_the_student_confirms_exactly_what_is_printed(app, world) -> None:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        assert printed_fields(session, form(world["rostered"])) == {
            "姓名": "张三", "学校": "毫末示范大学", "学院": "心理学院", "学号": "2024001", "年级": "2024级"}

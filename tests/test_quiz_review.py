"""What a test's result reveals (policy as data) and fresh draws on retakes from a larger bank."""
from __future__ import annotations

from datetime import timedelta

import pytest

from database import get_database
from handlers.accounts.identity import ProfileForm, submit_profile
from handlers.catalog.loader import load_catalog, parse_catalog
from handlers.learning.enrolment import enroll, progress
from handlers.learning.quiz import review_sheet, start_attempt, submit_attempt
from handlers.learning.watching import heartbeat, start_watch
from models import Question, RosterEntry, School, User
from models.base import utcnow
from tests.factories import course, problems_of, q, to_toml

T0 = utcnow()


def bank_course(**overrides) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """One topic whose bank has 8 questions of 10 points; each test draws 4 of them (40 points),
    plus a second topic of 60 points so the course adds up to 100."""
    data = course(on_topic_failed="retry", **overrides)
    data["topics"] = [
        {"code": "t01", "title": "专题一", "summary": "概要", "video": {"url": "demo:demo-t01", "seconds": 10},
         "test_questions": 4, "questions": [q(f"t01-q{i}", 10) for i in range(1, 9)]},
        {"code": "t02", "title": "专题二", "summary": "概要", "video": {"url": "demo:demo-t01", "seconds": 10},
         "questions": [q("t02-q1", 60)]},
    ]
    return data


def setup(app, data):  # type: ignore[no-untyped-def]
    session = get_database(app).sessions().__enter__()
    load_catalog(session, parse_catalog(to_toml(data), "bank.toml"), "bank.toml")
    school, student = School(name="题库大学"), User(openid="o_bank")
    session.add_all([school, student])
    session.flush()
    session.add(RosterEntry(school_id=school.id, student_number="B001", real_name="吴九"))
    submit_profile(session, student.id, ProfileForm(school.id, "吴九", "教育学院", "B001", "2023级", "13900000000"),
                   now=utcnow())
    enrollment = enroll(session, student.id, "demo-course")
    session.commit()
    watch = start_watch(session, enrollment, "t01", T0)
    session.commit()
    user_id = enrollment.user_id
    beat = heartbeat(session.get_bind(), user_id, watch.id, 1, 10, T0 + timedelta(seconds=10))
    assert beat.completed
    return session, enrollment


def blank(session, enrollment, t: float):  # type: ignore[no-untyped-def]
    attempt = start_attempt(session, enrollment, "t01", T0 + timedelta(seconds=t))
    return submit_attempt(session, enrollment.user_id, attempt.id, {}, T0 + timedelta(seconds=t + 1)).attempt


def right(session, attempt) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    return {str(d["question_id"]): list(session.get(Question, d["question_id"]).answer) for d in attempt.draw}


def test_the_catalog_checks_the_new_keys() -> None:
    wrong = course(max_playback_rate=8, review_on_fail="everything", review_answers="always")
    messages = " ".join(p.message for p in problems_of(wrong))
    assert "最高播放倍速" in messages and "测试未通过时显示的内容" in messages and "何时显示正确答案" in messages
    data = bank_course()
    data["topics"][0]["test_questions"] = 9
    assert "每次测试抽取的题数" in " ".join(p.message for p in problems_of(data))
    data = bank_course()
    data["topics"][0]["questions"][0]["points"] = 5
    assert "分值须相同" in " ".join(p.message for p in problems_of(data))


def test_retakes_draw_fresh_questions_until_the_bank_is_used_up(app) -> None:  # type: ignore[no-untyped-def]
    session, enrollment = setup(app, bank_course())
    first = blank(session, enrollment, 20)
    second = blank(session, enrollment, 40)
    ids = lambda a: {d["question_id"] for d in a.draw}  # noqa: E731
    assert len(ids(first)) == len(ids(second)) == 4
    assert ids(first).isdisjoint(ids(second))  # 8 in the bank, 4 a test: two fresh sets
    third = blank(session, enrollment, 60)
    assert len(ids(third)) == 4
    # What a test is worth: the drawn number of questions, not the bank (8 x 10).
    assert first.max_score == 40 and progress(session, enrollment).topics[0].max_score == 40
    session.close()


def test_what_each_test_is_worth_follows_the_catalog_and_a_new_version(app) -> None:  # type: ignore[no-untyped-def]
    session, enrollment = setup(app, bank_course())
    assert [t.max_score for t in progress(session, enrollment).topics] == [40, 60]  # 4 drawn x 10; all of t02
    # A changed file is a new version with its own worth (kept per version, never the old one's).
    data = bank_course()
    data["topics"][0]["test_questions"] = 2
    data["topics"][1]["questions"] = [q("t02-q1", 50), q("t02-q2", 30)]
    load_catalog(session, parse_catalog(to_toml(data), "bank.toml"), "bank.toml")
    session.commit()
    assert [t.max_score for t in progress(session, enrollment).topics] == [20, 80]
    session.close()


def test_a_failed_attempt_shows_which_were_wrong_and_no_key_until_the_topic_is_passed(app) -> None:  # type: ignore[no-untyped-def]
    session, enrollment = setup(app, bank_course())
    failed = blank(session, enrollment, 20)
    level, sheet = review_sheet(session, failed)
    assert level == "wrong" and len(sheet) == 4
    assert all(row["answer"] == [] and row["explanation"] is None and row["correct"] is False for row in sheet)
    retake = start_attempt(session, enrollment, "t01", T0 + timedelta(seconds=40))
    passed = submit_attempt(session, enrollment.user_id, retake.id, right(session, retake),
                            T0 + timedelta(seconds=41)).attempt
    assert passed.passed
    level, sheet = review_sheet(session, passed)
    assert level == "answers" and all(row["answer"] and row["explanation"] for row in sheet)
    # Once the topic is passed, the earlier failed attempt may show its key too.
    assert review_sheet(session, failed)[0] == "answers"
    session.close()


@pytest.mark.parametrize("on_fail,answers,failed_level,passed_level", [
    ("score_only", "after_pass", "score", "answers"),
    ("wrong_questions", "never", "wrong", "wrong"),
    ("score_only", "never", "score", "wrong"),
])
def test_review_policy_is_data(app, on_fail, answers, failed_level, passed_level) -> None:  # type: ignore[no-untyped-def]
    session, enrollment = setup(app, bank_course(review_on_fail=on_fail, review_answers=answers))
    failed = blank(session, enrollment, 20)
    level, sheet = review_sheet(session, failed)
    assert level == failed_level and (sheet == [] if level == "score" else len(sheet) == 4)
    retake = start_attempt(session, enrollment, "t01", T0 + timedelta(seconds=40))
    passed = submit_attempt(session, enrollment.user_id, retake.id, right(session, retake),
                            T0 + timedelta(seconds=41)).attempt
    level, sheet = review_sheet(session, passed)
    assert level == passed_level
    if level != "answers":
        assert all(row["answer"] == [] and row["explanation"] is None for row in sheet)
    session.close()

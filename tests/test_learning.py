"""Learning flows: enrollment, ordered topics, server-judged watching, tests graded from the stored draw."""
from __future__ import annotations

import pytest
from sqlalchemy import select, update

from database import get_database
from handlers.accounts.identity import ProfileForm, submit_profile
from handlers.catalog.loader import load_catalog, parse_catalog
from handlers.errors import Refused
from handlers.learning.enrolment import enroll, progress, start_next_round
from handlers.learning.quiz import paper, review_sheet, start_attempt, submit_attempt
from handlers.learning.watching import heartbeat, start_watch
from models import CourseVersion, Enrollment, Question, QuizAttempt, RosterEntry, School, User, WatchSession
from models.base import utcnow
from tests.factories import answer_all, at, course, to_toml, watch_fully


@pytest.fixture
def db(app):  # type: ignore[no-untyped-def]
    """A session on a catalog (two topics: 10 s and 60 s videos) and a verified student."""
    with get_database(app).sessions() as session:
        load_catalog(session, parse_catalog(to_toml(course()), "demo.toml"), "demo.toml")
        school = School(name="测试大学")
        student, other = User(openid="o_learner"), User(openid="o_other")
        session.add_all([school, student, other])
        session.flush()
        session.add(RosterEntry(school_id=school.id, student_number="S001", real_name="王五"))
        session.add(RosterEntry(school_id=school.id, student_number="S002", real_name="赵六"))
        submit_profile(session, student.id, ProfileForm(school.id, "王五", "教育学院", "S001", "2023级", "13900000000"),
                       now=utcnow())
        submit_profile(session, other.id, ProfileForm(school.id, "赵六", "教育学院", "S002", "2023级", "13900000001"),
                       now=utcnow())
        session.commit()
        session.info["student"], session.info["other"] = student.id, other.id
        yield session


def states(db, enrollment) -> list[str]:  # type: ignore[no-untyped-def]
    return [t.state for t in progress(db, enrollment).topics]


def test_only_verified_students_enroll(app, db) -> None:  # type: ignore[no-untyped-def]
    stranger = User(openid="o_stranger")
    db.add(stranger)
    db.flush()
    with pytest.raises(Refused) as err:
        enroll(db, stranger.id, "demo-course")
    assert err.value.code == "no_profile"
    with pytest.raises(Refused):
        enroll(db, db.info["student"], "no-such-course")


def test_topics_unlock_in_order_and_tests_wait_for_the_video(db) -> None:  # type: ignore[no-untyped-def]
    enrollment = enroll(db, db.info["student"], "demo-course")
    assert states(db, enrollment) == ["watch", "locked"]
    with pytest.raises(Refused) as err:
        start_watch(db, enrollment, "t02", at(0))
    assert err.value.code == "locked"
    with pytest.raises(Refused) as err:
        start_attempt(db, enrollment, "t01", at(0))
    assert err.value.code == "not_watched"
    t = watch_fully(db, enrollment, "t01", 0, 10)
    assert states(db, enrollment) == ["test", "locked"]
    attempt = start_attempt(db, enrollment, "t01", at(t))
    graded = submit_attempt(db, enrollment.user_id, attempt.id, answer_all(db, attempt), at(t + 30))
    assert graded.attempt.passed and graded.attempt.score == 50
    assert states(db, enrollment) == ["done", "watch"]


def test_a_seek_to_the_end_or_a_forged_done_completes_nothing(db) -> None:  # type: ignore[no-untyped-def]
    enrollment = enroll(db, db.info["student"], "demo-course")
    watch = start_watch(db, enrollment, "t01", at(0))
    db.commit()
    jump = heartbeat(db.get_bind(), enrollment.user_id, watch.id, 1, 10, at(1))  # 10 s of video after 1 s
    assert not jump.accepted and jump.position == 0 and not jump.completed
    # Many fast beats cannot add up to more than real time either.
    for seq in range(2, 40):
        heartbeat(db.get_bind(), enrollment.user_id, watch.id, seq, 10, at(1 + seq * 0.01))
    assert states(db, enrollment)[0] == "watch"
    # A replayed beat (same sequence number) is refused.
    assert heartbeat(db.get_bind(), enrollment.user_id, watch.id, 39, 9, at(30)).reason == "stale or replayed"


def test_two_tabs_one_video(db) -> None:  # type: ignore[no-untyped-def]
    enrollment = enroll(db, db.info["student"], "demo-course")
    first = start_watch(db, enrollment, "t01", at(0))
    db.commit()
    second = start_watch(db, enrollment, "t01", at(1))
    db.commit()
    beat = heartbeat(db.get_bind(), enrollment.user_id, first.id, 1, 5, at(6))
    assert not beat.accepted and beat.reason == "another video or tab took over"
    assert heartbeat(db.get_bind(), enrollment.user_id, second.id, 1, 5, at(6)).accepted


def test_reopening_resumes_from_the_verified_position(db) -> None:  # type: ignore[no-untyped-def]
    enrollment = enroll(db, db.info["student"], "demo-course")
    watch = start_watch(db, enrollment, "t01", at(0))
    db.commit()
    heartbeat(db.get_bind(), enrollment.user_id, watch.id, 1, 4, at(4))
    heartbeat(db.get_bind(), enrollment.user_id, watch.id, 2, 6, at(6))
    again = start_watch(db, enrollment, "t01", at(100))
    db.commit()
    assert again.position == 6 and again.watched_seconds == 6
    # Continue from there: 3 more seconds reach the 90 % threshold of a 10 s video.
    assert heartbeat(db.get_bind(), enrollment.user_id, again.id, 1, 9, at(103)).completed


def test_another_students_watch_or_attempt_is_refused(db) -> None:  # type: ignore[no-untyped-def]
    enrollment = enroll(db, db.info["student"], "demo-course")
    t = watch_fully(db, enrollment, "t01", 0, 10)
    attempt = start_attempt(db, enrollment, "t01", at(t))
    watch = start_watch(db, enrollment, "t01", at(t))
    db.commit()
    with pytest.raises(Refused):
        heartbeat(db.get_bind(), db.info["other"], watch.id, 1, 1, at(t + 1))
    with pytest.raises(Refused):
        submit_attempt(db, db.info["other"], attempt.id, {}, at(t + 1))


def test_the_paper_never_carries_the_key_and_two_tabs_share_one_attempt(db) -> None:  # type: ignore[no-untyped-def]
    enrollment = enroll(db, db.info["student"], "demo-course")
    t = watch_fully(db, enrollment, "t01", 0, 10)
    attempt = start_attempt(db, enrollment, "t01", at(t))
    assert start_attempt(db, enrollment, "t01", at(t + 1)).id == attempt.id
    sheet = paper(db, attempt)
    assert {"answer", "explanation", "correct"}.isdisjoint(k for row in sheet for k in row)
    assert all({"value", "label", "text"} == set(o) for row in sheet for o in row["options"])
    with pytest.raises(Refused):
        review_sheet(db, attempt)


def test_double_submit_counts_once(db) -> None:  # type: ignore[no-untyped-def]
    enrollment = enroll(db, db.info["student"], "demo-course")
    t = watch_fully(db, enrollment, "t01", 0, 10)
    attempt = start_attempt(db, enrollment, "t01", at(t))
    first = submit_attempt(db, enrollment.user_id, attempt.id, answer_all(db, attempt, right=False), at(t + 5))
    second = submit_attempt(db, enrollment.user_id, attempt.id, answer_all(db, attempt, right=True), at(t + 6))
    assert first.first_submission and not second.first_submission
    assert second.attempt.score == first.attempt.score == 0
    level, review = review_sheet(db, second.attempt)
    # A failed attempt shows which questions were wrong, never the key or the explanations.
    assert level == "wrong"
    assert all(row["correct"] is False and row["answer"] == [] and row["explanation"] is None for row in review)


def test_a_failed_topic_means_the_video_again_then_a_new_draw(db) -> None:  # type: ignore[no-untyped-def]
    enrollment = enroll(db, db.info["student"], "demo-course")
    t = watch_fully(db, enrollment, "t01", 0, 10)
    failed = start_attempt(db, enrollment, "t01", at(t))
    submit_attempt(db, enrollment.user_id, failed.id, answer_all(db, failed, right=False), at(t + 5))
    assert states(db, enrollment) == ["watch", "locked"]
    with pytest.raises(Refused):
        start_attempt(db, enrollment, "t01", at(t + 6))
    t = watch_fully(db, enrollment, "t01", t + 10, 10)
    retry = start_attempt(db, enrollment, "t01", at(t))
    assert retry.id != failed.id
    submit_attempt(db, enrollment.user_id, retry.id, answer_all(db, retry), at(t + 5))
    assert states(db, enrollment) == ["done", "watch"]
    # Every attempt is kept.
    assert len(db.scalars(select(QuizAttempt).where(QuizAttempt.enrollment_id == enrollment.id)).all()) == 2


def test_a_total_under_the_pass_mark_starts_a_new_round_and_a_pass_is_recorded(db) -> None:  # type: ignore[no-untyped-def]
    enrollment = enroll(db, db.info["student"], "demo-course")
    t = 0.0
    # Topic 1 right (50 points); topic 2: only the 40-point question right (passes 60 % of 50? no: 40/50 = 80 %).
    for topic, seconds in (("t01", 10), ("t02", 60)):
        t = watch_fully(db, enrollment, topic, t, seconds)
        attempt = start_attempt(db, enrollment, topic, at(t))
        answers = answer_all(db, attempt)
        if topic == "t02":
            judge = next(i["question_id"] for i in attempt.draw if db.get(Question, i["question_id"]).kind == "judge")
            answers[str(judge)] = ["对"]  # the 10-point judge question wrong: 40 of 50
        submit_attempt(db, enrollment.user_id, attempt.id, answers, at(t + 5))
        t += 10
    current = progress(db, enrollment)
    assert (current.total, current.state) == (90, "passed")
    db.refresh(enrollment)
    assert enrollment.passed_at is not None and enrollment.total_score == 90


def test_round_failed_then_redo_all(db) -> None:  # type: ignore[no-untyped-def]
    db.execute(update(CourseVersion).values(pass_mark=95))
    enrollment = enroll(db, db.info["student"], "demo-course")
    t = 0.0
    for topic, seconds, right in (("t01", 10, True), ("t02", 60, False)):
        t = watch_fully(db, enrollment, topic, t, seconds)
        attempt = start_attempt(db, enrollment, topic, at(t))
        answers = answer_all(db, attempt, right=True)
        if not right:
            judge = next(i["question_id"] for i in attempt.draw if db.get(Question, i["question_id"]).kind == "judge")
            answers[str(judge)] = ["对"]
        submit_attempt(db, enrollment.user_id, attempt.id, answers, at(t + 5))
        t += 10
    assert progress(db, enrollment).state == "round_failed"  # 90 < 95
    start_next_round(db, enrollment)
    assert enrollment.round == 2
    assert states(db, enrollment) == ["watch", "locked"]
    with pytest.raises(Refused):
        start_next_round(db, enrollment)
    assert db.scalar(select(Enrollment.passed_at)) is None


def test_racing_beats_of_one_session_count_once(db) -> None:  # type: ignore[no-untyped-def]
    import threading

    enrollment = enroll(db, db.info["student"], "demo-course")
    watch = start_watch(db, enrollment, "t01", at(0))
    db.commit()
    barrier = threading.Barrier(4)
    beats = []

    def send(seq: int) -> None:
        barrier.wait()
        beats.append(heartbeat(db.get_bind(), enrollment.user_id, watch.id, seq, 3, at(3)))

    threads = [threading.Thread(target=send, args=(seq,)) for seq in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # However the four interleave, 3 seconds of video are counted once, not four times.
    db.expire_all()
    assert db.get(WatchSession, watch.id).watched_seconds == 3
    assert sum(b.accepted for b in beats) >= 1

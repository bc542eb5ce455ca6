"""Topic tests: a draw stored when the attempt starts, graded on the server, reviewed as the course allows."""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from handlers.errors import Refused
from handlers.learning import school_progress
from handlers.learning.enrolment import record_outcome, topic_state
from models import CourseVersion, Enrollment, Question, QuizAttempt, Topic

_random = random.SystemRandom()
_shuffle = _random.shuffle

# What a result page may show, from least to most (CourseVersion.review_on_fail / review_answers).
REVIEW_SCORE = "score"  # the score only
REVIEW_WRONG = "wrong"  # the score, and which questions were right or wrong
REVIEW_ANSWERS = "answers"  # the right options and the explanations too


@dataclass(frozen=True)
class Graded:
    attempt: QuizAttempt
    first_submission: bool  # False: this submit repeated one already counted


def start_attempt(session: Session, enrollment: Enrollment, topic_code: str, now: datetime) -> QuizAttempt:
    """The open attempt for this topic, or a new one with its own draw. Two tabs share it."""
    current, state = topic_state(session, enrollment, topic_code)
    if state.state == "watch":
        raise Refused("not_watched", "请先完整观看本专题视频，再开始测试。")
    if state.state == "done":
        raise Refused("done", "这个专题的测试已经通过。")
    open_attempt = session.scalar(
        select(QuizAttempt).where(QuizAttempt.enrollment_id == enrollment.id, QuizAttempt.round == enrollment.round,
                                  QuizAttempt.topic_code == topic_code, QuizAttempt.submitted_at.is_(None))
        .order_by(QuizAttempt.id.desc()).limit(1))
    if open_attempt is not None and open_attempt.version_id == current.version.id:
        return open_attempt
    questions = _draw(session, enrollment, state.topic)
    draw = []
    for question in questions:
        keys = [o["key"] for o in question.options]
        if question.kind != "judge":  # 对/错 keep their order
            _shuffle(keys)
        draw.append({"question_id": question.id, "options": keys})
    attempt = QuizAttempt(
        enrollment_id=enrollment.id, user_id=enrollment.user_id, round=enrollment.round, topic_code=topic_code,
        version_id=current.version.id, draw=draw, started_at=now, max_score=state.max_score,
    )
    session.add(attempt)
    session.flush()
    return attempt


def _draw(session: Session, enrollment: Enrollment, topic: Topic) -> list[Question]:
    """The questions of a new attempt, in a fresh random order. When the topic's test uses only
    part of its bank, the questions this student was given least often come first, so a retake
    draws a fresh set rather than the same questions reordered."""
    bank = list(topic.questions)
    _shuffle(bank)
    if topic.test_questions is None or topic.test_questions >= len(bank):
        return bank
    seen: dict[int, int] = {}
    for (draw,) in session.execute(select(QuizAttempt.draw).where(
            QuizAttempt.enrollment_id == enrollment.id, QuizAttempt.topic_code == topic.code)):
        for item in draw:
            seen[item["question_id"]] = seen.get(item["question_id"], 0) + 1
    bank.sort(key=lambda q: seen.get(q.id, 0))  # stable: ties keep the random order
    chosen = bank[:topic.test_questions]
    _shuffle(chosen)
    return chosen


def _questions(session: Session, attempt: QuizAttempt) -> dict[int, Question]:
    ids = [d["question_id"] for d in attempt.draw]
    return {q.id: q for q in session.scalars(select(Question).where(Question.id.in_(ids)))}


def paper(session: Session, attempt: QuizAttempt) -> list[dict[str, Any]]:
    """What the browser gets for an open attempt: texts and options in the drawn order,
    labelled A, B, C…; never the answer key or the explanation."""
    questions = _questions(session, attempt)
    sheet = []
    for number, item in enumerate(attempt.draw, 1):
        q = questions[item["question_id"]]
        texts = {o["key"]: o["text"] for o in q.options}
        sheet.append({
            "id": q.id, "number": number, "kind": q.kind, "points": q.points, "text": q.text,
            "options": [{"value": key, "label": chr(ord("A") + i) if q.kind != "judge" else key, "text": texts[key]}
                        for i, key in enumerate(item["options"])],
        })
    return sheet


def submit_attempt(session: Session, user_id: int, attempt_id: int, answers: dict[str, list[str]],
                   now: datetime) -> Graded:
    """Grade from the stored draw. A second submit (double tap, another tab) changes nothing
    and gets the first result."""
    attempt = session.scalar(select(QuizAttempt).where(QuizAttempt.id == attempt_id))
    if attempt is None or attempt.user_id != user_id:
        raise Refused("no_attempt", "测试记录不存在。")
    if attempt.submitted_at is not None:
        return Graded(attempt, first_submission=False)
    questions = _questions(session, attempt)
    clean: dict[str, list[str]] = {}
    score = 0
    for item in attempt.draw:
        q = questions[item["question_id"]]
        given = answers.get(str(q.id)) or []
        chosen = sorted({a for a in given if isinstance(a, str) and a in item["options"]})
        clean[str(q.id)] = chosen
        if chosen == sorted(q.answer):
            score += q.points
    enrollment = session.get(Enrollment, attempt.enrollment_id)
    version = session.get(CourseVersion, attempt.version_id)
    assert enrollment is not None and version is not None
    # The rules of the version the questions were drawn from, even if a newer one was loaded since.
    passed = score * 100 >= version.topic_pass_percent * attempt.max_score
    # Only the first submit counts: the row changes only while still open.
    counted = session.execute(
        update(QuizAttempt).where(QuizAttempt.id == attempt.id, QuizAttempt.submitted_at.is_(None))
        .values(submitted_at=now, answers=clean, score=score, passed=passed)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.refresh(attempt)
    if counted:
        school_progress.test_submitted(session, attempt)
        record_outcome(session, enrollment, now=now)
    return Graded(attempt, first_submission=bool(counted))


def review_level(session: Session, attempt: QuizAttempt) -> str:
    """How much a submitted attempt's result page shows, by the course version's policy: the
    right answers only once the student has passed this topic (a failed attempt's page must not
    hand out the key for the retake), and which questions were wrong unless the course says no."""
    version = session.get(CourseVersion, attempt.version_id)
    assert version is not None
    passed = attempt.passed or session.scalar(select(QuizAttempt.id).where(
        QuizAttempt.enrollment_id == attempt.enrollment_id, QuizAttempt.topic_code == attempt.topic_code,
        QuizAttempt.passed.is_(True)).limit(1)) is not None
    if passed and version.review_answers == "after_pass":
        return REVIEW_ANSWERS
    if passed or version.review_on_fail == "wrong_questions":
        return REVIEW_WRONG
    return REVIEW_SCORE


def review_sheet(session: Session, attempt: QuizAttempt) -> tuple[str, list[dict[str, Any]]]:
    """After submitting: the review level and each question as that level allows: the
    student's own choices and whether each was right; the key and the explanation only at
    REVIEW_ANSWERS; no questions at all at REVIEW_SCORE."""
    if attempt.submitted_at is None:
        raise Refused("open", "提交后才能查看解析。")
    level = review_level(session, attempt)
    if level == REVIEW_SCORE:
        return level, []
    questions = _questions(session, attempt)
    sheet = paper(session, attempt)
    for row in sheet:
        q = questions[row["id"]]
        mine = (attempt.answers or {}).get(str(q.id), [])
        row.update(chosen=mine, correct=sorted(mine) == sorted(q.answer))
        if level == REVIEW_ANSWERS:
            row.update(answer=list(q.answer), explanation=q.explanation)
        else:
            row.update(answer=[], explanation=None)
    return level, sheet

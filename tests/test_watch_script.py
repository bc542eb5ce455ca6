"""The script that earned a certificate in 3 seconds, run again over real HTTP on the real clock.

It opens watch sessions and posts heartbeats from four threads as fast as the server answers
(+3 s each, 10x claims, new sessions in a loop, distinct sequence numbers in parallel), then
tries to harvest the answer key from a blank test's result page. The topic's video is 10 s with
a 90 % threshold and a 2x cap: no client may finish it in under 4.5 s of wall time.
"""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from bench.watch_race import race_topic
from database import get_database
from models import Question, QuizAttempt
from tests.factories import CSRF, verify

VIDEO, THRESHOLD, RATE = 10, 0.9, 2.0


@pytest.fixture
def student(client, site):  # type: ignore[no-untyped-def]
    """The demo course (topic t01: a 10 s video) and a signed-in, verified student."""
    verify(client, site["school"])


def test_a_script_cannot_finish_a_topic_faster_than_the_video_allows(app, client, student, live_server) -> None:  # type: ignore[no-untyped-def]
    state = race_topic(client, live_server.url, "demo-course", "t01", CSRF, RATE, deadline_s=20, reopen_s=0.3)
    took = state["took"]
    assert state["done"], state
    print(f"script finished after {took:.2f} s: {state}")
    assert took >= THRESHOLD * VIDEO / RATE, f"completed after {took:.2f} s: {state}"
    # The loop ran (its refusals past 6 opens a minute are tested on simulated time in
    # test_watch_clock.py: how many opens fit in 4.5 s here depends on the machine's load).
    assert state["opens"] > 1 and state["beats"] > 100

    # The key harvest: a blank test, then its result page.
    client.get("/h5/courses/demo-course/topics/t01/test")
    with get_database(app).sessions() as db:
        attempt = db.scalars(select(QuizAttempt)).one()
        questions = list(db.scalars(select(Question).where(
            Question.id.in_([d["question_id"] for d in attempt.draw]))))
    assert client.post(f"/h5/attempts/{attempt.id}", data={"csrf_token": CSRF}).status_code == 302
    page = client.get(f"/h5/attempts/{attempt.id}").get_data(as_text=True)
    assert "本专题未通过" in page and re.search(r'class="score">0', page)
    assert page.count('data-correct="no"') == len(questions)  # which questions were wrong: all
    assert not re.search(r'class="option right"', page)  # no right option marked
    for question in questions:
        assert f"· {question.explanation}" not in page  # the explanation follows the right/wrong mark
    # The retake needs the video again (this course's on_topic_failed = rewatch).
    assert client.get("/h5/courses/demo-course/topics/t01/test").status_code == 403

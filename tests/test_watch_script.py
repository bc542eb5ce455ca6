"""The script that earned a certificate in 3 seconds, run again over real HTTP on the real clock.

It opens watch sessions and posts heartbeats from four threads as fast as the server answers
(+3 s each, 10x claims, new sessions in a loop, distinct sequence numbers in parallel), then
tries to harvest the answer key from a blank test's result page. The topic's video is 10 s with
a 90 % threshold and a 2x cap: no client may finish it in under 4.5 s of wall time.
"""
from __future__ import annotations

import re
import threading
import time

import pytest
import requests
from sqlalchemy import select

from database import get_database
from handlers.catalog import load_catalog, parse_catalog
from models import Question, QuizAttempt, RosterEntry, School, User
from tests.factories import CSRF, course, sign_in, to_toml, verify

VIDEO, THRESHOLD, RATE = 10, 0.9, 2.0


@pytest.fixture
def student(app, client):  # type: ignore[no-untyped-def]
    """The demo course (topic t01: a 10 s video) and a signed-in student on the roster."""
    with get_database(app).sessions() as session:
        load_catalog(session, parse_catalog(to_toml(course()), "demo.toml"), "demo.toml")
        school, user = School(name="测试大学"), User(openid="o_h5")
        session.add_all([school, user])
        session.flush()
        session.add(RosterEntry(school_id=school.id, student_number="H5001", real_name="钱七"))
        session.commit()
        school_id, user_id = school.id, user.id
    sign_in(client, user_id, "o_h5")
    verify(client, school_id)


def test_a_script_cannot_finish_a_topic_faster_than_the_video_allows(app, client, student, live_server) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    state = {"done": False, "verified": 0.0, "beats": 0, "accepted": 0, "opens": 0, "refused_opens": 0}
    lock = threading.Lock()
    session = {"watch": None}

    def open_session() -> None:
        answer = client.post("/h5/api/watch", data=dict(course="demo-course", topic="t01", csrf_token=CSRF))
        with lock:
            state["opens"] += 1
            if answer.status_code != 200:
                state["refused_opens"] += 1
                return
            body = answer.get_json()
            session["watch"] = {"id": body["watch_id"], "token": body["beat_token"], "seq": 0}

    def hammer(claim: float) -> None:
        http = requests.Session()
        while not state["done"] and time.monotonic() - started < 20:
            with lock:
                watch = session["watch"]
                watch["seq"] += 1
                form = {"watch_id": watch["id"], "seq": watch["seq"], "beat": watch["token"],
                        "position": state["verified"] + claim}
            body = http.post(f"{live_server.url}/h5/api/heartbeat", data=form, timeout=5).json()
            with lock:
                state["beats"] += 1
                state["accepted"] += bool(body.get("accepted"))
                if body.get("position") is not None and watch is session["watch"]:
                    state["verified"] = max(state["verified"], body["position"])
                if body.get("completed"):
                    state["done"] = True

    open_session()
    threads = [threading.Thread(target=hammer, args=(claim,)) for claim in (3, 3, 20, 2.9)]
    for thread in threads:
        thread.start()
    while not state["done"] and time.monotonic() - started < 20:
        time.sleep(0.3)
        open_session()  # a new session in a loop: no fresh allowance, and refused past the limit
    for thread in threads:
        thread.join()
    took = time.monotonic() - started
    assert state["done"], state
    print(f"script finished after {took:.2f} s: {state}")
    assert took >= THRESHOLD * VIDEO / RATE, f"completed after {took:.2f} s: {state}"
    assert state["refused_opens"] > 0 and state["beats"] > 100

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

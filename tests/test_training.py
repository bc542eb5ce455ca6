"""The 心委培训 H5 pages through HTTP: profile, course, topic, heartbeats, tests — and every refusal."""
from __future__ import annotations

import re

from sqlalchemy import select

from database import get_database
from models import Question, QuizAttempt, WatchSession
from tests.factories import CSRF, sign_in, verify
from web import clock


def test_anonymous_visitors_go_through_wechat_login(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/h5/courses/demo-course")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/h5/login?next=")


def test_profile_preview_shows_what_is_printed_then_locks(client, site) -> None:  # type: ignore[no-untyped-def]
    home = client.get("/h5/").get_data(as_text=True)
    assert "完善个人信息" in home
    fields = dict(school_id=str(site["school"]), real_name="钱七", college="心理学院", student_number="h5001",
                  grade="2024级", agree_notice="1", agree_sharing="1", csrf_token=CSRF, step="preview")
    page = client.post("/h5/profile", data=fields).get_data(as_text=True)
    assert re.search(r'学号</label>\s*<span class="weui-form-preview__value">H5001</span>', page) and "测试大学" in page
    verify(client, site["school"])
    assert "已认证：钱七" in client.get("/h5/").get_data(as_text=True)
    locked = client.post("/h5/profile", data={**fields, "real_name": "钱八"}).get_data(as_text=True)
    assert "不能直接修改" in locked


def test_profile_errors_and_csrf(client, site) -> None:  # type: ignore[no-untyped-def]
    bad = client.post("/h5/profile", data=dict(school_id=str(site["school"]), real_name="<script>x</script>",
                                               college="心理学院", student_number="H5001", grade="2024级",
                                               csrf_token=CSRF, step="preview")).get_data(as_text=True)
    assert "请填写真实姓名" in bad and "<script>x" not in bad
    assert "手机" not in bad.split("不需要填写手机号")[0]  # the phone is asked at a paper order, not here
    assert "请阅读并勾选同意《隐私政策》" in bad  # the boxes were left unticked
    assert client.post("/h5/profile", data=dict(step="confirm")).status_code == 400  # no CSRF token


def test_unverified_students_cannot_open_a_course(client, site) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/h5/courses/demo-course")
    assert resp.status_code == 403 and "请先完善个人信息" in resp.get_data(as_text=True)


def test_the_whole_topic_loop_over_http(app, client, site) -> None:  # type: ignore[no-untyped-def]
    verify(client, site["school"])
    page = client.get("/h5/courses/demo-course").get_data(as_text=True)
    assert 'data-state="watch"' in page and 'data-state="locked"' in page
    assert client.get("/h5/courses/demo-course/topics/t02").status_code == 403  # locked
    assert client.get("/h5/courses/demo-course/topics/t01/test").status_code == 403  # not watched
    assert "/media/videos/demo-t01.mp4" in client.get("/h5/courses/demo-course/topics/t01").get_data(as_text=True)

    watch = client.post("/h5/api/watch", data=dict(course="demo-course", topic="t01", csrf_token=CSRF)).get_json()
    # A forged "I'm at the end" right away is refused; real-time beats complete it.
    forged = client.post(
        "/h5/api/heartbeat", data=dict(watch_id=watch["watch_id"], seq=1, position=10, csrf_token=CSRF)
    )
    assert forged.get_json()["accepted"] is False
    for seq in range(2, 5):
        clock.advance(app, 4)
        beat = client.post("/h5/api/heartbeat", data=dict(watch_id=watch["watch_id"], seq=seq,
                                                          position=min(10, (seq - 1) * 4), csrf_token=CSRF)).get_json()
    assert beat["completed"] is True

    paper = client.get("/h5/courses/demo-course/topics/t01/test").get_data(as_text=True)
    with get_database(app).sessions() as session:
        attempt = session.scalars(select(QuizAttempt)).one()
        keys = {str(q.id): q.answer for q in session.scalars(select(Question).where(
            Question.id.in_([d["question_id"] for d in attempt.draw])))}
    for _answer in keys.values():  # the page never carries the key (option values are keys, no marking)
        assert "explanation" not in paper and "解析" not in paper.split("提交后可查看得分和逐题结果")[1]
    form = {"csrf_token": CSRF}
    for qid, answer in keys.items():
        form[f"q{qid}"] = answer
    done = client.post(f"/h5/attempts/{attempt.id}", data=form)
    assert done.status_code == 302
    again = client.post(f"/h5/attempts/{attempt.id}", data={"csrf_token": CSRF})  # double submit
    assert again.status_code == 302
    result = client.get(f"/h5/attempts/{attempt.id}").get_data(as_text=True)
    assert re.search(r'class="score">50', result) and "本专题测试通过" in result and "解析" in result
    assert 'data-state="done"' in client.get("/h5/courses/demo-course").get_data(as_text=True)


def test_another_students_attempt_and_watch_are_not_theirs(app, client, site) -> None:  # type: ignore[no-untyped-def]
    verify(client, site["school"])
    watch = client.post("/h5/api/watch", data=dict(course="demo-course", topic="t01", csrf_token=CSRF)).get_json()
    other = app.test_client()
    sign_in(other, site["other"], "o_h5_other")
    beat = other.post("/h5/api/heartbeat", data=dict(watch_id=watch["watch_id"], seq=1, position=1, csrf_token=CSRF))
    assert beat.status_code == 404
    assert other.get("/h5/attempts/1").status_code == 404
    with get_database(app).sessions() as session:
        assert session.scalars(select(WatchSession)).one().position == 0


def test_heartbeat_input_is_checked(client, site) -> None:  # type: ignore[no-untyped-def]
    verify(client, site["school"])
    for data in (dict(watch_id="x", seq=1, position=1), dict(watch_id=1, seq=0, position=1),
                 dict(watch_id=1, seq=1, position=-5), dict(watch_id=1, seq=1, position="nan")):
        assert client.post("/h5/api/heartbeat", data={**data, "csrf_token": CSRF}).status_code == 400
    assert client.post("/h5/api/heartbeat", data=dict(watch_id=1, seq=1, position=1)).status_code == 400  # CSRF

"""A new student, in a phone-sized WeChat browser: menu tap → sign-in → profile → topic 1 video → test → topic 2."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from content.videos import make_demo_clip
from database import get_database
from handlers.catalog.loader import load_catalog, parse_catalog
from models import Question, QuizAttempt, RosterEntry, School, WatchSession
from tests.conftest import ARTIFACTS
from tests.factories import course, to_toml
from web import clock
from wechat.routes import build_router
from wechat.webhook import ROUTER_EXTENSION


@pytest.fixture
def site(app, live_server, tmp_path: Path):  # type: ignore[no-untyped-def]
    # The article links and OAuth's redirect_uri point at this server.
    app.config["PUBLIC_URL"] = live_server.url
    app.extensions[ROUTER_EXTENSION] = build_router(live_server.url)
    app.config["DEMO_VIDEO_DIR"] = str(tmp_path)
    make_demo_clip(
        tmp_path / "demo-t01.mp4", title="示例课程\n专题一", subtitle="演示视频", seconds=10, width=320, height=180
    )
    with get_database(app).sessions() as session:
        load_catalog(session, parse_catalog(to_toml(course()), "demo.toml"), "demo.toml")
        school = School(name="毫末示范大学")
        session.add(school)
        session.flush()
        session.add(RosterEntry(school_id=school.id, student_number="2024018", real_name="林小满"))
        session.commit()
    return live_server.url


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"learning-{name}.png"), full_page=True)


def watch_some(app, page, seconds: float) -> dict:  # type: ignore[no-untyped-def]
    """Play `seconds` of video as the test clock sees it: the server's clock moves 4 s per beat,
    the player moves 3.9 s, and each beat is checked against that clock as in production."""
    state: dict = {}
    played = 0.0
    while played < seconds:
        clock.advance(app, 4)
        played += 3.9
        state = page.evaluate("async (t) => { const v = document.getElementById('player');"
                              " v.currentTime = Math.min(t, v.duration || t); return await window.xinweiBeat(); }",
                              page.evaluate("() => document.getElementById('player').currentTime") + 3.9)
        if state and state.get("completed"):
            break
    return state


def test_a_new_student_goes_from_the_menu_to_topic_two(app, site, phone, db_session) -> None:  # type: ignore[no-untyped-def]
    # WeChat: tap 毫末平台 → 心委培训; the reply is one article linking into the training pages.
    phone.goto(f"{site}/simulator?openid=o_e2e_student")
    phone.get_by_role("button", name="☰ 毫末平台").click()
    phone.get_by_role("button", name="心委培训").click()
    with phone.context.expect_page() as opened:
        phone.locator(".card a", has_text="心委培训").click()
    h5 = opened.value
    h5.set_default_timeout(15_000)

    # Signed in through (fake) WeChat OAuth; first the profile, checked as it will be printed.
    h5.get_by_text("第一步：完善个人信息").wait_for()
    shot(h5, "1-home")
    h5.get_by_role("link", name="完善个人信息").click()
    h5.locator("select[name=school_id]").select_option(label="毫末示范大学")
    h5.locator("input[name=real_name]").fill("林小满")
    h5.locator("input[name=college]").fill("心理学院")
    h5.locator("input[name=student_number]").fill("2024018")
    h5.locator("input[name=grade]").fill("2024级")
    h5.locator("#agree_notice").check()
    h5.locator("#agree_sharing").check()
    h5.get_by_role("button", name="下一步：核对证书信息").click()
    h5.get_by_text("请核对证书信息").wait_for()
    shot(h5, "2-confirm")
    h5.get_by_role("button", name="确认无误，提交认证").click()
    h5.get_by_text("已认证：林小满").wait_for()  # matched the school's roster

    # Topic 1: the video, judged by heartbeats against the (test) clock.
    h5.locator(".course").get_by_role("link", name="开始学习").click()
    h5.get_by_role("link", name="观看视频").click()
    h5.wait_for_function("() => window.xinweiReady && window.xinweiReady()")
    h5.wait_for_function("() => document.getElementById('player').readyState >= 1")
    watch_some(app, h5, 5)
    db_session.rollback()  # a fresh snapshot: the app committed since
    position = db_session.scalar(select(WatchSession.position).order_by(WatchSession.id.desc()).limit(1))
    assert 3 < position < 10

    # Reload mid-video: the player resumes from the server-verified position.
    h5.reload()
    h5.wait_for_function("() => window.xinweiReady && window.xinweiReady()")
    h5.get_by_text("从上次观看的位置继续").wait_for()
    assert h5.get_by_role("link", name="开始测试").is_hidden()  # not before the video is watched
    h5.wait_for_function(f"() => Math.abs(document.getElementById('player').currentTime - {position}) < 0.6")
    shot(h5, "3-topic-resumed")
    state = watch_some(app, h5, 10)
    assert state["completed"]
    h5.get_by_role("link", name="开始测试").click()

    # The test: the page has the options but not the key; the test reads the key from the database.
    h5.get_by_text("专题测试").wait_for()
    shot(h5, "4-test")
    db_session.rollback()
    attempt = db_session.scalars(select(QuizAttempt)).one()
    for item in attempt.draw:
        question = db_session.get(Question, item["question_id"])
        for key in question.answer:
            # WeUI's check hides the input and draws its own mark: a student taps the option's row.
            h5.locator(f"label:has(input[name='q{question.id}'][value='{key}'])").click()
    h5.get_by_role("button", name="提交答案").click()
    h5.get_by_text("本专题测试通过").wait_for()
    shot(h5, "5-result")
    assert h5.get_by_role("link", name="继续下一个专题").is_visible()
    h5.get_by_role("link", name="查看学习进度").click()
    h5.locator("li.topic[data-state=done]").wait_for()
    assert h5.locator("li.topic[data-state=watch]").count() == 1  # topic 2 is open
    shot(h5, "6-progress")

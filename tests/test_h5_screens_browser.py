"""Every student page at 390×844 in a WeChat-sized Chromium: WeUI, no sideways scrolling, nothing the
Content-Security-Policy refused, and a screenshot of each (test-artifacts/h5-*.png) to look at."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from content.videos import make_demo_clip
from database import get_database
from handlers.catalog.loader import load_catalog, parse_catalog
from models import Question, QuizAttempt, RosterEntry, School, User
from tests.conftest import ARTIFACTS
from tests.factories import browser_sign_in, course, to_toml
from web import clock


def _screen(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"h5-{name}.png"), full_page=True)
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{name}: the page scrolls sideways by {overflow}px"
    assert page.locator("link[href*='weui.min.css']").count() == 1, name


def _watch(app, page) -> None:  # type: ignore[no-untyped-def]
    """The 10 s video, beat by beat against the test clock (4 s of server time per beat)."""
    page.wait_for_function("() => window.xinweiReady && window.xinweiReady()")
    page.wait_for_function("() => document.getElementById('player').readyState >= 1")
    for step in range(1, 4):
        clock.advance(app, 4)
        page.evaluate("(t) => { document.getElementById('player').currentTime = t; return window.xinweiBeat(); }",
                      min(10, step * 4))


def test_every_student_page_on_a_phone(app, live_server, phone, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app.config["PUBLIC_URL"] = live_server.url
    app.config["DEMO_VIDEO_DIR"] = str(tmp_path)
    make_demo_clip(
        tmp_path / "demo-t01.mp4", title="示例课程\n专题一", subtitle="演示视频", seconds=10, width=320, height=180
    )
    with get_database(app).sessions() as session:
        load_catalog(session, parse_catalog(to_toml(course()), "demo.toml"), "demo.toml")
        school, student = School(name="毫末示范大学"), User(openid="o_screens")
        session.add_all([school, student])
        session.flush()
        session.add(RosterEntry(school_id=school.id, student_number="2024018", real_name="林小满"))
        session.commit()
        user_id = student.id
    browser_sign_in(app, phone, live_server.url, user_id, "o_screens")
    base = live_server.url

    phone.goto(f"{base}/h5/")
    _screen(phone, "01-home-new")
    phone.get_by_role("link", name="完善个人信息").click()
    phone.get_by_role("button", name="下一步：核对证书信息").click()  # the browser's own required-field check
    phone.locator("select[name=school_id]").select_option(label="毫末示范大学")
    for name, value in (("real_name", "林小满"), ("college", "心理学院"), ("student_number", "2024018"),
                        ("grade", "2024级")):
        phone.locator(f"input[name={name}]").fill(value)
    # The consents are never ticked for the student: left alone, the form says why it needs them.
    assert not phone.locator("#agree_notice").is_checked() and not phone.locator("#agree_sharing").is_checked()
    phone.get_by_role("button", name="下一步：核对证书信息").click()
    phone.get_by_text("请阅读并勾选同意《隐私政策》").wait_for()
    _screen(phone, "02-profile-error")
    phone.locator("#agree_notice").check()
    phone.locator("#agree_sharing").check()
    phone.get_by_role("button", name="下一步：核对证书信息").click()
    phone.get_by_text("请核对证书信息").wait_for()
    _screen(phone, "03-profile-confirm")
    phone.get_by_role("button", name="确认无误，提交认证").click()
    phone.get_by_text("已认证：林小满").wait_for()
    _screen(phone, "04-home-verified")
    phone.get_by_role("link", name="开始学习").first.click()
    phone.locator("li.topic").first.wait_for()
    _screen(phone, "05-course")
    phone.get_by_role("link", name="观看视频").click()
    _watch(app, phone)
    phone.get_by_role("link", name="开始测试").wait_for()
    _screen(phone, "06-topic-watched")
    phone.get_by_role("link", name="开始测试").click()
    phone.get_by_role("button", name="提交答案").wait_for()
    _screen(phone, "07-test")
    phone.get_by_role("button", name="提交答案").click()  # blank: a failed attempt
    phone.get_by_text("本专题未通过").wait_for()
    _screen(phone, "08-result-failed")
    phone.get_by_role("link", name="查看学习进度").click()
    phone.get_by_text("请重看视频").wait_for()
    _screen(phone, "09-course-after-failure")

    phone.goto(f"{base}/h5/courses/demo-course/certificate")
    _screen(phone, "10-refused-not-passed")
    phone.goto(f"{base}/verify")
    _screen(phone, "11-verify-search")
    phone.goto(f"{base}/verify?serial=XW-2026-000001&name=林小满")
    _screen(phone, "12-verify-not-found")
    phone.goto(f"{base}/h5/logged-out")
    _screen(phone, "13-logged-out")

    # The rest needs a passed course: answer the retake from the key (read from the database).
    phone.goto(f"{base}/h5/courses/demo-course/topics/t01")
    _watch(app, phone)
    phone.get_by_role("link", name="开始测试").click()
    phone.get_by_role("button", name="提交答案").wait_for()
    with get_database(app).sessions() as session:
        attempt = session.scalars(select(QuizAttempt).where(QuizAttempt.submitted_at.is_(None))).one()
        keys = [(q.id, key) for q in session.scalars(select(Question).where(
            Question.id.in_([d["question_id"] for d in attempt.draw]))) for key in q.answer]
    for question_id, key in keys:
        phone.locator(f"label:has(input[name='q{question_id}'][value='{key}'])").click()
    phone.get_by_role("button", name="提交答案").click()
    phone.get_by_text("本专题测试通过").wait_for()
    _screen(phone, "14-result-passed")

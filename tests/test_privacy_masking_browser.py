"""A school admin at 1280×800: the student list and page masked; 显示完整信息 shows the values and is recorded."""
from __future__ import annotations

from urllib.parse import unquote

from playwright.sync_api import Browser
from sqlalchemy import select

from database import get_database
from handlers.accounts.identity import ProfileForm, submit_profile
from handlers.catalog.loader import load_catalog, parse_catalog
from handlers.privacy.masking import REVEAL, mask_phone
from models import AuditEntry, ConsoleAccount, RosterEntry, School, StudentProfile, User
from models.base import utcnow
from tests.conftest import ARTIFACTS
from tests.console_helpers import PASSWORD, make_school_admin
from tests.factories import course, to_toml

NAMES = ["林小满", "王一鸣", "李思涵", "张子轩", "陈雨桐", "刘浩然", "赵可欣", "孙嘉怡", "周宇航", "吴梓萱"]
COLLEGES = ["心理学院", "教育学院", "文学院", "理学院", "医学院"]


def number_of(i: int) -> str:
    """Student numbers as a school issues them: year, college, class, seat."""
    return f"{2022 + i % 4}{i % 5 + 1:02d}{(i * 37 + 3) % 40:02d}{(i * 53 + 18) % 100:02d}"


def phone_of(i: int) -> str:
    return f"13{(i * 3 + 8) % 10}{(i * 7919 + 12345678) % 100_000_000:08d}"


NUMBER, PHONE = number_of(0), phone_of(0)  # 林小满's: 2022010318, 13812345678


def _school(app) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """A school of ten students through the real verification (eight on the roster, two pending); the
    first student's profile id and the school's id."""
    with get_database(app).sessions() as session:
        load_catalog(session, parse_catalog(to_toml(course()), "demo.toml"), "demo.toml")
        school = School(name="毫末示范大学")
        session.add(school)
        session.flush()
        first = None
        for i, name in enumerate(NAMES):
            user = User(openid=f"o_browser_mask_{i}")
            session.add(user)
            session.flush()
            number, phone = number_of(i), phone_of(i)
            if i < 8:
                session.add(RosterEntry(school_id=school.id, student_number=number, real_name=name, phone=phone))
                session.flush()
            form = ProfileForm(school.id, name, COLLEGES[i % len(COLLEGES)], number, f"{2022 + i % 4}级", phone)
            profile = submit_profile(session, user.id, form, now=utcnow())
            first = first or profile.id
        session.commit()
        assert first is not None
        return first, school.id


def test_a_school_admin_reveals_a_students_number_and_phone(app, live_server, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    profile_id, school_id = _school(app)
    admin = make_school_admin(app, school_id)
    with get_database(app).sessions() as session:
        username = session.get(ConsoleAccount, admin).username
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    visited: list[str] = []
    page.on("request", lambda r: visited.append(unquote(r.url)))
    try:
        page.goto(f"{live_server.url}/console/school/students")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.get_by_role("button", name="登录").click()
        page.get_by_role("heading", name="学生").wait_for()
        first_row = page.locator("table.data tbody tr").first
        assert first_row.locator("td").nth(1).inner_text() == "20******18"
        assert NUMBER not in page.content() and PHONE not in page.content()
        page.screenshot(path=str(ARTIFACTS / "console-privacy-students.png"), full_page=True)

        # A search by the full number: the list finds the student, the address bar never shows the number.
        page.fill("input[name=q]", NUMBER)
        page.get_by_role("button", name="筛选").click()
        page.wait_for_url("**s=**")
        assert NUMBER not in unquote(page.url)
        assert page.locator("table.data tbody tr").count() == 1
        page.screenshot(path=str(ARTIFACTS / "console-privacy-students-search.png"), full_page=True)

        page.get_by_role("link", name="林小满").click()
        page.get_by_role("heading", name="林小满").wait_for()
        assert page.locator("#student-number").inner_text() == "20******18"
        assert page.locator("#phone").inner_text() == "138****5678"
        page.screenshot(path=str(ARTIFACTS / "console-privacy-student-masked.png"), full_page=True)

        page.get_by_role("button", name="显示完整信息").click()
        page.get_by_text("本次查看已记入操作日志").wait_for()
        assert page.locator("#student-number").inner_text() == NUMBER
        assert page.locator("#phone").inner_text() == PHONE
        page.screenshot(path=str(ARTIFACTS / "console-privacy-student-revealed.png"), full_page=True)

        page.get_by_role("link", name="重新隐藏").click()
        page.get_by_role("button", name="显示完整信息").wait_for()
        assert page.locator("#phone").inner_text() == "138****5678"

        # The approval queue: numbers whole (compared with the roster), a row's phone shown on purpose.
        page.get_by_role("link", name="待审核学生").click()
        row = page.locator("tr", has_text=NAMES[8])
        assert row.locator(".phone").inner_text() == mask_phone(phone_of(8)) and number_of(8) in row.inner_text()
        page.screenshot(path=str(ARTIFACTS / "console-privacy-approvals.png"), full_page=True)
        row.get_by_role("button", name=f"显示 {NAMES[8]} 的完整信息").click()
        page.get_by_text(f"已显示 {NAMES[8]} 的完整手机号").wait_for()
        assert page.locator("tr", has_text=NAMES[8]).locator(".phone").inner_text() == phone_of(8)
        assert page.locator("tr", has_text=NAMES[9]).locator(".phone").inner_text() == mask_phone(phone_of(9))
        page.screenshot(path=str(ARTIFACTS / "console-privacy-approvals-revealed.png"), full_page=True)
    finally:
        context.close()
    assert problems == [], problems
    assert not [url for url in visited if NUMBER in url or PHONE in url]
    with get_database(app).sessions() as session:
        entries = list(session.scalars(select(AuditEntry).where(AuditEntry.action == REVEAL).order_by(AuditEntry.id)))
        pending = session.scalar(select(StudentProfile.id).where(StudentProfile.real_name == NAMES[8]))
    assert [(e.account_id, e.subject_id, e.note) for e in entries] == [(admin, str(profile_id), "学号、手机"),
                                                                      (admin, str(pending), "手机")]

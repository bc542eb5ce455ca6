"""The school console in a browser: a school admin signs in, reads the dashboard, exports the table, downloads it."""

from __future__ import annotations

import io
import threading
import time
from datetime import date, timedelta

from openpyxl import load_workbook
from sqlalchemy import select

from database import get_database
from handlers.catalog.loader import load_catalog_file
from handlers.learning import school_progress
from handlers.schools import console, exports
from jobs.queue import get_queue
from models import Certificate, Enrollment, Job, School, StudentProfile, StudentProgress, User
from models.base import utcnow
from tests.conftest import ARTIFACTS
from tests.console_helpers import PASSWORD, make_school_admin

COURSE = "content/courses/xinwei-mooc.toml"
COLLEGES = ["心理学院", "教育学院", "文学院", "理学院", "医学院"]


def _showcase(app) -> int:  # type: ignore[no-untyped-def]
    """A school of 240 students at every stage of the real 14-topic course (rows written directly,
    then recounted: the flows themselves are tested in test_school_console.py)."""
    from pathlib import Path

    now = utcnow()
    with get_database(app).sessions() as session:
        load_catalog_file(session, Path(__file__).resolve().parent.parent / COURSE)
        school = School(name="毫末示范大学")
        session.add(school)
        session.flush()
        course_id = console.pick_course(session, None)[0]
        for i in range(240):
            user = User(openid=f"o_show_{i}")
            session.add(user)
            session.flush()
            status = "pending" if i % 17 == 0 else "rejected" if i % 29 == 0 else "verified"
            profile = StudentProfile(user_id=user.id, school_id=school.id, real_name=f"学生{i:03d}",
                                     college=COLLEGES[i % len(COLLEGES)], student_number=f"2024{i:04d}",
                                     grade=f"{2022 + i % 4}级", phone="13800000000", status=status, confirmed_at=now)
            session.add(profile)
            session.flush()
            if status != "verified" or i % 9 == 0:
                continue
            done = 14 if i % 3 == 0 else min(13, (i * 7) % 15)
            passed = done == 14
            session.add(Enrollment(user_id=user.id, course_id=course_id, round=1,
                                   passed_at=now if passed else None, total_score=85 + i % 15 if passed else None))
            certified = passed and i % 2 == 0
            session.add(StudentProgress(
                user_id=user.id, course_id=course_id, school_id=school.id, profile_id=profile.id,
                stage="certified" if certified else "passed" if passed else "learning", topics_done=done,
                topic_scores=[90] * done, attempts=done + i % 3, total_score=85 + i % 15 if passed else None,
                passed_at=now if passed else None, last_progress_at=now - timedelta(days=i % 12)))
            if certified:
                channel = ("electronic", "paper", "both")[(i // 12) % 3]
                session.add(Certificate(
                    user_id=user.id, course_id=course_id, serial=f"XW2026{i:06d}", version=1,
                    verify_token=f"tok{i}", status="valid", channel=channel,
                    paper_status=None if channel == "electronic" else ("paid" if i % 4 == 0 else "awaiting_payment"),
                    holder_name=profile.real_name, school_name=school.name, student_number=profile.student_number,
                    course_title="心理委员MOOC", score=90, issued_on=date(2026, 11, 29), issuers=["毫末"],
                    verify_url="https://example.cn/verify/x", signature="sig"))
        session.commit()
        school_progress.recount(session)
        session.commit()
        return school.id


def _worker(app, stop: threading.Event) -> None:  # type: ignore[no-untyped-def]
    """A stand-in worker: runs the export jobs the page records (the queue's consumer is not started in tests)."""
    while not stop.is_set():
        with get_database(app).sessions() as session:
            jobs = list(session.scalars(select(Job.id).where(Job.kind == exports.EXPORT_JOB,
                                                             Job.status == "pending")))
        for job_id in jobs:
            get_queue(app).execute(job_id)
        time.sleep(0.2)


def _sign_in(page, url: str, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{url}/console/school/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.get_by_text("专题完成情况").wait_for()


def test_a_school_admin_reads_the_dashboard_and_exports(app, live_server, browser, phone) -> None:  # type: ignore[no-untyped-def]
    school_id = _showcase(app)
    admin = make_school_admin(app, school_id)
    with get_database(app).sessions() as session:
        from models import ConsoleAccount
        username = session.get(ConsoleAccount, admin).username
    ARTIFACTS.mkdir(exist_ok=True)

    desktop = browser.new_context(viewport={"width": 1366, "height": 900}, locale="zh-CN", accept_downloads=True)
    page = desktop.new_page()
    page.set_default_timeout(15_000)
    _sign_in(page, live_server.url, username)
    assert page.locator(".funnel .bar").count() == 15  # started + 14 topics
    page.screenshot(path=str(ARTIFACTS / "console-dashboard.png"), full_page=True)

    stop = threading.Event()
    worker = threading.Thread(target=_worker, args=(app, stop), daemon=True)
    worker.start()
    try:
        page.get_by_role("link", name="学生").first.click()
        page.get_by_role("heading", name="学生").wait_for()
        page.select_option("select[name=college]", "教育学院")
        page.get_by_role("button", name="筛选").click()
        page.wait_for_url("**college=**")
        assert page.locator("table.data tbody tr").count() > 0
        page.select_option("select[name=format]", "xlsx")
        page.get_by_role("button", name="开始导出").click()
        link = page.locator("#exports a", has_text="下载")
        link.wait_for()
        with page.expect_download() as info:
            link.click()
        data = open(info.value.path(), "rb").read()
    finally:
        stop.set()
        worker.join(5)
    rows = [[c.value for c in row] for row in load_workbook(io.BytesIO(data)).active.iter_rows()]
    assert rows[0][0] == "姓名" and len(rows) > 1 and all(r[2] == "教育学院" for r in rows[1:])
    page.screenshot(path=str(ARTIFACTS / "console-students.png"), full_page=True)
    desktop.close()

    _sign_in(phone, live_server.url, username)
    phone.screenshot(path=str(ARTIFACTS / "console-dashboard-phone.png"), full_page=True)

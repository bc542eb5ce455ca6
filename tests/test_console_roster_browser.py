"""The roster and approval pages in a real browser: a school admin signs in, uploads the demo GBK roster,
watches it queued, reads the report once the job has run, and approves a pending student; desktop and phone."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from database import get_database
from models import ConsoleAccount, StudentProfile
from tests.conftest import ARTIFACTS
from tests.console_helpers import PASSWORD, make_school, make_school_admin
from tests.factories import pending, run_upload_jobs

DEMO_ROSTER = Path(__file__).resolve().parent.parent / "content" / "demo-roster-gbk.csv"


def test_school_admin_uploads_a_roster_and_approves_a_student(app, live_server, browser) -> None:  # type: ignore[no-untyped-def]
    school = make_school(app, "毫末示范大学")
    admin = make_school_admin(app, school)
    with get_database(app).sessions() as session:
        username = session.get(ConsoleAccount, admin).username
    listed = pending(app, school, "陈思远", "2024004", "o_b1")      # in the demo roster: verified by the upload
    unlisted = pending(app, school, "韩梅梅", "2024099", "o_b2")    # not in it: waits for the admin
    ARTIFACTS.mkdir(exist_ok=True)

    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{live_server.url}/console/school/roster")
    assert "/console/sign-in" in page.url
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/school/roster")

    page.set_input_files("input[name=file]", str(DEMO_ROSTER))
    page.click("button:text-is(\"上传\")")
    page.wait_for_url("**/console/school/roster/uploads/*")
    # The request only queued the file: the page says so and polls while a worker (here: the test) runs the job.
    assert "排队中" in page.inner_text("#upload-state")
    page.screenshot(path=str(ARTIFACTS / "console-roster-queued.png"), full_page=True)
    assert run_upload_jobs(app) == ["done"]
    page.wait_for_selector("#report-rows")  # the page reloaded itself with the report
    report = page.inner_text("main")
    assert "GBK/GB18030" in report and "待审核学生自动通过" in report
    rows = page.inner_text("#report-rows")
    assert "学号为空" in rows and "与第 8 行学号重复" in rows and "全角字符已转为半角" in rows
    page.screenshot(path=str(ARTIFACTS / "console-roster-report.png"), full_page=True)

    page.click("text=返回名单")
    page.wait_for_url("**/console/school/roster")
    assert "周晓雯" in page.inner_text("#roster-entries")
    page.screenshot(path=str(ARTIFACTS / "console-roster.png"), full_page=True)

    page.click("nav >> text=待审核学生")
    page.wait_for_url("**/console/school/approvals")
    queue = page.inner_text("#queue")
    assert "韩梅梅" in queue and "陈思远" not in queue
    page.screenshot(path=str(ARTIFACTS / "console-approvals.png"), full_page=True)
    page.click(f"#profile-{unlisted} >> text=通过")
    page.wait_for_url("**/console/school/approvals")
    assert "已通过 韩梅梅（2024099）" in page.inner_text("main") and "没有待审核的学生" in page.inner_text("main")
    context.close()

    with get_database(app).sessions() as session:
        statuses = {pid: via for pid, via in session.execute(select(StudentProfile.id, StudentProfile.verified_via))}
    assert statuses == {listed: "roster", unlisted: "admin"}


def test_the_approval_queue_works_on_a_phone(app, live_server, phone) -> None:  # type: ignore[no-untyped-def]
    school = make_school(app, "毫末示范大学")
    admin = make_school_admin(app, school)
    with get_database(app).sessions() as session:
        username = session.get(ConsoleAccount, admin).username
    waiting = pending(app, school, "韩梅梅", "2024099", "o_b3")
    phone.goto(f"{live_server.url}/console/school/approvals")
    phone.fill("input[name=username]", username)
    phone.fill("input[name=password]", PASSWORD)
    phone.click("button[type=submit]")
    phone.wait_for_url("**/console/school/approvals")
    phone.fill(f"#profile-{waiting} input[name=reason]", "学号有误，请核对后重新提交")
    phone.screenshot(path=str(ARTIFACTS / "console-approvals-phone.png"), full_page=True)
    phone.click(f"#profile-{waiting} >> text=驳回")
    phone.wait_for_url("**/console/school/approvals")
    assert "已驳回 韩梅梅（2024099）" in phone.inner_text("main")
    with get_database(app).sessions() as session:
        assert session.get(StudentProfile, waiting).reject_reason == "学号有误，请核对后重新提交"


def test_a_failed_upload_shows_why_on_a_phone(app, live_server, phone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    school = make_school(app, "毫末示范大学")
    admin = make_school_admin(app, school)
    with get_database(app).sessions() as session:
        username = session.get(ConsoleAccount, admin).username
    bad = tmp_path / "没有学号.csv"
    bad.write_text("姓名,学号\n王五,\n", encoding="utf-8")
    refused: list[str] = []  # a Content-Security-Policy refusal of the polling script would land here
    phone.on("console", lambda message: refused.append(message.text)
             if "Content Security Policy" in message.text else None)
    phone.goto(f"{live_server.url}/console/school/roster")
    phone.fill("input[name=username]", username)
    phone.fill("input[name=password]", PASSWORD)
    phone.click("button[type=submit]")
    phone.wait_for_url("**/console/school/roster")
    phone.set_input_files("input[name=file]", str(bad))
    phone.click("button:text-is(\"上传\")")
    phone.wait_for_url("**/console/school/roster/uploads/*")
    phone.wait_for_function("document.getElementById('upload-state').dataset.status === 'queued'")
    assert run_upload_jobs(app) == ["done"]
    phone.wait_for_selector("text=处理失败")
    assert "文件中没有可导入的行" in phone.inner_text("main") and refused == []
    phone.screenshot(path=str(ARTIFACTS / "console-roster-failed-phone.png"), full_page=True)
    phone.click("a:text-is(\"重新上传\")")
    phone.wait_for_url("**/console/school/roster#upload")

"""End to end: a student writes from the simulator, staff answer in the console, the reply reaches the phone."""
from __future__ import annotations

from sqlalchemy import select

from handlers.inbox import replies
from jobs.queue import get_queue
from models import ConsoleAccount, Job, StaffReply
from tests.conftest import ARTIFACTS
from tests.console_helpers import PASSWORD, make_staff


def test_a_student_message_is_answered_from_the_console_and_appears_on_the_phone(
        app, live_server, browser, phone, db_session) -> None:  # type: ignore[no-untyped-def]
    staff_id = make_staff(app)
    username = db_session.get(ConsoleAccount, staff_id).username
    db_session.rollback()

    # The student writes from the simulator: signed and sealed to /wechat, acknowledged at once.
    phone.goto(f"{live_server.url}/simulator?openid=o_sim_staff")
    phone.get_by_placeholder("给公众号发消息").fill("证书上的名字写错了，能帮我改一下吗？<b>急</b>")
    phone.get_by_role("button", name="发送").click()
    phone.get_by_text("已收到你的留言").wait_for()

    # Staff sign in on a desktop browser and find the conversation waiting.
    desk = browser.new_context(viewport={"width": 1280, "height": 860}, locale="zh-CN")
    page = desk.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{live_server.url}/console/inbox")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    row = page.locator("tr.inbox-row", has_text="证书上的名字写错了")
    row.wait_for()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-inbox-list.png"), full_page=True)
    assert "可回复" in row.inner_text() and "等待" in row.inner_text()
    row.get_by_role("link").click()
    page.get_by_text("证书上的名字写错了，能帮我改一下吗？<b>急</b>").wait_for()  # shown as text
    page.get_by_label("回复内容").fill("同学你好，请回复你的姓名、学校和学号，我们核实后为你更正证书。")
    page.get_by_role("button", name="发送回复").click()
    page.get_by_text("回复已排队发送").wait_for()

    # A worker sends it through the customer-service API (the fake WeChat server).
    db_session.rollback()
    job_id = db_session.scalars(select(Job.id).where(Job.kind == replies.SEND_JOB)).one()
    db_session.rollback()
    assert get_queue(app).execute(job_id) == "done"
    # The page learns it by itself: 排队中 turns into 已发送 without a reload.
    page.locator(".m.staff .badge.ok", has_text="已发送").wait_for()
    page.screenshot(path=str(ARTIFACTS / "console-inbox.png"), full_page=True)
    desk.close()

    # The phone shows the reply as a customer-service message.
    phone.locator(".bubble", has_text="请回复你的姓名、学校和学号").wait_for()
    phone.get_by_text("客服消息").wait_for()
    phone.screenshot(path=str(ARTIFACTS / "simulator-staff-reply.png"), full_page=True)
    db_session.rollback()
    assert db_session.scalars(select(StaffReply.status)).one() == "sent"

"""The dev simulator: taps and messages go to /wechat signed and sealed, replies come back."""
from __future__ import annotations

from sqlalchemy import select

from app import create_app
from models import InboxMessage, User
from tests.conftest import ARTIFACTS, count
from tests.factories import PROD_ENV


def test_menu_taps_and_messages_round_trip(live_server, phone, db_session) -> None:
    phone.goto(f"{live_server.url}/simulator?openid=o_sim_e2e")
    phone.get_by_role("button", name="关注", exact=True).click()
    phone.get_by_text("欢迎关注毫末高校心理委员工作平台").wait_for()
    phone.get_by_role("button", name="☰ 毫末平台").click()
    phone.get_by_role("button", name="心委培训").click()
    phone.locator(".card", has_text="心委培训").wait_for()  # the one-article reply
    phone.get_by_role("button", name="☰ 帮助").click()
    phone.get_by_role("button", name="常见问题").click()
    phone.locator(".bubble", has_text="常见问题").wait_for()
    phone.get_by_placeholder("给公众号发消息").fill("<b>证书</b>学号填错了")
    phone.get_by_role("button", name="发送").click()
    phone.get_by_text("已收到你的留言").wait_for()
    # The student's text is shown as text, not markup.
    assert phone.locator(".me .bubble b").count() == 0
    assert phone.get_by_text("已加密回复").count() >= 1
    ARTIFACTS.mkdir(exist_ok=True)
    phone.screenshot(path=str(ARTIFACTS / "simulator.png"), full_page=True)

    assert count(db_session, InboxMessage) == 1
    user = db_session.scalars(select(User).where(User.openid == "o_sim_e2e")).one()
    assert user.subscribed


def test_plain_mode_is_selectable(live_server, phone) -> None:
    phone.goto(f"{live_server.url}/simulator?openid=o_sim_plain")
    phone.locator("#mode").select_option("plain")
    phone.get_by_role("button", name="☰ 我的").click()
    phone.get_by_role("button", name="显示证书").click()
    phone.get_by_text("明文回复").wait_for()


def test_send_refuses_bad_input(client) -> None:
    assert client.post("/simulator/send", data="kind=text").status_code == 400
    assert client.post("/simulator/send", json={"openid": "../etc", "kind": "text", "content": "x"}).status_code == 400
    assert client.post("/simulator/send", json={"openid": "o1", "kind": "teleport"}).status_code == 400
    assert client.get("/simulator?openid=<script>").status_code == 400


def test_simulator_is_absent_in_production() -> None:
    app = create_app(dict(PROD_ENV))
    assert app.test_client().get("/simulator", headers={"Host": "xinwei.example.cn"}).status_code == 404

"""The app's WeChat client: built lazily, tokens shared, menu published from data."""
from __future__ import annotations

import json

from flask import Flask

from wechat.menu import load_menu, menu_keys
from wechat.routes import build_router
from wechat.services import get_wechat_client


def test_every_menu_key_has_its_own_handler() -> None:
    # A CLICK key with no handler would fall through to "success": the student sees nothing.
    assert menu_keys(load_menu()) <= build_router().click_keys


def test_push_menu_command_publishes_the_menu(app: Flask, runner, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(args=["wechat", "push-menu"])
    assert result.exit_code == 0, result.output
    assert "毫末平台" in result.output
    assert fake_wechat.menu == load_menu()


def test_push_menu_refuses_an_invalid_file(app: Flask, runner, tmp_path, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "menu.json"
    bad.write_text(json.dumps({"button": [{"type": "click", "name": "一个非常非常长的菜单名字", "key": "K"}]}), "utf-8")
    result = runner.invoke(args=["wechat", "push-menu", "--file", str(bad)])
    assert result.exit_code != 0
    assert "name too long" in result.output
    assert fake_wechat.requests(path="/cgi-bin/menu/create") == []


def test_the_client_is_built_once_and_shares_its_token(app: Flask, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    client = get_wechat_client(app)
    assert get_wechat_client(app) is client
    client.menu.get()
    client.menu.get()
    assert fake_wechat.token_fetch_count == 1


def test_an_api_call_inside_an_open_write_transaction_can_refresh_the_token(app: Flask, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    """On SQLite the token store has its own file, so this does not wait on itself."""
    from database import get_database
    from models import School

    with get_database(app).sessions() as session:
        session.add(School(name="锁测试大学"))
        session.flush()  # this transaction now holds the main database's write lock
        get_wechat_client(app).menu.get()
        session.commit()
    assert fake_wechat.token_fetch_count == 1

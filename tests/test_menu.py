"""Tests for the menu as data: content/menu.json, WeChat's limits, and publishing to the fake."""
from __future__ import annotations

import copy
import json

import pytest

from models.base import Base
from models.engine import make_engine
from wechat.client import XinweiWeChatClient
from wechat.fake import FakeWeChatServer
from wechat.menu import DEFAULT_MENU_PATH, MenuError, load_menu, menu_keys, push_menu, validate_menu
from wechat.tokens import DatabaseTokenStore

APP_ID = "wxmenutest000001"
SECRET = "menu0test0secret0000000000000000"
EXPECTED_KEYS = {"TRAINING", "ABOUT", "GUIDE", "FAQ", "CONTACT_STAFF", "MY_CERTIFICATE", "MY_PROGRESS",
                 "MY_PROFILE"}


def click(name="按钮", key="KEY"):
    return {"type": "click", "name": name, "key": key}


def menu_with(*top):
    return {"button": list(top)}


def errors_of(menu):
    with pytest.raises(MenuError) as info:
        validate_menu(menu)
    return str(info.value)


def test_account_menu_file():
    menu = load_menu(DEFAULT_MENU_PATH)
    assert [b["name"] for b in menu["button"]] == ["毫末平台", "帮助", "我的"]
    assert menu["button"][0]["sub_button"][0] == click("心委培训", "TRAINING")
    assert menu["button"][2]["sub_button"][0] == click("显示证书", "MY_CERTIFICATE")
    assert menu_keys(menu) == EXPECTED_KEYS


def test_menu_keys_only_click():
    menu = menu_with(click("a", "A"), {"type": "view", "name": "b", "url": "https://x.example/"},
                     {"name": "c", "sub_button": [click("d", "D"), {"type": "scancode_push", "name": "e", "key": "E"}]})
    validate_menu(menu)
    assert menu_keys(menu) == {"A", "D"}


@pytest.mark.parametrize("menu, message", [
    (menu_with(), "menu: needs 1 to 3 buttons, has 0"),
    (menu_with(*[click(key=f"K{i}") for i in range(4)]), "menu: needs 1 to 3 buttons, has 4"),
    ({"buttons": []}, "menu: unknown field(s) buttons"),
    (menu_with({"name": "多", "sub_button": [click(key=f"K{i}") for i in range(6)]}),
     "button 1: too many sub_button (6 > 5)"),
    (menu_with(click("一二三四五六", "K")), "button 1: name too long (18 bytes > 16)"),
    (menu_with(click(key="A"), {"name": "x", "sub_button": [click(key="B"), click(key="C"), click("长" * 22, "D")]}),
     "button 2 › sub_button 3: name too long (66 bytes > 60)"),
    (menu_with(click("", "K")), "button 1: name missing"),
    (menu_with({"type": "click", "name": "a"}), "button 1: click needs key"),
    (menu_with(click(key="k" * 129)), "button 1: key too long (129 bytes > 128)"),
    (menu_with({"type": "view", "name": "a"}), "button 1: view needs url"),
    (menu_with({"type": "view", "name": "a", "url": "https://x/" + "u" * 1015}),
     "button 1: url too long (1025 bytes > 1024)"),
    (menu_with({"type": "view", "name": "a", "url": "javascript:alert(1)"}), "button 1: url must start with http"),
    (menu_with(click(key="SAME"), {"name": "x", "sub_button": [click(key="SAME")]}),
     "button 2 › sub_button 1: key 'SAME' already used by button 1"),
    (menu_with({"type": "teleport", "name": "a", "key": "K"}), "button 1: unknown type 'teleport'"),
    (menu_with({"name": "a"}), "button 1: type missing"),
    (menu_with({"type": "click", "name": "a", "key": "K0", "sub_button": [click()]}),
     "button 1: a button with sub_button must not have a type"),
    (menu_with({"type": "miniprogram", "name": "a", "url": "https://x/"}), "button 1: miniprogram needs appid"),
    (menu_with({**click(), "colour": "red"}), "button 1: unknown field(s) colour"),
])
def test_limits(menu, message):
    assert message in errors_of(menu)


def test_every_problem_is_reported():
    problems = errors_of(menu_with(click("一二三四五六", "K"), {"type": "view", "name": "b"}))
    assert "button 1: name too long" in problems and "button 2: view needs url" in problems


def test_load_menu_rejects_bad_files(tmp_path):
    broken = tmp_path / "menu.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(MenuError, match="not valid JSON"):
        load_menu(broken)
    too_many = tmp_path / "many.json"
    too_many.write_text(json.dumps(menu_with(*[click(key=f"K{i}") for i in range(4)])), encoding="utf-8")
    with pytest.raises(MenuError, match="has 4"):
        load_menu(too_many)


def test_push_menu_lands_at_wechat(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'tokens.db'}")
    Base.metadata.create_all(engine)
    store = DatabaseTokenStore(engine)
    try:
        with FakeWeChatServer(APP_ID, SECRET) as fake:
            client = XinweiWeChatClient(APP_ID, SECRET, api_base=fake.base_url, token_store=store, timeout=2)
            menu = load_menu()
            assert push_menu(client, copy.deepcopy(menu))["errcode"] == 0
            assert fake.requests("/cgi-bin/menu/create")[0]["json"] == menu
            assert client.menu.get() == {"menu": menu}
            with pytest.raises(MenuError):
                push_menu(client, menu_with())
            assert len(fake.requests("/cgi-bin/menu/create")) == 1
    finally:
        store.close()
        engine.dispose()


def test_push_menu_says_what_wechat_refused_in_one_line(runner, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    fake_wechat.fail("/cgi-bin/menu/create", errcode=48001)
    result = runner.invoke(args=["wechat", "push-menu"])
    assert result.exit_code != 0
    assert "errcode=48001" in result.output and "verified service account" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1

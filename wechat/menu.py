"""The official account's custom menu as data: load and validate content/menu.json, push it to WeChat."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MAX_TOP_BUTTONS = 3
MAX_SUB_BUTTONS = 5
MAX_TOP_NAME_BYTES = 16
MAX_SUB_NAME_BYTES = 60
MAX_KEY_BYTES = 128
MAX_URL_BYTES = 1024

# Which field each WeChat button type needs.
TYPE_FIELDS: dict[str, tuple[str, ...]] = {
    "click": ("key",),
    "scancode_push": ("key",),
    "scancode_waitmsg": ("key",),
    "pic_sysphoto": ("key",),
    "pic_photo_or_album": ("key",),
    "pic_weixin": ("key",),
    "location_select": ("key",),
    "view": ("url",),
    "miniprogram": ("url", "appid", "pagepath"),
    "media_id": ("media_id",),
    "view_limited": ("media_id",),
    "article_id": ("article_id",),
    "article_view_limited": ("article_id",),
}
BUTTON_FIELDS = {"type", "name", "key", "url", "appid", "pagepath", "media_id", "article_id", "sub_button"}
DEFAULT_MENU_PATH = Path(__file__).resolve().parent.parent / "content" / "menu.json"


class MenuError(ValueError):
    """The menu breaks a WeChat rule; the message names each offending button."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def load_menu(path: str | Path = DEFAULT_MENU_PATH) -> dict[str, Any]:
    """Read a menu file (WeChat's menu/create JSON) and validate it."""
    try:
        menu = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MenuError([f"{path}: not valid JSON ({exc})"]) from exc
    validate_menu(menu)
    return menu


def validate_menu(menu: Any) -> None:
    """Raise MenuError listing every problem, e.g. "button 2 › sub_button 3: name too long (66 bytes > 60)"."""
    problems: list[str] = []
    if not isinstance(menu, dict):
        raise MenuError(["menu: must be a JSON object with a 'button' list"])
    extra = sorted(set(menu) - {"button"})
    if extra:
        problems.append(f"menu: unknown field(s) {', '.join(extra)}")
    buttons = menu.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_TOP_BUTTONS:
        count = len(buttons) if isinstance(buttons, list) else "no"
        problems.append(f"menu: needs 1 to {MAX_TOP_BUTTONS} buttons, has {count}")
        buttons = buttons if isinstance(buttons, list) else []
    seen_keys: dict[str, str] = {}
    for i, top in enumerate(buttons, 1):
        where = f"button {i}"
        if not isinstance(top, dict):
            problems.append(f"{where}: must be an object")
            continue
        _check_name(top, where, MAX_TOP_NAME_BYTES, problems)
        subs = top.get("sub_button")
        if subs:
            if not isinstance(subs, list):
                problems.append(f"{where}: sub_button must be a list")
                continue
            if "type" in top:
                problems.append(f"{where}: a button with sub_button must not have a type")
            if len(subs) > MAX_SUB_BUTTONS:
                problems.append(f"{where}: too many sub_button ({len(subs)} > {MAX_SUB_BUTTONS})")
            for j, sub in enumerate(subs, 1):
                sub_where = f"{where} › sub_button {j}"
                if not isinstance(sub, dict):
                    problems.append(f"{sub_where}: must be an object")
                    continue
                if sub.get("sub_button"):
                    problems.append(f"{sub_where}: menus are only two levels deep")
                _check_name(sub, sub_where, MAX_SUB_NAME_BYTES, problems)
                _check_action(sub, sub_where, problems, seen_keys)
        else:
            _check_action(top, where, problems, seen_keys)
    if problems:
        raise MenuError(problems)


def _check_name(button: dict[str, Any], where: str, limit: int, problems: list[str]) -> None:
    name = button.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where}: name missing")
    elif _nbytes(name) > limit:
        problems.append(f"{where}: name too long ({_nbytes(name)} bytes > {limit})")


def _check_action(button: dict[str, Any], where: str, problems: list[str], seen_keys: dict[str, str]) -> None:
    unknown = sorted(set(button) - BUTTON_FIELDS)
    if unknown:
        problems.append(f"{where}: unknown field(s) {', '.join(unknown)}")
    kind = button.get("type")
    if kind is None:
        problems.append(f"{where}: type missing (or give it sub_button)")
        return
    if kind not in TYPE_FIELDS:
        problems.append(f"{where}: unknown type {kind!r}")
        return
    for field in TYPE_FIELDS[kind]:
        value = button.get(field)
        if not isinstance(value, str) or not value:
            problems.append(f"{where}: {kind} needs {field}")
    key = button.get("key")
    if isinstance(key, str) and key:
        if _nbytes(key) > MAX_KEY_BYTES:
            problems.append(f"{where}: key too long ({_nbytes(key)} bytes > {MAX_KEY_BYTES})")
        if key in seen_keys:
            problems.append(f"{where}: key {key!r} already used by {seen_keys[key]}")
        else:
            seen_keys[key] = where
    url = button.get("url")
    if isinstance(url, str) and url:
        if _nbytes(url) > MAX_URL_BYTES:
            problems.append(f"{where}: url too long ({_nbytes(url)} bytes > {MAX_URL_BYTES})")
        if not url.startswith(("http://", "https://")):
            problems.append(f"{where}: url must start with http:// or https://")


def menu_keys(menu: dict[str, Any]) -> set[str]:
    """The CLICK keys in the menu: each needs a handler bound in the router."""
    keys: set[str] = set()
    for top in menu.get("button", []):
        for button in top.get("sub_button") or [top]:
            if button.get("type") == "click" and button.get("key"):
                keys.add(button["key"])
    return keys


def push_menu(client: Any, menu: dict[str, Any]) -> dict[str, Any]:
    """Validate, then publish the menu through the WeChat client (menu/create)."""
    validate_menu(menu)
    result = client.menu.create(menu)
    logger.info("pushed WeChat menu with %d buttons", len(menu["button"]))
    return result

"""The fake WeChat server's in-memory world: tokens, codes, users, menus, records, injected failures."""
from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# WeChat keeps the previous access_token usable this long after a new one is issued.
TOKEN_GRACE_SECONDS = 300
OAUTH_CODE_TTL = 300
CLIENT_MSG_ID_TTL = 600
SERVICE_WINDOW_SECONDS = 48 * 3600
SERVICE_WINDOW_MAX_MESSAGES = 5
DAILY_TOKEN_QUOTA = 2000

# Real tokens are long URL-safe strings; anything else is "malformed" (40014).
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{32,512}$")

ERRMSG = {
    0: "ok",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40004: "invalid media type",
    40006: "invalid file size",
    40008: "invalid message type",
    40013: "invalid appid",
    40014: "invalid access_token",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40020: "invalid button url size",
    40023: "invalid sub button size",
    40024: "invalid sub button type",
    40025: "invalid sub button name size",
    40026: "invalid sub button key size",
    40027: "invalid sub button url size",
    40029: "invalid code",
    40037: "invalid template_id",
    40097: "invalid args",
    40125: "invalid appsecret",
    40163: "code been used",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41005: "media data missing",
    41008: "missing code",
    42001: "access_token expired",
    43004: "require subscribe",
    44002: "empty post data",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    46003: "menu no exist",
    47001: "data format error",
}


def error(errcode: int, errmsg: str | None = None) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": errmsg or ERRMSG.get(errcode, "fake error")}


@dataclass
class IssuedToken:
    kind: str  # "token" (cgi-bin/token) or "stable" (cgi-bin/stable_token)
    issued_at: float
    expires_at: float
    revoked_at: float | None = None  # after this instant the token answers 40001


@dataclass
class OAuthCode:
    openid: str
    appid: str
    scope: str
    issued_at: float
    used: bool = False


@dataclass
class FakeUser:
    following: bool = True
    # None: the 48-hour rule is not enforced for this user (the test said nothing).
    last_message_at: float | None = None
    sent_in_window: int = 0
    snapshot: bool = False


@dataclass
class FailRule:
    path: str
    remaining: int
    errcode: int | None = None
    delay: float | None = None
    drop: bool = False


@dataclass
class FakeState:
    """Everything the fake remembers. Every method takes the lock; handler threads share one."""

    app_id: str
    app_secret: str
    token_ttl: int = 7200
    daily_token_quota: int = DAILY_TOKEN_QUOTA
    clock: Callable[[], float] = time.time
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.clock_offset = 0.0
        self.tokens: dict[str, IssuedToken] = {}
        self.token_fetches_by_day: dict[int, int] = {}
        self.token_fetch_count = 0
        self.stable_fetch_count = 0
        self.codes: dict[str, OAuthCode] = {}
        self.users: dict[str, FakeUser] = {}
        self.menu: dict[str, Any] | None = None
        self.requests: list[dict[str, Any]] = []
        self.fail_rules: list[FailRule] = []
        self.template_dedup: dict[tuple[str, str], tuple[int, float]] = {}
        self.next_msgid = 1000000001
        self.sent_messages: list[dict[str, Any]] = []
        self.media: dict[str, dict[str, Any]] = {}

    # -- clock -------------------------------------------------------------
    def now(self) -> float:
        return self.clock() + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward, so tests see expiry without sleeping."""
        with self.lock:
            self.clock_offset += seconds

    def reset(self) -> None:
        with self.lock:
            self._clear()

    # -- recording and failure injection -----------------------------------
    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            entry["at"] = self.now()
            self.requests.append(entry)

    def recorded(self, path: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.requests if path is None or r["path"] == path]

    def add_failure(self, path: str, *, errcode: int | None = None, delay: float | None = None,
                    drop: bool = False, times: int = 1) -> None:
        if times < 1:
            raise ValueError("times must be at least 1")
        if errcode is None and delay is None and not drop:
            raise ValueError("a failure needs errcode, delay or drop")
        with self.lock:
            self.fail_rules.append(FailRule(path, times, errcode, delay, drop))

    def take_failure(self, path: str) -> FailRule | None:
        """The rule that applies to this call, consumed once; rules for a path apply in order."""
        with self.lock:
            for rule in self.fail_rules:
                if rule.path == path:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self.fail_rules.remove(rule)
                    return rule
        return None

    # -- credentials and access tokens ---------------------------------------
    def check_credentials(self, appid: str | None, secret: str | None) -> dict[str, Any] | None:
        if not appid:
            return error(41002)
        if appid != self.app_id:
            return error(40013)
        if not secret:
            return error(41004)
        if not secrets.compare_digest(secret, self.app_secret):
            return error(40125)
        return None

    def _new_token(self, kind: str) -> tuple[str, IssuedToken]:
        now = self.now()
        for issued in self.tokens.values():
            # A new fetch leaves the previous tokens usable for five more minutes.
            if issued.kind == kind and issued.revoked_at is None:
                issued.revoked_at = now + TOKEN_GRACE_SECONDS
        value = f"FAKE{kind.upper()}_" + secrets.token_urlsafe(48)
        issued = IssuedToken(kind, now, now + self.token_ttl)
        self.tokens[value] = issued
        return value, issued

    def issue_token(self) -> dict[str, Any]:
        with self.lock:
            day = int(self.now() // 86400)
            if self.token_fetches_by_day.get(day, 0) >= self.daily_token_quota:
                return error(45009)
            self.token_fetches_by_day[day] = self.token_fetches_by_day.get(day, 0) + 1
            self.token_fetch_count += 1
            value, _ = self._new_token("token")
            return {"access_token": value, "expires_in": self.token_ttl}

    def issue_stable_token(self, force_refresh: bool) -> dict[str, Any]:
        with self.lock:
            now = self.now()
            if not force_refresh:
                for value, issued in self.tokens.items():
                    if issued.kind == "stable" and issued.revoked_at is None and issued.expires_at > now:
                        return {"access_token": value, "expires_in": int(issued.expires_at - now)}
            self.stable_fetch_count += 1
            value, _ = self._new_token("stable")
            return {"access_token": value, "expires_in": self.token_ttl}

    def check_token(self, value: str | None) -> dict[str, Any] | None:
        """None when `value` may call the API, else WeChat's error body."""
        if not value:
            return error(41001)
        if not TOKEN_PATTERN.match(value):
            return error(40014)
        with self.lock:
            issued = self.tokens.get(value)
            now = self.now()
            if issued is None:
                return error(40001)
            if now >= issued.expires_at:
                return error(42001)
            if issued.revoked_at is not None and now >= issued.revoked_at:
                return error(40001)
        return None

    def expire_tokens(self, *, invalidate: bool = False) -> int:
        """End every live token now: expired (42001) or, with invalidate, revoked (40001)."""
        with self.lock:
            now = self.now()
            count = 0
            for issued in self.tokens.values():
                if invalidate:
                    issued.revoked_at = now
                else:
                    issued.expires_at = min(issued.expires_at, now)
                count += 1
            return count

    # -- users ----------------------------------------------------------------
    def set_user(self, openid: str, *, following: bool | None = None, in_window: bool | None = None,
                 snapshot: bool | None = None) -> None:
        with self.lock:
            user = self.users.setdefault(openid, FakeUser())
            if following is not None:
                user.following = following
            if snapshot is not None:
                user.snapshot = snapshot
            if in_window is not None:
                # In window: the user just wrote to us. Out of window: last wrote 49 h ago.
                user.last_message_at = self.now() if in_window else self.now() - SERVICE_WINDOW_SECONDS - 3600
                user.sent_in_window = 0

    def user(self, openid: str) -> FakeUser:
        with self.lock:
            return self.users.get(openid) or FakeUser()

    def user_info(self, openid: str) -> dict[str, Any]:
        """What /cgi-bin/user/info answers: WeChat no longer returns nickname or avatar."""
        user = self.user(openid)
        if not user.following:
            return {"subscribe": 0, "openid": openid}
        digest = hashlib.sha1(openid.encode("utf-8")).hexdigest()
        return {"subscribe": 1, "openid": openid, "language": "zh_CN", "subscribe_time": int(self.now()),
                "unionid": "oU" + digest[:26], "remark": "", "groupid": 0, "tagid_list": [],
                "subscribe_scene": "ADD_SCENE_SEARCH", "qr_scene": 0, "qr_scene_str": ""}

    # -- OAuth ------------------------------------------------------------------
    def issue_code(self, openid: str, appid: str, scope: str) -> str:
        with self.lock:
            code = secrets.token_hex(16)
            self.codes[code] = OAuthCode(openid, appid, scope, self.now())
            return code

    def redeem_code(self, code: str | None, appid: str) -> OAuthCode | dict[str, Any]:
        if not code:
            return error(41008)
        with self.lock:
            grant = self.codes.get(code)
            if grant is None or grant.appid != appid:
                return error(40029)
            if grant.used:
                return error(40163)
            if self.now() - grant.issued_at > OAUTH_CODE_TTL:
                return error(40029)
            grant.used = True
            return grant

    # -- messages -----------------------------------------------------------
    def send_custom(self, body: dict[str, Any]) -> dict[str, Any]:
        openid = body.get("touser")
        if not openid:
            return error(40003)
        msgtype = body.get("msgtype")
        if msgtype not in {"text", "image", "voice", "video", "music", "news", "mpnews",
                           "mpnewsarticle", "msgmenu", "wxcard", "miniprogrampage"} \
                or not isinstance(body.get(msgtype), dict):
            return error(40008)
        with self.lock:
            user = self.users.get(openid)
            if user is not None and user.last_message_at is not None:
                if self.now() - user.last_message_at > SERVICE_WINDOW_SECONDS:
                    return error(45015)
                if user.sent_in_window >= SERVICE_WINDOW_MAX_MESSAGES:
                    return error(45047)
                user.sent_in_window += 1
            self.sent_messages.append({"kind": "custom", **body})
        return error(0)

    def send_template(self, body: dict[str, Any]) -> dict[str, Any]:
        openid = body.get("touser")
        if not openid:
            return error(40003)
        if not body.get("template_id"):
            return error(40037)
        with self.lock:
            user = self.users.get(openid)
            if user is not None and not user.following:
                return error(43004)
            now = self.now()
            client_msg_id = body.get("client_msg_id")
            if client_msg_id:
                seen = self.template_dedup.get((openid, client_msg_id))
                if seen is not None and now - seen[1] < CLIENT_MSG_ID_TTL:
                    return {**error(0), "msgid": seen[0]}
            msgid = self.next_msgid
            self.next_msgid += 1
            if client_msg_id:
                self.template_dedup[(openid, client_msg_id)] = (msgid, now)
            self.sent_messages.append({"kind": "template", "msgid": msgid, **body})
            return {**error(0), "msgid": msgid}

    # -- media ------------------------------------------------------------------
    def store_media(self, media_type: str, filename: str, data: bytes) -> dict[str, Any]:
        with self.lock:
            media_id = secrets.token_urlsafe(32)
            created_at = int(self.now())
            self.media[media_id] = {"type": media_type, "filename": filename, "size": len(data),
                                    "created_at": created_at}
            return {"type": media_type, "media_id": media_id, "created_at": created_at}

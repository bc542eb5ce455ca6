"""The player's heartbeat fast path: a signed beat token instead of the Flask session, before Flask dispatches.

POST /h5/api/watch (a signed-in student, CSRF-checked, through Flask) returns `beat_token`:
user id, watch session id, a keyed hash of the openid and an expiry, signed with HMAC-SHA256
under a key derived from SECRET_KEY. The player sends it as the form field `beat` with each
heartbeat; this middleware answers those beats without building Flask's request, session or
response (measured by bench/heartbeat: they were most of a beat's cost).

Same checks as the Flask view, done cheaper:
- signed student session -> the token's signature (constant-time), its expiry (never past the
  login's own absolute lifetime), and the user-existence check cached for H5_USER_CHECK_SECONDS;
- CSRF -> the token itself: it is never in a cookie, so another site cannot make a browser send it;
- watch ownership, order (CAS on last_seq) and server-verified progress -> handlers.learning.watching.heartbeat,
  unchanged, with the token's user and watch session.
Beats without `beat` (pages loaded before this existed) go through Flask as before.
"""
from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask
from sqlalchemy import select

import telemetry
from database import get_database
from handlers.errors import Refused
from handlers.learning import watching
from models import User
from models.base import DB_INT_MAX
from web import clock
from web.ops import ENDPOINT_KEY, RequestTelemetry

log = logging.getLogger(__name__)

PATH = "/h5/api/heartbeat"
ENDPOINT = "training.api_heartbeat"  # metrics and the access log count it as the Flask view
FIELD = "beat"
# A token outlives any single sitting; when it expires the player opens a new watch session.
TOKEN_SECONDS = 4 * 3600
# A beat's form is under 200 bytes; anything larger is not the player's and goes to Flask.
MAX_BODY = 1024
_VERSION = "b1"
_CONTEXT = b"xinwei heartbeat token v1"
CHECKED = "xinwei.checked_beat_users"
_CHECK_MAX = 10_000
_HEADERS_BASE = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]


def _key(secret: str | bytes) -> bytes:
    # Derived, so a token's MAC is never a MAC made with the session cookie's key.
    raw = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(raw, _CONTEXT, hashlib.sha256).digest()


def _keys(app: Flask) -> Sequence[tuple[str, bytes]]:
    """(secret, token key): the current SECRET_KEY first, then SECRET_KEY_FALLBACKS (as Flask's
    session accepts them)."""
    secrets = (app.config["SECRET_KEY"], *(app.config.get("SECRET_KEY_FALLBACKS") or ()))
    cached = app.extensions.get("xinwei.beat_keys")
    if cached is None or cached[0] != secrets:
        cached = (secrets, tuple((s, _key(s)) for s in secrets))
        app.extensions["xinwei.beat_keys"] = cached
    return cached[1]


def _sign(key: bytes, payload: str) -> str:
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()[:32]


def issue(app: Flask, user_id: int, openid: str, watch_id: int, expires: int) -> str:
    """The token for one student's one watch session, valid until `expires` (Unix seconds)."""
    tag = telemetry.hash_openid(openid, app.config["SECRET_KEY"])
    payload = f"{_VERSION}.{int(user_id)}.{int(watch_id)}.{int(expires)}.{tag}"
    return f"{payload}.{_sign(_keys(app)[0][1], payload)}"


def expiry(login_at: float, lifetime_seconds: float, now: float) -> int:
    """Never past the login's absolute lifetime (as current_user_id bounds the session)."""
    return int(min(now + TOKEN_SECONDS, login_at + lifetime_seconds))


def verify(app: Flask, token: str, now: float) -> tuple[int, int, str, str] | None:
    """(user id, watch id, openid tag, the secret it was signed with) of a genuine, unexpired
    token; None otherwise."""
    payload, _, sig = token.rpartition(".")
    parts = payload.split(".")
    if len(parts) != 5 or parts[0] != _VERSION or len(sig) != 32:
        return None
    secret = next((s for s, key in _keys(app) if hmac.compare_digest(_sign(key, payload), sig)), None)
    if secret is None:
        return None
    _, user_id, watch_id, expires, tag = parts
    if not all(p.isascii() and p.isdigit() for p in (user_id, watch_id, expires)) or now > int(expires):
        return None
    return int(user_id), int(watch_id), tag, secret


def _user_still_exists(app: Flask, user_id: int, tag: str, secret: str) -> bool:
    """web.auth's check (the user is still there with the same openid), by the openid's keyed hash."""
    checked: dict[tuple[int, str], float] = app.extensions.setdefault(CHECKED, {})
    key = (user_id, tag)
    seen = checked.get(key)
    if seen is not None and time.monotonic() - seen < float(app.config["H5_USER_CHECK_SECONDS"]):
        return True
    with get_database(app).readers() as reader:
        stored = reader.scalar(select(User.openid).where(User.id == user_id))
        reader.rollback()
    ok = stored is not None and hmac.compare_digest(
        telemetry.hash_openid(stored, secret).encode(), tag.encode())
    if ok:
        if len(checked) >= _CHECK_MAX:
            checked.clear()
        checked[key] = time.monotonic()
    else:
        checked.pop(key, None)
    return ok


def _json(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "null"
    return json.dumps(value, ensure_ascii=False)


def answer_body(fields: dict[str, Any]) -> bytes:
    """Compact JSON as Flask's jsonify writes it (sorted keys, no spaces), for a few scalars."""
    return ("{" + ",".join(f'"{k}":{_json(fields[k])}' for k in sorted(fields)) + "}\n").encode()


class FastHeartbeat:
    """WSGI middleware in front of Flask (inside RequestTelemetry, so metrics and the request id
    stay): answers POST /h5/api/heartbeat carrying a beat token, passes everything else on."""

    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST" \
                or not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            return self.wsgi_app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return self.wsgi_app(environ, start_response)
        if not 0 < length <= MAX_BODY:
            return self.wsgi_app(environ, start_response)
        body = environ["wsgi.input"].read(length)
        form = dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
        if FIELD not in form:
            environ["wsgi.input"] = io.BytesIO(body)  # Flask reads it as if untouched
            return self.wsgi_app(environ, start_response)
        environ[ENDPOINT_KEY] = ENDPOINT
        try:
            status, fields = self.beat(form)
        except Exception:  # noqa: BLE001 - as Flask would: logged, a 500, nothing half-written (one statement each)
            log.exception("heartbeat failed")
            status, fields = "500 INTERNAL SERVER ERROR", {"error": "internal"}
        payload = answer_body(fields)
        start_response(status, [*_HEADERS_BASE, ("Content-Length", str(len(payload)))])
        return [payload]

    def beat(self, form: dict[str, str]) -> tuple[str, dict[str, Any]]:
        app = self.app
        now = clock.now_of(app)
        claims = verify(app, form[FIELD], now.timestamp())
        if claims is None:
            return "403 FORBIDDEN", {"error": "bad_token"}
        user_id, watch_id, tag, secret = claims
        telemetry.openid_hash.set(tag)
        if not _user_still_exists(app, user_id, tag, secret):
            return "401 UNAUTHORIZED", {"error": "login_required", "login": "/h5/login?next=/h5/"}
        try:
            if "watch_id" in form and int(form["watch_id"]) != watch_id:
                return "403 FORBIDDEN", {"error": "bad_token"}
            seq, position = int(form["seq"]), float(form["position"])
        except (KeyError, ValueError):
            return "400 BAD REQUEST", {"error": "bad_request"}
        if not 0 <= position < 86400 or not 0 < seq <= DB_INT_MAX or not 0 < watch_id <= DB_INT_MAX:
            return "400 BAD REQUEST", {"error": "bad_request"}
        try:
            # On the relaxed engine (PostgreSQL: synchronous_commit=off): a beat's commit does not
            # wait for the disk. A database crash may lose the last ~0.6 s of committed beats; the
            # row goes back whole (seq, position, credit together), so no rule breaks, and the
            # student re-earns at most one beat of progress. bench/heartbeat: 0.33 -> 0.39 x floor
            # on PostgreSQL, p99 17.6 -> 10.8 ms.
            beat = watching.heartbeat(get_database(app).relaxed, user_id, watch_id, seq, position, now,
                                      paused=form.get("paused") == "1", resumed=form.get("resumed") == "1")
        except Refused as refusal:
            return "404 NOT FOUND", {"error": refusal.code}
        return "200 OK", {"accepted": beat.accepted, "position": beat.position,
                          "watched_seconds": beat.watched_seconds, "completed": beat.completed,
                          "reason": beat.reason}


def init_app(app: Flask) -> None:
    """Mount inside ops' RequestTelemetry (ops.init_app runs first), in front of Flask."""
    outer = app.wsgi_app
    if not isinstance(outer, RequestTelemetry):
        raise RuntimeError("fast_heartbeat.init_app must run after ops.init_app")
    outer.wsgi_app = FastHeartbeat(app, outer.wsgi_app)

"""The heartbeat's fast path: beat tokens from /h5/api/watch, and every way one is refused."""
from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from flask import Flask
from sqlalchemy import select, update

from database import get_database
from models import User, WatchSession
from tests.factories import CSRF, sign_in, verify
from web import clock, fast_heartbeat

BEAT = "/h5/api/heartbeat"


def _watch(client, school_id: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    verify(client, school_id)
    watch = client.post("/h5/api/watch", data=dict(course="demo-course", topic="t01", csrf_token=CSRF)).get_json()
    assert watch["beat_token"].startswith("b1.")
    return watch


def _beat(client, token: str, seq: int, position: float, **extra: Any):  # type: ignore[no-untyped-def]
    return client.post(BEAT, data=dict(seq=seq, position=position, beat=token, **extra))


def _stored(app: Flask) -> tuple[int, float, float]:
    with get_database(app).sessions() as session:
        watch = session.scalars(select(WatchSession).order_by(WatchSession.id.desc())).first()
        return watch.last_seq, watch.position, watch.watched_seconds


def test_token_beats_are_judged_like_the_flask_view(app, client, site) -> None:  # type: ignore[no-untyped-def]
    watch = _watch(client, site["school"])
    token = watch["beat_token"]
    # A seek to the end is not believed; real-time beats complete the topic.
    forged = _beat(client, token, 1, 10, watch_id=watch["watch_id"])
    assert forged.status_code == 200 and forged.get_json() == {
        "accepted": False, "completed": False, "position": 0.0, "reason": "ahead of real time", "watched_seconds": 0.0}
    assert forged.headers["Cache-Control"] == "no-store" and forged.headers["X-Request-Id"]
    assert forged.headers["Content-Type"] == "application/json" and "Set-Cookie" not in forged.headers
    for seq in range(2, 5):
        clock.advance(app, 4)
        beat = _beat(client, token, seq, min(10, (seq - 1) * 4)).get_json()
        assert beat["accepted"] is True
    assert beat["completed"] is True
    assert _stored(app) == (4, 10.0, 10.0)
    # The same answer, byte for byte in shape, as the Flask view's jsonify (still there for old pages).
    assert forged.data == fast_heartbeat.answer_body(forged.get_json())
    assert client.post(BEAT, data=dict(watch_id=watch["watch_id"], seq=5, position=10, csrf_token=CSRF)).get_json() == \
        {"accepted": True, "completed": True, "position": 10.0, "reason": None, "watched_seconds": 10.0}


def test_a_replayed_or_stale_beat_moves_nothing(app, client, site) -> None:  # type: ignore[no-untyped-def]
    token = _watch(client, site["school"])["beat_token"]
    clock.advance(app, 4)
    assert _beat(client, token, 1, 4).get_json()["accepted"] is True
    clock.advance(app, 4)
    again = _beat(client, token, 1, 8).get_json()  # the same seq again, claiming more
    assert again["accepted"] is False and again["reason"] == "stale or replayed"
    assert _stored(app) == (1, 4.0, 4.0)


def test_forged_tokens_are_refused_and_write_nothing(app, client, site) -> None:  # type: ignore[no-untyped-def]
    watch = _watch(client, site["school"])
    token = watch["beat_token"]
    payload, sig = token.rsplit(".", 1)
    version, user_id, watch_id, expires, tag = payload.split(".")
    other_key = fast_heartbeat._key("not the app's secret")
    wrong_secret = f"{payload}.{hmac.new(other_key, payload.encode(), hashlib.sha256).hexdigest()[:32]}"
    later = f"{version}.{user_id}.{watch_id}.{int(expires) + 86400}.{tag}"
    forgeries = [
        f"{payload}.{'0' * 32}",                    # made-up signature
        f"{payload}.{sig[:-1]}{'a' if sig[-1] != 'a' else 'b'}",  # one character off
        f"{later}.{sig}",                           # a longer life under the old signature
        f"{version}.{int(user_id) + 1}.{watch_id}.{expires}.{tag}.{sig}",  # another user
        f"{version}.{user_id}.{int(watch_id) + 1}.{expires}.{tag}.{sig}",  # another watch session
        wrong_secret,                               # signed, but not with this app's secret
        "", "b1", "b1....", token + ".x", "b2" + token[2:],
    ]
    for forged in forgeries:
        resp = _beat(client, forged, 1, 1)
        assert resp.status_code == 403 and resp.get_json() == {"error": "bad_token"}, forged
    assert _stored(app) == (0, 0.0, 0.0)


def test_expired_tokens_are_refused(app, client, site) -> None:  # type: ignore[no-untyped-def]
    token = _watch(client, site["school"])["beat_token"]
    clock.advance(app, fast_heartbeat.TOKEN_SECONDS + 1)
    resp = _beat(client, token, 1, 1)
    assert resp.status_code == 403 and resp.get_json() == {"error": "bad_token"}
    assert _stored(app) == (0, 0.0, 0.0)


def test_a_token_never_outlives_the_login(app, client, site) -> None:  # type: ignore[no-untyped-def]
    verify(client, site["school"])
    lifetime = app.permanent_session_lifetime.total_seconds()
    with client.session_transaction() as s:
        s["login_at"] = time.time() - lifetime + 30  # the login has 30 s left
    token = client.post("/h5/api/watch", data=dict(course="demo-course", topic="t01", csrf_token=CSRF)).get_json()[
        "beat_token"
    ]
    assert int(token.split(".")[3]) <= time.time() + 31
    clock.advance(app, 2)
    assert _beat(client, token, 1, 1).status_code == 200
    clock.advance(app, 60)
    assert _beat(client, token, 2, 1).status_code == 403


def test_another_students_watch_session_is_not_theirs(app, client, site) -> None:  # type: ignore[no-untyped-def]
    mine = _watch(client, site["school"])
    other = app.test_client()
    sign_in(other, site["other"], "o_h5_other")
    # Their own (genuine) token cannot be pointed at my watch session...
    theirs = fast_heartbeat.issue(app, site["other"], "o_h5_other", 999_999, int(time.time()) + 60)
    # ...and a token naming my watch session for them (only the server could sign it) finds nothing of theirs.
    crossed = fast_heartbeat.issue(app, site["other"], "o_h5_other", mine["watch_id"], int(time.time()) + 60)
    assert other.post(BEAT, data=dict(watch_id=mine["watch_id"], seq=1, position=1, beat=theirs)).status_code == 403
    resp = other.post(BEAT, data=dict(seq=1, position=1, beat=crossed))
    assert resp.status_code == 404 and resp.get_json() == {"error": "no_watch"}
    assert _stored(app) == (0, 0.0, 0.0)


def test_a_removed_or_replaced_user_is_signed_out(app, client, site) -> None:  # type: ignore[no-untyped-def]
    token = _watch(client, site["school"])["beat_token"]
    assert _beat(client, token, 1, 0).status_code == 200
    with get_database(app).sessions() as session:
        # The same id now belongs to someone else (a restored or emptied table).
        session.execute(update(User).where(User.id == site["student"]).values(openid="o_someone_else"))
        session.commit()
    # Within H5_USER_CHECK_SECONDS the earlier check stands (as for the Flask session)...
    assert _beat(client, token, 2, 0).status_code == 200
    app.config["H5_USER_CHECK_SECONDS"] = 0
    resp = _beat(client, token, 3, 0)
    assert resp.status_code == 401 and resp.get_json()["error"] == "login_required"
    assert _stored(app)[0] == 2


def test_a_new_watch_session_stops_the_old_tokens_beats(app, client, site) -> None:  # type: ignore[no-untyped-def]
    first = _watch(client, site["school"])["beat_token"]
    second = client.post("/h5/api/watch", data=dict(course="demo-course", topic="t01", csrf_token=CSRF)).get_json()
    old = _beat(client, first, 1, 0).get_json()
    assert old["accepted"] is False and old["reason"] == "another video or tab took over"
    assert _beat(client, second["beat_token"], 1, 0).get_json()["accepted"] is True


def test_token_beat_input_is_checked(app, client, site) -> None:  # type: ignore[no-untyped-def]
    token = _watch(client, site["school"])["beat_token"]
    for data in (dict(seq="x", position=1), dict(seq=0, position=1), dict(seq=1, position=-5),
                 dict(seq=1, position="nan"), dict(seq=1, position="inf"), dict(seq=1), dict(position=1)):
        resp = client.post(BEAT, data={**data, "beat": token})
        assert resp.status_code == 400 and resp.get_json() == {"error": "bad_request"}, data
    assert _stored(app) == (0, 0.0, 0.0)


def test_beats_without_a_token_still_need_the_session_and_csrf(app, client, site) -> None:  # type: ignore[no-untyped-def]
    watch = _watch(client, site["school"])
    # No token: Flask's view, which wants the CSRF token (and reads the body the fast path looked at).
    assert client.post(BEAT, data=dict(watch_id=watch["watch_id"], seq=1, position=0)).status_code == 400
    assert client.post(BEAT, data=dict(watch_id=watch["watch_id"], seq=1, position=0,
                                       csrf_token=CSRF)).get_json()["accepted"] is True
    anonymous = app.test_client()
    assert anonymous.post(BEAT, data=dict(watch_id=watch["watch_id"], seq=2, position=0,
                                          csrf_token=CSRF)).status_code == 401
    # A body too large to be a beat is not read by the fast path either.
    big = client.post(BEAT, data=dict(watch_id=watch["watch_id"], seq=2, position=0, beat=watch["beat_token"],
                                      pad="x" * 2000))
    assert big.status_code == 400


def test_tokens_signed_before_a_key_rotation_still_work(app, client, site) -> None:  # type: ignore[no-untyped-def]
    token = _watch(client, site["school"])["beat_token"]
    old = app.config["SECRET_KEY"]
    app.config["SECRET_KEY"], app.config["SECRET_KEY_FALLBACKS"] = "a-new-secret-key-for-this-test", [old]
    app.config["H5_USER_CHECK_SECONDS"] = 0  # the user check recomputes the openid's hash under the old key
    assert _beat(client, token, 1, 0).get_json()["accepted"] is True
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert _beat(client, token, 2, 0).status_code == 403

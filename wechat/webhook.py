"""The /wechat endpoint: verify, decrypt, parse, dedup, route, reply — or refuse clearly."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flask import Blueprint, Response, current_app, request

import telemetry
from database import get_database, get_session, open_session
from wechat.crypto import CryptoError, MessageCrypto, sign, signature_holds
from wechat.dedup import deliver
from wechat.inbound import BadMessage, parse_xml, to_inbound
from wechat.replies import seal
from wechat.router import Router

log = logging.getLogger(__name__)

bp = Blueprint("wechat", __name__)

ROUTER_EXTENSION = "xinwei.router"
CRYPTO_EXTENSION = "xinwei.message_crypto"


@dataclass(frozen=True)
class Answer:
    """What /wechat answers, before any framework wraps it (the Flask view and the WSGI fast path
    in web/fast_webhook.py send the same)."""

    status: int
    body: str
    content_type: str = "text/plain"


def _refuse(status: int, reason: str, remote_addr: str | None) -> Answer:
    # The reason is ours (never the body); WeChat ignores it, operators read it.
    telemetry.delivery_outcome(f"refused_{status}").inc()
    log.warning("webhook refused %s: %s (from %s)", status, reason, remote_addr)
    return Answer(status, reason)


def _response(answer: Answer) -> Response:
    return Response(answer.body, status=answer.status, mimetype=answer.content_type)


def _check_query(args: Mapping[str, str]) -> str | None:
    """Why the signed query parameters fail, or None when they hold."""
    cfg = current_app.config
    timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
    if not timestamp.isdigit() or len(timestamp) > 12 or len(nonce) > 64:
        return "bad timestamp or nonce"
    if not signature_holds(args.get("signature"), cfg["WECHAT_TOKEN"], timestamp, nonce):
        return "bad signature"
    if abs(time.time() - int(timestamp)) > cfg["WECHAT_REPLAY_WINDOW"]:
        return "timestamp outside the replay window"
    return None


def _crypto() -> MessageCrypto:
    crypto = current_app.extensions.get(CRYPTO_EXTENSION)
    if crypto is None:
        crypto = MessageCrypto(current_app.config["WECHAT_ENCODING_AES_KEY"], current_app.config["WECHAT_APP_ID"])
        current_app.extensions[CRYPTO_EXTENSION] = crypto
    return crypto


@bp.get("/wechat")
def verify_server() -> Response:
    """WeChat's URL check when the callback is configured: echo echostr if the signature holds."""
    problem = _check_query(request.args)
    if problem:
        return _response(_refuse(403, problem, request.remote_addr))
    return _response(Answer(200, request.args.get("echostr", "")))


@bp.post("/wechat")
def receive() -> Response:
    """Deliveries that reach Flask (the fast path in front of it answers the others the same way)."""
    return _response(handle_post(request.args, request.content_length, request.stream.read, request.remote_addr))


def handle_post(args: Mapping[str, str], content_length: int | None, read: Callable[[int], bytes],
                remote_addr: str | None) -> Answer:
    """One delivery: verify, decrypt, parse, dedup, route, reply. Needs the app context (config,
    the request's session in `g`), not a Flask request: web/fast_webhook.py calls it before Flask
    dispatches. The caller's boundary is this function: it commits or rolls back itself."""
    cfg = current_app.config
    problem = _check_query(args)
    if problem:
        return _refuse(403, problem, remote_addr)
    limit = cfg["WECHAT_MAX_BODY"]
    if (content_length or 0) > limit:
        return _refuse(413, "body too large", remote_addr)
    body = read(limit + 1)
    if len(body) > limit:
        return _refuse(413, "body too large", remote_addr)

    safe_mode = args.get("encrypt_type", "raw").lower() == "aes"
    crypto = _crypto() if safe_mode else None
    try:
        fields = parse_xml(body)
        if crypto is not None:
            encrypted = fields.get("Encrypt")
            if not isinstance(encrypted, str) or not encrypted:
                raise BadMessage("safe mode without an Encrypt field")
            if not signature_holds(
                args.get("msg_signature"), cfg["WECHAT_TOKEN"], args["timestamp"], args["nonce"], encrypted
            ):
                return _refuse(403, "bad msg_signature", remote_addr)
            fields = parse_xml(crypto.decrypt(encrypted).encode("utf-8"))
        inbound = to_inbound(fields)
    except (BadMessage, CryptoError) as exc:
        return _refuse(400, str(exc), remote_addr)

    telemetry.openid_hash.set(telemetry.hash_openid(inbound.openid, cfg["SECRET_KEY"]))
    db = get_database()
    router: Router = current_app.extensions[ROUTER_EXTENSION]
    try:
        outcome = deliver(inbound, router, session=get_session, readers=db.readers, engine=db.relaxed,
                          durable=db.engine, wait_seconds=cfg["WECHAT_DEDUP_WAIT"])
        session = open_session()
        if session is not None:
            session.commit()
    except Exception:
        session = open_session()
        if session is not None:
            session.rollback()
        # Nothing was kept, so WeChat's retry (or the student's next tap) runs it afresh.
        telemetry.delivery_outcome("error").inc()
        log.exception("handler failed for a %s delivery", inbound.msg_type)
        return Answer(503, "temporarily unavailable")
    telemetry.delivery_outcome("duplicate" if outcome.duplicate else "handled").inc()

    if outcome.reply_xml is None:
        return Answer(200, "success")
    if crypto is None:
        return Answer(200, outcome.reply_xml, "application/xml")
    timestamp, nonce = str(int(time.time())), args["nonce"]
    encrypted = crypto.encrypt(outcome.reply_xml)
    signature = sign(cfg["WECHAT_TOKEN"], timestamp, nonce, encrypted)
    return Answer(200, seal(encrypted, signature, timestamp, nonce), "application/xml")

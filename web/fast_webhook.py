"""WeChat's deliveries (POST /wechat) answered in front of Flask: the same handling, without building Flask's request.

Every tap, message and event of every follower is a POST to /wechat; Flask's dispatch (the
request object, the URL map, the hooks) was a large share of a delivery's cost
(bench/webhook --profile). This middleware calls `wechat.webhook.handle_post`, the one place the
delivery is verified, decrypted, deduplicated, routed and answered, inside an app context (the
config, the request's session in `g`, closed at the context's end). The Flask view calls the
same function, so both paths answer alike; GET /wechat (WeChat's URL check) and a body without
a length go through Flask. Flask's before-request hooks do not run here: the one that matters for
other pages, production's Host check (web/links.py), protects links built from the Host header,
and a delivery builds none (its replies' links come from PUBLIC_URL).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask
from werkzeug.utils import get_content_type

from web.ops import ENDPOINT_KEY, RequestTelemetry
from wechat.webhook import Answer, handle_post

log = logging.getLogger(__name__)

PATH = "/wechat"
ENDPOINT = "wechat.receive"  # metrics and the access log count it as the Flask view


def _args(query: str) -> dict[str, str]:
    """The query's fields, the first value of each (as Flask's request.args.get gives)."""
    args: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        args.setdefault(key, value)
    return args


class FastWebhook:
    """WSGI middleware inside ops' RequestTelemetry (metrics, request id, access line stay)."""

    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return self.wsgi_app(environ, start_response)  # no length: Flask's stream limits the read
        environ[ENDPOINT_KEY] = ENDPOINT
        stream = environ["wsgi.input"]

        def read(limit: int) -> bytes:
            # Never past the declared length: a WSGI input may block there.
            return stream.read(min(limit, length)) if length > 0 else b""

        try:
            with self.app.app_context():
                answer = handle_post(_args(environ.get("QUERY_STRING", "")), length, read, environ.get("REMOTE_ADDR"))
        except Exception:  # noqa: BLE001 - as Flask would: logged, a 500 (handle_post rolled back)
            log.exception("webhook failed")
            answer = Answer(500, "internal error")
        payload = answer.body.encode("utf-8")
        start_response(f"{answer.status} {HTTPStatus(answer.status).phrase}",
                       [("Content-Type", get_content_type(answer.content_type, "utf-8")),
                        ("Content-Length", str(len(payload)))])
        return [payload]


def init_app(app: Flask) -> None:
    """Mount inside ops' RequestTelemetry (ops.init_app runs first), in front of Flask."""
    outer = app.wsgi_app
    if not isinstance(outer, RequestTelemetry):
        raise RuntimeError("fast_webhook.init_app must run after ops.init_app")
    outer.wsgi_app = FastWebhook(app, outer.wsgi_app)

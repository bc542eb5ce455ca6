"""Operations: request ids, metrics and access logs (as WSGI middleware), /healthz, /readyz, /metrics."""
from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Flask, Request, Response, current_app, jsonify, request
from sqlalchemy import func, select, text
from werkzeug.routing import Rule

import telemetry
from database import get_database
from models import Job

log = logging.getLogger("xinwei.access")
bp = Blueprint("ops", __name__)

# WeChat's deliveries and the players' heartbeats are the bulk of the traffic and fully
# counted in metrics; a log line each would be a large part of their cost. Errors still log.
QUIET_WHEN_OK = frozenset({"wechat.receive", "training.api_heartbeat"})
ENDPOINT_KEY = "xinwei.endpoint"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# Paths that carry a bearer secret (a console invite makes an account, a push-bind link binds a
# WeChat user): the access line keeps the route and drops the token, or reading logs would be enough.
_SECRET_PATHS = re.compile(r"^(/console/invite/|/h5/push-bind/)[^/]+")


def loggable_path(path: str) -> str:
    return _SECRET_PATHS.sub(r"\1…", path)


class RequestTelemetry:
    """WSGI middleware around the Flask app: a request id (kept from the load balancer when
    well-formed), metrics by endpoint, one access line per request (path only: query strings
    carry signatures and OAuth codes). Middleware rather than Flask hooks: the same work
    without three hook dispatches and the request proxies on the webhook's hot path."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        rid = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        rid_token = telemetry.request_id.set(rid)
        openid_token = telemetry.openid_hash.set("-")
        started = time.perf_counter()
        status_holder: list[str] = []

        def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status_holder.append(status)
            headers.append(("X-Request-Id", rid))
            return start_response(status, headers, exc_info)

        try:
            return self.wsgi_app(environ, _start_response)
        finally:
            elapsed = time.perf_counter() - started
            status = status_holder[-1].split(" ", 1)[0] if status_holder else "500"
            endpoint = environ.get(ENDPOINT_KEY, "unmatched")
            served, latency = telemetry.request_metrics(endpoint, environ.get("REQUEST_METHOD", "-"), status)
            served.inc()
            latency.observe(elapsed)
            if endpoint not in QUIET_WHEN_OK or not status.startswith("2"):
                log.info("%s %s %s %.1fms", environ.get("REQUEST_METHOD"),
                         loggable_path(environ.get("PATH_INFO", "")), status, elapsed * 1000)
            # Threads outlive requests: lines logged after this one must not carry its ids.
            telemetry.request_id.reset(rid_token)
            telemetry.openid_hash.reset(openid_token)


class TelemetryRequest(Request):
    """Flask's request, leaving the matched endpoint in the WSGI environ for the middleware
    (Flask clears its own reference to the request before the middleware could read it)."""

    @property
    def url_rule(self) -> Rule | None:  # type: ignore[override]
        return self.__dict__.get("_url_rule")

    @url_rule.setter
    def url_rule(self, rule: Rule | None) -> None:
        self.__dict__["_url_rule"] = rule
        if rule is not None:
            self.environ[ENDPOINT_KEY] = rule.endpoint


def init_app(app: Flask) -> None:
    app.request_class = TelemetryRequest
    app.wsgi_app = RequestTelemetry(app.wsgi_app)  # type: ignore[method-assign]
    app.register_blueprint(bp)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers. No dependencies, so a database outage does not restart it."""
    return Response("ok", mimetype="text/plain")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Readiness: the database and the queue answer; a load balancer stops sending traffic if not."""
    checks: dict[str, str] = {}
    try:
        with get_database().engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"error: {type(exc).__name__}"
    checks["queue"] = _queue_check()
    ready = all(v == "ok" for v in checks.values())
    # Reported, not required: without the font only certificate rendering fails, and the
    # rest of the product should keep serving.
    checks["certificate_font"] = _font_check()
    return jsonify(ready=ready, **checks), 200 if ready else 503


def _font_check() -> str:
    from certs.fonts import FONT_PATH

    return "ok" if os.access(FONT_PATH, os.R_OK) else f"missing: {FONT_PATH} (apt-get install fonts-wqy-zenhei)"


def _queue_check() -> str:
    redis_url = current_app.config.get("REDIS_URL")
    try:
        if redis_url:
            import redis

            client = redis.Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=1)
            client.ping()
            client.close()
        else:
            folder = os.path.dirname(current_app.config["QUEUE_SQLITE_PATH"]) or "."
            if not os.access(folder, os.W_OK):
                return "error: queue folder not writable"
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"error: {type(exc).__name__}"


def _metrics_allowed() -> bool:
    token = current_app.config.get("METRICS_TOKEN")
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), token.encode())
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


@bp.get("/metrics")
def metrics() -> Response:
    if not _metrics_allowed():
        return Response("forbidden", status=403, mimetype="text/plain")
    with get_database().sessions() as session:
        counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
        session.rollback()
    for status in ("pending", "running", "failed"):
        counts.setdefault(status, 0)
    body = telemetry.metrics_payload() + telemetry.job_status_lines(counts)
    return Response(body, mimetype="text/plain; version=0.0.4; charset=utf-8")

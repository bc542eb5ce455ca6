"""Operations endpoints and hooks: request ids, access logs, /healthz, /readyz, /metrics."""
from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import time
import uuid

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from sqlalchemy import func, select, text

import telemetry
from models import Job
from web.database import get_database

log = logging.getLogger("xinwei.access")
bp = Blueprint("ops", __name__)

QUIET_WHEN_OK = frozenset({"wechat.receive"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def init_app(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_end)
    app.register_blueprint(bp)


def _start() -> None:
    # A load balancer's id is kept so one request can be followed across hosts.
    incoming = request.headers.get("X-Request-Id", "")
    g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.started = time.perf_counter()
    telemetry.request_id.set(g.request_id)
    telemetry.openid_hash.set("-")


def _finish(response: Response) -> Response:
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    endpoint = request.endpoint or "unmatched"
    telemetry.HTTP_REQUESTS.labels(endpoint=endpoint, method=request.method, status=str(response.status_code)).inc()
    telemetry.HTTP_SECONDS.labels(endpoint=endpoint).observe(elapsed)
    response.headers["X-Request-Id"] = g.get("request_id", "-")
    # WeChat's deliveries are the bulk of the traffic and fully counted in metrics; a log
    # line each would be the costliest part of a reply (≈35 µs). Refusals log themselves.
    if endpoint not in QUIET_WHEN_OK or response.status_code >= 300:
        # The path only: query strings carry signatures and OAuth codes.
        log.info("%s %s %s %.1fms", request.method, request.path, response.status_code, elapsed * 1000)
    return response


def _end(_exc: BaseException | None) -> None:
    # Threads outlive requests: lines logged after this one must not carry its ids.
    telemetry.request_id.set("-")
    telemetry.openid_hash.set("-")


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
    return jsonify(ready=ready, **checks), 200 if ready else 503


def _queue_check() -> str:
    redis_url = current_app.config.get("REDIS_URL")
    try:
        if redis_url:
            import redis

            client = redis.Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=1)
            client.ping()
            client.close()
        else:
            import os

            path = current_app.config["QUEUE_SQLITE_PATH"]
            folder = os.path.dirname(path) or "."
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

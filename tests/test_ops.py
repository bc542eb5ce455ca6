"""Operations: health and readiness, metrics, request ids, structured logs without secrets."""
from __future__ import annotations

import json
import logging

from app import create_app
from telemetry import _ContextFilter, configure_logging, hash_openid
from tests.conftest import make_test_app


def test_healthz_needs_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app({"DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none", "INSTANCE_PATH": str(tmp_path)})
    assert app.test_client().get("/healthz").get_data(as_text=True) == "ok"


def test_readyz_reports_each_dependency(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.get_json() == {"ready": True, "database": "ok", "queue": "ok", "certificate_font": "ok"}


def test_a_missing_font_is_reported_and_the_worker_still_starts(app, client, monkeypatch, runner) -> None:  # type: ignore[no-untyped-def]
    from certs import fonts, png

    monkeypatch.setattr(fonts, "FONT_PATH", "/nonexistent/wqy-zenhei.ttc")
    body = client.get("/readyz").get_json()
    assert body["ready"] is True and body["certificate_font"].startswith("missing: /nonexistent/wqy-zenhei.ttc")
    # The worker logs what is missing and goes on (here the consumer is stopped at once).
    started = []

    def failing_warm_up() -> None:
        fonts.register_fonts("/nonexistent/wqy-zenhei.ttc")

    monkeypatch.setattr(png, "warm_up", failing_warm_up)
    monkeypatch.setattr(fonts, "_font", None)
    from jobs import queue as queue_mod

    class Consumer:
        def run(self) -> None:
            started.append(True)

    monkeypatch.setattr(queue_mod.Queue, "consumer", lambda self, **kw: Consumer())
    result = runner.invoke(args=["jobs", "worker", "--no-periodic"])
    assert result.exit_code == 0, result.output
    assert started == [True]


def test_readyz_is_503_when_the_database_or_queue_is_down(database_url: str) -> None:
    app = make_test_app("postgresql+psycopg://nobody@127.0.0.1:1/none", REDIS_URL="redis://127.0.0.1:1/0")
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["ready"] is False
    assert body["database"].startswith("error") and body["queue"].startswith("error")


def test_metrics_count_requests_and_webhook_outcomes(app, client, wechat) -> None:  # type: ignore[no-untyped-def]
    delivery = wechat.deliver(wechat.event("o_m", "CLICK", "FAQ"))
    for _ in range(2):
        client.post("/wechat?" + delivery.query, data=delivery.body)
    client.post("/wechat?signature=x&timestamp=1&nonce=n", data=b"<xml/>")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'xinwei_webhook_deliveries_total{outcome="handled"}' in text
    assert 'xinwei_webhook_deliveries_total{outcome="duplicate"}' in text
    assert 'xinwei_webhook_deliveries_total{outcome="refused_403"}' in text
    assert 'xinwei_http_request_seconds_bucket{endpoint="wechat.receive"' in text
    assert 'xinwei_jobs{status="failed"} 0' in text


def test_metrics_are_not_public(app, client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/metrics", environ_overrides={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403
    app.config["METRICS_TOKEN"] = "t0ken"
    assert client.get("/metrics").status_code == 403  # loopback is not enough once a token is set
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer t0ken"}).status_code == 200


def test_wechat_api_errors_are_counted_by_errcode(app, client, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    import pytest
    from wechatpy.exceptions import WeChatClientException

    from wechat.services import get_wechat_client

    fake_wechat.fail("/cgi-bin/menu/get", errcode=45009)
    with pytest.raises(WeChatClientException):
        get_wechat_client(app).menu.get()
    assert 'xinwei_wechat_api_errors_total{errcode="45009",path="/cgi-bin/menu/get"}' in client.get(
        "/metrics"
    ).get_data(as_text=True)


def test_request_id_is_echoed_kept_or_replaced(client) -> None:  # type: ignore[no-untyped-def]
    fresh = client.get("/healthz").headers["X-Request-Id"]
    assert len(fresh) == 32
    assert client.get("/healthz", headers={"X-Request-Id": "lb-1234567890"}).headers["X-Request-Id"] == "lb-1234567890"
    hostile = client.get("/healthz", headers={"X-Request-Id": "<script>alert(1)</script>"}).headers["X-Request-Id"]
    assert "script" not in hostile and len(hostile) == 32


def test_json_logs_carry_request_id_and_hashed_openid_only(app, client, wechat, capsys) -> None:  # type: ignore[no-untyped-def]
    from wechat.router import Router
    from wechat.webhook import ROUTER_EXTENSION

    def broken(session, inbound):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug")

    router = Router()
    router.on_message("text", broken)
    app.extensions[ROUTER_EXTENSION] = router
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(json_logs=True)
        delivery = wechat.deliver(wechat.text("o_secret_openid", "电话13800138000"), mode="safe")
        resp = client.post("/wechat?" + delivery.query, data=delivery.body, headers={"X-Request-Id": "req-abcdef123"})
        assert resp.status_code == 503  # logged: the handler's traceback and the access line
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "xinwei.access"]
    assert access and access[-1]["request_id"] == "req-abcdef123"
    assert access[-1]["openid_hash"] == hash_openid("o_secret_openid", app.config["SECRET_KEY"])
    everything = json.dumps(lines, ensure_ascii=False)
    assert "o_secret_openid" not in everything
    assert "13800138000" not in everything
    assert "signature=" not in everything  # the access line logs the path, never the query
    assert any("a bug" in line.get("exc_info", "") for line in lines)


def test_successful_deliveries_are_counted_not_logged(client, wechat, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level("INFO", logger="xinwei.access")
    delivery = wechat.deliver(wechat.event("o_quiet", "CLICK", "FAQ"))
    assert client.post("/wechat?" + delivery.query, data=delivery.body).status_code == 200
    assert client.get("/healthz").status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "xinwei.access"]
    assert lines == ["GET /healthz 200 " + lines[-1].split()[-1]]


def test_context_filter_defaults_outside_requests() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    assert _ContextFilter().filter(record) and record.request_id == "-"

"""The /pay/notify bench: latency of WeChat Pay notifications (first, duplicate, 20 at once) against a floor route.

WeChat Pay wants an answer within 5 s. This measures, on one machine in one run, how long the
notify endpoint takes to verify (RSA), decrypt (AES-GCM), lock the order and commit, as
milliseconds and as a ratio to GET /healthz on the same server (the floor: HTTP, Flask and
the threaded werkzeug server cost the same on both sides). Notifications are built and signed
before the clock starts, so only the server side is measured.

    .venv/bin/python -m bench.pay_notify                 # SQLite, 300 orders
    .venv/bin/python -m bench.pay_notify --db postgresql --orders 300
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered), 2), "p99_ms": round(p99, 2),
            "max_ms": round(ordered[-1], 2)}


def _seed(app: Any, orders: int) -> list[str]:
    """`orders` paying orders, each on its own certificate (rows written directly: no rendering)."""
    from database import get_database
    from models import Course, School

    with get_database(app).sessions() as session:
        session.add_all([School(name="压测大学", address="压测路 1 号"), Course(code="bench", current_version=1)])
        session.commit()
    numbers = [f"XWBENCH{i:08d}" for i in range(orders)]
    _seed_more(app, numbers, 0)
    return numbers


def run(orders: int = 300, db: str = "sqlite", concurrent_orders: int = 10) -> dict[str, Any]:
    """Measure and return the figures (also what the smoke test checks)."""
    from alembic import command
    from sqlalchemy import func, select
    from werkzeug.serving import make_server

    from app import create_app
    from cli import alembic_config
    from config import DEV_SECRETS
    from database import get_database
    from models import OrderEvent
    from wechat.fake import FakeWeChatServer
    from wechat.fake.pay import FakePayOrder

    work = Path(tempfile.mkdtemp(prefix="xinwei-bench-pay-"))
    pg_name = None
    if db == "postgresql":
        sys.path.insert(0, str(REPO))
        from bench.databases import drop_pg_database, recreate_pg_database

        pg_name = "xinwei_bench_pay"
        url = recreate_pg_database(DEFAULT_PG_URL, pg_name)
    else:
        url = f"sqlite:///{work / 'bench.db'}"
    cfg = alembic_config(url)
    cfg.attributes["configure_logging"] = False
    command.upgrade(cfg, "head")
    fake = FakeWeChatServer(DEV_SECRETS["WECHAT_APP_ID"], DEV_SECRETS["WECHAT_APP_SECRET"]).start()
    app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": str(work), "WECHAT_API_BASE": fake.base_url,
                      "WECHAT_PAY_API_BASE": fake.base_url, "LOG_LEVEL": "WARNING"})
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        numbers = _seed(app, orders)
        state = fake.pay

        def fake_order(number: str) -> FakePayOrder:
            order = FakePayOrder(out_trade_no=number, prepay_id="wx", appid=state.appid, mchid=state.mchid,
                                 description="纸质证书", total=3000, openid="o", notify_url=base + "/pay/notify")
            state.mark_paid(order)
            return order

        built = [state.notification(fake_order(n)) for n in numbers]
        http = requests.Session()
        for _ in range(50):
            http.get(base + "/healthz")  # warm
        floor = []
        for _ in range(orders):
            started = time.perf_counter()
            http.get(base + "/healthz")
            floor.append((time.perf_counter() - started) * 1000)
        first, duplicate, statuses = [], [], []
        for headers, body in built:
            started = time.perf_counter()
            statuses.append(http.post(base + "/pay/notify", data=body, headers=headers).status_code)
            first.append((time.perf_counter() - started) * 1000)
        for headers, body in built:
            started = time.perf_counter()
            statuses.append(http.post(base + "/pay/notify", data=body, headers=headers).status_code)
            duplicate.append((time.perf_counter() - started) * 1000)
        # 20 copies of one fresh notification at once (a retry storm), for a few orders: wall time.
        storms = []
        storm_numbers = [f"XWBENCH{i:08d}" for i in range(orders, orders + concurrent_orders)]
        if storm_numbers:
            _seed_more(app, storm_numbers, orders)
        for number in storm_numbers:
            headers, body = state.notification(fake_order(number))
            answers: list[int] = []

            def post() -> None:
                answers.append(requests.post(base + "/pay/notify", data=body, headers=headers, timeout=30).status_code)

            threads = [threading.Thread(target=post) for _ in range(20)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            storms.append((time.perf_counter() - started) * 1000)
            statuses.extend(answers)
        with get_database(app).sessions() as session:
            paid = session.scalar(select(func.count()).select_from(OrderEvent).where(OrderEvent.to_status == "paid"))
        floor_p50 = statistics.median(floor)
        result = {
            "db": db, "orders": orders,
            "floor": _percentiles(floor),
            "first": {**_percentiles(first), "ratio_p50": round(statistics.median(first) / floor_p50, 1)},
            "duplicate": {**_percentiles(duplicate), "ratio_p50": round(statistics.median(duplicate) / floor_p50, 1)},
            "storm_20_wall": _percentiles(storms) if storms else None,
            "non_204": sum(1 for s in statuses if s != 204),
            "paid_transitions": paid, "expected_paid": orders + len(storm_numbers),
        }
        return result
    finally:
        server.shutdown()
        fake.stop()
        get_database(app).dispose()
        if pg_name:
            drop_pg_database(DEFAULT_PG_URL, pg_name)


def _seed_more(app: Any, numbers: list[str], offset: int) -> None:
    from sqlalchemy import select

    from database import get_database
    from models import Certificate, CertificateOrder, Course, School, User
    from models.base import utcnow

    now = utcnow()
    with get_database(app).sessions() as session:
        school = session.scalar(select(School))
        course = session.scalar(select(Course))
        for i, number in enumerate(numbers, offset):
            user = User(openid=f"o_bench_{i}")
            session.add(user)
            session.flush()
            cert = Certificate(user_id=user.id, course_id=course.id, serial=f"XW-2026-9{i:05d}", version=1,
                               verify_token=f"bench{i:059d}", status="valid", channel="paper",
                               paper_status="awaiting_payment", holder_name="压测", school_name=school.name,
                               student_number=f"B{i}", course_title="压测课程", score=90, issued_on=date.today(),
                               issuers=["x"], verify_url="https://x/verify", signature="x")
            session.add(cert)
            session.flush()
            session.add(CertificateOrder(
                out_trade_no=number, certificate_id=cert.id, user_id=user.id, school_id=school.id, status="paying",
                fee_fen=2000, postage_fen=1000, total_fen=3000, description="纸质证书", payer_openid=user.openid,
                prepay_id=f"wx{i}", expires_at=now + timedelta(hours=1), recipient_name="压测",
                recipient_phone="13800000000", mail_address=school.address, paper_status_before="awaiting_payment"))
        session.commit()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pay_notify", description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--orders", type=int, default=300)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.orders, args.db), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()

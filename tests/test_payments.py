"""Paying for paper certificates: orders, WeChat Pay over real HTTP (the fake), notifications, refunds, shipping."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta

import pytest
import requests
from sqlalchemy import func, select, update

from config import ConfigError, load_config
from database import get_database
from handlers.certificates.claims import change_channel, claim
from handlers.errors import Refused
from handlers.payments import billing, notifications, orders, shipping
from handlers.payments import refunds as payment_refunds
from jobs.queue import get_queue
from models import Certificate, CertificateEvent, CertificateOrder, Job, OrderEvent, PaymentFlag, School
from models.base import utcnow
from tests.factories import CSRF, ISSUER, paid_order, sign_in, start_paying, the_order
from web.blobs import get_blob_store
from wechat.pay import get_wechat_pay
from wechat.services import get_wechat_client

STAFF_PATH = "请在公众号留言联系工作人员"


def paid_events(app) -> int:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        return session.scalar(select(func.count()).select_from(OrderEvent).where(OrderEvent.to_status == "paid"))


def flags(app) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        return {f.reason: f.seen_count for f in session.scalars(select(PaymentFlag))}


def run_jobs(app, kind: str) -> list[str]:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        session.execute(update(Job).where(Job.status == "pending", Job.kind == kind).values(run_after=utcnow()))
        session.commit()
        ids = list(session.scalars(select(Job.id).where(Job.status == "pending", Job.kind == kind)))
    return [get_queue(app).execute(job_id) for job_id in ids]


def test_paying_creates_one_jsapi_order_with_signed_page_parameters(shop) -> None:  # type: ignore[no-untyped-def]
    first = start_paying(shop)
    again = start_paying(shop)  # a double tap: the same order, the same prepay_id
    assert first["order_id"] == again["order_id"] and first["total"] == "30.00"
    assert first["params"]["package"] == again["params"]["package"]
    params = first["params"]
    assert params["signType"] == "RSA" and params["appId"] == shop["app"].config["WECHAT_APP_ID"]
    assert set(first["config"]) >= {"appId", "timestamp", "nonceStr", "signature"}
    # wx.config is signed for the page the student is on: sha1 over ticket, nonce, timestamp, URL.
    import hashlib

    # The page's own URL on the public origin (a URL on another host is not signed: the page
    # of ours is signed instead).
    page_url = shop["app"].config["PUBLIC_URL"] + f"/h5/certificates/{shop['cert_id']}?from=menu"
    signed = shop["client"].post(f"/h5/certificates/{shop['cert_id']}/pay", headers={"X-CSRF-Token": CSRF},
                                 data={"page_url": page_url + "#top"}).get_json()["config"]
    ticket = get_wechat_client(shop["app"]).jsapi_ticket()
    raw = f"jsapi_ticket={ticket}&noncestr={signed['nonceStr']}&timestamp={signed['timestamp']}&url={page_url}"
    assert signed["signature"] == hashlib.sha1(raw.encode()).hexdigest()
    # The pay sign verifies with the merchant's public key over appId\ntimeStamp\nnonceStr\npackage\n.
    import base64

    from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from wechat.fake import paykeys
    message = "\n".join([params["appId"], params["timeStamp"], params["nonceStr"], params["package"]]) + "\n"
    load_pem_public_key(paykeys.MERCHANT_PUBLIC_KEY.encode()).verify(  # type: ignore[union-attr,call-arg]
        base64.b64decode(params["paySign"]), message.encode(), PKCS1v15(), SHA256())
    fake_orders = shop["fake"].pay.orders
    assert len(fake_orders) == 1
    (fake_order,) = fake_orders.values()
    assert fake_order.total == 3000 and type(fake_order.total) is int and fake_order.openid == "o_cert_0"
    assert fake_order.notify_url == shop["live"].url + "/pay/notify"
    order = the_order(shop["app"])
    assert (order.status, order.fee_fen, order.postage_fen, order.total_fen) == ("paying", 2000, 1000, 3000)
    assert order.mail_address.startswith("北京市海淀区") and order.recipient_phone == "13800000000"


def test_a_notification_pays_the_order_once(shop) -> None:  # type: ignore[no-untyped-def]
    start_paying(shop)
    order = the_order(shop["app"])
    fake = shop["fake"].pay
    assert fake.pay(fake.find(order.out_trade_no)) == [204]
    order = the_order(shop["app"])
    assert order.status == "paid" and order.transaction_id.startswith("4200") and order.paid_at is not None
    with get_database(shop["app"]).sessions() as session:
        assert session.get(Certificate, shop["cert_id"]).paper_status == "paid"
        events = [(e.from_status, e.to_status, e.actor) for e in orders.events_of(session, order.id)]
    assert events == [
        (None, "created", f"student:{shop['user_id']}"),
        ("created", "paying", f"student:{shop['user_id']}"),
        ("paying", "paid", "wechatpay:notify"),
    ]
    page = shop["client"].get(f"/h5/orders/{order.id}").get_data(as_text=True)
    assert "已支付，等待打印" in page and "¥30.00" in page
    # WeChat Pay retries an hour's worth: nothing more happens.
    assert fake.deliver(fake.find(order.out_trade_no), copies=3) == [204, 204, 204]
    assert paid_events(shop["app"]) == 1 and flags(shop["app"]) == {}


def test_twenty_concurrent_duplicate_notifications_make_one_paid_transition(shop) -> None:  # type: ignore[no-untyped-def]
    start_paying(shop)
    order = the_order(shop["app"])
    fake = shop["fake"].pay
    statuses = fake.pay(fake.find(order.out_trade_no), copies=20, concurrent=True)
    assert statuses == [204] * 20
    assert paid_events(shop["app"]) == 1 and the_order(shop["app"]).status == "paid"
    with get_database(shop["app"]).sessions() as session:
        assert session.scalar(select(func.count()).select_from(CertificateEvent)
                              .where(CertificateEvent.action == "paper_paid")) == 1


def test_notifications_racing_the_students_query_make_one_paid_order(shop) -> None:  # type: ignore[no-untyped-def]
    start_paying(shop)
    order = the_order(shop["app"])
    fake = shop["fake"].pay
    fake.mark_paid(fake.find(order.out_trade_no))
    results: list[int] = []

    def student() -> None:
        client = shop["app"].test_client()
        sign_in(client, shop["user_id"], "o_cert_0")
        results.append(client.post(f"/h5/orders/{order.id}/refresh", headers={"X-CSRF-Token": CSRF}).status_code)

    threads = [threading.Thread(target=student) for _ in range(5)]
    threads.append(threading.Thread(target=lambda: results.extend(
        fake.deliver(fake.find(order.out_trade_no), copies=10, concurrent=True))))
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [200] * 5 + [204] * 10
    assert paid_events(shop["app"]) == 1 and the_order(shop["app"]).status == "paid"


def test_the_query_job_pays_when_no_notification_comes_and_a_late_one_changes_nothing(shop) -> None:  # type: ignore[no-untyped-def]
    start_paying(shop)
    order = the_order(shop["app"])
    fake = shop["fake"].pay
    assert run_jobs(shop["app"], orders.QUERY_JOB) == ["done"]  # not paid yet: nothing to do
    assert the_order(shop["app"]).status == "paying"
    fake.pay(fake.find(order.out_trade_no), notify=False)  # paid, but the notification is lost
    with get_database(shop["app"]).sessions() as session:
        session.execute(update(CertificateOrder).values(updated_at=utcnow() - timedelta(minutes=5)))
        session.commit()
    get_queue(shop["app"]).execute(_record(shop["app"], orders.RECONCILE_JOB))
    assert run_jobs(shop["app"], orders.QUERY_JOB) == ["done"]
    paid = the_order(shop["app"])
    assert paid.status == "paid"
    with get_database(shop["app"]).sessions() as session:
        assert [e.actor for e in orders.events_of(session, paid.id)][-1] == "job:query"
    assert fake.deliver(fake.find(order.out_trade_no)) == [204]  # the notification arrives after all
    assert paid_events(shop["app"]) == 1 and flags(shop["app"]) == {}


def test_a_notification_before_the_query_job_leaves_the_job_nothing_to_do(shop) -> None:  # type: ignore[no-untyped-def]
    start_paying(shop)
    order = the_order(shop["app"])
    fake = shop["fake"].pay
    fake.pay(fake.find(order.out_trade_no))
    before = len(shop["fake"].requests("/v3/pay/transactions/out-trade-no/" + order.out_trade_no))
    assert run_jobs(shop["app"], orders.QUERY_JOB) == ["done"]
    # The job saw the order paid and did not even ask WeChat Pay.
    assert len(shop["fake"].requests("/v3/pay/transactions/out-trade-no/" + order.out_trade_no)) == before
    assert paid_events(shop["app"]) == 1


def test_a_type_change_racing_the_payment_never_loses_it(shop) -> None:  # type: ignore[no-untyped-def]
    start_paying(shop)
    order = the_order(shop["app"])
    fake = shop["fake"].pay
    fake.mark_paid(fake.find(order.out_trade_no))
    results: list[int] = []

    def student() -> None:
        client = shop["app"].test_client()
        sign_in(client, shop["user_id"], "o_cert_0")
        results.append(client.post(f"/h5/certificates/{shop['cert_id']}/channel",
                                   data={"channel": "electronic", "csrf_token": CSRF}).status_code)

    threads = [threading.Thread(target=student)]
    threads.append(threading.Thread(target=lambda: results.extend(
        fake.deliver(fake.find(order.out_trade_no), copies=10, concurrent=True))))
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) in ([204] * 10 + [302], [204] * 10 + [409])  # no deadlock, no error
    final = the_order(shop["app"])
    with get_database(shop["app"]).sessions() as session:
        certificate = session.get(Certificate, shop["cert_id"])
    if final.status == "paid":  # the payment came first: the change was refused
        assert (certificate.channel, certificate.paper_status) == ("paper", "paid") and 409 in results
        assert flags(shop["app"]) == {}
    else:  # the change came first: the money is flagged for a refund, not lost
        assert final.status == "closed" and certificate.channel == "electronic"
        assert flags(shop["app"]) == {"paid_after_close": 10}
    assert paid_events(shop["app"]) <= 1


def test_a_delayed_notification_after_the_students_query_changes_nothing(shop) -> None:  # type: ignore[no-untyped-def]
    start_paying(shop)
    order = the_order(shop["app"])
    fake = shop["fake"].pay
    fake.notify_delay = 1.0  # WeChat Pay is slow today
    fake.pay(fake.find(order.out_trade_no), background=True)
    answer = shop["client"].post(f"/h5/orders/{order.id}/refresh", headers={"X-CSRF-Token": CSRF}).get_json()
    assert answer["status"] == "paid"
    deadline = time.monotonic() + 10
    while not fake.sent and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [s["status"] for s in fake.sent] == [204]
    assert paid_events(shop["app"]) == 1
    with get_database(shop["app"]).sessions() as session:
        assert orders.events_of(session, order.id)[-1].actor == f"student:{shop['user_id']}"


def _record(app, kind: str) -> int:  # type: ignore[no-untyped-def]
    from handlers.outbox import record_job

    with get_database(app).sessions() as session:
        job = record_job(session, kind, {})
        session.commit()
        return job.id


def test_unpaid_orders_close_after_the_timeout_here_and_at_wechat_pay(shop) -> None:  # type: ignore[no-untyped-def]
    start_paying(shop)
    order = the_order(shop["app"])
    with get_database(shop["app"]).sessions() as session:
        session.execute(update(CertificateOrder).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    # The student tries again meanwhile: told to wait for WeChat Pay's answer, nothing opened.
    late = shop["client"].post(f"/h5/certificates/{shop['cert_id']}/pay", headers={"X-CSRF-Token": CSRF})
    assert late.status_code == 409 and "超时" in late.get_json()["message"]
    assert get_queue(shop["app"]).execute(_record(shop["app"], orders.RECONCILE_JOB)) == "done"
    assert set(run_jobs(shop["app"], orders.QUERY_JOB)) == {"done"}
    closed = the_order(shop["app"])
    assert closed.status == "closed" and closed.closed_at is not None
    assert shop["fake"].pay.find(order.out_trade_no).trade_state == "CLOSED"
    with get_database(shop["app"]).sessions() as session:
        assert session.get(Certificate, shop["cert_id"]).paper_status == "awaiting_payment"
        assert orders.events_of(session, closed.id)[-1].actor == "job:timeout"
    # A new order opens (a new out_trade_no); paying the old one now is impossible at WeChat Pay.
    again = start_paying(shop)
    assert again["order_id"] != order.id and the_order(shop["app"]).out_trade_no != order.out_trade_no
    # A notification for the closed order (WeChat Pay paid it at the last second): flagged, not paid.
    fake = shop["fake"].pay
    old = fake.find(order.out_trade_no)
    old.trade_state = "NOTPAY"
    fake.pay(old)
    assert flags(shop["app"]) == {"paid_after_close": 1}
    with get_database(shop["app"]).sessions() as session:
        assert session.get(CertificateOrder, order.id).status == "closed"
    # Staff give that money back from the flags page: once, however often clicked.
    from tests.console_helpers import make_staff
    from tests.console_helpers import sign_in as console_sign_in

    staff = shop["app"].test_client()
    token = console_sign_in(staff, shop["app"], make_staff(shop["app"]))
    with get_database(shop["app"]).sessions() as session:
        flag_id = session.scalar(select(PaymentFlag.id))
    assert "原路退款" in staff.get("/console/payments/flags").get_data(as_text=True)
    staff.post(f"/console/payments/flags/{flag_id}/refund", data={"csrf_token": token})
    again = staff.post(f"/console/payments/flags/{flag_id}/refund", data={"csrf_token": token}, follow_redirects=True)
    assert "不能在这里退款" in again.get_data(as_text=True)
    assert fake.find(order.out_trade_no).trade_state == "REFUND" and fake.find(order.out_trade_no).refunded == 3000
    assert len(shop["fake"].requests("/v3/refund/domestic/refunds")) == 1


def test_refusals_are_never_paid(shop) -> None:  # type: ignore[no-untyped-def]
    start_paying(shop)
    order = the_order(shop["app"])
    fake = shop["fake"].pay
    fake_order = fake.find(order.out_trade_no)
    fake.mark_paid(fake_order)
    url = shop["live"].url + "/pay/notify"

    def post(headers, body):  # type: ignore[no-untyped-def]
        return requests.post(url, data=body, headers=headers, timeout=10)

    forged = post(*fake.notification(fake_order, tamper=True))
    assert forged.status_code == 401 and forged.json()["code"] == "FAIL"
    stale = post(*fake.notification(fake_order, timestamp=int(time.time()) - 3600))  # a replayed old one
    assert stale.status_code == 401
    wrong_key = post(*fake.notification(fake_order, apiv3_key="x" * 32))
    assert wrong_key.status_code == 401
    unsigned = post({"Content-Type": "application/json"}, b'{"id": "1"}')
    assert unsigned.status_code == 401
    headers, body = fake.notification(fake_order)
    other_key = post({**headers, "Wechatpay-Serial": "PUB_KEY_ID_SOMEONE_ELSE"}, body)
    assert other_key.status_code == 401 and other_key.json()["message"] == "unknown_serial"
    assert shop["fake"].requests("/v3/certificates") == []  # a forged serial costs no outbound call
    other_merchant = post(
        *fake.notification(fake_order, resource={**fake.transaction(fake_order), "mchid": "1999999999"})
    )
    assert other_merchant.status_code == 401
    cheap = post(*fake.notification(fake_order, amount=1))  # signed by WeChat Pay, but 0.01 yuan
    assert cheap.status_code == 204
    unknown = post(
        *fake.notification(fake_order, resource={**fake.transaction(fake_order), "out_trade_no": "XW2099NOSUCH"})
    )
    assert unknown.status_code == 204
    as_float = post(*fake.notification(fake_order, resource={**fake.transaction(fake_order),
                                                             "amount": {"total": 3000.0, "currency": "CNY"}}))
    assert as_float.status_code == 204
    assert the_order(shop["app"]).status == "paying" and paid_events(shop["app"]) == 0
    seen = flags(shop["app"])
    assert seen["wrong_amount"] == 2 and seen["unknown_order"] == 1
    assert seen["notify_bad_signature"] >= 2 and seen["notify_stale"] == 1 and seen["notify_not_ours"] == 1
    # The genuine one still pays.
    assert fake.deliver(fake_order) == [204] and the_order(shop["app"]).status == "paid"


def test_a_refund_returns_the_certificate_to_awaiting_payment(shop) -> None:  # type: ignore[no-untyped-def]
    start_paying(shop)
    order = the_order(shop["app"])
    fake = shop["fake"].pay
    fake.pay(fake.find(order.out_trade_no))
    app = shop["app"]
    pay = get_wechat_pay(app)
    with get_database(app).sessions() as session:
        with pytest.raises(Refused):
            payment_refunds.refund_plan(session, 999999)
        plan = payment_refunds.refund_plan(session, order.id)
        number, out_trade_no, total = payment_refunds.refund_number(plan), plan.out_trade_no, plan.total_fen
        session.rollback()
        result = pay.refund_order(out_trade_no=out_trade_no, out_refund_no=number, total_fen=total, refund_fen=total,
                                  reason="学生申请退款")
        again = pay.refund_order(out_trade_no=out_trade_no, out_refund_no=number, total_fen=total, refund_fen=total,
                                 reason="学生申请退款")
        assert result["refund_id"] == again["refund_id"]  # one refund at WeChat Pay however often asked
        payment_refunds.apply_refund(session, order.id, result, "staff:wang", "学生申请退款", utcnow())
        payment_refunds.apply_refund(session, order.id, again, "staff:wang", "学生申请退款", utcnow())
        session.commit()
        refunded = session.get(CertificateOrder, order.id)
        assert refunded.status == "refunded" and refunded.out_refund_no == "R" + out_trade_no
        assert session.get(Certificate, shop["cert_id"]).paper_status == "awaiting_payment"
        assert (
            session.scalar(select(func.count()).select_from(OrderEvent).where(OrderEvent.to_status == "refunded")) == 1
        )
        with pytest.raises(Refused):
            payment_refunds.refund_plan(session, order.id)
    assert fake.find(out_trade_no).trade_state == "REFUND"
    # A replay of the old notification after the refund changes nothing.
    assert fake.deliver(fake.find(out_trade_no)) == [204]
    assert the_order(app).status == "refunded" and flags(app) == {}
    # The type is free to change again.
    with get_database(app).sessions() as session:
        assert change_channel(session, shop["user_id"], shop["cert_id"], "electronic", ISSUER,
                              now=utcnow(), blobs=get_blob_store(app)).channel == "electronic"
        session.commit()


def test_a_refund_that_ends_abnormal_is_flagged_for_staff(shop) -> None:  # type: ignore[no-untyped-def]
    from tests.console_helpers import make_staff
    from tests.console_helpers import sign_in as console_sign_in

    order = paid_order(shop)
    app, fake = shop["app"], shop["fake"].pay
    fake.refund_outcome = "PROCESSING"
    staff = app.test_client()
    token = console_sign_in(staff, app, make_staff(app))
    staff.post(f"/console/payments/orders/{order.id}/refund", data={"reason": "重复购买", "csrf_token": token})
    assert the_order(app).status == "refunded"
    assert run_jobs(app, orders.REFUND_CHECK_JOB) == ["retry"]  # still processing: asked again later
    fake.refund_outcome = "ABNORMAL"
    assert run_jobs(app, orders.REFUND_CHECK_JOB) == ["done"]
    assert flags(app) == {"refund_abnormal": 1}
    assert "refund_abnormal" in staff.get("/console/payments/flags").get_data(as_text=True)


def test_type_change_is_free_before_payment_and_refused_after(shop) -> None:  # type: ignore[no-untyped-def]
    start_paying(shop)
    order = the_order(shop["app"])
    client, cert_id = shop["client"], shop["cert_id"]
    assert (
        client.post(f"/h5/certificates/{cert_id}/channel", data={"channel": "both", "csrf_token": CSRF}).status_code
        == 302
    )
    assert the_order(shop["app"]).status == "paying"  # paper → both: the same price, the same order
    assert client.post(f"/h5/certificates/{cert_id}/channel",
                       data={"channel": "electronic", "csrf_token": CSRF}).status_code == 302
    assert the_order(shop["app"]).status == "closed"
    assert run_jobs(shop["app"], orders.CLOSE_REMOTE_JOB) == ["done"]
    assert shop["fake"].pay.find(order.out_trade_no).trade_state == "CLOSED"
    electronic = client.post(f"/h5/certificates/{cert_id}/pay", headers={"X-CSRF-Token": CSRF})
    assert electronic.status_code == 409 and "学校支付" in electronic.get_json()["message"]
    # Back to paper, pay, and then the type is fixed: staff only.
    client.post(f"/h5/certificates/{cert_id}/channel", data={"channel": "paper", "csrf_token": CSRF})
    start_paying(shop)
    fake = shop["fake"].pay
    fake.pay(fake.find(the_order(shop["app"]).out_trade_no))
    refused = client.post(f"/h5/certificates/{cert_id}/channel", data={"channel": "electronic", "csrf_token": CSRF})
    assert refused.status_code == 409 and STAFF_PATH in refused.get_data(as_text=True)
    with get_database(shop["app"]).sessions() as session:
        certificate = session.get(Certificate, cert_id)
        assert (certificate.channel, certificate.paper_status) == ("paper", "paid")
    page = client.get(f"/h5/certificates/{cert_id}").get_data(as_text=True)
    assert "更改证书类型" not in page and "纸质证书订单：已支付" in page


def test_another_students_order_is_not_found(shop, graduates) -> None:  # type: ignore[no-untyped-def]
    start_paying(shop)
    order = the_order(shop["app"])
    other = shop["app"].test_client()
    sign_in(other, graduates[1], "o_cert_1")
    assert other.get(f"/h5/orders/{order.id}").status_code == 404
    assert other.post(f"/h5/orders/{order.id}/refresh", headers={"X-CSRF-Token": CSRF}).status_code == 404
    assert other.post(f"/h5/certificates/{shop['cert_id']}/pay", headers={"X-CSRF-Token": CSRF}).status_code == 409
    assert shop["client"].post(f"/h5/certificates/{shop['cert_id']}/pay").status_code == 400  # no CSRF token


def test_amounts_are_whole_fen_never_floats(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert orders.price_for({"*": (2000, 1000)}, "any") == (2000, 1000)
    with pytest.raises(TypeError):
        orders.price_for({"*": (20.0, 1000)}, "any")  # type: ignore[dict-item]
    for bad in ('{"*": {"fee": 20.0, "postage": 1000}}', '{"*": {"fee": "2000", "postage": 1000}}',
                '{"*": {"fee": 2000, "postage": 8.5}}', '{"x": {"fee": 2000, "postage": 0}}', "not json"):
        with pytest.raises(ConfigError, match="PAPER_CERT_PRICES"):
            load_config({}, {"PAPER_CERT_PRICES": bad}, instance_path=str(tmp_path))
    assert orders.yuan(3005) == "30.05" and orders.yuan(0) == "0.00"
    assert all(str(c.type) == "INTEGER" for c in CertificateOrder.__table__.columns if c.name.endswith("_fen"))


def test_jsapi_order_refuses_a_float_amount(app, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    pay = get_wechat_pay(app)
    with pytest.raises(TypeError):
        pay.create_jsapi_order(out_trade_no="XW20261129ABCDEF", description="x", total_fen=30.0,  # type: ignore[arg-type]
                               openid="o_x", time_expire="2026-11-29T23:00:00+08:00")
    assert fake_wechat.requests("/v3/pay/transactions/jsapi") == []
    # And the fake, like WeChat Pay, rejects one sent anyway.
    assert fake_wechat.pay.create({"appid": app.config["WECHAT_APP_ID"], "mchid": fake_wechat.pay.mchid,
                                   "amount": {"total": 30.0}, "out_trade_no": "XW20261129ABCDEF",
                                   "payer": {"openid": "o"}, "notify_url": "http://x/", "description": "x"})[0] == 400


def test_pay_answers_503_when_wechat_pay_is_down_and_the_retry_succeeds(shop) -> None:  # type: ignore[no-untyped-def]
    shop["fake"].fail("/v3/pay/transactions/jsapi", drop=True)
    down = shop["client"].post(f"/h5/certificates/{shop['cert_id']}/pay", headers={"X-CSRF-Token": CSRF})
    assert down.status_code == 503 and "微信支付暂时不可用" in down.get_json()["message"]
    assert the_order(shop["app"]).status == "created"
    assert start_paying(shop)["order_id"] == the_order(shop["app"]).id and the_order(shop["app"]).status == "paying"


def test_staff_print_ship_and_the_student_is_told(shop, graduates) -> None:  # type: ignore[no-untyped-def]
    app, fake = shop["app"], shop["fake"]
    start_paying(shop)
    fake.pay.pay(fake.pay.find(the_order(app).out_trade_no))
    # A second student of another school pays too.
    with get_database(app).sessions() as session:
        other = claim(session, graduates[1], "demo-course", "both", ISSUER, date(2026, 11, 29),
                      blobs=get_blob_store(app))
        session.commit()
        other_id = other.id
    client = app.test_client()
    sign_in(client, graduates[1], "o_cert_1")
    client.post(f"/h5/certificates/{other_id}/pay", headers={"X-CSRF-Token": CSRF})
    fake.pay.pay(fake.pay.find(the_order(app).out_trade_no))
    with get_database(app).sessions() as session:
        batches = shipping.paper_orders_by_school(session)
        assert [(b.school.name, len(b.orders)) for b in batches] == [("证书大学", 2)]
        ids = [o.id for o in batches[0].orders]
        assert [o.recipient_phone for o in batches[0].orders] == ["13800000000"] * 2  # staff can call
        printing = shipping.start_printing(session, ids, "staff:wang", utcnow())
        session.commit()
        assert [o.status for o in printing] == ["printing", "printing"]
        pdf = shipping.batch_pdf(session, ids, blobs=get_blob_store(app))
        import pypdfium2 as pdfium
        assert len(pdfium.PdfDocument(pdf)) == 2
        with pytest.raises(Refused):
            shipping.mark_shipped(session, ids[0], "顺丰", "  ", "staff:wang", utcnow())
        shipping.mark_shipped(session, ids[0], "顺丰速运", "SF 1234 5678 901", "staff:wang", utcnow())
        session.commit()
    assert run_jobs(app, orders.NOTIFY_SHIPPED_JOB) == ["done"]
    sent = [m for m in fake.sent_messages if m.get("touser") == "o_cert_0"]
    assert sent and "SF12345678901" in sent[-1]["text"]["content"] and "顺丰速运" in sent[-1]["text"]["content"]
    page = shop["client"].get(f"/h5/orders/{ids[0]}").get_data(as_text=True)
    assert "已寄出" in page and "SF12345678901" in page
    with get_database(app).sessions() as session:
        shipping.mark_delivered(session, ids[0], "staff:wang", utcnow())
        session.commit()
        with pytest.raises(Refused):  # delivered cannot go back to shipped
            shipping.mark_shipped(session, ids[0], "顺丰速运", "SF1", "staff:wang", utcnow())
    assert "已送达" in shop["client"].get(f"/h5/orders/{ids[0]}").get_data(as_text=True)


def test_outside_the_48_hour_window_the_shipping_notice_is_a_template_message(shop) -> None:  # type: ignore[no-untyped-def]
    app, fake = shop["app"], shop["fake"]
    start_paying(shop)
    order = the_order(app)
    fake.pay.pay(fake.pay.find(order.out_trade_no))
    fake.set_user("o_cert_0", in_window=False)
    with get_database(app).sessions() as session:
        session.execute(update(School).values(address="新校区 8 号楼"))  # staff corrected the address meanwhile
        shipped = shipping.mark_shipped(session, order.id, "EMS", "1190001", "staff:wang", utcnow())
        assert shipped.mail_address == "新校区 8 号楼"
        session.commit()
    assert run_jobs(app, orders.NOTIFY_SHIPPED_JOB) == ["done"]  # no template configured: the page tells
    assert fake.sent_messages == []
    app.config["WECHAT_TEMPLATE_SHIPPED"] = "tmpl_shipped_1"
    with get_database(app).sessions() as session:
        session.execute(update(Job).where(Job.kind == orders.NOTIFY_SHIPPED_JOB).values(status="pending"))
        session.commit()
    assert run_jobs(app, orders.NOTIFY_SHIPPED_JOB) == ["done"]
    (sent,) = fake.sent_messages
    assert sent["kind"] == "template" and sent["template_id"] == "tmpl_shipped_1"
    assert sent["data"]["keyword2"]["value"] == "1190001" and sent["client_msg_id"] == f"shipped-{order.id}"
    assert sent["url"].endswith(f"/h5/orders/{order.id}")


def test_school_billing_counts_electronic_certificates_per_school(app, graduates) -> None:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        for user_id, channel in zip(graduates, ("electronic", "both", "paper", "electronic", "electronic")):
            claim(session, user_id, "demo-course", channel, ISSUER, date(2026, 11, 29), blobs=get_blob_store(app))
        session.execute(update(Certificate).where(Certificate.user_id == graduates[4])
                        .values(issued_on=date(2026, 12, 2), school_name="=HYPERLINK(\"x\")"))
        session.commit()
        rows = billing.school_billing(session, date(2026, 11, 1), date(2026, 11, 30))
        assert [(r.school, r.count) for r in rows] == [("证书大学", 3)]
        december = billing.school_billing(session, date(2026, 12, 1), date(2026, 12, 31))
        text = billing.billing_csv(december, date(2026, 12, 1), date(2026, 12, 31))
        assert text.startswith("\ufeff学校,电子证书数量") and "'=HYPERLINK" in text
        with pytest.raises(Refused):
            billing.school_billing(session, date(2026, 12, 1), date(2026, 11, 1))


def test_console_pages_are_for_staff_only(shop) -> None:  # type: ignore[no-untyped-def]
    from tests.console_helpers import make_school, make_school_admin
    from tests.console_helpers import sign_in as console_sign_in

    order = paid_order(shop)
    app = shop["app"]
    anonymous = app.test_client()
    assert anonymous.get("/console/payments/").status_code == 302
    assert anonymous.post(f"/console/payments/orders/{order.id}/refund", data={"reason": "x"}).status_code == 401
    admin = app.test_client()
    console_sign_in(admin, app, make_school_admin(app, make_school(app)))
    for path in ("/console/payments/", f"/console/payments/orders/{order.id}", "/console/payments/billing",
                 "/console/payments/flags"):
        assert admin.get(path).status_code == 403
    assert the_order(app).status == "paid"


def test_staff_print_ship_and_refund_in_the_console(shop) -> None:  # type: ignore[no-untyped-def]
    import pypdfium2 as pdfium

    from models import AuditEntry
    from tests.console_helpers import make_staff
    from tests.console_helpers import sign_in as console_sign_in

    order = paid_order(shop)
    app = shop["app"]
    staff = app.test_client()
    token = console_sign_in(staff, app, make_staff(app))
    index = staff.get("/console/payments/").get_data(as_text=True)
    assert "证书大学" in index and order.out_trade_no in index
    assert "138****0000" in index and "13800000000" not in index  # masked (in full on the order page, on purpose)
    assert staff.post("/console/payments/print", data={"order_id": order.id}).status_code == 400  # no CSRF
    printed = staff.post("/console/payments/print", data={"order_id": order.id, "csrf_token": token})
    assert printed.mimetype == "application/pdf" and len(pdfium.PdfDocument(printed.data)) == 1
    assert the_order(app).status == "printing"
    shipped = staff.post(f"/console/payments/orders/{order.id}/ship",
                         data={"carrier": "EMS", "tracking_number": "1190 0000 0001", "csrf_token": token})
    assert shipped.status_code == 302
    detail = staff.get(f"/console/payments/orders/{order.id}").get_data(as_text=True)
    assert "EMS 119000000001" in detail and "已寄出" in detail
    assert "138****0000" in detail and "13800000000" not in detail and "显示完整信息" in detail
    assert "EMS 119000000001" in shop["client"].get(f"/h5/orders/{order.id}").get_data(as_text=True)
    no_reason = staff.post(f"/console/payments/orders/{order.id}/refund", data={"reason": " ", "csrf_token": token})
    assert no_reason.headers["Location"].endswith(f"/console/payments/orders/{order.id}")  # the note is flashed
    assert "请填写退款原因" in staff.get(no_reason.headers["Location"]).get_data(as_text=True)
    staff.post(
        f"/console/payments/orders/{order.id}/refund", data={"reason": "邮寄丢失，学生不再需要", "csrf_token": token}
    )
    staff.post(f"/console/payments/orders/{order.id}/refund", data={"reason": "再点一次", "csrf_token": token})
    assert the_order(app).status == "refunded"
    assert len(shop["fake"].requests("/v3/refund/domestic/refunds")) == 1  # the second click was refused here
    with get_database(app).sessions() as session:
        actions = [a.action for a in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
                   if a.action.startswith("payments.")]
        assert actions == ["payments.print", "payments.ship", "payments.refund"]
        assert session.get(Certificate, shop["cert_id"]).paper_status == "awaiting_payment"


def test_billing_page_and_csv_export(shop, graduates) -> None:  # type: ignore[no-untyped-def]
    from tests.console_helpers import make_staff
    from tests.console_helpers import sign_in as console_sign_in

    app = shop["app"]
    with get_database(app).sessions() as session:
        claim(session, graduates[1], "demo-course", "electronic", ISSUER, date(2026, 11, 29), blobs=get_blob_store(app))
        claim(session, graduates[2], "demo-course", "both", ISSUER, date(2026, 11, 29), blobs=get_blob_store(app))
        session.commit()
    staff = app.test_client()
    console_sign_in(staff, app, make_staff(app))
    page = staff.get("/console/payments/billing?start=2026-11-01&end=2026-11-30").get_data(as_text=True)
    assert "证书大学" in page and '<th id="total">2</th>' in page
    exported = staff.get("/console/payments/billing?start=2026-11-01&end=2026-11-30&format=csv")
    assert exported.mimetype == "text/csv" and "证书大学,2,2026-11-01,2026-11-30" in exported.get_data(as_text=True)
    assert staff.get("/console/payments/billing?start=yesterday").status_code == 400


def test_flags_are_listed_and_resolved(shop) -> None:  # type: ignore[no-untyped-def]
    from tests.console_helpers import make_staff
    from tests.console_helpers import sign_in as console_sign_in

    start_paying(shop)
    fake = shop["fake"].pay
    fake_order = fake.find(the_order(shop["app"]).out_trade_no)
    fake.mark_paid(fake_order)
    fake.deliver(fake_order, amount=1)
    staff = shop["app"].test_client()
    token = console_sign_in(staff, shop["app"], make_staff(shop["app"]))
    assert "1 条支付异常" in staff.get("/console/payments/").get_data(as_text=True)
    page = staff.get("/console/payments/flags").get_data(as_text=True)
    assert "wrong_amount" in page
    with get_database(shop["app"]).sessions() as session:
        flag_id = session.scalar(select(PaymentFlag.id))
    staff.post(f"/console/payments/flags/{flag_id}/resolve", data={"csrf_token": token})
    assert "没有待处理的异常" in staff.get("/console/payments/flags").get_data(as_text=True)


def test_choose_paper_pay_and_follow_the_order_to_shipped_in_a_browser(app, live_server, fake_wechat, phone,  # type: ignore[no-untyped-def]
                                                                        browser, graduates) -> None:
    from models import ConsoleAccount
    from tests.conftest import ARTIFACTS
    from tests.console_helpers import PASSWORD, make_staff
    from wechat import webhook
    from wechat.routes import build_router

    app.config["PUBLIC_URL"] = live_server.url
    app.config["WECHAT_PAY_NOTIFY_URL"] = live_server.url + "/pay/notify"
    # The replies' links name the live server's port, known only now.
    app.extensions[webhook.ROUTER_EXTENSION] = build_router(live_server.url)
    get_queue(app).kick = lambda ids, delay=None: None  # type: ignore[method-assign]
    with get_database(app).sessions() as session:
        session.execute(update(School).values(address="上海市徐汇区漕溪北路 1 号"))
        session.commit()
    ARTIFACTS.mkdir(exist_ok=True)
    # In the simulator, as the student: 我的 → 显示证书 answers with the claim page's card.
    phone.goto(f"{live_server.url}/simulator?openid=o_cert_3")
    phone.get_by_role("button", name="☰ 我的").click()
    phone.get_by_role("button", name="显示证书").click()
    with phone.context.expect_page() as opened:
        phone.locator(".card a", has_text="领取证书").click()
    simulator, phone = phone, opened.value  # the H5 page opens as WeChat's in-app browser would
    phone.set_default_timeout(10_000)
    phone.locator("label[data-channel=paper]").click()
    phone.get_by_role("button", name="领取证书").click()
    phone.get_by_role("button", name="微信支付 ¥30.00").click()
    # No WeixinJSBridge in this browser: in development the page goes to the fake WeChat Pay cashier.
    phone.get_by_text("微信支付（模拟）").wait_for()
    assert phone.locator("#amount").inner_text() == "¥30.00"
    phone.screenshot(path=str(ARTIFACTS / "pay-cashier.png"), full_page=True)
    phone.get_by_role("button", name="确认支付").click()
    phone.locator("#order-status[data-status='paid']").wait_for()
    phone.screenshot(path=str(ARTIFACTS / "pay-order-paid.png"), full_page=True)
    order = the_order(app)
    assert order.status == "paid" and paid_events(app) == 1
    # Staff ship it from the console (a desktop browser).
    staff_id = make_staff(app)
    with get_database(app).sessions() as session:
        username = session.get(ConsoleAccount, staff_id).username
    desk = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN").new_page()
    desk.set_default_timeout(10_000)
    desk.goto(f"{live_server.url}/console/payments/")
    desk.locator("input[name=username]").fill(username)
    desk.locator("input[name=password]").fill(PASSWORD)
    desk.get_by_role("button", name="登录").click()
    desk.get_by_role("link", name=order.out_trade_no).first.click()
    desk.locator("input[name=carrier]").fill("顺丰速运")
    desk.locator("input[name=tracking_number]").fill("SF1400000000001")
    desk.get_by_role("button", name="已寄出，通知学生").click()
    desk.get_by_text("顺丰速运 SF1400000000001").wait_for()
    desk.screenshot(path=str(ARTIFACTS / "pay-console-order.png"), full_page=True)
    desk.context.close()
    phone.goto(f"{live_server.url}/h5/orders/{order.id}")
    phone.locator("#order-status[data-status='shipped']").wait_for()
    assert "SF1400000000001" in phone.locator("#tracking").inner_text()
    phone.screenshot(path=str(ARTIFACTS / "pay-order-shipped.png"), full_page=True)
    assert simulator.get_by_text("领取证书").count() >= 1


def test_an_order_closed_while_wechat_pay_creates_it_is_not_handed_to_the_page(shop, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The student taps 电子版 on a second phone while the first one's pay call waits for WeChat Pay:
    the order closes here with no prepay_id yet. The first call must not then hand out a payment
    page for the closed order, and WeChat Pay's side must be closed too (else it could be paid)."""
    from web import payments as pay_view

    original = orders.record_prepay

    def channel_changed_meanwhile(*args, **kwargs):  # type: ignore[no-untyped-def]
        with get_database(shop["app"]).sessions() as session:
            change_channel(session, shop["user_id"], shop["cert_id"], "electronic", ISSUER, now=utcnow(),
                           blobs=get_blob_store(shop["app"]))
            session.commit()
        return original(*args, **kwargs)

    monkeypatch.setattr(pay_view.orders, "record_prepay", channel_changed_meanwhile)
    resp = shop["client"].post(f"/h5/certificates/{shop['cert_id']}/pay", headers={"X-CSRF-Token": CSRF})
    monkeypatch.undo()
    assert resp.status_code == 409 and "params" not in resp.get_json()
    order = the_order(shop["app"])
    assert order.status == "closed"
    fake = shop["fake"].pay
    assert fake.find(order.out_trade_no).trade_state == "NOTPAY"  # WeChat Pay created it meanwhile
    assert set(run_jobs(shop["app"], orders.CLOSE_REMOTE_JOB)) == {"done"}
    assert fake.find(order.out_trade_no).trade_state == "CLOSED"  # and now nobody can pay it
    with get_database(shop["app"]).sessions() as session:
        certificate = session.get(Certificate, shop["cert_id"])
        assert (certificate.channel, certificate.paper_status) == ("electronic", None)
        assert [e.to_status for e in orders.events_of(session, order.id)] == ["created", "closed"]


def test_reconcile_backs_off_for_an_order_wechat_pay_cannot_settle_and_flags_it(shop) -> None:  # type: ignore[no-untyped-def]
    """WeChat Pay down (or refusing this one order) must not mean a failing query job every minute
    forever: every minute for the first hour after the order expired, then hourly, then daily with
    a flag for staff. The query keeps coming, so the order still settles when WeChat Pay is back."""
    start_paying(shop)
    order = the_order(shop["app"])
    app = shop["app"]
    # A fixed time of day: the daily query's key is the day, and two hours from 22:30 cross midnight.
    now = utcnow().replace(hour=3, minute=0, second=0, microsecond=0)

    def scheduled(expired_ago: timedelta, minutes: int) -> int:
        """How many query jobs reconcile runs once a minute for `minutes` would record."""
        with get_database(app).sessions() as session:
            session.execute(update(CertificateOrder).values(expires_at=now - expired_ago))
            session.execute(Job.__table__.delete().where(Job.kind == orders.QUERY_JOB))
            for minute in range(minutes):
                notifications.schedule_queries(session, now + timedelta(minutes=minute), 60)
            session.commit()
            return session.scalar(select(func.count()).select_from(Job).where(Job.kind == orders.QUERY_JOB))

    assert scheduled(timedelta(minutes=5), 10) == 10  # just expired: asked every minute
    assert scheduled(timedelta(hours=3), 10) <= 2  # hours late: once an hour
    assert flags(app) == {}
    assert scheduled(timedelta(days=2), 120) == 1  # days late: once a day, and staff are told
    assert flags(app) == {"unsettled": 1}
    # WeChat Pay answers again: the daily query settles it (here: unpaid, so it closes).
    assert set(run_jobs(app, orders.QUERY_JOB)) == {"done"}
    assert the_order(app).status == "closed" and shop["fake"].pay.find(order.out_trade_no).trade_state == "CLOSED"


def test_concurrent_taps_on_pay_make_one_order_here_and_at_wechat_pay(shop) -> None:  # type: ignore[no-untyped-def]
    """Several taps (two phones, an impatient thumb) at once: one order, one JSAPI order, one prepay_id."""
    barrier = threading.Barrier(6)
    answers: list[tuple[int, str | None]] = []

    def tap() -> None:
        client = shop["app"].test_client()
        sign_in(client, shop["user_id"], "o_cert_0")
        barrier.wait()
        resp = client.post(f"/h5/certificates/{shop['cert_id']}/pay", headers={"X-CSRF-Token": CSRF})
        body = resp.get_json(silent=True) or {}
        answers.append((resp.status_code, (body.get("params") or {}).get("package")))

    threads = [threading.Thread(target=tap) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [code for code, _ in answers] == [200] * 6
    assert len({package for _, package in answers}) == 1
    with get_database(shop["app"]).sessions() as session:
        assert session.scalar(select(func.count()).select_from(CertificateOrder)) == 1
    assert len(shop["fake"].pay.orders) == 1


def test_a_correction_after_paying_keeps_the_payment_with_the_new_version(shop) -> None:  # type: ignore[no-untyped-def]
    """Staff correct a paid paper certificate: version 2 is the one printed and mailed, so it carries
    the payment. Else version 2 shows as unpaid: the student could switch to electronic and back
    and pay a second time, and staff would print the uncorrected version 1."""
    from handlers.certificates.corrections import decide_correction, request_correction

    app, fake = shop["app"], shop["fake"].pay
    start_paying(shop)
    fake.pay(fake.find(the_order(app).out_trade_no))
    assert the_order(app).status == "paid"
    with get_database(app).sessions() as session:
        asked = request_correction(
            session, shop["user_id"], shop["cert_id"], {"student_number": "C0007"}, "学号少写一位"
        )
        new = decide_correction(session, asked.id, "wang", approve=True, note=None, issuer=ISSUER, now=utcnow(),
                                blobs=get_blob_store(app))
        session.commit()
        new_id = new.id
        assert (new.channel, new.paper_status) == ("paper", "paid")
    order = the_order(app)
    assert order.certificate_id == new_id  # printing takes version 2's PDF
    with get_database(app).sessions() as session:
        assert orders.events_of(session, order.id)[-1].detail["certificate_id"] == new_id
    # No way to pay again: no pay button, no type change, no second order.
    page = shop["client"].get(f"/h5/certificates/{new_id}").get_data(as_text=True)
    assert "微信支付" not in page and "更改证书类型" not in page
    again = shop["client"].post(f"/h5/certificates/{new_id}/pay", headers={"X-CSRF-Token": CSRF})
    assert again.status_code == 409
    with get_database(app).sessions() as session:
        with pytest.raises(Refused):
            change_channel(session, shop["user_id"], new_id, "electronic", ISSUER, now=utcnow(),
                           blobs=get_blob_store(app))
        session.rollback()
        assert session.scalar(select(func.count()).select_from(CertificateOrder)) == 1


def test_a_notification_waiting_on_a_correction_pays_the_new_version(shop) -> None:  # type: ignore[no-untyped-def]
    """The notification reads the order (version 1), then waits for version 1's lock, held by staff
    approving a correction that moves the order to version 2: the payment lands on version 2."""
    from handlers.certificates.corrections import decide_correction, request_correction

    app, fake = shop["app"], shop["fake"].pay
    start_paying(shop)
    order = the_order(app)
    fake.mark_paid(fake.find(order.out_trade_no))
    codes: list[int] = []
    with get_database(app).sessions() as session:
        asked = request_correction(
            session, shop["user_id"], shop["cert_id"], {"student_number": "C0007"}, "学号少写一位"
        )
        session.commit()
        new = decide_correction(session, asked.id, "wang", approve=True, note=None, issuer=ISSUER,
                                now=utcnow(), blobs=get_blob_store(app))  # holds v1's lock
        new_id = new.id
        notifier = threading.Thread(target=lambda: codes.extend(fake.deliver(fake.find(order.out_trade_no))))
        notifier.start()
        time.sleep(1.0)  # the notification is in, waiting for the lock (PostgreSQL) or the write lock (SQLite)
        session.commit()
    notifier.join(30)
    assert codes == [204]
    with get_database(app).sessions() as session:
        assert session.get(Certificate, new_id).paper_status == "paid"
        assert session.get(CertificateOrder, order.id).status == "paid"
    assert flags(app) == {}


def test_revoking_a_certificate_closes_its_unpaid_order_here_and_at_wechat_pay(shop) -> None:  # type: ignore[no-untyped-def]
    """A revoked certificate is not printed: an order still open for it must not be payable any more
    (else the student pays for a copy staff will not mail), and a payment that still comes is flagged."""
    from handlers.certificates.corrections import revoke

    app, fake = shop["app"], shop["fake"].pay
    start_paying(shop)
    order = the_order(app)
    with get_database(app).sessions() as session:
        revoke(session, shop["cert_id"], "wang", "成绩作废", now=utcnow())
        session.commit()
    closed = the_order(app)
    assert closed.status == "closed"
    with get_database(app).sessions() as session:
        assert orders.events_of(session, order.id)[-1].actor == "staff:wang"
    assert set(run_jobs(app, orders.CLOSE_REMOTE_JOB)) == {"done"}
    assert fake.find(order.out_trade_no).trade_state == "CLOSED"


def test_revoking_a_paid_certificate_flags_its_order_for_a_refund(shop) -> None:  # type: ignore[no-untyped-def]
    from handlers.certificates.corrections import revoke

    app, fake = shop["app"], shop["fake"].pay
    start_paying(shop)
    fake.pay(fake.find(the_order(app).out_trade_no))
    with get_database(app).sessions() as session:
        revoke(session, shop["cert_id"], "wang", "成绩作废", now=utcnow())
        session.commit()
    assert the_order(app).status == "paid"  # the money is not touched without a person deciding
    assert flags(app) == {"revoked_paid": 1}


def test_the_student_is_told_in_the_chat_when_issued_and_when_paid(shop) -> None:  # type: ignore[no-untyped-def]
    """A claim and a payment each queue one certificate notice, sent once however often it runs."""
    start_paying(shop)
    order = the_order(shop["app"])
    fake = shop["fake"].pay
    fake.pay(fake.find(order.out_trade_no))
    fake.deliver(fake.find(order.out_trade_no), copies=2)  # duplicates queue nothing more
    assert run_jobs(shop["app"], "certificates.notice") == ["done", "done"]
    assert run_jobs(shop["app"], "certificates.notice") == []
    sent = [m for m in shop["fake"].sent_messages if m["kind"] == "template"]
    firsts = sorted(m["data"]["first"]["value"] for m in sent)
    assert len(sent) == 2 and all(m["touser"] == "o_cert_0" for m in sent)
    assert any("已签发" in f for f in firsts) and any("已支付成功" in f for f in firsts)


def test_a_double_click_on_refund_at_the_same_moment_writes_one_audit_entry(shop) -> None:  # type: ignore[no-untyped-def]
    import threading

    from models import AuditEntry
    from tests.console_helpers import make_staff
    from tests.console_helpers import sign_in as console_sign_in

    order = paid_order(shop)
    app = shop["app"]
    staff_id = make_staff(app)
    clicks = []
    for _ in range(2):
        client = app.test_client()
        clicks.append((client, console_sign_in(client, app, staff_id)))
    barrier = threading.Barrier(2)

    def click(client, token) -> None:  # type: ignore[no-untyped-def]
        barrier.wait()
        client.post(f"/console/payments/orders/{order.id}/refund", data={"reason": "学生申请", "csrf_token": token})

    threads = [threading.Thread(target=click, args=pair) for pair in clicks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert the_order(app).status == "refunded"
    with get_database(app).sessions() as session:
        refunds = session.scalars(select(AuditEntry).where(AuditEntry.action == "payments.refund")).all()
    assert len(refunds) == 1


def test_refreshing_the_payment_result_is_limited_per_order(shop) -> None:  # type: ignore[no-untyped-def]
    start_paying(shop)
    order = the_order(shop["app"])
    query = f"/v3/pay/transactions/out-trade-no/{order.out_trade_no}"
    before = len(shop["fake"].requests(query))
    answers = [shop["client"].post(f"/h5/orders/{order.id}/refresh", headers={"X-CSRF-Token": CSRF}).get_json()
               for _ in range(10)]
    asked = len(shop["fake"].requests(query)) - before
    assert asked == 6 and sum(bool(a.get("limited")) for a in answers) == 4
    assert all(a["status"] == "paying" for a in answers)


def test_a_shipping_notice_whose_worker_died_is_never_sent_as_text_twice(shop) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    app, fake = shop["app"], shop["fake"]
    order = paid_order(shop)
    app.config["WECHAT_TEMPLATE_SHIPPED"] = "tmpl_shipped_1"
    with get_database(app).sessions() as session:
        shipping.mark_shipped(session, order.id, "EMS", "1190001", "staff:wang", utcnow())
        session.commit()
        # A worker took the job (attempt 1 of 5), sent the text, and died before recording it.
        session.execute(update(Job).where(Job.kind == orders.NOTIFY_SHIPPED_JOB).values(
            status="running", attempts=1, last_error=None, lease_until=utcnow() - timedelta(minutes=1)))
        session.commit()
        job_id = session.scalar(select(Job.id).where(Job.kind == orders.NOTIFY_SHIPPED_JOB))
    assert get_queue(app).execute(job_id) == "done"
    kinds = [m["kind"] for m in fake.sent_messages if m.get("touser") == "o_cert_0" and m["kind"] != "template"
             or m.get("template_id") == "tmpl_shipped_1"]
    assert kinds == ["template"]  # the deduplicated template, not a second text


def test_a_refund_notification_settles_the_refund_once(shop) -> None:  # type: ignore[no-untyped-def]
    """WeChat Pay tells us when a refund ends: recorded once on the order, however often it says so,
    and the follow-up job then finds it told."""
    app, fake = shop["app"], shop["fake"]
    app.config["WECHAT_PAY_REFUND_NOTIFY_URL"] = shop["live"].url + "/pay/refund-notify"
    fake.pay.refund_outcome = "PROCESSING"
    order = paid_order(shop)
    from wechat.pay import make_wechat_pay

    with get_database(app).sessions() as session:
        plan = payment_refunds.refund_plan(session, order.id)
        number = payment_refunds.refund_number(plan)
        session.rollback()
        result = make_wechat_pay(app.config).refund_order(out_trade_no=plan.out_trade_no, out_refund_no=number,
                                                          total_fen=plan.total_fen, refund_fen=plan.total_fen,
                                                          reason="测试")
        payment_refunds.apply_refund(session, order.id, result, "staff:wang", "测试", utcnow())
        session.commit()
    fake.pay.refund_outcome = "SUCCESS"
    assert fake.pay.deliver_refund(number, copies=3) == [204, 204, 204]
    with get_database(app).sessions() as session:
        told = [e for e in orders.events_of(session, order.id) if (e.detail or {}).get("refund_status")]
        assert [(e.from_status, e.to_status, e.actor) for e in told] == [(None, "refunded", "wechatpay:refund")]
    assert run_jobs(app, orders.REFUND_CHECK_JOB) == ["done"]
    with get_database(app).sessions() as session:
        assert len([e for e in orders.events_of(session, order.id) if (e.detail or {}).get("refund_status")]) == 1
    # A forged one is refused and flagged, never applied.
    headers, body = fake.pay.notification(None, resource={"out_trade_no": order.out_trade_no}, tamper=True,  # type: ignore[arg-type]
                                          event_type="REFUND.SUCCESS", original_type="refund")
    import requests

    assert (
        requests.post(shop["live"].url + "/pay/refund-notify", data=body, headers=headers, timeout=5).status_code == 401
    )

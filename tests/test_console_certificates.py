"""The staff certificate desk: search, versions and history, corrections, revocation, notices, and their audit."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from database import get_database
from jobs.queue import get_queue
from models import Certificate, CertificateEvent, CorrectionRequest, Job
from tests.console_helpers import make_staff, search, sign_in
from tests.factories import ask, audit, claim_as, get_file, staff_client

SCRIPT = '<script>alert("x")</script>'


def jobs(app: Flask, kind: str) -> list[Job]:
    """Jobs of `kind`, leaving out the notice every claim queues (tests/test_notices.py covers it)."""
    with get_database(app).sessions() as session:
        return [job for job in session.scalars(select(Job).where(Job.kind == kind).order_by(Job.id))
                if (job.payload or {}).get("reason") != "issued"]


def test_search_by_name_prefix_student_number_and_serial(app, client, graduates) -> None:  # type: ignore[no-untyped-def]
    issued = [claim_as(app, user_id) for user_id in graduates[:3]]
    staff_client(app, client)
    by_prefix = search(client, "/console/certificates/", "林小满")
    assert all(c.serial in by_prefix for c in issued)
    one = search(client, "/console/certificates/", "林小满二")
    assert issued[1].serial in one and issued[0].serial not in one
    by_number = search(client, "/console/certificates/", "C002")
    assert issued[2].serial in by_number and issued[1].serial not in by_number
    # A serial typed in lower case and without its leading zeros still finds it.
    number = int(issued[0].serial.rsplit("-", 1)[1])
    by_serial = search(client, "/console/certificates/", f"xw-{issued[0].issued_on.year}-{number}")
    assert issued[0].serial in by_serial and issued[1].serial not in by_serial
    nothing = search(client, "/console/certificates/", "小满")  # not a prefix
    assert "没有找到匹配的证书" in nothing
    # Wildcards are text, not patterns.
    assert "没有找到匹配的证书" in search(client, "/console/certificates/", "%")


def test_approving_a_correction_issues_version_two_audits_and_tells_the_student(  # type: ignore[no-untyped-def]
        app, client, graduates, fake_wechat) -> None:
    first = claim_as(app, graduates[0])
    request_id = ask(app, graduates[0], first.id, {"holder_name": "林大满"})
    _, token, staff = staff_client(app, client)
    queue = client.get("/console/certificates/corrections").get_data(as_text=True)
    assert first.serial in queue and "林大满" in queue
    page = client.get(f"/console/certificates/serial/{first.serial}").get_data(as_text=True)
    assert "批准并签发新版本" in page and "姓名写错了" in page

    response = client.post(f"/console/certificates/corrections/{request_id}/decide",
                           data={"csrf_token": token, "decision": "approve", "note": ""})
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "当前版本：第 2 版" in page and "已批准更正" in page and "林大满" in page
    username = _username(app, staff)
    with get_database(app).sessions() as session:
        versions = list(session.scalars(select(Certificate).where(Certificate.serial == first.serial)
                                        .order_by(Certificate.version)))
        assert [(v.version, v.status, v.holder_name) for v in versions] == [
            (1, "superseded", first.holder_name), (2, "valid", "林大满")]
        events = session.scalars(select(CertificateEvent.actor).where(
            CertificateEvent.certificate_id == versions[1].id)).all()
        assert events == [f"staff:{username}"]
    [entry] = audit(app, "certificate.correction_approve")
    assert entry.account_id == staff and entry.subject_id == str(request_id)
    assert entry.before == {"holder_name": first.holder_name, "version": 1, "certificate_id": first.id}
    assert entry.after == {"holder_name": "林大满", "version": 2, "certificate_id": versions[1].id}
    assert entry.school_id is not None  # found from the printed school name

    # The student is told by a template message, once, however often the job runs.
    [job] = jobs(app, "certificates.notice")
    get_queue(app).execute(job.id)
    get_queue(app).execute(job.id)
    sent = [m for m in fake_wechat.sent_messages if m["kind"] == "template"]
    assert len(sent) == 1 and sent[0]["touser"] == "o_cert_0"
    assert sent[0]["template_id"] == app.config["WECHAT_TEMPLATE_CERT_NOTICE"]
    assert sent[0]["data"]["keyword2"]["value"] == first.serial and "第 2 版" in sent[0]["data"]["first"]["value"]
    assert sent[0]["url"].endswith(f"/h5/certificates/{versions[1].id}")

    # Deciding again (a double submit, a second tab) changes nothing.
    again = client.post(f"/console/certificates/corrections/{request_id}/decide",
                        data={"csrf_token": token, "decision": "approve"})
    assert again.status_code == 200 and "该申请已处理" in again.get_data(as_text=True)
    assert len(audit(app, "certificate.correction_approve")) == 1


def _username(app: Flask, account_id: int) -> str:
    from models import ConsoleAccount
    with get_database(app).sessions() as session:
        return session.get(ConsoleAccount, account_id).username


def test_rejecting_needs_a_reason_and_is_audited(app, client, graduates) -> None:  # type: ignore[no-untyped-def]
    first = claim_as(app, graduates[1])
    request_id = ask(app, graduates[1], first.id, {"student_number": "C9999"}, "学号错了")
    _, token, _ = staff_client(app, client)
    url = f"/console/certificates/corrections/{request_id}/decide"
    refused = client.post(url, data={"csrf_token": token, "decision": "reject", "note": "  "})
    assert refused.status_code == 200 and "请填写驳回原因" in refused.get_data(as_text=True)
    assert audit(app, "certificate.correction_reject") == []
    assert client.post(url, data={"csrf_token": token, "decision": "maybe"}).status_code == 200
    done = client.post(url, data={"csrf_token": token, "decision": "reject", "note": "学号与名单一致，无需更正"})
    assert done.status_code == 302
    with get_database(app).sessions() as session:
        request = session.get(CorrectionRequest, request_id)
        assert request.status == "rejected" and request.decision_note == "学号与名单一致，无需更正"
        assert session.scalar(select(Certificate.version).where(Certificate.serial == first.serial)
                              .order_by(Certificate.version.desc()).limit(1)) == 1
    [entry] = audit(app, "certificate.correction_reject")
    assert entry.before == {"status": "pending"} and entry.after == {"status": "rejected"}
    assert entry.note == "学号与名单一致，无需更正"
    assert jobs(app, "certificates.notice") == []


def test_revoking_needs_a_reason_and_a_confirmation(app, client, graduates) -> None:  # type: ignore[no-untyped-def]
    first = claim_as(app, graduates[2])
    _, token, _ = staff_client(app, client)
    url = f"/console/certificates/{first.id}/revoke"
    unconfirmed = client.post(url, data={"csrf_token": token, "reason": "冒名顶替"})
    assert "请勾选确认" in unconfirmed.get_data(as_text=True)
    no_reason = client.post(url, data={"csrf_token": token, "reason": " ", "confirm": "yes"})
    assert "请填写撤销原因" in no_reason.get_data(as_text=True)
    assert audit(app, "certificate.revoke") == []
    done = client.post(url, data={"csrf_token": token, "reason": "冒名顶替", "confirm": "yes"})
    assert done.status_code == 302
    page = client.get(done.headers["Location"]).get_data(as_text=True)
    assert "已撤销" in page and "冒名顶替" in page and "撤销证书</button>" not in page
    [entry] = audit(app, "certificate.revoke")
    assert entry.subject_type == "certificate" and entry.subject_id == str(first.id)
    assert entry.before["status"] == "valid" and entry.after == {"status": "revoked"} and entry.note == "冒名顶替"
    twice = client.post(url, data={"csrf_token": token, "reason": "再次", "confirm": "yes"})
    assert "只能撤销有效的证书" in twice.get_data(as_text=True)
    assert len(audit(app, "certificate.revoke")) == 1


def test_resending_the_notice_queues_a_template_message(app, client, graduates, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    first = claim_as(app, graduates[3])
    _, token, _ = staff_client(app, client)
    for _ in range(2):
        assert client.post(f"/console/certificates/{first.id}/notice", data={"csrf_token": token}).status_code == 302
    queued = jobs(app, "certificates.notice")
    assert len(queued) == 2 and queued[0].payload["client_msg_id"] != queued[1].payload["client_msg_id"]
    for job in queued:
        get_queue(app).execute(job.id)
    sent = [m for m in fake_wechat.sent_messages if m["kind"] == "template"]
    assert len(sent) == 2 and "已签发" in sent[0]["data"]["first"]["value"]
    with get_database(app).sessions() as session:
        assert len(session.scalars(select(CertificateEvent).where(CertificateEvent.action == "notice_sent")).all()) == 2
    assert [e.subject_id for e in audit(app, "certificate.notice")] == [str(first.id)] * 2


def test_a_failed_notice_is_retried_then_shown_to_staff(app, client, graduates, fake_wechat) -> None:  # type: ignore[no-untyped-def]
    first = claim_as(app, graduates[4])
    _, token, _ = staff_client(app, client)
    client.post(f"/console/certificates/{first.id}/notice", data={"csrf_token": token})
    [job] = jobs(app, "certificates.notice")
    with get_database(app).sessions() as session:
        row = session.get(Job, job.id)
        row.max_attempts = 1
        session.commit()
    fake_wechat.fail("/cgi-bin/message/template/send", errcode=43004)
    get_queue(app).execute(job.id)
    page = client.get("/console/jobs/").get_data(as_text=True)
    assert "certificates.notice" in page and "43004" in page
    assert client.post(f"/console/jobs/{job.id}/retry", data={"csrf_token": token}).status_code == 302
    [entry] = audit(app, "job.retry")
    assert entry.subject_id == str(job.id) and entry.before["status"] == "failed"
    assert "没有失败的任务" in client.get("/console/jobs/").get_data(as_text=True)
    assert client.post("/console/jobs/999999/retry", data={"csrf_token": token}).status_code == 404


def test_a_script_in_a_name_is_refused_and_in_a_reason_shown_as_text(app, client, graduates) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from handlers.errors import Refused

    first = claim_as(app, graduates[0])
    with pytest.raises(Refused):  # never printed on a certificate: the profile's rules apply
        ask(app, graduates[0], first.id, {"holder_name": SCRIPT}, "名字写错了")
    request_id = ask(app, graduates[0], first.id, {"holder_name": "林大满"}, f"名字 {SCRIPT}")
    _, token, _ = staff_client(app, client)
    shown = [client.get(url).get_data(as_text=True)
             for url in ("/console/certificates/corrections", f"/console/certificates/serial/{first.serial}")]
    assert all(SCRIPT not in body for body in shown) and any("&lt;script&gt;" in body for body in shown)
    client.post(f"/console/certificates/corrections/{request_id}/decide",
                data={"csrf_token": token, "decision": "approve"})
    for url in (f"/console/certificates/serial/{first.serial}", "/console/audit/"):
        assert SCRIPT not in client.get(url).get_data(as_text=True), url


def test_unknown_things_are_404(app, client, graduates) -> None:  # type: ignore[no-untyped-def]
    first = claim_as(app, graduates[0])
    _, token, _ = staff_client(app, client)
    assert client.get("/console/certificates/serial/XW-2026-999999").status_code == 404
    assert client.post("/console/certificates/corrections/999/decide",
                       data={"csrf_token": token, "decision": "approve"}).status_code == 404
    assert client.post("/console/certificates/999/revoke", data={"csrf_token": token}).status_code == 404
    pdf = get_file(client, f"/console/certificates/file/{first.id}.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert pdf.headers["Content-Disposition"].startswith("inline;")  # shown in the browser, not saved
    assert client.get("/console/certificates/file/999.pdf").status_code == 404


def test_the_queue_lists_pending_requests_first(app, client, graduates) -> None:  # type: ignore[no-untyped-def]
    issued = [claim_as(app, user_id) for user_id in graduates[:3]]
    requests = [ask(app, graduates[i], issued[i].id, {"holder_name": f"新名字{'甲乙丙'[i]}"}) for i in range(3)]
    _, token, _ = staff_client(app, client)
    client.post(f"/console/certificates/corrections/{requests[0]}/decide",
                data={"csrf_token": token, "decision": "reject", "note": "不需要"})
    pending = client.get("/console/certificates/corrections").get_data(as_text=True)
    assert "新名字乙" in pending and "新名字丙" in pending and "新名字甲" not in pending
    everything = client.get("/console/certificates/corrections?status=all").get_data(as_text=True)
    assert everything.index("新名字乙") < everything.index("新名字丙") < everything.index("新名字甲")


def test_every_search_is_served_by_an_index(app) -> None:  # type: ignore[no-untyped-def]
    """The search stays fast at any size: each kind of query is an index lookup, never a table scan."""
    from sqlalchemy import text

    from handlers.certificates.desk import search_statement

    engine = get_database(app).engine
    with get_database(app).sessions() as session:
        for query in ("林小满", "C001", "XW-2026-12"):
            statement = search_statement(session, query)
            sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
            with engine.connect() as conn:
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SET enable_seqscan = off"))  # tiny tables: ask whether an index *can* serve it
                    plan = " ".join(r[0] for r in conn.execute(text("EXPLAIN " + sql)))
                    assert "Seq Scan on certificates" not in plan and "Index" in plan, (query, plan)
                else:
                    plan = " ".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + sql)))
                    assert "SCAN certificates" not in plan and "USING INDEX" in plan, (query, plan)


def test_two_staff_approving_at_once_issue_one_version(app, graduates) -> None:  # type: ignore[no-untyped-def]
    import threading

    first = claim_as(app, graduates[1])
    request_id = ask(app, graduates[1], first.id, {"student_number": "C0011"})
    clients = [app.test_client() for _ in range(2)]
    tokens = [sign_in(c, app, make_staff(app)) for c in clients]
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def approve(i: int) -> None:
        barrier.wait()
        statuses.append(clients[i].post(f"/console/certificates/corrections/{request_id}/decide",
                                        data={"csrf_token": tokens[i], "decision": "approve"}).status_code)

    threads = [threading.Thread(target=approve, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 302]  # one approved, the other told it was decided already
    with get_database(app).sessions() as session:
        assert session.scalars(select(Certificate.version).where(Certificate.serial == first.serial)
                               .order_by(Certificate.version)).all() == [1, 2]
    assert len(audit(app, "certificate.correction_approve")) == 1
    assert len(jobs(app, "certificates.notice")) == 1


def test_two_staff_revoking_at_once_revoke_once(app, graduates) -> None:  # type: ignore[no-untyped-def]
    import threading

    first = claim_as(app, graduates[2])
    clients = [app.test_client() for _ in range(2)]
    tokens = [sign_in(c, app, make_staff(app)) for c in clients]
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def revoke(i: int) -> None:
        barrier.wait()
        statuses.append(clients[i].post(f"/console/certificates/{first.id}/revoke", data={
            "csrf_token": tokens[i], "reason": f"原因{i}", "confirm": "yes"}).status_code)

    threads = [threading.Thread(target=revoke, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 302]
    assert len(audit(app, "certificate.revoke")) == 1
    with get_database(app).sessions() as session:
        assert len(session.scalars(select(CertificateEvent).where(CertificateEvent.action == "revoked")).all()) == 1

"""Test data, built through the real flows: catalogs, signed-in students, certificates, orders.

Every test module takes its helpers from here (and its fixtures from conftest.py), never from
another test module."""
from __future__ import annotations

import base64
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from sqlalchemy import select

import certs
from config import DEV_SECRETS
from database import get_database
from handlers.accounts.identity import ProfileForm, submit_profile
from handlers.catalog.loader import CatalogError, parse_catalog
from handlers.catalog.problems import Problem
from handlers.certificates.claims import Issuer, claim
from handlers.certificates.corrections import request_correction
from handlers.learning.watching import heartbeat, start_watch
from handlers.schools import roster
from jobs.queue import get_queue
from models import AuditEntry, Certificate, CertificateOrder, Job, Question, User
from models.base import utcnow
from tests.console_helpers import make_staff
from tests.console_helpers import sign_in as console_sign_in
from web.blobs import get_blob_store


def q(code: str, points: int, kind: str = "single", answer: list[str] | None = None,
      options: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"code": code, "kind": kind, "points": points, "text": f"题目 {code}",
            "options": options or [{"key": k, "text": f"选项{k}"} for k in "ABCD"],
            "answer": answer or ["C"], "explanation": "解析"}


def course(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "course": {
            "code": "demo-course",
            "title": "示例课程",
            "description": "说明",
            "pass_mark": 85,
            "topic_pass_percent": 60,
            "on_topic_failed": "rewatch",
            "on_course_failed": "redo_all",
            "watch_threshold": 0.9,
        },
        "topics": [
            {
                "code": "t01",
                "title": "专题一",
                "summary": "概要",
                "video": {"url": "demo:demo-t01", "seconds": 10},
                "questions": [q("t01-q1", 30), q("t01-q2", 20, "multiple", ["A", "B"])],
            },
            {
                "code": "t02",
                "title": "专题二",
                "summary": "概要",
                "video": {"url": "https://cdn.example.cn/t02.mp4", "seconds": 60},
                "questions": [
                    q("t02-q1", 40),
                    q("t02-q2", 10, "judge", ["错"], [{"key": "对", "text": "对"}, {"key": "错", "text": "错"}]),
                ],
            },
        ],
    }
    data["course"].update(overrides)
    return data


def to_toml(data: dict[str, Any]) -> str:
    """A tiny TOML writer for these fixtures (the catalog itself is hand-written)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(v)

    lines = ["[course]"] + [f"{k} = {value(v)}" for k, v in data["course"].items()]
    for topic in data.get("topics", []):
        lines.append("\n[[topics]]")
        lines += [f"{k} = {value(v)}" for k, v in topic.items() if k not in ("video", "questions")]
        if "video" in topic:
            lines.append("[topics.video]")
            lines += [f"{k} = {value(v)}" for k, v in topic["video"].items()]
        for question in topic.get("questions", []):
            lines.append("[[topics.questions]]")
            lines += [f"{k} = {value(v)}" for k, v in question.items()]
    return "\n".join(lines) + "\n"


def problems_of(data: dict[str, Any]) -> list[Problem]:
    with pytest.raises(CatalogError) as err:
        parse_catalog(to_toml(data), "demo.toml")
    return err.value.problems


def line_of(text: str, fragment: str, after: str = "") -> int:
    """The 1-based line of `fragment` (its first occurrence after `after`)."""
    start = text.index(after) if after else 0
    return text[:text.index(fragment, start)].count("\n") + 1


CSRF = "test-csrf-token"


def sign_in(client, user_id: int, openid: str) -> None:  # type: ignore[no-untyped-def]
    """What a finished WeChat OAuth leaves in the session (tests/test_auth.py covers OAuth itself)."""
    with client.session_transaction() as s:
        s.update(user_id=user_id, openid=openid, login_at=time.time(), csrf=CSRF)


def verify(client, school_id: int) -> None:  # type: ignore[no-untyped-def]
    fields = dict(school_id=str(school_id), real_name="钱七", college="心理学院", student_number="H5001",
                  grade="2024级", agree_notice="1", agree_sharing="1", csrf_token=CSRF)
    preview = client.post("/h5/profile", data={**fields, "step": "preview"})
    assert "请核对证书信息" in preview.get_data(as_text=True)
    done = client.post("/h5/profile", data={**fields, "step": "confirm"})
    assert done.status_code == 302


SEED = base64.b64decode(DEV_SECRETS["CERT_SIGNING_KEY"])


ISSUER = Issuer(signing_key=SEED, public_url="https://xinwei.example.cn")


KEYS = {certs.key_id(certs.public_key(SEED)): certs.public_key(SEED)}


TODAY = date(2026, 11, 29)


def claim_as(app, user_id: int, today: date = TODAY, channel: str = "electronic") -> Certificate:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        certificate = claim(session, user_id, "demo-course", channel, ISSUER, today, blobs=get_blob_store(app))
        session.commit()
        return certificate


PROD_ENV = {
    "XINWEI_ENV": "production",
    "SECRET_KEY": "s" * 32,
    "DATABASE_URL": "postgresql+psycopg://xinwei@db.invalid/xinwei",
    "PUBLIC_URL": "https://xinwei.example.cn",
    "WECHAT_APP_ID": "wx1234567890abcdef",
    "WECHAT_APP_SECRET": "0123456789abcdef0123456789abcdef",
    "WECHAT_TOKEN": "tok",
    "WECHAT_ENCODING_AES_KEY": "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut",
    "CERT_SIGNING_KEY": "cHJvZHVjdGlvbi1rZXktaW4tYS12YXVsdC0zMmJ5dGU=",
    "WECHAT_PAY_MCHID": "1230000109",
    "WECHAT_PAY_API_V3_KEY": "k" * 32,
    "WECHAT_PAY_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nfrom-a-vault\n-----END PRIVATE KEY-----",
    "WECHAT_PAY_CERT_SERIAL": "444F4864EA9B34415",
    "WECHAT_PAY_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nfrom-wechat-pay\n-----END PUBLIC KEY-----",
    "WECHAT_PAY_PUBLIC_KEY_ID": "PUB_KEY_ID_0114232134912410000000000000",
}


def run_upload_jobs(app) -> list[str]:  # type: ignore[no-untyped-def]
    """What a worker does: run the roster jobs that are waiting (as tests/test_school_console.py runs exports)."""
    with get_database(app).sessions() as session:
        jobs = list(session.scalars(select(Job.id).where(Job.kind == roster.UPLOAD_JOB, Job.status == "pending")
                                    .order_by(Job.id)))
    return [get_queue(app).execute(job_id) for job_id in jobs]


T0 = utcnow()


def at(seconds: float):  # type: ignore[no-untyped-def]
    return T0 + timedelta(seconds=seconds)


def watch_fully(db, enrollment, topic: str, start: float, seconds: int) -> float:  # type: ignore[no-untyped-def]
    """Play the video at 1× with a heartbeat every 5 s; returns the clock afterwards."""
    watch = start_watch(db, enrollment, topic, at(start))
    db.commit()  # heartbeats run outside any session, as in the app
    t, seq = start, 0
    while True:
        t += 5
        seq += 1
        beat = heartbeat(db.get_bind(), enrollment.user_id, watch.id, seq, min(t - start, seconds), at(t))
        assert beat.accepted, beat
        if beat.completed:
            return t


def answer_all(db, attempt, right: bool = True) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    answers = {}
    for item in attempt.draw:
        q = db.get(Question, item["question_id"])
        answers[str(q.id)] = list(q.answer) if right else [k for k in item["options"] if k not in q.answer][:1]
    return answers


def ask(app: Flask, user_id: int, certificate_id: int, changes: dict[str, str], reason: str = "姓名写错了") -> int:
    with get_database(app).sessions() as session:
        request = request_correction(session, user_id, certificate_id, changes, reason)
        session.commit()
        return request.id


def audit(app: Flask, action: str) -> list[AuditEntry]:
    with get_database(app).sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def staff_client(app: Flask, client) -> tuple[Any, str, int]:  # type: ignore[no-untyped-def]
    staff = make_staff(app)
    return client, console_sign_in(client, app, staff), staff


def decode_qr(path: Path) -> list[str]:
    """Every QR symbol zbar finds in an image (Debian zbar-tools)."""
    zbarimg = shutil.which("zbarimg")
    assert zbarimg, "zbarimg is missing: apt-get install zbar-tools"
    result = subprocess.run([zbarimg, "--raw", "-q", "-Sdisable", "-Sqrcode.enable", str(path)],
                            capture_output=True, text=True, timeout=30)
    return [line for line in result.stdout.splitlines() if line]


def pending(app, school_id: int, name: str, number: str, openid: str, college: str = "心理学院") -> int:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        user = User(openid=openid)
        session.add(user)
        session.flush()
        profile = submit_profile(session, user.id, ProfileForm(school_id, name, college, number, "2024级",
                                                               "13800138000"), now=utcnow())
        session.commit()
        assert profile.status == "pending"
        return profile.id


def start_login(client, next_path: str | None = None) -> str:  # type: ignore[no-untyped-def]
    """GET /h5/login; the authorize URL it redirects to."""
    resp = client.get("/h5/login", query_string={"next": next_path} if next_path is not None else None)
    assert resp.status_code == 302
    return resp.headers["Location"]


def authorize(authorize_location: str, openid: str) -> str:
    """WeChat's side: the fake authorize page, acting as `openid`; the callback path+query."""
    resp = requests.get(authorize_location, params={"fake_openid": openid}, allow_redirects=False, timeout=5)
    assert resp.status_code == 302, resp.text
    target = urlsplit(resp.headers["Location"])
    return f"{target.path}?{target.query}"


def log_in(client, openid: str, next_path: str | None = None):  # type: ignore[no-untyped-def]
    """The whole loop with the test client; the callback's response."""
    return client.get(authorize(start_login(client, next_path), openid))


def start_paying(shop) -> dict:  # type: ignore[no-untyped-def]
    resp = shop["client"].post(f"/h5/certificates/{shop['cert_id']}/pay", headers={"X-CSRF-Token": CSRF})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


def the_order(app) -> CertificateOrder:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        return session.scalars(select(CertificateOrder).order_by(CertificateOrder.id.desc())).first()


# -- the staff console --------------------------------------------------------------
def paid_order(shop) -> CertificateOrder:  # type: ignore[no-untyped-def]
    start_paying(shop)
    fake = shop["fake"].pay
    fake.pay(fake.find(the_order(shop["app"]).out_trade_no))
    return the_order(shop["app"])


def browser_sign_in(app: Flask, page: Any, base_url: str, user_id: int, openid: str) -> None:
    """Give a browser page the signed session cookie a finished WeChat sign-in leaves (OAuth
    itself is covered in tests/test_auth.py)."""
    client = app.test_client()
    sign_in(client, user_id, openid)
    cookie = client.get_cookie(app.config.get("SESSION_COOKIE_NAME", "session"))
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": base_url}])


@dataclass
class Fetched:
    """A file fetched the way a browser fetches it: the app's answer, then its signed link."""

    status_code: int
    data: bytes
    headers: Any
    mimetype: str


def get_file(client, url: str, **kwargs: Any) -> Fetched:  # type: ignore[no-untyped-def]
    """GET `url` on the app and follow the signed link it answers with: the app's own /blobs/ route
    (local files), or the S3 server's presigned URL, fetched over real HTTP."""
    response = client.get(url, **kwargs)
    location = response.headers.get("Location", "") if response.status_code == 302 else ""
    if location:
        return fetch_link(client, location)
    return Fetched(response.status_code, response.data, response.headers, response.mimetype)


def fetch_link(client, link: str) -> Fetched:  # type: ignore[no-untyped-def]
    """A signed link as a browser follows it: the S3 server over real HTTP, or the app's /blobs/ route."""
    if link.startswith("http"):
        try:
            with urllib.request.urlopen(link, timeout=10) as remote:
                return Fetched(remote.status, remote.read(), remote.headers, remote.headers.get_content_type())
        except urllib.error.HTTPError as refused:
            return Fetched(refused.code, refused.read(), refused.headers, refused.headers.get_content_type())
    response = client.get(link)
    return Fetched(response.status_code, response.data, response.headers, response.mimetype)


def verified_student(session, school_name: str, openid: str, number: str, name: str) -> int:  # type: ignore[no-untyped-def]
    """A school with this student on its roster, and the student verified against it; the user id."""
    from handlers.accounts.identity import ProfileForm, submit_profile
    from models import RosterEntry, School, User

    school, student = School(name=school_name), User(openid=openid)
    session.add_all([school, student])
    session.flush()
    session.add(RosterEntry(school_id=school.id, student_number=number, real_name=name))
    submit_profile(session, student.id, ProfileForm(school.id, name, "心理学院", number, "2024级", "13900000000"),
                   now=utcnow())
    return int(student.id)

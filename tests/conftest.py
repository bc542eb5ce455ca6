"""Fixtures: a migrated database per run (SQLite, or PostgreSQL via TEST_DATABASE_URL), an app per test."""
from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from flask import Flask
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from app import create_app
from blobstore import LocalStore
from cli import alembic_config
from config import DEV_SECRETS
from database import get_database
from models import Base
from models.base import utcnow
from models.engine import make_engine, make_sessionmaker
from web.blobs import get_blob_store
from wechat.fake import FakeWeChatServer
from wechat.simulate import WeChatSide

# Playwright fixtures (`browser`, `phone`) and the S3 server (`s3_server`): one of each per run.
pytest_plugins = ["tests.browser", "tests.s3"]


def _create_pg_database(base_url: str) -> tuple[str, str]:
    """A fresh database on the server named by `base_url`, so runs never share tables."""
    name = f"xinwei_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False), name


def _drop_pg_database(base_url: str, name: str) -> None:
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The database every test uses, migrated once with `upgrade head` (so migrations are tested)."""
    base = os.environ.get("TEST_DATABASE_URL")
    if base:
        url, name = _create_pg_database(base)
    else:
        url, name = "sqlite:///" + str(tmp_path_factory.mktemp("db") / "xinwei.db"), None
    cfg = alembic_config(url)
    cfg.attributes["configure_logging"] = False
    command.upgrade(cfg, "head")
    yield url
    if base and name:
        _drop_pg_database(base, name)


def _empty_tables(app: Flask) -> None:
    engine = get_database(app).engine
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
        else:
            # Checked at commit, when every table is empty: two tables that point at each other
            # (a video asset and its published version) empty in either order.
            conn.execute(text("PRAGMA defer_foreign_keys = ON"))
            for table in tables:
                conn.execute(text(f'DELETE FROM "{table}"'))


@pytest.fixture(scope="session")
def fake_wechat() -> Iterator[FakeWeChatServer]:
    """WeChat's API hosts, faked over real HTTP on loopback, for the whole run."""
    with FakeWeChatServer(DEV_SECRETS["WECHAT_APP_ID"], DEV_SECRETS["WECHAT_APP_SECRET"]) as server:
        yield server


_test_instance: dict[str, str] = {}


def make_test_app(database_url: str, **overrides: Any) -> Flask:
    config = {"TESTING": True, "DATABASE_URL": database_url, "XINWEI_ENV": "development",
              "INSTANCE_PATH": _test_instance.get("path"), **overrides}
    for key, value in _test_instance.get("blobs", {}).items():
        config.setdefault(key, value)
    if _test_instance.get("fake"):
        config.setdefault("WECHAT_API_BASE", _test_instance["fake"])
        config.setdefault("WECHAT_OPEN_BASE", _test_instance["fake"])
        config.setdefault("WECHAT_PAY_API_BASE", _test_instance["fake"])
    return create_app(config)


@pytest.fixture(autouse=True, scope="session")
def _test_instance_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                        fake_wechat: FakeWeChatServer) -> None:
    # Keep test runs out of the repository's instance/ folder, and point every app at the fake.
    _test_instance["path"] = str(tmp_path_factory.mktemp("instance"))
    _test_instance["fake"] = fake_wechat.base_url
    # TEST_BLOB_STORE=s3: every app keeps its files on the real S3 server (scripts/test.sh runs the
    # PostgreSQL pass so), so each flow that stores a file runs on both backends.
    if os.environ.get("TEST_BLOB_STORE") == "s3":
        server = request.getfixturevalue("s3_server")
        _test_instance["blobs"] = server.config("xinwei-tests")


@pytest.fixture
def app(database_url: str, fake_wechat: FakeWeChatServer) -> Iterator[Flask]:
    """An app on the shared test database, talking to the fake WeChat. Tests commit for real
    (the webhook's dedup depends on committed unique keys across connections); the tables
    are emptied afterwards."""
    fake_wechat.reset()
    app = make_test_app(database_url)
    yield app
    _empty_tables(app)
    # The blob store is emptied with the tables: a test never finds another test's files.
    store = get_blob_store(app)
    if isinstance(store, LocalStore):
        shutil.rmtree(store.root, ignore_errors=True)
    else:
        for blob in list(store.list("")):
            store.delete(blob.key)
    get_database(app).dispose()


@pytest.fixture
def client(app: Flask):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture
def runner(app: Flask):  # type: ignore[no-untyped-def]
    return app.test_cli_runner()


@pytest.fixture
def db_session(database_url: str):  # type: ignore[no-untyped-def]
    """A session for the test's own reads and set-up writes. On SQLite its transactions are
    deferred, so reading does not hold the write lock the app's requests need."""
    engine = make_engine(database_url, immediate=False)
    session = make_sessionmaker(engine)()
    yield session
    session.close()
    engine.dispose()


def count(session, model) -> int:  # type: ignore[no-untyped-def]
    """Rows of `model` as committed now (a fresh transaction, so no stale snapshot)."""
    session.rollback()
    try:
        return session.scalar(select(func.count()).select_from(model))
    finally:
        session.rollback()


@pytest.fixture
def wechat() -> WeChatSide:
    """WeChat's side of the callback for the dev account the test app is configured with."""
    return WeChatSide(DEV_SECRETS["WECHAT_TOKEN"], DEV_SECRETS["WECHAT_ENCODING_AES_KEY"], DEV_SECRETS["WECHAT_APP_ID"])


class LiveServer:
    """The app over real HTTP on a loopback port, in a thread, for concurrency tests."""

    def __init__(self, app: Flask) -> None:
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "LiveServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join(5)


@pytest.fixture
def live_server(app: Flask) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
def graduates(app):  # type: ignore[no-untyped-def]
    """Five verified students who passed the demo course (tests/test_catalog.py's fixture course)."""
    from handlers.accounts.identity import ProfileForm, submit_profile
    from handlers.catalog.loader import load_catalog, parse_catalog
    from handlers.learning.enrolment import enroll
    from models import RosterEntry, School, User
    from tests.factories import course, to_toml

    with get_database(app).sessions() as session:
        load_catalog(session, parse_catalog(to_toml(course()), "demo.toml"), "demo.toml")
        school = School(name="证书大学")
        session.add(school)
        session.flush()
        ids = []
        for i in range(5):
            user = User(openid=f"o_cert_{i}")
            session.add(user)
            session.flush()
            session.add(
                RosterEntry(school_id=school.id, student_number=f"C00{i}", real_name=f"林小满{'一二三四五'[i]}")
            )
            session.flush()
            submit_profile(session, user.id, ProfileForm(school.id, f"林小满{'一二三四五'[i]}", "心理学院", f"C00{i}",
                                                         "2024级", "13800000000"), now=utcnow())
            enrollment = enroll(session, user.id, "demo-course")
            enrollment.passed_at, enrollment.total_score = utcnow(), 90 + i
            ids.append(user.id)
        session.commit()
    return ids


@pytest.fixture
def shop(app, live_server, fake_wechat, graduates):  # type: ignore[no-untyped-def]
    """A paper-certificate shop (tests/test_payments.py, the cross-feature test): the app over real
    HTTP (WeChat Pay's notifications come in through it), a paper certificate claimed by the first
    graduate, and their signed-in client."""
    from datetime import date

    from sqlalchemy import update

    from handlers.certificates.claims import claim
    from jobs.queue import get_queue
    from models import School
    from tests.factories import ISSUER, sign_in

    app.config["WECHAT_PAY_NOTIFY_URL"] = live_server.url + "/pay/notify"
    get_queue(app).kick = lambda ids, delay=None: None  # type: ignore[method-assign]  # jobs run by hand
    with get_database(app).sessions() as session:
        session.execute(update(School).values(address="北京市海淀区学院路 1 号 心理中心"))
        certificate = claim(session, graduates[0], "demo-course", "paper", ISSUER, date(2026, 11, 29),
                            blobs=get_blob_store(app))
        session.commit()
        cert_id = certificate.id
    client = app.test_client()
    sign_in(client, graduates[0], "o_cert_0")
    return {"app": app, "client": client, "cert_id": cert_id, "fake": fake_wechat, "user_id": graduates[0],
            "live": live_server}


@pytest.fixture
def site(app: Flask, client):  # type: ignore[no-untyped-def]
    """The demo catalog (t01: a 10 s video), a school with 钱七 on its roster, and two students,
    the first signed in on `client` (not yet verified: tests call factories.verify)."""
    from handlers.catalog.loader import load_catalog, parse_catalog
    from models import RosterEntry, School, User
    from tests.factories import course, sign_in, to_toml

    with get_database(app).sessions() as session:
        load_catalog(session, parse_catalog(to_toml(course()), "demo.toml"), "demo.toml")
        school = School(name="测试大学")
        student, other = User(openid="o_h5"), User(openid="o_h5_other")
        session.add_all([school, student, other])
        session.flush()
        session.add(RosterEntry(school_id=school.id, student_number="H5001", real_name="钱七"))
        session.commit()
        ids = {"school": school.id, "student": student.id, "other": other.id}
    sign_in(client, ids["student"], "o_h5")
    return ids


@pytest.fixture(autouse=True)
def _students_consent(request):  # type: ignore[no-untyped-def]
    """A profile made by a fixture comes with the two consents, as the profile form records them
    beside it (web/training.py): tests of other features then meet no consent page. Tests of
    consent itself mark themselves `no_auto_consent`."""
    if request.node.get_closest_marker("no_auto_consent"):
        yield
        return
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from handlers.privacy import consent
    from models import Consent, StudentProfile

    version = consent.current_notice().version

    def consent_with_profile(session, flush_context) -> None:  # type: ignore[no-untyped-def]
        users = [obj.user_id for obj in session.new if isinstance(obj, StudentProfile)]
        if users:
            session.execute(Consent.__table__.insert(), [
                {"user_id": u, "purpose": p, "notice_version": version, "granted": True, "at": utcnow()}
                for u in users for p in consent.PURPOSES])

    event.listen(Session, "after_flush", consent_with_profile)
    try:
        yield
    finally:
        event.remove(Session, "after_flush", consent_with_profile)

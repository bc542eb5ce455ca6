"""The application factory: a table of contents. Config, database, blueprints, CLI; no I/O."""
from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from typing import Any

from flask import Flask

import cli
import database
from config import load_config
from jobs import queue
from web import (
    auth,
    blobs,
    boundary,
    certificates,
    console,
    fast_heartbeat,
    fast_webhook,
    headers,
    ids,
    labels,
    lectures,
    links,
    media,
    ops,
    payments,
    privacy,
    static_files,
    training,
)
from web.console import accounts as console_accounts
from web.console import approvals as console_approvals
from web.console import audit as console_audit
from web.console import auto_replies as console_auto_replies
from web.console import certificate_desk as console_certificates
from web.console import content as console_content
from web.console import inbox as console_inbox
from web.console import jobs as console_jobs
from web.console import lectures as console_lectures
from web.console import payments as console_payments
from web.console import privacy as console_privacy
from web.console import pushes as console_pushes
from web.console import roster as console_roster
from web.console import school as console_school
from web.console import schools as console_schools
from web.session_cookie import LazyCookieSessionInterface
from wechat import simulator, webhook
from wechat.pay import get_wechat_pay
from wechat.routes import build_router
from wechat.services import get_wechat_client


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    # instance/ holds the SQLite files of the embedded default; tests and hosts may move it.
    instance_path = (config or {}).get("INSTANCE_PATH") or os.environ.get("XINWEI_INSTANCE_PATH") or None
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True)
    app.config.from_mapping(load_config(overrides=config, instance_path=app.instance_path))
    app.session_interface = LazyCookieSessionInterface()
    ids.init_app(app)  # before any route is added
    headers.init_app(app)
    static_files.init_app(app)
    database.init_app(app)
    blobs.init_app(app)
    ops.init_app(app)
    auth.init_app(app)
    labels.init_app(app)
    queue.init_app(app, database.get_database(app).sessions,
                   services={"wechat_client": partial(get_wechat_client, app),
                             "wechat_pay": partial(get_wechat_pay, app),
                             "blob_store": partial(blobs.get_blob_store, app)})
    app.extensions[webhook.ROUTER_EXTENSION] = build_router(app.config["PUBLIC_URL"])
    app.register_blueprint(webhook.bp)
    app.register_blueprint(media.bp)
    app.register_blueprint(training.bp)
    lectures.init_app(app)
    fast_heartbeat.init_app(app)
    fast_webhook.init_app(app)
    app.register_blueprint(certificates.bp)
    app.register_blueprint(payments.bp)
    app.register_blueprint(privacy.bp)
    for name in (training.bp.name, certificates.bp.name):  # the pages that use what was consented to
        app.before_request_funcs.setdefault(name, []).append(privacy.consent_gate)
    console.init_app(app)
    console_accounts.init_app(app)
    console_payments.init_app(app)
    console_pushes.init_app(app)
    console_roster.init_app(app)
    console_approvals.init_app(app)
    console_certificates.init_app(app)
    console_schools.init_app(app)
    console_content.init_app(app)
    console_lectures.init_app(app)
    console_audit.init_app(app)
    console_jobs.init_app(app)
    console_privacy.init_app(app)
    console_inbox.init_app(app)
    console_auto_replies.init_app(app)
    console_school.init_app(app)
    if app.config["SIMULATOR_ENABLED"]:
        app.register_blueprint(simulator.bp)
    boundary.init_app(app)  # after the last view: it wraps them all
    cli.register(app)
    links.init_app(app)  # last: the proxy fix wraps every other middleware
    return app

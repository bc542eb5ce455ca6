"""The application factory: a table of contents. Config, database, blueprints, CLI; no I/O."""
from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from typing import Any

from flask import Flask

import cli
from config import load_config
from jobs import queue
from web import auth, certificates, console, database, media, ops, training
from web.console import accounts as console_accounts
from web.console import school as console_school
from web.session_cookie import LazyCookieSessionInterface
from wechat import simulator, webhook
from wechat.routes import build_router
from wechat.services import get_wechat_client


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    # instance/ holds the SQLite files of the embedded default; tests and hosts may move it.
    instance_path = (config or {}).get("INSTANCE_PATH") or os.environ.get("XINWEI_INSTANCE_PATH") or None
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True)
    app.config.from_mapping(load_config(overrides=config, instance_path=app.instance_path))
    app.session_interface = LazyCookieSessionInterface()
    database.init_app(app)
    ops.init_app(app)
    auth.init_app(app)
    queue.init_app(app, database.get_database(app).sessions,
                   services={"wechat_client": partial(get_wechat_client, app)})
    app.extensions[webhook.ROUTER_EXTENSION] = build_router(app.config["PUBLIC_URL"])
    app.register_blueprint(webhook.bp)
    app.register_blueprint(media.bp)
    app.register_blueprint(training.bp)
    app.register_blueprint(certificates.bp)
    console.init_app(app)
    console_accounts.init_app(app)
    console_school.init_app(app)
    if app.config["SIMULATOR_ENABLED"]:
        app.register_blueprint(simulator.bp)
    cli.register(app)
    return app

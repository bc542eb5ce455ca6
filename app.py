"""The application factory: a table of contents. Config, database, blueprints, CLI; no I/O."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

import cli
from config import load_config
from web import database
from wechat import webhook
from wechat.routes import build_router


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(load_config(overrides=config, instance_path=app.instance_path))
    database.init_app(app)
    app.extensions[webhook.ROUTER_EXTENSION] = build_router()
    app.register_blueprint(webhook.bp)
    cli.register(app)
    return app

"""The app's WeChat API client and its shared token store, built on first use (never in create_app)."""
from __future__ import annotations

import os
import threading
from typing import Any

from flask import Flask

import telemetry
from models.engine import make_engine
from models.wechat_token import WeChatToken
from wechat.client import XinweiWeChatClient, make_wechat_client
from wechat.tokens import make_token_store

EXTENSION = "xinwei.wechat_client"
_lock = threading.Lock()


def token_database_url(config: dict[str, Any] | Any, instance_path: str) -> str:
    """Where the database token store lives.

    PostgreSQL: the main database (row locks serialise refreshes). SQLite: a file of its
    own, because SQLite has one writer per file and a request or job that calls WeChat
    inside its write transaction would otherwise wait on itself to refresh the token.
    """
    url = config["DATABASE_URL"]
    if url.startswith("sqlite"):
        return "sqlite:///" + os.path.join(instance_path, "wechat_tokens.db")
    return url


def get_wechat_client(app: Flask) -> XinweiWeChatClient:
    client = app.extensions.get(EXTENSION)
    if client is not None:
        return client
    with _lock:
        client = app.extensions.get(EXTENSION)
        if client is None:
            client = _build(app)
            app.extensions[EXTENSION] = client
    return client


def _build(app: Flask) -> XinweiWeChatClient:
    engine = None
    if not app.config.get("REDIS_URL"):
        url = token_database_url(app.config, app.instance_path)
        if url != app.config["DATABASE_URL"]:
            os.makedirs(app.instance_path, exist_ok=True)
            engine = make_engine(url)
            # A cache of values WeChat can always re-issue, in its own file: created here
            # rather than by migrations, which own the main database only.
            WeChatToken.__table__.create(engine, checkfirst=True)
        else:
            from database import get_database

            engine = get_database(app).engine
    store = make_token_store(engine, app.config.get("REDIS_URL"))
    return make_wechat_client(app.config, store, on_error=telemetry.count_wechat_api_error)

"""Runs the fake WeChat app over real HTTP on loopback in a background thread."""
from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from wechat.fake.app import create_fake_wechat
from wechat.fake.pay import FakePayState
from wechat.fake.state import FakeState

logger = logging.getLogger(__name__)

# Query values that must never reach a log line, even the fake's own access log.
_SECRET_QUERY = re.compile(r"((?:access_token|secret|code|ticket)=)[^&\s]+")


class _RedactingRequestHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        line = _SECRET_QUERY.sub(r"\1***", getattr(self, "requestline", ""))
        self.log("info", '"%s" %s %s', line, code, size)


class FakeWeChatServer:
    """The fake WeChat API on http://127.0.0.1:PORT; control it in-process or via /_fake/."""

    def __init__(self, app_id: str, app_secret: str, *, token_ttl: int = 7200,
                 daily_token_quota: int = 2000, clock: Callable[[], float] | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = create_fake_wechat(app_id, app_secret, token_ttl=token_ttl,
                                      daily_token_quota=daily_token_quota, clock=clock)
        self.state: FakeState = self.app.extensions["fake_wechat"]
        self.pay: FakePayState = self.app.extensions["fake_wechat_pay"]
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def app_id(self) -> str:
        return self.state.app_id

    @property
    def app_secret(self) -> str:
        return self.state.app_secret

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("fake WeChat server is not running")
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> FakeWeChatServer:
        if self._server is not None:
            return self
        self._server = make_server(self.host, self.port, self.app, threaded=True,
                                   request_handler=_RedactingRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-wechat",
                                        daemon=True)
        self._thread.start()
        logger.info("fake WeChat server listening on %s", self.base_url)
        return self

    def serve_forever(self) -> None:
        """Run in the foreground (the standalone dev command)."""
        self._server = make_server(self.host, self.port, self.app, threaded=True,
                                   request_handler=_RedactingRequestHandler)
        logger.info("fake WeChat server listening on %s", self.base_url)
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()
            self._server = None

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeWeChatServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- in-process conveniences (same effect as the /_fake/ endpoints) ----------------
    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        return self.state.recorded(path)

    def fail(self, path: str, errcode: int | None = None, delay: float | None = None,
             drop: bool = False, times: int = 1) -> None:
        self.state.add_failure(path, errcode=errcode, delay=delay, drop=drop, times=times)

    def reset(self) -> None:
        self.state.reset()
        self.pay.reset()

    def expire_tokens(self, invalidate: bool = False) -> int:
        return self.state.expire_tokens(invalidate=invalidate)

    def advance(self, seconds: float) -> None:
        self.state.advance(seconds)

    def set_user(self, openid: str, *, following: bool | None = None, in_window: bool | None = None,
                 snapshot: bool | None = None) -> None:
        self.state.set_user(openid, following=following, in_window=in_window, snapshot=snapshot)

    @property
    def token_fetch_count(self) -> int:
        with self.state.lock:
            return self.state.token_fetch_count

    @property
    def menu(self) -> dict[str, Any] | None:
        with self.state.lock:
            return self.state.menu

    @property
    def sent_messages(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.sent_messages)

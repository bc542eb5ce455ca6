"""Absolute links (invites, orders, the cashier's return) from PUBLIC_URL, never from the Host
header; in production a request for another host is refused, and a trusted proxy's client
address is believed only when configured (TRUSTED_PROXY_HOPS)."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app, request, url_for
from werkzeug.middleware.proxy_fix import ProxyFix


def absolute(endpoint: str, **values: Any) -> str:
    """The link people open, on the public origin whatever Host the request came with."""
    return str(current_app.config["PUBLIC_URL"]).rstrip("/") + url_for(endpoint, **values)


def is_public(url: str) -> bool:
    """Whether `url` is a page of ours, on the public origin."""
    return url.startswith(str(current_app.config["PUBLIC_URL"]).rstrip("/") + "/")


def _check_host() -> None:
    request.host  # noqa: B018 - reading it checks it against TRUSTED_HOSTS (400 otherwise)


def init_app(app: Flask) -> None:
    """Last in create_app: ProxyFix goes outside every other middleware."""
    if app.config.get("XINWEI_ENV") == "production" and app.config.get("PUBLIC_URL"):
        hosts = [urlsplit(str(app.config["PUBLIC_URL"])).hostname or ""]
        hosts += [h.strip() for h in str(app.config.get("EXTRA_HOSTS") or "").split(",") if h.strip()]
        app.config["TRUSTED_HOSTS"] = hosts
        app.before_request(_check_host)
    hops = int(app.config.get("TRUSTED_PROXY_HOPS") or 0)
    if hops > 0:
        # X-Forwarded-For is believed for exactly this many proxies: the client address the
        # sign-in limits and the logs see is the one the last trusted proxy saw.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]

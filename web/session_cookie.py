"""Flask's signed-cookie session, built only when a request carries the cookie or a view writes it."""
from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class LazyCookieSessionInterface(SecureCookieSessionInterface):
    """Flask builds an HMAC signer for every request, cookie or not (~70 µs). WeChat's
    webhook and most API calls never carry one, so an absent cookie costs nothing here;
    and the signer is built once per secret key, not once per request."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.cookies.get(self.get_cookie_name(app)) is None:
            return self.session_class() if app.secret_key else None
        return super().open_session(app, request)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        key = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached = app.extensions.get("xinwei.session_serializer")
        if cached is None or cached[0] != key:
            cached = (key, super().get_signing_serializer(app))
            app.extensions["xinwei.session_serializer"] = cached
        return cached[1]

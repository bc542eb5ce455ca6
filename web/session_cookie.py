"""Flask's signed-cookie session, built only when a request carries the cookie or a view writes it."""
from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class LazyCookieSessionInterface(SecureCookieSessionInterface):
    """Flask builds an HMAC signer for every request, cookie or not (~70 µs). WeChat's
    webhook and most API calls never carry one, so an absent cookie costs nothing here;
    saving a new session still signs it as usual."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.cookies.get(self.get_cookie_name(app)) is None:
            return self.session_class() if app.secret_key else None
        return super().open_session(app, request)

"""The security headers of every page: one Content-Security-Policy with no inline script or style."""
from __future__ import annotations

from flask import Flask, Response, request

# Every script and stylesheet is a file under static/ (no inline code, no event attributes, no
# style attributes): a script that slipped past escaping could neither run inline nor load more
# code from elsewhere, post a form off-site, or frame the page. Lecture videos may come from a
# CDN over https; images include the data: URIs of QR codes.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            "media-src 'self' https: blob:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
            "base-uri 'none'; object-src 'none'")
# Development tools with pages of their own (the WeChat simulator) keep their own rules.
EXEMPT_BLUEPRINTS = {"simulator"}


def _page_policy(response: Response) -> Response:
    if response.mimetype == "text/html" and request.blueprint not in EXEMPT_BLUEPRINTS:
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def init_app(app: Flask) -> None:
    app.after_request(_page_policy)

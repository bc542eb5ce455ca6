"""The security headers of every page: one Content-Security-Policy with no inline script or style."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request

# Every script and stylesheet is a file under static/ (no inline code, no event attributes, no
# style attributes): a script that slipped past escaping could neither run inline nor load more
# code from elsewhere, post a form off-site, or frame the page. Lecture videos may come from a
# CDN over https; images include the data: URIs of QR codes. {blobs} is the blob store's public
# origin when it is not the app (S3 or its CDN): certificate images and lecture segments come from it.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:{blobs}; "
            "media-src 'self' https: blob:{blobs}; connect-src 'self'{blobs}; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; object-src 'none'")


def blob_origin(config: Mapping[str, Any]) -> str:
    """The origin students fetch signed blob links from, when it is not the app's own."""
    url = str(config.get("BLOB_STORE_URL") or "")
    endpoint = config.get("BLOB_S3_PUBLIC_ENDPOINT") or config.get("BLOB_S3_ENDPOINT")
    if not url.startswith("s3:") or not endpoint:
        return ""
    parts = urlsplit(str(endpoint))
    return f"{parts.scheme}://{parts.netloc}"
# Development tools with pages of their own (the WeChat simulator) keep their own rules.
EXEMPT_BLUEPRINTS = {"simulator"}


def page_policy() -> str:
    """This app's Content-Security-Policy (PAGE_CSP with its blob store's origin)."""
    return str(current_app.extensions[EXTENSION])


def _page_policy(response: Response) -> Response:
    if response.mimetype == "text/html" and request.blueprint not in EXEMPT_BLUEPRINTS:
        response.headers.setdefault("Content-Security-Policy", page_policy())
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


EXTENSION = "xinwei.csp"


def init_app(app: Flask) -> None:
    origin = blob_origin(app.config)
    app.extensions[EXTENSION] = PAGE_CSP.format(blobs=f" {origin}" if origin else "")
    app.after_request(_page_policy)

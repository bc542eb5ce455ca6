"""Search terms kept out of URLs: a console search box posts its term, and links carry an opaque handle to it."""
from __future__ import annotations

import secrets

from flask import Response, redirect, request, session, url_for

# A search for a name or a student number would otherwise sit in the query string: in the browser's
# history and address bar (an office computer a whole 学生处 shares), in every proxy's access log, in a
# link pasted into a chat. Instead the box posts (with the CSRF token), the term is kept in the signed
# session under a short random handle (the session is a cookie its own browser can read, and the admin
# typed the term there; cookies are in no URL and no access log; sign-out forgets the terms), and the
# page answers with a redirect to itself by GET with
# `s=<handle>`: paging, the back button and a reload work as before, and the URL names nobody. A
# handle means nothing outside the browser session that made it; there the page says the search was
# lost and shows the list unsearched.

KEY = "console_searches"  # cleared with the console sign-in (web.console)
HANDLE = "s"
# A few per session, for a few tabs: the session is a cookie, and each term is up to MAX_TERM characters.
KEPT = 8
MAX_TERM = 50
# Never copied into the redirect: the term itself, a stale handle, the form's token, the old page.
_DROPPED = frozenset({HANDLE, "csrf_token", "page", "after"})


def handle_of(term: str) -> str | None:
    """The handle of this term in the session (made when new; the oldest beyond KEPT go); None for no term."""
    term = term.strip()[:MAX_TERM]
    if not term:
        return None
    # A list of pairs, not a dict: the session serialiser sorts a dict's keys, which would lose the age order.
    kept = [pair for pair in session.get(KEY) or [] if isinstance(pair, list) and len(pair) == 2]
    for handle, known in kept:
        if known == term:
            return str(handle)
    handle = secrets.token_urlsafe(6)
    session[KEY] = (kept + [[handle, term]])[-KEPT:]
    return handle


def term_of(handle: str | None) -> str | None:
    """The term behind a handle: "" when there is no handle, None when this session does not know it."""
    if not handle:
        return ""
    for known, term in session.get(KEY) or []:
        if known == handle:
            return str(term)
    return None


def carries_term(field: str = "q") -> bool:
    """Whether this request must be answered by `to_handle`: a search box's POST, or a GET with the term
    in its query string (an old bookmark, a hand-typed URL)."""
    return request.method == "POST" or field in request.args


def to_handle(field: str = "q") -> Response:
    """The same page by GET, with the other fields of the form (or query) as they were and the term
    replaced by its handle. A new search starts on its first page."""
    source = request.form if request.method == "POST" else request.args
    args = {key: value for key, value in source.items() if key != field and key not in _DROPPED and value != ""}
    if request.method == "GET":
        # An old bookmark keeps its page; only the term moves out of the URL.
        args.update({key: request.args[key] for key in ("page", "after") if request.args.get(key)})
    handle = handle_of(source.get(field, ""))
    if handle:
        args[HANDLE] = handle
    return redirect(url_for(str(request.endpoint), **(request.view_args or {}), **args))

"""The request boundary: every view runs inside it; one commit when the view answers, a rollback when it raises.

Operations (handlers/) mutate, audit and flush; views parse input and shape the response; the
boundary owns the transaction. It wraps every view function of the app once, at start-up, so a
view cannot forget it:

- the view returns a response → the request's session (if the view used one) commits, then the
  response goes out. A commit that fails is a 500 and nothing is kept;
- the view raises `Refused` (an operation said no) → roll back; a refusal whose code is
  `not_found` is a 404; otherwise the view's own `@on_refused` responder shapes the answer (the
  form again with the message, a JSON error), and a view without one answers 409 with the message;
- anything else raised → roll back and let Flask answer (4xx from `abort`, or a 500).

A view that must make a write durable before it goes on calls `commit_early()`, the only commit a
view makes: before an outbound call that must not run inside a transaction (no lock held while
WeChat Pay answers), or before a step that may only follow a durable write.
The WeChat webhook keeps its own transaction rules (dedup rows, read-only replies; see
wechat/webhook.py) and is left out, with the simulator that stands in front of it.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, abort, make_response
from flask.typing import ResponseReturnValue

from database import open_session
from handlers.errors import NOT_FOUND, Refused

F = TypeVar("F", bound=Callable[..., Any])
Responder = Callable[..., ResponseReturnValue]

_RESPONDER = "_refusal_responder"
# Blueprints whose views keep their own transaction rules.
OWN_BOUNDARY = frozenset({"wechat", "simulator"})


def on_refused(responder: Responder) -> Callable[[F], F]:
    """How this view answers a refusal: `responder(refused, **view_args)` returns the response
    (the page again with `refused.message`, with a status of its choosing). Put it right above
    the view function; decorators built with functools.wraps carry it outwards."""

    def mark(view: F) -> F:
        setattr(view, _RESPONDER, responder)
        return view

    return mark


def commit_early() -> None:
    """Make what the request wrote so far durable now, not when the view returns: before an
    outbound call that must not run inside a transaction (no row lock held while WeChat Pay
    answers), or before a step that may only follow a durable write."""
    session = open_session()
    if session is not None:
        session.commit()


def _rollback() -> None:
    session = open_session()
    if session is not None:
        session.rollback()


def run_in_boundary(view: Callable[..., Any]) -> Callable[..., Any]:
    responder: Responder | None = getattr(view, _RESPONDER, None)

    @functools.wraps(view)
    def boundary(*args: Any, **kwargs: Any) -> Any:
        try:
            response = make_response(view(*args, **kwargs))
        except Refused as refused:
            _rollback()
            if refused.code in NOT_FOUND:
                abort(404)
            if responder is None:
                abort(409, description=refused.message)
            try:
                response = make_response(responder(refused, *args, **kwargs))
            except Refused as again:  # the page to show it on is itself refused (gone meanwhile)
                _rollback()
                abort(404 if again.code in NOT_FOUND else 409, description=again.message)
            _rollback()  # the responder only reads; nothing of the refused step is kept
            return response
        except BaseException:
            _rollback()
            raise
        session = open_session()
        if session is not None:
            session.commit()
        return response

    return boundary


def init_app(app: Flask) -> None:
    """Wrap every view registered so far: call this after the last blueprint."""
    for endpoint, view in list(app.view_functions.items()):
        if endpoint == "static" or endpoint.split(".")[0] in OWN_BOUNDARY:
            continue
        app.view_functions[endpoint] = run_in_boundary(view)

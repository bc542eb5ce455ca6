"""How the H5 pages answer a refusal: the refusal page in Chinese, or a JSON error for the player's calls."""
from __future__ import annotations

from collections.abc import Callable

from flask import Response, jsonify, render_template

from handlers.errors import Refused


def refusal_page(refusal: Refused, status: int = 409) -> tuple[str, int]:
    return render_template("h5/refused.html", refusal=refusal), status


def refused_page(status: int = 409, **by_code: int) -> Callable[..., tuple[str, int]]:
    """An `@on_refused` responder: the refusal page, with `status` or the one given for its code."""
    return lambda refusal, *args, **kwargs: refusal_page(refusal, by_code.get(refusal.code, status))


def json_refusal(status: int) -> Callable[..., tuple[Response, int]]:
    """An `@on_refused` responder for the player's JSON calls: {error, message} with `status`."""
    return lambda refusal, *args, **kwargs: (jsonify(error=refusal.code, message=refusal.message), status)



"""Numbers from outside (route arguments, form and query fields): one parser, so a huge or odd
number is a 404 or a 400, never a query that overflows the database's integer."""
from __future__ import annotations

from flask import Flask
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

from models.base import DB_INT_MAX


class DbIdConverter(IntegerConverter):
    """`<int:…>` in every route: ASCII digits up to DB_INT_MAX. A larger number is a 404 for any
    method (raised here, not "no match": that would make werkzeug answer 405 when the same path
    has a rule for another method)."""

    def to_python(self, value: str) -> int:
        number = super().to_python(value)
        if number > DB_INT_MAX:
            raise NotFound()
        return number


def id_value(raw: object) -> int | None:
    """A positive id from a form or query value, or None: ASCII digits only ('²'.isdigit() is true,
    int('²') raises) and no larger than the database's integer."""
    text = str(raw or "").strip()
    if not text or len(text) > 10 or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if 0 < value <= DB_INT_MAX else None


def init_app(app: Flask) -> None:
    """Before any blueprint adds its rules: the converter is bound when a rule is added."""
    app.url_map.converters["int"] = DbIdConverter

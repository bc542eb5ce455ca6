"""The time the H5 flows see: real time, which a test may move forward (never in production)."""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import Flask, current_app

from models.base import utcnow

EXTENSION = "xinwei.clock_offset"


def now() -> datetime:
    return now_of(current_app)


def now_of(app: Flask) -> datetime:
    """now() without an app context (the heartbeat's fast path runs before Flask)."""
    return utcnow() + app.extensions.get(EXTENSION, timedelta(0))


def advance(app: Flask, seconds: float) -> None:
    """Move the app's clock forward: browser tests watch a 20 s video in a moment, and the
    heartbeat checks still run against this clock, unskipped."""
    if not app.config.get("TESTING"):
        raise RuntimeError("the clock only moves in tests")
    app.extensions[EXTENSION] = app.extensions.get(EXTENSION, timedelta(0)) + timedelta(seconds=seconds)

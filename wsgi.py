"""The web process entry point (gunicorn wsgi:app, flask --app wsgi run): logging, then the app."""
from __future__ import annotations

from app import create_app
from telemetry import configure_logging

app = create_app()
configure_logging(app.config["LOG_JSON"], app.config["LOG_LEVEL"])

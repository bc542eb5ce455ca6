"""What every bench module shares: the repository's paths, the app and floor targets, the databases, BenchError."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
FLOOR_TARGET = "bench.floor_app:app"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# The production entry point (logging configured, as gunicorn runs it), else the bare factory.
APP_TARGET = "wsgi:app" if (REPO / "wsgi.py").exists() else "app:create_app()"
DATABASES = ("sqlite", "postgresql")


class BenchError(RuntimeError):
    """The bench could not produce a valid measurement; the message says why."""

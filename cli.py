"""The `flask --app app ...` commands: database migrations and demo data."""
from __future__ import annotations

from pathlib import Path

import click
from alembic import command
from alembic.config import Config as AlembicConfig
from flask import Flask, current_app
from flask.cli import AppGroup

from web.database import get_database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

db_cli = AppGroup("db", help="Database schema (Alembic).")
demo_cli = AppGroup("demo", help="Demo content for the embedded default.")


def alembic_config(database_url: str) -> AlembicConfig:
    cfg = AlembicConfig(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["database_url"] = database_url
    return cfg


def _prepare_sqlite_dir(url: str) -> None:
    # SQLite creates the file but not its folder (instance/ on a fresh clone).
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database to REVISION (default: head)."""
    url = current_app.config["DATABASE_URL"]
    _prepare_sqlite_dir(url)
    command.upgrade(alembic_config(url), revision)
    click.echo(f"database at {revision}")


@db_cli.command("revision")
@click.option("-m", "--message", required=True)
def db_revision(message: str) -> None:
    """Write a new migration from the difference between models and database."""
    url = current_app.config["DATABASE_URL"]
    command.revision(alembic_config(url), message=message, autogenerate=True)


@demo_cli.command("load")
def demo_load() -> None:
    """Load demo schools (idempotent)."""
    from handlers import demo

    session = get_database().sessions()
    try:
        created = demo.load_demo(session)
        session.commit()
    finally:
        session.close()
    click.echo(f"demo data loaded ({created} new rows)")


def register(app: Flask) -> None:
    app.cli.add_command(db_cli)
    app.cli.add_command(demo_cli)

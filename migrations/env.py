"""Alembic's environment: migrate the database named by the app's config, against models' MetaData."""
from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context

from config import load_config
from models import Base
from models.engine import make_engine

cfg = context.config
if cfg.config_file_name and cfg.attributes.get("configure_logging", True):
    fileConfig(cfg.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    url = cfg.attributes.get("database_url")
    if url:
        return url
    instance = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "instance")
    return load_config(instance_path=instance)["DATABASE_URL"]


def run_migrations_online() -> None:
    connection = cfg.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(database_url())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copy
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `flask --app app db upgrade`")
run_migrations_online()

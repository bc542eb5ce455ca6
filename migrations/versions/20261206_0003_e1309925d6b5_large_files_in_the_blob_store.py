"""Large files move to the blob store: certificate PDFs and PNGs and uploaded rosters leave their
database rows, finished exports leave EXPORT_DIR. Downgrade brings the bytes back.

The blob store is the app's (the CLI hands it over as the `blob_store` attribute), or the one the
instance's config names. The keys are written here as the code of this revision writes them; a
later change of key scheme only changes new keys, so this file never follows the app's code.

Revision ID: e1309925d6b5
Revises: b3f19d7a2c60
Create Date: 2026-12-06 00:03:00
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import sqlalchemy as sa
from alembic import context, op

revision = 'e1309925d6b5'
down_revision = 'b3f19d7a2c60'
branch_labels = None
depends_on = None

TYPES = {"pdf": "application/pdf", "png": "image/png"}
EXPORTS = (("certificate_exports", "certificates"), ("student_exports", "students"))


INSTANCE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "instance")


def _store():  # type: ignore[no-untyped-def]
    store = context.config.attributes.get("blob_store")
    if store is None:
        from blobstore import open_store
        from config import load_config

        store = open_store(load_config(instance_path=INSTANCE), INSTANCE)
    return store


def _export_dir() -> Path:
    directory = context.config.attributes.get("export_dir")
    if not directory:
        from config import load_config

        directory = load_config(instance_path=INSTANCE)["EXPORT_DIR"]
    return Path(directory)


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table('certificate_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('blob_key', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('size_bytes', sa.Integer(), nullable=True))
    with op.batch_alter_table('roster_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('blob_key', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('size_bytes', sa.Integer(), nullable=True))
    for table, _ in EXPORTS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('blob_key', sa.String(length=200), nullable=True))

    store = None
    files = bind.execute(sa.text("SELECT id, certificate_id, kind, sha256 FROM certificate_files ORDER BY id")).all()
    for file_id, certificate_id, kind, digest in files:
        store = store or _store()
        content = bind.execute(sa.text("SELECT content FROM certificate_files WHERE id = :id"), {"id": file_id}).scalar()
        key = f"certificates/{certificate_id}/{kind}-{digest[:16]}.{kind}"
        store.put(key, bytes(content), TYPES.get(kind, "application/octet-stream"))
        bind.execute(sa.text("UPDATE certificate_files SET blob_key = :key, size_bytes = :size WHERE id = :id"),
                     {"key": key, "size": len(content), "id": file_id})
    for (upload_id,) in bind.execute(sa.text("SELECT upload_id FROM roster_files ORDER BY upload_id")).all():
        store = store or _store()
        content = bytes(bind.execute(sa.text("SELECT content FROM roster_files WHERE upload_id = :id"),
                                     {"id": upload_id}).scalar())
        key = f"rosters/{upload_id}/{hashlib.sha256(content).hexdigest()[:16]}"
        store.put(key, content)
        bind.execute(sa.text("UPDATE roster_files SET blob_key = :key, size_bytes = :size WHERE upload_id = :id"),
                     {"key": key, "size": len(content), "id": upload_id})
    directory = _export_dir()
    for table, folder in EXPORTS:
        rows = bind.execute(sa.text(f"SELECT id, file_name FROM {table} WHERE file_name IS NOT NULL")).all()
        for export_id, name in rows:
            path = directory / name
            if not path.is_file():
                # Nothing to move (another host's disk, or swept): the export expires as the row says.
                bind.execute(sa.text(f"UPDATE {table} SET status = 'expired', file_name = NULL WHERE id = :id"),
                             {"id": export_id})
                continue
            store = store or _store()
            key = f"exports/{folder}/{export_id}/{name}"
            with path.open("rb") as handle:
                store.put(key, handle)
            bind.execute(sa.text(f"UPDATE {table} SET blob_key = :key WHERE id = :id"), {"key": key, "id": export_id})
            path.unlink()

    with op.batch_alter_table('certificate_files', schema=None) as batch_op:
        batch_op.alter_column('blob_key', existing_type=sa.String(length=200), nullable=False)
        batch_op.alter_column('size_bytes', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column('content')
    with op.batch_alter_table('roster_files', schema=None) as batch_op:
        batch_op.alter_column('blob_key', existing_type=sa.String(length=200), nullable=False)
        batch_op.alter_column('size_bytes', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column('content')


def downgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table('certificate_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content', sa.LargeBinary(), nullable=True))
    with op.batch_alter_table('roster_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content', sa.LargeBinary(), nullable=True))
    store = None
    for table, key_column in (("certificate_files", "id"), ("roster_files", "upload_id")):
        rows = bind.execute(sa.text(f"SELECT {key_column}, blob_key FROM {table}")).all()
        for row_id, key in rows:
            store = store or _store()
            bind.execute(sa.text(f"UPDATE {table} SET content = :content WHERE {key_column} = :id"),
                         {"content": store.get(key), "id": row_id})
    directory = _export_dir()
    for table, _ in EXPORTS:
        rows = bind.execute(sa.text(f"SELECT id, file_name, blob_key FROM {table} WHERE blob_key IS NOT NULL")).all()
        for export_id, name, key in rows:
            store = store or _store()
            directory.mkdir(parents=True, exist_ok=True)
            (directory / name).write_bytes(store.get(key))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('blob_key')
    with op.batch_alter_table('roster_files', schema=None) as batch_op:
        batch_op.alter_column('content', existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column('size_bytes')
        batch_op.drop_column('blob_key')
    with op.batch_alter_table('certificate_files', schema=None) as batch_op:
        batch_op.alter_column('content', existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column('size_bytes')
        batch_op.drop_column('blob_key')

"""A watch session records the lecture version its player opened; a version may carry subtitles.

Revision ID: 5c2e8d41a7b3
Revises: 429e89ed093f
Create Date: 2026-12-06 03:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '5c2e8d41a7b3'
down_revision = '429e89ed093f'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('watch_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('video_version_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_watch_sessions_video_version_id_video_versions'),
                                    'video_versions', ['video_version_id'], ['id'])
    with op.batch_alter_table('video_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subtitles_key', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('video_versions', schema=None) as batch_op:
        batch_op.drop_column('subtitles_key')
    with op.batch_alter_table('watch_sessions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_watch_sessions_video_version_id_video_versions'), type_='foreignkey')
        batch_op.drop_column('video_version_id')

"""Lecture videos: a topic's video asset, its versions (an upload and its HLS ladder), resumable uploads.

Revision ID: 429e89ed093f
Revises: e1309925d6b5
Create Date: 2026-12-06 00:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = '429e89ed093f'
down_revision = 'e1309925d6b5'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('video_assets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('course_code', sa.String(length=64), nullable=False),
    sa.Column('topic_code', sa.String(length=64), nullable=False),
    sa.Column('current_version_id', sa.Integer(), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_video_assets')),
    sa.UniqueConstraint('course_code', 'topic_code', name=op.f('uq_video_assets_course_code_topic_code'))
    )
    op.create_table('video_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('asset_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.String(length=300), nullable=True),
    sa.Column('file_name', sa.String(length=200), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('uploaded_by', sa.String(length=100), nullable=False),
    sa.Column('source_key', sa.String(length=200), nullable=True),
    sa.Column('seconds', sa.Double(), nullable=True),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('codecs', sa.String(length=60), nullable=True),
    sa.Column('prefix', sa.String(length=200), nullable=True),
    sa.Column('renditions', sa.JSON(), nullable=False),
    sa.Column('progress_seconds', sa.Double(), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ready_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['asset_id'], ['video_assets.id'], name=op.f('fk_video_versions_asset_id_video_assets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_video_versions')),
    sa.UniqueConstraint('asset_id', 'number', name=op.f('uq_video_versions_asset_id_number'))
    )
    op.create_table('video_uploads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token', sa.String(length=32), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('chunk_bytes', sa.Integer(), nullable=False),
    sa.Column('received', sa.JSON(), nullable=False),
    sa.Column('completed_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['video_versions.id'], name=op.f('fk_video_uploads_version_id_video_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_video_uploads')),
    sa.UniqueConstraint('token', name=op.f('uq_video_uploads_token'))
    )
    # The asset points at its published version: added once both tables exist.
    with op.batch_alter_table('video_assets', schema=None) as batch_op:
        batch_op.create_foreign_key('fk_video_assets_current_version_id_video_versions', 'video_versions',
                                    ['current_version_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('video_assets', schema=None) as batch_op:
        batch_op.drop_constraint('fk_video_assets_current_version_id_video_versions', type_='foreignkey')
    op.drop_table('video_uploads')
    op.drop_table('video_versions')
    op.drop_table('video_assets')

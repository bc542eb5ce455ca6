"""Certificate exports: zips of many certificates, built by a job with progress.

Revision ID: 895a43a46e1e
Revises: d2c6e2930992
Create Date: 2026-11-29 13:47:17.454932
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = '895a43a46e1e'
down_revision = 'd2c6e2930992'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('certificate_exports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('requested_by', sa.String(length=100), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=True),
    sa.Column('issued_from', sa.Date(), nullable=True),
    sa.Column('issued_until', sa.Date(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('done_count', sa.Integer(), nullable=False),
    sa.Column('file_name', sa.String(length=200), nullable=True),
    sa.Column('size_bytes', sa.Integer(), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_certificate_exports_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certificate_exports'))
    )


def downgrade() -> None:
    op.drop_table('certificate_exports')

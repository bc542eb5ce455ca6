"""Certificate files: the PDF and PNG rendered at issue.

Revision ID: f857f7b451f1
Revises: fc3e77df083d
Create Date: 2026-11-29 13:30:45.668160
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = 'f857f7b451f1'
down_revision = 'fc3e77df083d'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('certificate_files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('certificate_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['certificate_id'], ['certificates.id'], name=op.f('fk_certificate_files_certificate_id_certificates')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certificate_files')),
    sa.UniqueConstraint('certificate_id', 'kind', name=op.f('uq_certificate_files_certificate_id_kind'))
    )


def downgrade() -> None:
    op.drop_table('certificate_files')

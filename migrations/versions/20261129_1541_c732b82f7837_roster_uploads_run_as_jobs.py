"""Roster uploads run as jobs: a status and progress on each upload, its bytes held until the job reads them.

Revision ID: c732b82f7837
Revises: 5a37a0f3c4b5
Create Date: 2026-11-29 15:41:25.124530
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = 'c732b82f7837'
down_revision = '5a37a0f3c4b5'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('roster_files',
    sa.Column('upload_id', sa.Integer(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['upload_id'], ['roster_uploads.id'], name=op.f('fk_roster_files_upload_id_roster_uploads'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('upload_id', name=op.f('pk_roster_files'))
    )
    with op.batch_alter_table('roster_uploads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=16), server_default='done', nullable=False))
        batch_op.add_column(sa.Column('parsed_rows', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('finished_at', models.base.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('roster_uploads', schema=None) as batch_op:
        batch_op.drop_column('finished_at')
        batch_op.drop_column('error')
        batch_op.drop_column('parsed_rows')
        batch_op.drop_column('status')

    op.drop_table('roster_files')
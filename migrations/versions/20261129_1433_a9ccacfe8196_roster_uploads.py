"""Roster uploads: each file a school admin uploaded, with its row-by-row report.

Revision ID: a9ccacfe8196
Revises: 86846b046fdc
Create Date: 2026-11-29 14:32:15.922334
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = 'a9ccacfe8196'
down_revision = '86846b046fdc'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('roster_uploads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('uploaded_by', sa.String(length=100), nullable=False),
    sa.Column('file_name', sa.String(length=200), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('accepted', sa.Integer(), nullable=False),
    sa.Column('fixed', sa.Integer(), nullable=False),
    sa.Column('rejected', sa.Integer(), nullable=False),
    sa.Column('added', sa.Integer(), nullable=False),
    sa.Column('updated', sa.Integer(), nullable=False),
    sa.Column('kept', sa.Integer(), nullable=False),
    sa.Column('removed', sa.Integer(), nullable=False),
    sa.Column('verified', sa.Integer(), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['console_accounts.id'], name=op.f('fk_roster_uploads_account_id_console_accounts')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_roster_uploads_school_id_schools')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_roster_uploads'))
    )
    with op.batch_alter_table('roster_uploads', schema=None) as batch_op:
        batch_op.create_index('ix_roster_uploads_school_id_created_at', ['school_id', 'created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('roster_uploads', schema=None) as batch_op:
        batch_op.drop_index('ix_roster_uploads_school_id_created_at')

    op.drop_table('roster_uploads')

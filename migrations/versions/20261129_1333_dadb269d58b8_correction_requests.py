"""Correction requests: students ask staff to fix a printed field.

Revision ID: dadb269d58b8
Revises: f857f7b451f1
Create Date: 2026-11-29 13:33:35.351350
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = 'dadb269d58b8'
down_revision = 'f857f7b451f1'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('correction_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('certificate_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('changes', sa.JSON(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('decided_by', sa.String(length=100), nullable=True),
    sa.Column('decision_note', sa.Text(), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['certificate_id'], ['certificates.id'], name=op.f('fk_correction_requests_certificate_id_certificates')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_correction_requests_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_correction_requests'))
    )
    with op.batch_alter_table('correction_requests', schema=None) as batch_op:
        batch_op.create_index('ix_correction_requests_status', ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('correction_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_correction_requests_status')

    op.drop_table('correction_requests')

"""Certificates: issued versions, gapless serial counters, the audit trail.

Revision ID: fc3e77df083d
Revises: a53be065e0d9
Create Date: 2026-11-29 13:30:03.077201
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = 'fc3e77df083d'
down_revision = 'a53be065e0d9'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('serial_counters',
    sa.Column('year', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('last_number', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('year', name=op.f('pk_serial_counters'))
    )
    op.create_table('certificates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('course_id', sa.Integer(), nullable=False),
    sa.Column('serial', sa.String(length=20), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('supersedes_id', sa.Integer(), nullable=True),
    sa.Column('verify_token', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('holder_name', sa.String(length=50), nullable=False),
    sa.Column('school_name', sa.String(length=100), nullable=False),
    sa.Column('student_number', sa.String(length=32), nullable=False),
    sa.Column('course_title', sa.String(length=100), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('issued_on', sa.Date(), nullable=False),
    sa.Column('issuers', sa.JSON(), nullable=False),
    sa.Column('verify_url', sa.String(length=200), nullable=False),
    sa.Column('signature', sa.String(length=120), nullable=False),
    sa.Column('issued_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoke_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['course_id'], ['courses.id'], name=op.f('fk_certificates_course_id_courses')),
    sa.ForeignKeyConstraint(['supersedes_id'], ['certificates.id'], name=op.f('fk_certificates_supersedes_id_certificates')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_certificates_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certificates')),
    sa.UniqueConstraint('serial', 'version', name=op.f('uq_certificates_serial_version')),
    sa.UniqueConstraint('verify_token', name=op.f('uq_certificates_verify_token'))
    )
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.create_index('uq_certificates_user_course_live', ['user_id', 'course_id'], unique=True, postgresql_where=sa.text("status = 'valid'"), sqlite_where=sa.text("status = 'valid'"))

    op.create_table('certificate_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('certificate_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('details', sa.JSON(), nullable=True),
    sa.Column('at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['certificate_id'], ['certificates.id'], name=op.f('fk_certificate_events_certificate_id_certificates')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certificate_events'))
    )
    with op.batch_alter_table('certificate_events', schema=None) as batch_op:
        batch_op.create_index('ix_certificate_events_certificate_id', ['certificate_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('certificate_events', schema=None) as batch_op:
        batch_op.drop_index('ix_certificate_events_certificate_id')

    op.drop_table('certificate_events')
    with op.batch_alter_table('certificates', schema=None) as batch_op:
        batch_op.drop_index('uq_certificates_user_course_live', postgresql_where=sa.text("status = 'valid'"), sqlite_where=sa.text("status = 'valid'"))

    op.drop_table('certificates')
    op.drop_table('serial_counters')

"""Certificate orders (paper copies paid with WeChat Pay), their transitions, and payment flags for staff.

Revision ID: b847ecf9a019
Revises: 29d9c6c62b42
Create Date: 2026-11-29 14:27:35.578608
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base


revision = 'b847ecf9a019'
down_revision = '29d9c6c62b42'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('certificate_orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('out_trade_no', sa.String(length=32), nullable=False),
    sa.Column('certificate_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('fee_fen', sa.Integer(), nullable=False),
    sa.Column('postage_fen', sa.Integer(), nullable=False),
    sa.Column('total_fen', sa.Integer(), nullable=False),
    sa.Column('description', sa.String(length=120), nullable=False),
    sa.Column('payer_openid', sa.String(length=64), nullable=False),
    sa.Column('prepay_id', sa.String(length=64), nullable=True),
    sa.Column('expires_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('transaction_id', sa.String(length=32), nullable=True),
    sa.Column('paid_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('recipient_name', sa.String(length=50), nullable=False),
    sa.Column('recipient_phone', sa.String(length=20), nullable=False),
    sa.Column('mail_address', sa.String(length=300), nullable=True),
    sa.Column('carrier', sa.String(length=40), nullable=True),
    sa.Column('tracking_number', sa.String(length=40), nullable=True),
    sa.Column('shipped_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('paper_status_before', sa.String(length=24), nullable=True),
    sa.Column('out_refund_no', sa.String(length=64), nullable=True),
    sa.Column('refund_id', sa.String(length=32), nullable=True),
    sa.Column('refund_reason', sa.Text(), nullable=True),
    sa.Column('refunded_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['certificate_id'], ['certificates.id'], name=op.f('fk_certificate_orders_certificate_id_certificates')),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], name=op.f('fk_certificate_orders_school_id_schools')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_certificate_orders_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_certificate_orders')),
    sa.UniqueConstraint('out_refund_no', name=op.f('uq_certificate_orders_out_refund_no')),
    sa.UniqueConstraint('out_trade_no', name=op.f('uq_certificate_orders_out_trade_no')),
    sa.UniqueConstraint('transaction_id', name=op.f('uq_certificate_orders_transaction_id'))
    )
    with op.batch_alter_table('certificate_orders', schema=None) as batch_op:
        batch_op.create_index('ix_certificate_orders_status', ['status'], unique=False)
        batch_op.create_index('ix_certificate_orders_user_id', ['user_id'], unique=False)
        batch_op.create_index('uq_certificate_orders_certificate_open', ['certificate_id'], unique=True, postgresql_where=sa.text("status NOT IN ('closed', 'refunded')"), sqlite_where=sa.text("status NOT IN ('closed', 'refunded')"))

    op.create_table('order_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.Column('at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['certificate_orders.id'], name=op.f('fk_order_events_order_id_certificate_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_events'))
    )
    with op.batch_alter_table('order_events', schema=None) as batch_op:
        batch_op.create_index('ix_order_events_order_id', ['order_id'], unique=False)

    op.create_table('payment_flags',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('out_trade_no', sa.String(length=64), nullable=True),
    sa.Column('transaction_id', sa.String(length=64), nullable=True),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.Column('seen_count', sa.Integer(), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['order_id'], ['certificate_orders.id'], name=op.f('fk_payment_flags_order_id_certificate_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_flags')),
    sa.UniqueConstraint('key', name=op.f('uq_payment_flags_key'))
    )


def downgrade() -> None:
    op.drop_table('payment_flags')
    with op.batch_alter_table('order_events', schema=None) as batch_op:
        batch_op.drop_index('ix_order_events_order_id')

    op.drop_table('order_events')
    with op.batch_alter_table('certificate_orders', schema=None) as batch_op:
        batch_op.drop_index('uq_certificate_orders_certificate_open', postgresql_where=sa.text("status NOT IN ('closed', 'refunded')"), sqlite_where=sa.text("status NOT IN ('closed', 'refunded')"))
        batch_op.drop_index('ix_certificate_orders_user_id')
        batch_op.drop_index('ix_certificate_orders_status')

    op.drop_table('certificate_orders')

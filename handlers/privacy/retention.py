"""Retention: the one sweep that removes what the privacy registry says has served its purpose.

Each declaration with `retention_days` is swept the same way, so a retention is a line of data in
`registry.py`, never a prune of its own: rows whose `aged_by` column is older than the period (and
that match `retention_where`) are taken in chunks of `BATCH` ids, in id order, and
- deleted (`Expiry.DELETE`), together with the file a row points at (`blob_key`) and the rows that
  hang on it by a cascading foreign key (a roster upload's leftover file); a nullable link into a
  deleted row becomes NULL (a progress row outlives an unverified profile, as after an erasure);
- or their file deleted and the row kept as a record (`Expiry.FILE`): status "expired", no key.

Student profiles are deleted through the ORM: the school counters follow a profile's deletion in
the flush hook of `handlers/learning/school_progress.py`, which a Core DELETE would bypass.

One sweep runs at a time (an advisory lock on PostgreSQL; SQLite has one writer), and each chunk is
locked as it is read (FOR UPDATE SKIP LOCKED): an admin approving a pending profile at the moment it
expires either holds it first (the sweep skips it, until tomorrow) or finds it gone. Flushes
only; the job's boundary commits. Files are deleted before that commit, on purpose: a sweep that
fails afterwards leaves rows pointing at files already gone (the next run finishes them), which is
the lesser harm than a file outliving its retention."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Table, and_, delete, func, select, update
from sqlalchemy.orm import Session

from blobstore import BlobStore
from handlers.learning import school_progress
from handlers.privacy.registry import DECLARATIONS, Declaration, Expiry
from models import Base, StudentProfile

# Ids per chunk: memory and statement size stay bounded however much has expired.
BATCH = 1000
# The column of a table that holds a key in the blob store.
BLOB_COLUMN = "blob_key"
EXPIRED = "expired"
# Swept after every other table: a conversation goes once its messages have, so one whose last
# messages expire today goes today rather than tomorrow.
SWEPT_LAST = ("conversations",)
# The PostgreSQL advisory lock held by the sweep running ("rete" in ASCII): one sweep at a time.
SWEEP_LOCK = 0x72657465
# Deleted through the ORM, one object at a time, because a flush hook follows their deletion.
THROUGH_THE_ORM = {"student_profiles": StudentProfile}


def retained() -> list[Declaration]:
    """The declarations with a retention, in the order the sweep takes them."""
    found = [d for d in DECLARATIONS if d.retention_days is not None]
    return sorted(found, key=lambda d: d.table in SWEPT_LAST)


def expired(declaration: Declaration, now: datetime) -> ColumnElement[bool]:
    """The condition of the declaration's rows whose retention has run out at `now`."""
    assert declaration.retention_days is not None and declaration.aged_by is not None, declaration.table
    table = Base.metadata.tables[declaration.table]
    condition = table.c[declaration.aged_by] < now - timedelta(days=declaration.retention_days)
    if declaration.retention_where is not None:
        condition = and_(condition, declaration.retention_where(table))
    return condition


def sweep(session: Session, blobs: BlobStore, now: datetime, tables: Iterable[str] | None = None) -> dict[str, int]:
    """Remove every expired row (or, for `Expiry.FILE`, its file) of the declared tables, or of
    `tables` only; returns table -> rows removed or files expired (every swept table, 0 included;
    rows of other tables that went with them under their own names), or {} when another sweep is
    running (it does the work). Flushes only."""
    declarations = retained()
    if tables is not None:
        wanted = set(tables)
        unknown = wanted - {d.table for d in declarations}
        if unknown:
            raise ValueError(f"no retention declared for {sorted(unknown)}")
        declarations = [d for d in declarations if d.table in wanted]
    if not _only_sweep(session):
        return {}
    removed: dict[str, int] = {}
    for declaration in declarations:
        n = _sweep_table(session, blobs, declaration, now, removed)
        removed[declaration.table] = removed.get(declaration.table, 0) + n
    session.flush()
    return removed


def _only_sweep(session: Session) -> bool:
    """Whether this transaction is the only sweep running (PostgreSQL; SQLite has one writer anyway).
    Two sweeps at once (a retried run beside the next day's, a replaced kind's job beside the new
    one) would each lock chunks and bump school counters in their own order and could deadlock; the
    second one leaves the work to the first instead."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.scalar(select(func.pg_try_advisory_xact_lock(SWEEP_LOCK))))


def _sweep_table(session: Session, blobs: BlobStore, declaration: Declaration, now: datetime,
                 removed: dict[str, int]) -> int:
    table = Base.metadata.tables[declaration.table]
    condition = expired(declaration, now)
    count, last_id = 0, 0
    while True:
        # Keyset pages over rows locked as they are read: one someone else holds (an admin deciding
        # that pending profile) is skipped, left for tomorrow's sweep rather than waited for.
        ids = list(session.scalars(select(table.c.id).where(condition, table.c.id > last_id)
                                   .order_by(table.c.id).limit(BATCH).with_for_update(skip_locked=True)))
        if not ids:
            return count
        last_id = ids[-1]
        if declaration.on_expiry == Expiry.FILE:
            count += _expire_files(session, blobs, table, ids)
        else:
            count += _delete(session, blobs, table, ids, removed)


def _delete_files(session: Session, blobs: BlobStore, table: Table, where: ColumnElement[bool]) -> None:
    """Delete the files of the rows `where` selects (before the rows change: see the module's docstring)."""
    if BLOB_COLUMN not in table.c:
        return
    for key in session.scalars(select(table.c[BLOB_COLUMN]).where(where, table.c[BLOB_COLUMN].is_not(None))):
        blobs.delete(key)


def _expire_files(session: Session, blobs: BlobStore, table: Table, ids: list[int]) -> int:
    _delete_files(session, blobs, table, table.c.id.in_(ids))
    values: dict[str, str | None] = {"status": EXPIRED, BLOB_COLUMN: None}
    if "file_name" in table.c:
        values["file_name"] = None
    session.execute(update(table).where(table.c.id.in_(ids)).values(values))
    return len(ids)


def _delete(session: Session, blobs: BlobStore, table: Table, ids: list[int], removed: dict[str, int]) -> int:
    _let_go(session, blobs, table, ids, removed)
    _delete_files(session, blobs, table, table.c.id.in_(ids))
    model = THROUGH_THE_ORM.get(table.name)
    if model is None:
        return int(session.execute(delete(table).where(table.c.id.in_(ids))).rowcount or 0)  # type: ignore[attr-defined]
    # Read afresh (not from the identity map): the flush hook takes back what the row counts now.
    assert school_progress.counting()
    rows = list(session.scalars(select(model).where(model.id.in_(ids)).execution_options(populate_existing=True)))
    for row in rows:
        session.delete(row)
    session.flush()
    return len(rows)


def _let_go(session: Session, blobs: BlobStore, table: Table, ids: list[int], removed: dict[str, int]) -> None:
    """Rows elsewhere that point at the rows about to go: a nullable link becomes NULL, a row that
    cascades goes first with its file. Any other link must be ruled out by the declaration's
    `retention_where` (a conversation goes only with no reply left); the database refuses otherwise."""
    for other in Base.metadata.sorted_tables:
        for fk in other.foreign_keys:
            if fk.column.table is not table or other is table:
                continue
            if fk.parent.nullable:
                session.execute(update(other).where(fk.parent.in_(ids)).values({fk.parent.name: None}))
            elif fk.ondelete == "CASCADE":
                _delete_files(session, blobs, other, fk.parent.in_(ids))
                n = int(session.execute(delete(other).where(fk.parent.in_(ids))).rowcount or 0)  # type: ignore[attr-defined]
                if n:
                    removed[other.name] = removed.get(other.name, 0) + n

"""Housekeeping: blobs no row points at (a rolled-back issue, a re-rendered certificate, a half-written
upload) are swept, on both blob store backends. Export files' week: tests/test_privacy_retention.py."""
from __future__ import annotations

import os
import secrets
import time
from datetime import timedelta

import pytest
from sqlalchemy import delete, select

from blobstore import LocalStore, S3Store
from database import get_database
from handlers.certificates.claims import store_rendering
from handlers.housekeeping import ORPHAN_GRACE, sweep_orphan_blobs
from models import Certificate, CertificateFile, RosterFile, RosterUpload, School
from models.base import utcnow
from tests.factories import claim_as
from web.blobs import get_blob_store


@pytest.fixture(params=["file", "s3"])
def swept(request, app, tmp_path):  # type: ignore[no-untyped-def]
    """The app's own store, or one on the real S3 server."""
    if request.param == "file":
        return get_blob_store(app)
    server = request.getfixturevalue("s3_server")
    return S3Store("sweep" + secrets.token_hex(4), endpoint=server.endpoint, region="us-east-1",
                   access_key=server.access_key, secret_key=server.secret_key, create_bucket=True)


def test_orphans_older_than_the_grace_are_swept_and_nothing_a_row_points_at(app, graduates, swept) -> None:  # type: ignore[no-untyped-def]
    # What rows point at: a certificate's files (issued into this store) and a queued roster upload.
    certificate_id = claim_as(app, graduates[0]).id
    with get_database(app).sessions() as session:
        certificate = session.get(Certificate, certificate_id)
        session.execute(delete(CertificateFile).where(
            CertificateFile.certificate_id == certificate_id))
        store_rendering(session, certificate, blobs=swept)  # its files, in the store under test
        school_id = session.scalar(select(School.id))
        upload = RosterUpload(school_id=school_id, uploaded_by="a", file_name="r.csv", mode="merge", report={})
        session.add(upload)
        session.flush()
        swept.put(f"rosters/{upload.id}/kept", b"name,number\n")
        session.add(RosterFile(upload_id=upload.id, blob_key=f"rosters/{upload.id}/kept", size_bytes=12))
        session.commit()
        owned = {f.blob_key for f in session.scalars(select(CertificateFile).where(
            CertificateFile.certificate_id == certificate_id))} | {f"rosters/{upload.id}/kept"}
    # What no row points at: an issue that rolled back, a re-render's old file, an export never recorded.
    orphans = {f"certificates/{certificate_id}/pdf-0000.pdf", "rosters/999/lost", "exports/students/9/x.csv"}
    for key in orphans:
        swept.put(key, b"x")
    with get_database(app).sessions() as session:
        # Young orphans are left: their row may be in a transaction not committed yet.
        assert sweep_orphan_blobs(session, swept, utcnow()) == 0
        later = utcnow() + ORPHAN_GRACE + timedelta(minutes=1)
        assert sweep_orphan_blobs(session, swept, later) == len(orphans)
        assert sweep_orphan_blobs(session, swept, later) == 0
    left = {b.key for prefix in ("certificates/", "rosters/", "exports/") for b in swept.list(prefix)}
    assert left == owned


def test_a_half_written_local_file_is_swept(app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = LocalStore(tmp_path, b"secret", "/blobs")
    with get_database(app).sessions() as session:
        school = School(name="名单大学")
        session.add(school)
        session.flush()
        upload = RosterUpload(school_id=school.id, uploaded_by="a", file_name="r.csv", mode="merge", report={})
        session.add(upload)
        session.flush()
        key = f"rosters/{upload.id}/whole"
        store.put(key, b"ok")
        session.add(RosterFile(upload_id=upload.id, blob_key=key, size_bytes=2))
        session.commit()
    folder = tmp_path / "rosters" / str(upload.id)
    part = folder / ".part-abc"  # a worker killed mid-write leaves this
    part.write_bytes(b"half")
    old = time.time() - ORPHAN_GRACE.total_seconds() - 60
    for path in (part, folder / "whole"):
        os.utime(path, (old, old))
    with get_database(app).sessions() as session:
        assert sweep_orphan_blobs(session, store, utcnow()) == 1
    assert store.get(key) == b"ok" and not part.exists()

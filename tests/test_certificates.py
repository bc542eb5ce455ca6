"""Certificates: claimed once, gapless serials under concurrency, signed snapshots, verified publicly."""
from __future__ import annotations

import threading
from datetime import date

import pytest
from sqlalchemy import select, update

import certs
from database import get_database
from handlers.certificates.claims import allocate_serial, claim
from handlers.certificates.verify import verify
from handlers.errors import Refused
from handlers.privacy.masking import mask_name, mask_number
from models import Certificate, CertificateEvent, Enrollment
from models.base import utcnow
from tests.factories import ISSUER, KEYS, TODAY, claim_as
from web.blobs import get_blob_store


def test_claiming_issues_a_signed_snapshot_once(app, graduates) -> None:  # type: ignore[no-untyped-def]
    first = claim_as(app, graduates[0])
    assert first.serial == "XW-2026-000001" and first.version == 1 and first.score == 90
    assert (first.holder_name, first.school_name, first.student_number) == ("林小满一", "证书大学", "C000")
    assert first.verify_url == f"https://xinwei.example.cn/verify/{first.verify_token}"
    again = claim_as(app, graduates[0], today=date(2027, 1, 5))
    assert again.id == first.id and again.issued_on == TODAY  # the issue date never changes
    with get_database(app).sessions() as session:
        events = session.scalars(select(CertificateEvent)).all()
        assert [(e.action, e.actor) for e in events] == [("issued", f"student:{graduates[0]}")]


def test_only_students_who_passed_can_claim(app, graduates) -> None:  # type: ignore[no-untyped-def]
    with get_database(app).sessions() as session:
        session.execute(update(Enrollment).where(Enrollment.user_id == graduates[1]).values(passed_at=None))
        session.commit()
        with pytest.raises(Refused) as err:
            claim(session, graduates[1], "demo-course", "electronic", ISSUER, TODAY, blobs=get_blob_store(app))
        assert err.value.code == "not_passed"
        with pytest.raises(Refused):
            claim(session, graduates[0], "demo-course", "carrier-pigeon", ISSUER, TODAY, blobs=get_blob_store(app))


def test_concurrent_claims_of_one_student_make_one_certificate(app, graduates) -> None:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(4)
    results: list[int] = []

    def go() -> None:
        barrier.wait()
        results.append(claim_as(app, graduates[2]).id)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    with get_database(app).sessions() as session:
        assert len(session.scalars(select(Certificate)).all()) == 1


def test_serials_have_no_gaps_or_duplicates_under_concurrency(app, graduates) -> None:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(len(graduates))
    serials: list[str] = []

    def go(user_id: int) -> None:
        barrier.wait()
        serials.append(claim_as(app, user_id).serial)

    threads = [threading.Thread(target=go, args=(u,)) for u in graduates]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(serials) == [f"XW-2026-{n:06d}" for n in range(1, len(graduates) + 1)]


def test_a_rolled_back_issue_gives_its_number_back(app) -> None:  # type: ignore[no-untyped-def]
    sessions = get_database(app).sessions
    with sessions() as session:
        assert allocate_serial(session, 2031) == "XW-2031-000001"
        session.rollback()
    with sessions() as session:
        assert allocate_serial(session, 2031) == "XW-2031-000001"
        assert allocate_serial(session, 2031) == "XW-2031-000002"
        session.commit()


def test_verify_masks_and_checks_the_signature(app, graduates) -> None:  # type: ignore[no-untyped-def]
    certificate = claim_as(app, graduates[3])
    with get_database(app).sessions() as session:
        seen = verify(session, certificate.verify_token, KEYS)
        assert seen is not None and seen.status == "valid" and seen.signature_ok
        assert (seen.masked_name, seen.masked_number) == ("林**四", "****")
        assert verify(session, "no-such-token", KEYS) is None
        # Tampering with any printed field breaks the signature.
        session.execute(update(Certificate).where(Certificate.id == certificate.id).values(score=100))
        session.commit()
        tampered = verify(session, certificate.verify_token, KEYS)
        assert tampered is not None and not tampered.signature_ok
        # A key the verifier does not know proves nothing.
        assert not verify(session, certificate.verify_token, {}).signature_ok  # type: ignore[union-attr]


def test_superseded_and_revoked_states(app, graduates) -> None:  # type: ignore[no-untyped-def]
    first = claim_as(app, graduates[4])
    with get_database(app).sessions() as session:
        old = session.get(Certificate, first.id)
        old.status = "superseded"
        session.flush()
        newer = Certificate(**{c: getattr(old, c) for c in (
            "user_id", "course_id", "serial", "channel", "holder_name", "school_name", "student_number",
            "course_title", "score", "issued_on", "issuers")}, version=2, supersedes_id=old.id,
            verify_token=certs.new_verify_token(), status="valid", verify_url="https://x/verify/2", signature="")
        session.add(newer)
        session.commit()
        seen = verify(session, first.verify_token, KEYS)
        assert seen.status == "superseded" and seen.newest_token == newer.verify_token  # type: ignore[union-attr]
        newer.status = "revoked"
        session.commit()
        assert verify(session, newer.verify_token, KEYS).status == "revoked"  # type: ignore[union-attr]


@pytest.mark.parametrize("name,masked", [("张三", "张*"), ("林小满", "林*满"), ("欧阳娜娜", "欧**娜"), ("A", "*")])
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked


def test_mask_number() -> None:
    assert mask_number("2024018") == "20***18" and mask_number("C00") == "***"


def test_a_correction_supersedes_the_old_version_with_history(app, graduates) -> None:  # type: ignore[no-untyped-def]
    from handlers.certificates.corrections import decide_correction, request_correction
    from models import CertificateFile, CorrectionRequest

    first = claim_as(app, graduates[0])
    sessions = get_database(app).sessions
    with sessions() as session:
        with pytest.raises(Refused):  # not a printed field
            request_correction(session, graduates[0], first.id, {"score": "100"}, "想要满分")
        with pytest.raises(Refused):  # someone else's certificate
            request_correction(session, graduates[1], first.id, {"student_number": "C999"}, "学号填错")
        asked = request_correction(session, graduates[0], first.id, {"student_number": "C0007"}, "学号少写一位")
        with pytest.raises(Refused):  # one open request at a time
            request_correction(session, graduates[0], first.id, {"holder_name": "林大满"}, "再改")
        session.commit()
        with pytest.raises(Refused):
            decide_correction(session, asked.id, "wang", approve=False, note=" ", issuer=ISSUER, now=utcnow(),
                              blobs=get_blob_store(app))
        new = decide_correction(session, asked.id, "wang", approve=True, note=None, issuer=ISSUER, now=utcnow(),
                                blobs=get_blob_store(app))
        session.commit()
        assert new is not None and new.version == 2 and new.serial == first.serial and new.student_number == "C0007"
        assert new.issued_on == first.issued_on and new.verify_token != first.verify_token
        assert {
            f.kind for f in session.scalars(select(CertificateFile).where(CertificateFile.certificate_id == new.id))
        } == {"pdf", "png"}
        with pytest.raises(Refused):  # decided already
            decide_correction(session, asked.id, "li", approve=True, note=None, issuer=ISSUER, now=utcnow(),
                              blobs=get_blob_store(app))
        old_view = verify(session, first.verify_token, KEYS)
        assert old_view.status == "superseded" and old_view.newest_token == new.verify_token  # type: ignore[union-attr]
        assert old_view.signature_ok  # the old version's signature still holds for what it printed
        new_view = verify(session, new.verify_token, KEYS)
        assert new_view.status == "valid" and new_view.signature_ok  # type: ignore[union-attr]
        actions = [
            (e.certificate_id, e.action, e.actor)
            for e in session.scalars(select(CertificateEvent).order_by(CertificateEvent.id))
        ]
        assert actions[-2:] == [(first.id, "superseded", "staff:wang"), (new.id, "issued", "staff:wang")]
        assert session.get(CorrectionRequest, asked.id).status == "approved"


def test_revocation_keeps_everything_and_says_why(app, graduates) -> None:  # type: ignore[no-untyped-def]
    from handlers.certificates.corrections import revoke

    first = claim_as(app, graduates[1])
    with get_database(app).sessions() as session:
        with pytest.raises(Refused):
            revoke(session, first.id, "wang", "", now=utcnow())
        revoke(session, first.id, "wang", "冒名顶替", now=utcnow())
        session.commit()
        seen = verify(session, first.verify_token, KEYS)
        assert seen.status == "revoked" and seen.certificate.revoke_reason == "冒名顶替"  # type: ignore[union-attr]
        with pytest.raises(Refused):
            revoke(session, first.id, "wang", "再撤一次", now=utcnow())
    # A revoked certificate is not claimed again by the student; staff decide.
    with pytest.raises(Refused) as err:
        claim_as(app, graduates[1])
    assert err.value.code == "revoked"


def test_an_export_zips_the_schools_certificates_with_progress(app, graduates) -> None:  # type: ignore[no-untyped-def]
    import io
    import zipfile

    from handlers.certificates.exports import request_export
    from jobs.queue import get_queue
    from models import CertificateExport, Job, School

    get_queue(app).kick = lambda ids, delay=None: None  # type: ignore[method-assign]  # run by hand below
    issued = [claim_as(app, user_id) for user_id in graduates[:3]]
    with get_database(app).sessions() as session:
        school_id = session.scalar(select(School.id))
        other = School(name="别的大学")
        session.add(other)
        session.flush()
        mine = request_export(session, "staff:wang", school_id=school_id, issued_from=None, issued_until=None,
                              now=utcnow())
        theirs = request_export(session, "staff:wang", school_id=other.id, issued_from=None, issued_until=None,
                                now=utcnow())
        later = request_export(session, "staff:wang", school_id=None, issued_from=date(2027, 1, 1), issued_until=None,
                               now=utcnow())
        session.commit()
        jobs = {
            j.payload["export_id"]: j.id for j in session.scalars(select(Job).where(Job.kind == "certificates.export"))
        }
    for export_id in (mine.id, theirs.id, later.id):
        assert get_queue(app).execute(jobs[export_id]) == "done"
    with get_database(app).sessions() as session:
        done = session.get(CertificateExport, mine.id)
        assert (done.status, done.total, done.done_count) == ("done", 3, 3)
        assert done.blob_key == f"exports/certificates/{done.id}/{done.file_name}"
        blobs = get_blob_store(app)
        assert blobs.size(done.blob_key) == done.size_bytes
        with zipfile.ZipFile(io.BytesIO(blobs.get(done.blob_key))) as archive:
            assert sorted(archive.namelist()) == sorted(f"{c.serial}.pdf" for c in issued)
            assert all(archive.read(name).startswith(b"%PDF") for name in archive.namelist())
        assert session.get(CertificateExport, theirs.id).total == 0  # another school's export holds none of these
        assert session.get(CertificateExport, later.id).total == 0
        # Only whole exports reach the store: nothing half-written beside them.
        assert [b.key for b in blobs.list("exports/certificates/")] == sorted(
            session.scalars(select(CertificateExport.blob_key).where(CertificateExport.blob_key.is_not(None))))


def test_cli_queues_an_export(app, runner) -> None:  # type: ignore[no-untyped-def]
    from models import CertificateExport

    result = runner.invoke(args=["certificates", "export", "--from", "2026-01-01"])
    assert result.exit_code == 0 and "queued" in result.output
    with get_database(app).sessions() as session:
        export = session.scalars(select(CertificateExport)).one()
        assert export.issued_from == date(2026, 1, 1) and export.status == "pending"

"""Verifying a certificate by its token: the verdict a verify page shows, names and numbers masked."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

import certs
from handlers.certificates.claims import payload_of
from handlers.privacy.masking import mask_name, mask_number
from models import (
    Certificate,
)
from models.status import CertificateStatus


@dataclass(frozen=True)
class Verification:
    certificate: Certificate
    status: str  # a CertificateStatus: the row's own
    signature_ok: bool
    masked_name: str
    masked_number: str
    newest_token: str | None  # where a superseded version points
    newest_status: str | None = None  # the serial's newest version's status, for a superseded one

    @property
    def verdict(self) -> str:
        """What the public page says: erased (genuine; its holder erased their personal data),
        invalid (the signature really fails: the only red "forgery" verdict), valid, corrected (a
        genuine earlier version: the newest one counts), or revoked (this version, or the serial's
        newest, was revoked)."""
        if self.certificate.holder_erased:
            # Our own record vouches for it (there is no signature left to check): genuine, no name.
            return "erased" if self.status == CertificateStatus.VALID else (
                "corrected" if self.status == CertificateStatus.SUPERSEDED else "revoked")
        if not self.signature_ok:
            return "invalid"
        if self.status == CertificateStatus.VALID:
            return "valid"
        if self.status == CertificateStatus.SUPERSEDED and self.newest_status != CertificateStatus.REVOKED:
            return "corrected"
        return "revoked"


def verify(session: Session, token: str, public_keys: dict[str, bytes]) -> Verification | None:
    """What the public verify page shows for a token; None when no certificate has it."""
    certificate = session.scalar(select(Certificate).where(Certificate.verify_token == token))
    if certificate is None:
        return None
    key = public_keys.get(certs.signature_key_id(certificate.signature) or "")
    signature_ok = (not certificate.holder_erased and key is not None
                    and certs.verify(payload_of(certificate), certificate.signature, key))
    newest = newest_status = None
    if certificate.status == CertificateStatus.SUPERSEDED:
        row = session.execute(select(Certificate.verify_token, Certificate.status).where(
            Certificate.serial == certificate.serial, Certificate.version > certificate.version)
            .order_by(Certificate.version.desc()).limit(1)).first()
        if row is not None:
            newest, newest_status = row
    return Verification(certificate, certificate.status, signature_ok, mask_name(certificate.holder_name),
                        mask_number(certificate.student_number), newest, newest_status)

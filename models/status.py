"""Status values: one StrEnum per status column, each member the exact string the database stores."""
from __future__ import annotations

from enum import StrEnum

# StrEnum members are str: they compare equal to the strings read back from the database, bind as
# plain text in SQL, and print as their value (templates, f-strings, JSON). No migration: same strings.


class CertificateStatus(StrEnum):
    """Certificate.status. Only a valid version is live (one per student and course); a correction
    supersedes it with a new version, a revocation ends it."""

    VALID = "valid"
    SUPERSEDED = "superseded"
    REVOKED = "revoked"


class PaperStatus(StrEnum):
    """Certificate.paper_status (and CertificateOrder.paper_status_before): the paper copy's payment.
    None (electronic only) is not a member: the column stays NULL."""

    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"


class CorrectionStatus(StrEnum):
    """CorrectionRequest.status: a student's request waits for staff, who approve or reject it."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class CertificateExportStatus(StrEnum):
    """CertificateExport.status: built by a job; housekeeping expires the file a week after it is done."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"


class StudentExportStatus(StrEnum):
    """StudentExport.status: built by a job; housekeeping expires the file a week after it is done."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"


class ConversationStatus(StrEnum):
    """Conversation.status: closed when nobody needs to act; the student's next message reopens it."""

    OPEN = "open"
    CLOSED = "closed"


class StaffReplyStatus(StrEnum):
    """StaffReply.status: "sending" is committed before WeChat is called, so a job re-run after a
    worker died never sends a customer-service message twice."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class JobStatus(StrEnum):
    """Job.status: pending until a worker claims it, done only with the effects of its run."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class OrderStatus(StrEnum):
    """CertificateOrder.status (and OrderEvent.from_status/to_status). Which moves exist is
    handlers.payments.orders.TRANSITIONS; closed and refunded are final."""

    CREATED = "created"
    PAYING = "paying"
    PAID = "paid"
    PRINTING = "printing"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CLOSED = "closed"
    REFUNDED = "refunded"


class ProfileStatus(StrEnum):
    """StudentProfile.status: pending waits for the school admin (or a roster match); a pending or
    verified profile holds its student number, a rejected one frees it."""

    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"


class RosterUploadStatus(StrEnum):
    """RosterUpload.status: a job parses and merges the file, queued → running → done or failed."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class PushDeliveryStatus(StrEnum):
    """PushDelivery.status: sent once WeChat accepted it; TEMPLATESENDJOBFINISH then says delivered
    (success) or rejected (user block / system failed)."""

    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    DELIVERED = "delivered"
    REJECTED = "rejected"


class VideoStatus(StrEnum):
    """VideoVersion.status: a lecture from the staff member's upload to the ladder students watch.
    uploading (chunks arriving) → probing (assembled, checked) → transcoding → ready; or failed,
    with the reason. A ready version is published when its asset points at it."""

    UPLOADING = "uploading"
    PROBING = "probing"
    TRANSCODING = "transcoding"
    READY = "ready"
    FAILED = "failed"


class DataRequestStatus(StrEnum):
    """DataRequest.status. A copy is built by a job (pending → running → done, then expired when its
    file is deleted); an erasure waits out its cooling-off period as pending, may be cancelled by the
    student, and is carried out (done) by the periodic job or by staff."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

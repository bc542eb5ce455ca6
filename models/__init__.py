"""The data model: typed SQLAlchemy tables, one module per aggregate, all on one MetaData."""
from models.base import Base
from models.certificate import (
                                Certificate,
                                CertificateEvent,
                                CertificateExport,
                                CertificateFile,
                                CorrectionRequest,
                                SerialCounter,
)
from models.console import AuditEntry, AuditRedaction, ConsoleAccount, ConsoleInvite, SignInAttempt
from models.course import Course, CourseVersion, Question, Topic
from models.inbound import InboundEvent
from models.inbox import AutoReplyRule, Conversation, InboxMessage, QuickReply, StaffReply
from models.job import Job
from models.learning import Enrollment, QuizAttempt, WatchSession
from models.order import CertificateOrder, OrderEvent, PaymentFlag
from models.privacy import Consent, DataRequest, PrivacyNotice
from models.push import PushBindToken, PushDelivery, PushWatermark
from models.ratelimit import RateEvent
from models.school import School
from models.school_stats import SchoolStat, StudentExport, StudentProgress
from models.status import (
                                CertificateExportStatus,
                                CertificateStatus,
                                ConversationStatus,
                                CorrectionStatus,
                                DataRequestStatus,
                                JobStatus,
                                OrderStatus,
                                PaperStatus,
                                ProfileStatus,
                                PushDeliveryStatus,
                                RosterUploadStatus,
                                StaffReplyStatus,
                                StudentExportStatus,
                                VideoStatus,
)
from models.student import RosterEntry, RosterFile, RosterUpload, StudentProfile
from models.user import User
from models.video import VideoAsset, VideoUpload, VideoVersion
from models.wechat_token import WeChatToken

__all__ = [
    "Base",
    "AuditEntry",
    "AuditRedaction",
    "AutoReplyRule",
    "Certificate",
    "CertificateEvent",
    "CertificateExport",
    "CertificateFile",
    "CertificateOrder",
    "Consent",
    "DataRequest",
    "PrivacyNotice",
    "ConsoleAccount",
    "ConsoleInvite",
    "Conversation",
    "CorrectionRequest",
    "Course",
    "CourseVersion",
    "Enrollment",
    "InboundEvent",
    "InboxMessage",
    "Job",
    "OrderEvent",
    "PaymentFlag",
    "PushBindToken",
    "RateEvent",
    "PushDelivery",
    "PushWatermark",
    "Question",
    "QuickReply",
    "QuizAttempt",
    "RosterEntry",
    "RosterFile",
    "RosterUpload",
    "School",
    "SchoolStat",
    "SerialCounter",
    "SignInAttempt",
    "StaffReply",
    "StudentExport",
    "StudentProfile",
    "StudentProgress",
    "VideoAsset",
    "VideoUpload",
    "VideoVersion",
    "Topic",
    "User",
    "WatchSession",
    "WeChatToken",
    # status values (models/status.py)
    "CertificateExportStatus",
    "CertificateStatus",
    "DataRequestStatus",
    "ConversationStatus",
    "CorrectionStatus",
    "JobStatus",
    "OrderStatus",
    "PaperStatus",
    "ProfileStatus",
    "PushDeliveryStatus",
    "RosterUploadStatus",
    "StaffReplyStatus",
    "StudentExportStatus",
    "VideoStatus",
]

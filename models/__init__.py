"""The data model: typed SQLAlchemy tables, one module per aggregate, all on one MetaData."""
from models.base import Base
from models.certificate import (Certificate, CertificateEvent, CertificateExport, CertificateFile, CorrectionRequest,
                                SerialCounter)
from models.console import AuditEntry, ConsoleAccount, ConsoleInvite, SignInAttempt
from models.course import Course, CourseVersion, Question, Topic
from models.inbound import InboundEvent
from models.inbox import InboxMessage
from models.job import Job
from models.learning import Enrollment, QuizAttempt, WatchSession
from models.school import School
from models.school_stats import SchoolStat, StudentExport, StudentProgress
from models.student import RosterEntry, StudentProfile
from models.user import User
from models.wechat_token import WeChatToken

__all__ = ["Base", "AuditEntry", "ConsoleAccount", "ConsoleInvite", "SignInAttempt", "Certificate", "CertificateEvent", "CertificateExport", "CertificateFile", "CorrectionRequest", "SerialCounter", "Course", "CourseVersion", "Question", "Topic", "InboundEvent", "InboxMessage", "Enrollment", "Job", "QuizAttempt", "WatchSession", "RosterEntry", "School", "StudentProfile", "User", "WeChatToken", "SchoolStat", "StudentExport", "StudentProgress"]

"""Demo data for the embedded default: a few schools, and a roster to verify demo students against."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.accounts.console import create_account
from models import ConsoleAccount, RosterEntry, School
from models.console import PLATFORM_ADMIN, SCHOOL_ADMIN, STAFF

DEMO_SCHOOLS = [
    ("毫末示范大学", "北京市海淀区学院路 1 号 毫末示范大学心理健康教育中心"),
    ("江南师范学院", "江苏省南京市栖霞区文苑路 9 号 学生心理发展指导中心"),
    ("西部理工大学", "四川省成都市郫都区西源大道 2006 号 心理健康教育与咨询中心"),
]

# 毫末示范大学's roster: a demo student who enters one of these is verified at once; anyone
# else (or another school, which has no roster) waits for a school admin's approval.
DEMO_ROSTER_SCHOOL = "毫末示范大学"
DEMO_ROSTER = [
    ("2024001", "张三", "心理学院", "2024级"),
    ("2024002", "李四", "教育学院", "2024级"),
    ("2024003", "王五", "文学院", "2024级"),
    ("2023001", "赵六", "数学学院", "2023级"),
    ("2023002", "林小满", "外国语学院", "2023级"),
]


def load_demo(session: Session) -> int:
    existing = set(session.scalars(select(School.name)))
    created = 0
    for name, address in DEMO_SCHOOLS:
        if name not in existing:
            session.add(School(name=name, address=address))
            created += 1
    session.flush()
    school_id = session.scalar(select(School.id).where(School.name == DEMO_ROSTER_SCHOOL))
    listed = set(session.scalars(select(RosterEntry.student_number).where(RosterEntry.school_id == school_id)))
    for number, name, college, grade in DEMO_ROSTER:
        if number not in listed:
            session.add(RosterEntry(school_id=school_id, student_number=number, real_name=name, college=college,
                                    grade=grade))
            created += 1
    session.flush()
    return created


# Console accounts for trying the consoles on the embedded default only (the CLI refuses in
# production): a platform admin, a staff member, and 毫末示范大学's school admin.
DEMO_PASSWORD = "xinwei-demo-2026"
DEMO_ACCOUNTS = [
    ("admin", "平台管理员（示范）", PLATFORM_ADMIN, None),
    ("staff", "工作人员小王（示范）", STAFF, None),
    ("school", "毫末示范大学 李老师（示范）", SCHOOL_ADMIN, DEMO_ROSTER_SCHOOL),
]


def load_demo_accounts(session: Session) -> int:
    created = 0
    for username, display_name, role, school_name in DEMO_ACCOUNTS:
        if session.scalar(select(ConsoleAccount.id).where(ConsoleAccount.username == username)) is not None:
            continue
        school_id = session.scalar(select(School.id).where(School.name == school_name)) if school_name else None
        create_account(session, username=username, password=DEMO_PASSWORD, role=role, display_name=display_name,
                       school_id=school_id)
        created += 1
    return created

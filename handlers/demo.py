"""Demo data for the embedded default: a few schools, and a roster to verify demo students against."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import RosterEntry, School

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

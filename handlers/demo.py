"""Demo data for the embedded default: a few schools to try the product with."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import School

DEMO_SCHOOLS = [
    ("毫末示范大学", "北京市海淀区学院路 1 号 毫末示范大学心理健康教育中心"),
    ("江南师范学院", "江苏省南京市栖霞区文苑路 9 号 学生心理发展指导中心"),
    ("西部理工大学", "四川省成都市郫都区西源大道 2006 号 心理健康教育与咨询中心"),
]


def load_demo(session: Session) -> int:
    existing = set(session.scalars(select(School.name)))
    created = 0
    for name, address in DEMO_SCHOOLS:
        if name not in existing:
            session.add(School(name=name, address=address))
            created += 1
    session.flush()
    return created

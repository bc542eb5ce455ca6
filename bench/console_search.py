"""bench/console_search: the staff certificate search (name prefix, student number, serial) over many
certificates, with its indexes and without them (the ratio is the figure; SQLite or PostgreSQL)."""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from sqlalchemy import create_engine, insert, text
from sqlalchemy.orm import Session

from handlers.certificates.desk import search
from models import Base, Certificate, Course, User

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "小满一二三思远子涵雨欣浩然梓轩嘉怡俊杰"
INDEXES = ("ix_certificates_holder_name", "ix_certificates_student_number")


def build(url: str, rows: int) -> None:
    engine = create_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(Course), [{"code": "bench", "current_version": 1}])
        conn.execute(insert(User), [{"openid": f"o_{i}"} for i in range(1, rows + 1)])
        batch = []
        for i in range(1, rows + 1):
            name = SURNAMES[i % len(SURNAMES)] + GIVEN[(i // 20) % len(GIVEN)] + GIVEN[(i // 400) % len(GIVEN)]
            batch.append(dict(user_id=i, course_id=1, serial=f"XW-2026-{i:06d}", version=1, verify_token=f"t{i}",
                              status="valid", channel="electronic", holder_name=name, school_name="毫末示范大学",
                              student_number=f"2024{i:07d}", course_title="心理委员MOOC", score=90,
                              issued_on=date(2026, 11, 29), issuers=[], verify_url="https://x/verify", signature="s"))
            if len(batch) == 10_000:
                conn.execute(insert(Certificate), batch)
                batch = []
        if batch:
            conn.execute(insert(Certificate), batch)
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE certificates"))
        else:
            conn.execute(text("ANALYZE"))
    engine.dispose()


def timed(url: str, queries: list[str], repeat: int) -> dict[str, float]:
    engine = create_engine(url)
    results = {}
    with Session(engine) as session:
        for query in queries:
            samples = []
            for _ in range(repeat):
                start = time.perf_counter()
                page = search(session, query)
                samples.append((time.perf_counter() - start) * 1000)
                assert page.rows, query
            results[query] = statistics.median(samples)
    engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--url", default=None, help="a database URL (default: a SQLite file in a temp folder)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    url = args.url or f"sqlite:///{Path(folder) / 'search.db'}"
    build(url, args.rows)
    # A common prefix (many matches: the first page comes quickly either way), a full name (few
    # matches), a student number, a serial (its unique index stays: the control).
    queries = ["林", "林小满", f"2024{args.rows // 2:07d}", f"XW-2026-{args.rows // 3}"]
    indexed = timed(url, queries, args.repeat)
    engine = create_engine(url)
    with engine.begin() as conn:
        for index in INDEXES:
            conn.execute(text(f"DROP INDEX {index}"))
    engine.dispose()
    scanned = timed(url, queries, max(3, args.repeat // 5))
    print(f"{args.rows} certificates on {url.split(':', 1)[0]}; median ms per search (first page)")
    print(f"{'query':<18}{'indexed':>10}{'no index':>12}{'ratio':>9}")
    for query in queries:
        print(f"{query:<18}{indexed[query]:>10.2f}{scanned[query]:>12.2f}{scanned[query] / indexed[query]:>9.1f}")


if __name__ == "__main__":
    main()

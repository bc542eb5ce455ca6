"""bench/roster: a school roster at the row cap (60,000) parsed from GBK CSV and from XLSX, then merged
(first upload and re-upload) on SQLite, each against a floor that only reads the same file; and what the
upload request itself now costs (check and queue the XLSX; the job does the parsing and merging)."""
from __future__ import annotations

import argparse
import csv
import io
import json
import tempfile
import time
from pathlib import Path

import openpyxl
from alembic import command

from blobstore import LocalStore
from handlers.audit import Actor
from handlers.schools import roster, roster_files
from models.base import utcnow

HEADER = ["姓名", "学号", "学院", "年级", "手机"]


def rows(count: int) -> list[list[object]]:
    return [[f"学生{chr(0x4e00 + i % 20000)}{chr(0x4e00 + i // 20000)}", 3000000 + i, "心理学院", "2024级",
             13800130000 + i % 10000] for i in range(count)]


def csv_bytes(count: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(rows(count))
    return out.getvalue().encode("gbk")


def xlsx_bytes(count: int) -> bytes:
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(HEADER)
    for row in rows(count):
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def seconds(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _csv_floor(data: bytes) -> None:
    for _ in csv.reader(io.StringIO(data.decode("gb18030"), newline="")):
        pass


def _xlsx_floor(data: bytes) -> None:
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    for _ in book.worksheets[0].iter_rows(values_only=True):
        pass
    book.close()


def _merge_seconds(parsed: roster_files.ParsedRoster, upload: bytes) -> tuple[float, float, float]:
    from cli import alembic_config
    from models import School
    from models.engine import make_engine, make_sessionmaker

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        cfg = alembic_config(url)
        cfg.attributes["configure_logging"] = False
        command.upgrade(cfg, "head")
        engine = make_engine(url)
        blobs = LocalStore(Path(folder) / "blobs", b"bench", "/blobs")
        with make_sessionmaker(engine)() as session:
            school = School(name="基准大学")
            session.add(school)
            session.commit()
            actor = Actor(None, "bench", school.id)

            def once() -> None:
                roster.merge_roster(session, actor, school.id, parsed, "bench.csv", now=utcnow())
                session.commit()

            first, again = seconds(once), seconds(once)

            def request() -> None:
                roster.request_upload(session, actor, school.id, upload, "bench.xlsx", now=utcnow(), blobs=blobs)
                session.commit()

            queued = seconds(request)
        engine.dispose()
    return first, again, queued


def run(count: int = roster_files.MAX_ROWS) -> dict[str, object]:
    data_csv, data_xlsx = csv_bytes(count), xlsx_bytes(count)
    parsed: list[roster_files.ParsedRoster] = []
    csv_s = seconds(lambda: parsed.append(roster_files.parse_roster(data_csv)))
    xlsx_s = seconds(lambda: roster_files.parse_roster(data_xlsx))
    csv_floor, xlsx_floor = seconds(lambda: _csv_floor(data_csv)), seconds(lambda: _xlsx_floor(data_xlsx))
    first, again, queued = _merge_seconds(parsed[0], data_xlsx)
    return {"rows": count, "csv_kb": len(data_csv) // 1024, "xlsx_kb": len(data_xlsx) // 1024,
            "csv_parse_s": round(csv_s, 3), "csv_floor_s": round(csv_floor, 3),
            "csv_ratio": round(csv_s / csv_floor, 1),
            "xlsx_parse_s": round(xlsx_s, 3), "xlsx_floor_s": round(xlsx_floor, 3),
            "xlsx_ratio": round(xlsx_s / xlsx_floor, 2),
            "merge_first_s": round(first, 3), "merge_again_s": round(again, 3),
            "request_queue_xlsx_s": round(queued, 3), "request_vs_xlsx_parse": round(queued / xlsx_s, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=roster_files.MAX_ROWS)
    args = parser.parse_args()
    result = run(args.rows)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "roster.json").write_text(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()

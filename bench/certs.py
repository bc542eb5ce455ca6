"""bench/certs: milliseconds per certificate PDF and PNG against ReportLab's empty-page floor, and a
bulk zip of 1,000 certificates rendered by worker processes with memory watched."""
from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import tempfile
import time
import zipfile
from datetime import date
from multiprocessing import get_context
from pathlib import Path

from reportlab.pdfgen.canvas import Canvas

import certs
from certs.artwork import PAGE_SIZE
from certs.fonts import FONT_NAME

RESULTS = Path(__file__).resolve().parent / "results"
NAMES = ["林小满", "欧阳娜娜", "张三", "买买提·艾力", "Anna Li", "司马相如", "王五", "赵钱孙李周吴郑王冯陈"]


def sample(i: int) -> certs.CertificateData:
    return certs.CertificateData(
        holder_name=NAMES[i % len(NAMES)], school="毫末示范大学", student_number=f"2024{i:06d}",
        course_title="心理委员MOOC", score=85 + i % 16, serial=certs.format_serial(2026, i + 1),
        issued_on=date(2026, 11, 29), verify_url=f"https://xinwei.example.cn/verify/{certs.new_verify_token()}",
        issuers=("中国心理学会心理学标准与服务研究委员会", "高校心理委员研究协作组", "毫末高校心理委员工作平台"),
    )


def floor_page() -> bytes:
    """ReportLab drawing one page with the same font registered and no content."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=PAGE_SIZE, invariant=1)
    canvas.setFont(FONT_NAME, 12)
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def timed(fn, count: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for i in range(count):
        started = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - started) * 1000)
    return times


def _render(i: int) -> tuple[str, bytes]:
    data = sample(i)
    return f"{data.serial}.pdf", certs.render_pdf(data)


def _warm() -> None:
    certs.warm_up()


def bulk(count: int, processes: int) -> dict[str, float]:
    """Render `count` PDFs in worker processes and stream them into one zip on disk: the
    parent holds one certificate at a time, so its memory stays flat however many there are."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "certificates.zip"
        started = time.perf_counter()
        with get_context("fork").Pool(processes, initializer=_warm) as pool, \
                zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
            for name, pdf in pool.imap_unordered(_render, range(count), chunksize=8):
                archive.writestr(name, pdf)  # PDFs are already compressed
        seconds = time.perf_counter() - started
        size = path.stat().st_size
    return {"count": count, "processes": processes, "seconds": round(seconds, 2),
            "per_second": round(count / seconds, 1), "zip_mb": round(size / 1e6, 1),
            "parent_max_rss_mb_before": round(rss_before / 1024, 1),
            "parent_max_rss_mb_after": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "children_max_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def run(pdfs: int, pngs: int, count: int, processes: int) -> dict[str, object]:
    certs.warm_up()
    floor = timed(lambda i: floor_page(), max(pdfs, 50))
    pdf = timed(lambda i: certs.render_pdf(sample(i)), pdfs)
    one = certs.render_pdf(sample(0))
    png = timed(lambda i: certs.render_png(one), pngs)
    result: dict[str, object] = {
        "floor_ms": round(statistics.median(floor), 2),
        "pdf_ms": round(statistics.median(pdf), 2),
        "pdf_p95_ms": round(sorted(pdf)[int(len(pdf) * 0.95) - 1], 2),
        "png_ms": round(statistics.median(png), 1),
        "pdf_x_floor": round(statistics.median(pdf) / statistics.median(floor), 1),
        "bulk": bulk(count, processes),
        "cores": os.cpu_count(),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.certs", description=__doc__)
    parser.add_argument("--pdfs", type=int, default=200)
    parser.add_argument("--pngs", type=int, default=50)
    parser.add_argument("--count", type=int, default=1000, help="certificates in the bulk zip")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no-json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.pdfs, args.pngs, args.count, args.processes)
    bulk_result = result["bulk"]
    assert isinstance(bulk_result, dict)
    print(f"floor (empty page, font registered): {result['floor_ms']} ms")
    print(
        f"certificate PDF: {result['pdf_ms']} ms median (p95 {result['pdf_p95_ms']} ms) = {result['pdf_x_floor']}x floor"
        f" (target 3x)"
    )
    print(f"certificate PNG: {result['png_ms']} ms median (target < 100 ms)")
    print(f"bulk zip: {bulk_result['count']} in {bulk_result['seconds']} s with {bulk_result['processes']} processes"
          f" ({bulk_result['per_second']}/s, target < 60 s); parent max RSS {bulk_result['parent_max_rss_mb_before']}"
          f" -> {bulk_result['parent_max_rss_mb_after']} MB, workers {bulk_result['children_max_rss_mb']} MB")
    if not args.no_json:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"certs-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(result, indent=2), "utf-8")
        print(f"JSON: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

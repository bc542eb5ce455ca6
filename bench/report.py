"""Bench output: the table a note quotes, the JSON result file, the machine it ran on."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.servers import GunicornSettings
from bench.settings import RESULTS_DIR
from bench.wrk import wrk_available

# --- output ---------------------------------------------------------------------------


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A plain-text table: `columns` is (key, header) pairs; missing values print as '-'."""
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (_, h) in enumerate(columns)]
    line = "  ".join(h.ljust(w) for (_, h), w in zip(columns, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for c in cells:
        out.append("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(c, widths)))
    return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _numeric(text: str) -> bool:
    return bool(re.fullmatch(r"-?[\d.]+", text))


def write_json(name: str, payload: Mapping[str, Any], directory: Path = RESULTS_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def machine() -> dict[str, Any]:
    """What the numbers were measured on: ratios travel between machines, absolute numbers do not."""
    wrk_version = ""
    if wrk_available():
        done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
        wrk_version = (done.stdout + done.stderr).splitlines()[0] if (done.stdout + done.stderr) else ""
    return {
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "wrk": wrk_version,
    }


# --- report and command line -----------------------------------------------------------


def columns(*extra: tuple[str, str]) -> list[tuple[str, str]]:
    """The report's columns: wrk's numbers and checks, a bench's `extra` ones, then CPU, ratio and verdict."""
    return [
        ("db", "db"), ("scenario", "scenario"), ("rps", "req/s"), ("p50_ms", "p50 ms"), ("p90_ms", "p90 ms"),
        ("p99_ms", "p99 ms"), ("max_ms", "max ms"), ("requests", "requests"), ("non200", "non-200"),
        ("socket_errors", "sock err"), ("resent", "resent"), *extra, ("cpu_busy", "cpu busy"),
        ("ratio", "x floor"), ("target_ratio", "target"), ("verdict", "verdict"),
    ]


def report(
    payload: Mapping[str, Any],
    *,
    what: str,
    per: str,
    cols: Sequence[tuple[str, str]],
    targets: str,
    notes: Callable[[Mapping[str, Any]], Iterable[str]] = lambda row: (),
) -> str:
    """The heading (`what`, then the app, gunicorn, wrk and the machine), the table, the `targets`
    line, then per row its `notes` and problems, then each database that failed."""
    s = payload["settings"]
    lines = [
        f"{what}, app {s['app_target']}; gunicorn {GunicornSettings(**s['gunicorn']).describe()}; "
        f"wrk {s['wrk']['connections']} connections, {s['wrk']['threads']} threads"
        f"{', pinned to cpu ' + s['wrk']['cpus'] if s['wrk'].get('cpus') else ''}, "
        f"{s['wrk']['duration_s']}s per {per} (+{s['wrk']['warmup_s']}s warm-up); "
        f"{payload['machine']['cores']} cores",
        "",
        table(payload["rows"], cols),
        "",
        targets,
    ]
    for row in payload["rows"]:
        lines.extend(notes(row))
        for problem in row.get("problems", []):
            lines.append(f"  {row['db']} {row['scenario']}: {problem}")
    for db, error in payload["errors"].items():
        lines.append(f"  {db}: FAILED: {error}")
    return "\n".join(lines)

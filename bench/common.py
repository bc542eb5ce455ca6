"""Shared bench harness: gunicorn, wrk over pre-built requests, fresh databases, the run loop, report, flags, profile scaffolding."""

from __future__ import annotations

import argparse
import cProfile
import http.client
import io
import json
import os
import pstats
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
FLOOR_TARGET = "bench.floor_app:app"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# The production entry point (logging configured, as gunicorn runs it), else the bare factory.
APP_TARGET = "wsgi:app" if (REPO / "wsgi.py").exists() else "app:create_app()"
DATABASES = ("sqlite", "postgresql")


class BenchError(RuntimeError):
    """The bench could not produce a valid measurement; the message says why."""


# --- gunicorn -----------------------------------------------------------------------


@dataclass(frozen=True)
class GunicornSettings:
    """One set of server settings, used unchanged for the floor and the app under test."""

    worker_class: str = "sync"
    workers: int = 5
    threads: int = 1  # only for gthread

    @classmethod
    def for_cores(cls, cores: int | None = None) -> "GunicornSettings":
        # gunicorn's own rule of thumb: (2 x cores) + 1 sync workers, so one worker can
        # wait on the database while the others keep both cores busy.
        cores = cores or os.cpu_count() or 1
        return cls(worker_class="sync", workers=2 * cores + 1)

    def args(self) -> list[str]:
        args = ["--worker-class", self.worker_class, "--workers", str(self.workers)]
        if self.worker_class == "gthread":
            args += ["--threads", str(self.threads)]
        return args

    def describe(self) -> str:
        extra = f" x {self.threads} threads" if self.worker_class == "gthread" else ""
        return f"{self.workers} {self.worker_class} workers{extra}"


def free_port() -> int:
    """A loopback port free right now (the OS picks it; gunicorn binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    port: int
    pid: int
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextmanager
def gunicorn(
    target: str,
    settings: GunicornSettings,
    *,
    env: Mapping[str, str] | None = None,
    log_dir: Path,
    name: str,
    boot_timeout: float = 30.0,
) -> Iterator[Server]:
    """Run `target` (module:app or module:factory()) under gunicorn on 127.0.0.1 until the block ends."""
    port = free_port()
    log_path = log_dir / f"gunicorn-{name}.log"
    # gunicorn would load ./gunicorn.conf.py (production: worker recycling every few
    # thousand requests, keep-alive, ...); an empty config keeps the floor and the app on
    # exactly the settings given here, run after run.
    config = log_dir / "gunicorn.bench.conf.py"
    config.write_text('"""Empty: the bench passes every gunicorn setting on the command line."""\n')
    cmd = [
        sys.executable, "-m", "gunicorn",
        "--config", str(config),
        "--bind", f"127.0.0.1:{port}",
        "--chdir", str(REPO),
        # Info level logs only the boot lines we wait for; access logs stay off (they would
        # be measured too, and production sends them elsewhere).
        "--log-level", "info",
        "--error-logfile", str(log_path),
        *settings.args(),
        target,
    ]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=dict(env if env is not None else os.environ),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", port, proc.pid, log_path)
    try:
        _wait_booted(proc, server, settings.workers, boot_timeout)
        yield server
    finally:
        _stop(proc)


def _wait_booted(proc: subprocess.Popen[bytes], server: Server, workers: int, timeout: float) -> None:
    # Ready means every worker booted (not just the first), so the warm-up does not
    # measure worker start-up, and the port answers HTTP.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"gunicorn exited with {proc.returncode}:\n{server.log_tail()}")
        booted = server.log_tail(400).count("Booting worker with pid")
        if booted >= workers and _answers(server.port):
            return
        time.sleep(0.05)
    raise BenchError(f"gunicorn not ready after {timeout:.0f}s:\n{server.log_tail()}")


def _answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/")
        conn.getresponse().read()
        conn.close()
        return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # Only the gunicorn master we started (its own session), gracefully first.
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def http_post(
    server: Server, path: str, body: bytes, timeout: float = 10.0, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    """One POST over a fresh connection: for pre-flight checks and seeding, not for measuring.
    `headers` replace the text/xml default, as the extra fields of a request-file line do."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "text/xml", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# --- wrk ------------------------------------------------------------------------------

# Each wrk thread has its own Lua state: it loads every nthreads-th line of the request
# file (so threads never send the same entry), and its connections share one cursor (so
# connections never send the same entry either). Running past the end starts over; those
# re-sends are counted as `reused`, since for the webhook they are duplicates.
# A line is `path<TAB>body`, optionally followed by `<TAB>Name: value` fields: per-request
# headers (a session cookie, a form's Content-Type) that replace the text/xml default.
# An optional third script argument is a marker: 200 answers whose body contains it are
# counted as `marked` (e.g. a JSON `"accepted":true`), the first one without it is kept.
WRK_LUA = r"""
local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  if args[3] and args[3] ~= "" then marker = args[3] end
  reqs = {}
  local lines = {}
  for line in io.lines(path) do lines[#lines + 1] = line end
  if #lines == 0 then error("empty request file " .. path) end
  -- A file shorter than the thread count (the floor's single request) is shared.
  for i = 1, #lines do
    if (i - 1) % nthreads == id % #lines then
      local fields = {}
      for f in (lines[i] .. "\t"):gmatch("([^\t]*)\t") do fields[#fields + 1] = f end
      local headers = { ["Content-Type"] = "text/xml" }
      for j = 3, #fields do
        local name, value = fields[j]:match("^([^:]+):%s*(.*)$")
        if name then headers[name] = value end
      end
      reqs[#reqs + 1] = wrk.format("POST", fields[1], headers, fields[2])
    end
  end
  lines = nil
  loaded, sent, ok, bad, xml, sealed, success, other, first_bad = #reqs, 0, 0, 0, 0, 0, 0, 0, ""
  marked, first_unmarked = 0, ""
end

function request()
  sent = sent + 1
  return reqs[((sent - 1) % #reqs) + 1]
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
    if body:sub(1, 5) == "<xml>" then
      xml = xml + 1
      if body:find("<Encrypt>", 1, true) then sealed = sealed + 1 end
    elseif body == "success" then
      success = success + 1
    else
      other = other + 1
    end
    if marker then
      if body:find(marker, 1, true) then
        marked = marked + 1
      elseif first_unmarked == "" then
        first_unmarked = body:sub(1, 160):gsub("[^%w %.:_,{}-]", "?")
      end
    end
  else
    bad = bad + 1
    -- Only characters that need no escaping in the JSON line below (an HTML error page has newlines).
    if first_bad == "" then first_bad = status .. " " .. body:sub(1, 80):gsub("[^%w %.:_-]", "?") end
  end
end

function done(summary, latency, requests)
  local t = { loaded = 0, sent = 0, reused = 0, ok = 0, bad = 0, xml = 0, sealed = 0, success = 0, other = 0,
              marked = 0 }
  local first_bad, first_unmarked = "", ""
  for _, thread in ipairs(threads) do
    local n, s = thread:get("loaded"), thread:get("sent")
    t.loaded = t.loaded + n
    t.sent = t.sent + s
    if s > n then t.reused = t.reused + (s - n) end
    for _, k in ipairs({ "ok", "bad", "xml", "sealed", "success", "other", "marked" }) do t[k] = t[k] + thread:get(k) end
    if first_bad == "" then first_bad = thread:get("first_bad") end
    if first_unmarked == "" then first_unmarked = thread:get("first_unmarked") end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"timeouts": %d, "loaded": %d, "sent": %d, "reused": %d, "ok": %d, "non200": %d, "xml": %d, ' ..
    '"sealed": %d, "success": %d, "other": %d, "first_bad": "%s", "marked": %d, "first_unmarked": "%s"}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.timeout,
    t.loaded, t.sent, t.reused, t.ok, t.bad, t.xml, t.sealed, t.success, t.other, first_bad,
    t.marked, first_unmarked))
end
"""


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    socket_errors: int  # connect + read + write + timeouts, as wrk counts them
    non200: int
    reused: int  # entries sent more than once because the file ran out
    loaded: int  # distinct entries the threads loaded
    xml: int  # 200 answers carrying reply XML
    sealed: int  # ... of which encrypted (safe mode)
    success: int  # 200 answers that were the bare "success"
    other: int  # 200 answers that were neither
    first_bad: str
    cpu_busy: float | None = None  # share of all cores busy during the run (everything on the machine)
    marked: int = 0  # 200 answers containing the run's marker (0 without one)
    first_unmarked: str = ""  # the first 200 answer without the marker, for the report
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def valid(self) -> bool:
        return self.requests > 0 and self.non200 == 0 and self.socket_errors == 0


def write_lua(directory: Path) -> Path:
    path = directory / "requests.lua"
    path.write_text(WRK_LUA)
    return path


def write_requests(
    path: Path, items: Iterable[tuple[str, bytes] | tuple[str, bytes, Mapping[str, str]]]
) -> int:
    """One `path<TAB>body[<TAB>Name: value ...]` line per request, the format the Lua script
    reads; an item's optional third element holds that request's own headers."""
    n = 0
    with open(path, "w", encoding="utf-8") as out:
        for item in items:
            target, body = item[0], item[1]
            headers: Mapping[str, str] = item[2] if len(item) > 2 else {}  # type: ignore[misc]
            fields = [target, body.decode("utf-8")]
            for name, value in headers.items():
                if not name or ":" in name:
                    raise BenchError(f"bad header name {name!r}")
                fields.append(f"{name}: {value}")
            if any(c in f for f in fields for c in "\t\n\r"):
                raise BenchError("request target, body or header contains a tab or newline")
            out.write("\t".join(fields) + "\n")
            n += 1
    if n == 0:
        raise BenchError("no requests to write")
    return n


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    server: Server,
    lua: Path,
    requests_file: Path,
    *,
    duration: int,
    connections: int,
    threads: int,
    timeout: str = "5s",
    marker: str = "",
) -> WrkResult:
    """Run wrk against `server` for `duration` seconds and return its numbers and our checks.
    `marker`: count the 200 answers whose body contains it (WrkResult.marked)."""
    if not wrk_available():
        raise BenchError("wrk is not installed (Debian: apt-get install wrk)")
    if any(c in marker for c in "\t\n\r"):
        raise BenchError("the marker contains a tab or newline")
    threads = max(1, min(threads, connections))
    cmd = [
        "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(duration)}s",
        "--timeout", timeout, "-s", str(lua), server.url + "/", "--", str(requests_file), str(threads), marker,
    ]
    cpu_before = _cpu_times()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish within {duration + 60}s") from exc
    cpu_after = _cpu_times()
    match = re.search(r"^BENCH_RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not match:
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    raw = json.loads(match.group(1))
    seconds = raw["duration_us"] / 1e6
    return WrkResult(
        requests=raw["requests"],
        duration_s=round(seconds, 3),
        rps=round(raw["requests"] / seconds, 1) if seconds else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        mean_ms=round(raw["mean_us"] / 1000, 3),
        socket_errors=raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"],
        non200=raw["non200"],
        reused=raw["reused"],
        loaded=raw["loaded"],
        xml=raw["xml"],
        sealed=raw["sealed"],
        success=raw["success"],
        other=raw["other"],
        first_bad=raw["first_bad"],
        cpu_busy=_busy(cpu_before, cpu_after),
        marked=raw.get("marked", 0),
        first_unmarked=raw.get("first_unmarked", ""),
        raw=raw,
    )


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies over all cores from /proc/stat; None where there is no /proc."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _busy(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    # Idle cores while the app is slower than the floor mean it waits (locks, round trips),
    # not computes: the profile then points at waits rather than at Python.
    if not before or not after or after[1] == before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 3)


# --- databases ------------------------------------------------------------------------


def app_env(database_url: str) -> dict[str, str]:
    """The environment the app runs with: development secrets, the given database."""
    env = dict(os.environ)
    env.update(XINWEI_ENV="development", DATABASE_URL=database_url, PYTHONDONTWRITEBYTECODE="1")
    # A Redis URL inherited from a developer's shell must not change what is measured.
    env.pop("REDIS_URL", None)
    return env


def migrate(database_url: str, timeout: float = 120.0) -> None:
    """`flask --app app db upgrade`, exactly as a deploy does it."""
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"],
        cwd=REPO, env=app_env(database_url), capture_output=True, text=True, timeout=timeout,
    )
    if done.returncode != 0:
        raise BenchError(f"migration failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def sqlite_url(directory: Path) -> str:
    return "sqlite:///" + str(directory / "xinwei.db")


def recreate_pg_database(base_url: str, name: str) -> str:
    """Drop and create database `name` on the server of `base_url`; return its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise BenchError(f"unsafe database name {name!r}")
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(base_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def count_rows(database_url: str, table: str) -> int:
    """Committed rows in `table`, read over a separate connection (SQLite: no write lock taken)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())
    finally:
        engine.dispose()


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


# --- one bench run: options, floor, databases, payload -----------------------------------

RequestItem = tuple[str, bytes] | tuple[str, bytes, Mapping[str, str]]


@dataclass
class BenchOptions:
    """What every bench takes from its command line; a bench subclasses it for its own fields and defaults."""

    duration: int = 10  # seconds per measurement
    warmup: int = 2  # seconds of warm-up before each measurement (0: none)
    connections: int = 16
    wrk_threads: int = 2
    settings: GunicornSettings = field(default_factory=GunicornSettings.for_cores)
    dbs: Sequence[str] = DATABASES
    pg_url: str = DEFAULT_PG_URL  # server to create the bench database on
    pg_database: str = "xinwei_bench"
    requests: int | None = None  # distinct requests per measurement; None sizes them from the warm-up
    max_requests: int = 200_000
    write_json: bool = True
    app_target: str = APP_TARGET
    max_seconds: float = 600.0  # the whole run stops with an error past this


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def check(self, step: str) -> None:
        if time.monotonic() > self.end:
            raise BenchError(f"bench exceeded {self.seconds:.0f}s (at {step})")


@contextmanager
def fresh_database(db: str, opts: BenchOptions, work: Path) -> Iterator[str]:
    """A migrated, empty database: a SQLite file in the run's temp dir, or a recreated PostgreSQL one."""
    if db == "sqlite":
        folder = work / "sqlite"
        folder.mkdir()
        url = sqlite_url(folder)
        migrate(url)
        yield url
        return
    if db != "postgresql":
        raise BenchError(f"unknown database {db!r}")
    url = recreate_pg_database(opts.pg_url, opts.pg_database)
    try:
        migrate(url)
        yield url
    finally:
        drop_pg_database(opts.pg_url, opts.pg_database)


@dataclass
class Run:
    """What every measurement of one run shares: options, temp dir, Lua script, deadline, the floor's req/s."""

    opts: BenchOptions
    work: Path
    lua: Path
    deadline: Deadline
    floor_rps: float = 0.0

    def wrk(self, server: Server, path: Path, seconds: int, marker: str = "") -> WrkResult:
        return run_wrk(server, self.lua, path, duration=seconds, connections=self.opts.connections,
                       threads=self.opts.wrk_threads, marker=marker)

    def size(self, warm: WrkResult | None) -> int:
        """Distinct requests to pre-build: enough for the run at three times the warm-up's pace (the
        first second of a warm-up is slow), never more than the floor could take."""
        opts = self.opts
        if opts.requests:
            return opts.requests
        ceiling = int(self.floor_rps * opts.duration * 1.2) + 1000
        pace = warm.rps if warm and warm.requests else self.floor_rps
        return max(2000, min(int(pace * opts.duration * 3) + 1000, ceiling, opts.max_requests))


def result_row(db: str, scenario: str, result: WrkResult, **extra: Any) -> dict[str, Any]:
    row = {"db": db, "scenario": scenario, **asdict(result), **extra}
    row.pop("raw", None)
    return row


def wrk_problems(result: WrkResult) -> list[str]:
    """What makes any measurement INVALID, whatever it sent."""
    problems = []
    if result.requests == 0:
        problems.append("no requests completed")
    if result.non200:
        problems.append(f"{result.non200} non-200 answers (first: {result.first_bad})")
    if result.socket_errors:
        problems.append(f"{result.socket_errors} socket errors/timeouts")
    return problems


def measure_floor(ctx: Run, requests: Iterable[RequestItem]) -> dict[str, Any]:
    """The bare app under the same gunicorn settings, sent `requests` (the bench's own, so the wire costs the same)."""
    opts = ctx.opts
    path = ctx.work / "floor.txt"
    write_requests(path, requests)
    with gunicorn(FLOOR_TARGET, opts.settings, log_dir=ctx.work, name="floor") as server:
        if opts.warmup:
            ctx.wrk(server, path, opts.warmup)
        ctx.deadline.check("floor")
        result = ctx.wrk(server, path, opts.duration)
    problems = wrk_problems(result)
    if result.success != result.requests:
        problems.append("floor answered something other than 'success'")
    return result_row("-", "floor", result, ratio=1.0, valid=not problems, problems=problems)


def verdict(row: dict[str, Any], target: float | None, p99_ms: float | None = None) -> None:
    """`ok`, `MISS ratio`/`MISS p99`/`MISS ratio+p99`, `INVALID`, or `info` where there is no target."""
    row["target_ratio"] = target
    if not row["valid"]:
        row["verdict"] = "INVALID"
    elif target is None:
        row["verdict"] = "info"
    else:
        misses = []
        if row["ratio"] is None or row["ratio"] < target:
            misses.append("ratio")
        if p99_ms is not None and row["p99_ms"] >= p99_ms:
            misses.append("p99")
        row["verdict"] = "MISS " + "+".join(misses) if misses else "ok"


Measure = Callable[[Server], dict[str, Any]]


def run_bench(
    opts: BenchOptions,
    *,
    bench: str,
    tmp_prefix: str,
    floor_requests: Callable[[Path], Iterable[RequestItem]],
    prepare: Callable[[Run, str, str], tuple[Mapping[str, str], Sequence[tuple[str, Measure]]]],
    judge: Callable[[dict[str, Any]], None],
    settings: Mapping[str, Any],
    targets: Mapping[str, Any],
    db_note: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure the floor, then on each database (fresh, migrated): `prepare(run, db, url)` gives the
    app's environment and the (scenario, measure) pairs to run against it under gunicorn. Each row
    gets its ratio to the floor and `judge`'s verdict. One database failing still reports the others.
    Returns the payload: settings (gunicorn, wrk, then `settings`, then the app), targets, rows, errors."""
    deadline = Deadline(opts.max_seconds)
    started = time.time()
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix=tmp_prefix) as tmp:
        work = Path(tmp)
        ctx = Run(opts, work, write_lua(work), deadline)
        log(f"floor: {FLOOR_TARGET} under gunicorn ({opts.settings.describe()}) ...")
        floor = measure_floor(ctx, floor_requests(work))
        rows.append(floor)
        ctx.floor_rps = floor_rps = floor["rps"]
        for db in opts.dbs:
            log(f"{db}: fresh database, migrate, {db_note}{opts.app_target} under gunicorn ...")
            try:
                with fresh_database(db, opts, work) as url:
                    env, scenarios = prepare(ctx, db, url)
                    with gunicorn(opts.app_target, opts.settings, env=env, log_dir=work, name=db) as server:
                        for scenario, measure in scenarios:
                            log(f"  {db} {scenario} ...")
                            row = measure(server)
                            row["ratio"] = round(row["rps"] / floor_rps, 3) if floor_rps else None
                            judge(row)
                            rows.append(row)
            except BenchError as exc:
                # One database failing (say, PostgreSQL not running) still reports the other.
                errors[db] = str(exc)
                log(f"  {db} FAILED: {exc}")
                deadline.check(db)
    return {
        "bench": bench,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": machine(),
        "settings": {
            "gunicorn": asdict(opts.settings),
            "wrk": {"connections": opts.connections, "threads": opts.wrk_threads,
                    "duration_s": opts.duration, "warmup_s": opts.warmup},
            **settings,
            "app_target": opts.app_target,
        },
        "targets": dict(targets),
        "rows": rows,
        "errors": errors,
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
        f"wrk {s['wrk']['connections']} connections, {s['wrk']['threads']} threads, "
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


Arg = tuple[str, Mapping[str, Any]]


def parse_options(
    argv: Sequence[str] | None,
    defaults: BenchOptions,
    *,
    prog: str,
    doc: str | None,
    name: str,
    helps: Mapping[str, str],
    after_db: Sequence[Arg] = (),
    after_pg: Sequence[Arg] = (),
    lists: Mapping[str, tuple[str, Sequence[str]]] | None = None,
    at_least_one: Sequence[str] = (),
) -> tuple[Any, argparse.Namespace]:
    """The flags every bench takes, plus its own (`after_db`, `after_pg`: placed there in --help).
    `helps` words the help of duration, warmup, requests and profile-requests. `lists`: comma-separated
    flags besides --db, as flag -> (options field, allowed values). `at_least_one`: int flags (and
    options fields) that must be >= 1. Returns `defaults` with the flags applied, and the namespace."""
    p = argparse.ArgumentParser(prog=prog, description=doc)
    p.add_argument("--duration", type=int, default=defaults.duration, help=helps["duration"])
    p.add_argument("--warmup", type=int, default=defaults.warmup, help=helps["warmup"])
    p.add_argument(
        "--connections", type=int, default=defaults.connections, help="wrk connections (default %(default)s)"
    )
    p.add_argument("--wrk-threads", type=int, default=defaults.wrk_threads, help="wrk threads (default %(default)s)")
    p.add_argument(
        "--worker-class", default=defaults.settings.worker_class, help="gunicorn worker class (default %(default)s)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=defaults.settings.workers,
        help="gunicorn workers (default 2 x cores + 1 = %(default)s)",
    )
    p.add_argument(
        "--threads", type=int, default=4, help="threads per worker for --worker-class gthread (default %(default)s)"
    )
    p.add_argument("--db", default=",".join(DATABASES), help="databases, comma-separated (default %(default)s)")
    for flag, kwargs in after_db:
        p.add_argument(flag, **kwargs)
    p.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL),
                   help="PostgreSQL server to create the bench database on (env BENCH_PG_URL)")
    p.add_argument(
        "--pg-database", default=defaults.pg_database, help="dropped and recreated each run (default %(default)s)"
    )
    for flag, kwargs in after_pg:
        p.add_argument(flag, **kwargs)
    p.add_argument("--requests", type=int, default=None, help=helps["requests"])
    p.add_argument("--app-target", default=APP_TARGET, help="gunicorn app to bench (default %(default)s)")
    p.add_argument("--no-json", action="store_true", help=f"do not write bench/results/{name}-<timestamp>.json")
    p.add_argument("--profile", action="store_true", help="instead of wrk: in-process per-stage timings and cProfile")
    p.add_argument("--profile-requests", type=int, default=2000, help=helps["profile_requests"])
    args = p.parse_args(argv)
    chosen: dict[str, list[str]] = {}
    for flag, (key, allowed) in {"--db": ("dbs", DATABASES), **(lists or {})}.items():
        values = [v.strip() for v in getattr(args, flag[2:].replace("-", "_")).split(",") if v.strip()]
        if not values or set(values) - set(allowed):
            p.error(f"{flag} takes {', '.join(allowed)}")
        chosen[key] = values
    counted = ["--duration", "--connections", *(f"--{key}" for key in at_least_one)]
    if (args.duration < 1 or args.connections < 1 or args.warmup < 0
            or any(getattr(args, key) < 1 for key in at_least_one)):
        p.error(f"{', '.join(counted[:-1])} and {counted[-1]} must be >= 1, --warmup >= 0")
    opts = replace(defaults, duration=args.duration, warmup=args.warmup, connections=args.connections,
                   wrk_threads=args.wrk_threads,
                   settings=GunicornSettings(args.worker_class, args.workers, args.threads),
                   pg_url=args.pg_url, pg_database=args.pg_database, requests=args.requests,
                   write_json=not args.no_json, app_target=args.app_target,
                   **chosen, **{key: getattr(args, key) for key in at_least_one})
    return opts, args


def bench_main(
    argv: Sequence[str] | None,
    name: str,
    parse_args: Callable[[Sequence[str] | None], tuple[Any, argparse.Namespace]],
    run: Callable[[Any], dict[str, Any]],
    report: Callable[[dict[str, Any]], str],
    profile: Callable[[Any, int], dict[str, Any]],
    miss_hint: str,
) -> int:
    """A bench's command line: --profile, or a run with its report and JSON; 1 if anything was INVALID or failed."""
    opts, args = parse_args(argv)
    if args.profile:
        results = profile(opts, args.profile_requests)
        if opts.write_json:
            print(f"\nJSON: {write_json(f'{name}-profile', results)}")
        return 0
    payload = run(opts)
    print()
    print(report(payload))
    if opts.write_json:
        print(f"\nJSON: {write_json(name, payload)}")
    if any(r.get("verdict", "").startswith("MISS") for r in payload["rows"]):
        print("\n" + miss_hint)
    invalid = payload["errors"] or any(not r["valid"] for r in payload["rows"])
    return 1 if invalid else 0


# --- in-process profile ----------------------------------------------------------------


def us_per_call(fn: Callable[[], Any], count: int) -> float:
    """Microseconds per request of `fn`, which sends `count` of them."""
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) / count * 1e6


def profile_floor(item: RequestItem, count: int, log: Callable[[str], None], note: str = "") -> float:
    """The bare floor app in-process (Flask test client), sent `item` 200 times to warm up, then
    `count` times: microseconds per request, logged."""
    from bench.floor_app import create_app

    target, body = item[0], item[1]
    headers: Mapping[str, str] = item[2] if len(item) > 2 else {"Content-Type": "text/xml"}  # type: ignore[misc]
    client = create_app().test_client(use_cookies=False)

    def send(n: int) -> None:
        for _ in range(n):
            client.post(target, data=body, headers=headers)

    send(200)
    floor_us = us_per_call(lambda: send(count), count)
    log(f"in-process floor (bare Flask, test client{note}): {floor_us:.0f} us/request")
    return floor_us


@contextmanager
def profiled_app(db: str, opts: BenchOptions, work: Path, make_app: Callable[[str], Any]) -> Iterator[tuple[str, Any]]:
    """A fresh database and `make_app(url)` on it; the app's engines disposed at the end."""
    from database import get_database

    with fresh_database(db, opts, work) as url:
        app = make_app(url)
        try:
            yield url, app
        finally:
            get_database(app).dispose()


@contextmanager
def stage_timer(totals: dict[str, float], stages: Iterable[tuple[object, str, str]]) -> Iterator[None]:
    """Wrap each (owner, attribute, label) so its calls add their time to totals[label] (inclusive);
    afterwards each owner is as it was (an inherited attribute is uncovered again)."""
    patches: list[tuple[object, str, object, bool]] = []

    def wrap(owner: object, name: str, label: str) -> None:
        had = name in vars(owner) if isinstance(owner, type) else name in getattr(owner, "__dict__", {})
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - t

        patches.append((owner, name, original, had))
        setattr(owner, name, timed)

    try:
        for owner, name, label in stages:
            wrap(owner, name, label)
        yield
    finally:
        for owner, name, original, had in reversed(patches):
            if had:
                setattr(owner, name, original)
            else:
                delattr(owner, name)


def cprofiled(fn: Callable[[], Any]) -> cProfile.Profile:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    return prof


def top_stats(prof: cProfile.Profile, sort: str, limit: int) -> str:
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats(sort).print_stats(limit)
    return out.getvalue()


def trim_stats(text: str) -> str:
    """pstats' table without its preamble, indented, with the venv and repo paths shortened."""
    keep, started = [], False
    for line in text.splitlines():
        if line.strip().startswith("ncalls"):
            started = True
        if started and line.strip():
            keep.append("    " + line.replace(str(Path(sys.prefix)), "<venv>").replace(str(REPO), "<repo>"))
    return "\n".join(keep)


# --- smoke tests -----------------------------------------------------------------------


def _expect(condition: bool, what: Any) -> None:
    if not condition:
        raise AssertionError(what)


def smoke_run(
    options: Callable[..., BenchOptions],
    run: Callable[..., dict[str, Any]],
    *,
    pg_database: str,
    expect: set[str],
    **fields: Any,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """For the smoke tests: one run of a bench, about a second per row with one worker, on SQLite,
    or with TEST_DATABASE_URL set (the suite's PostgreSQL pass) on a database of its own there
    (`pg_database` plus a random suffix); `fields` are the bench's own options. Checks what any
    row must show (rows for the floor and the `expect`ed scenarios, all valid, real numbers, the
    floor all 'success') and returns the payload and the rows by scenario."""
    pg_url = os.environ.get("TEST_DATABASE_URL")
    opts = options(
        duration=1,  # wrk's shortest run
        warmup=0,
        connections=2,
        wrk_threads=1,
        settings=GunicornSettings("sync", 1),
        dbs=["postgresql"] if pg_url else ["sqlite"],
        write_json=False,
        max_seconds=120,
        **({"pg_url": pg_url, "pg_database": f"{pg_database}_{uuid.uuid4().hex[:8]}"} if pg_url else {}),
        **fields,
    )
    payload = run(opts, log=lambda _line: None)
    _expect(payload["errors"] == {}, payload["errors"])
    rows = {row["scenario"]: row for row in payload["rows"]}
    _expect(set(rows) == {"floor", *expect}, sorted(rows))
    for name, row in rows.items():
        _expect(row["valid"], (name, row["problems"]))
        _expect(row["requests"] > 0 and row["non200"] == 0 and row["socket_errors"] == 0, (name, row))
        _expect(isinstance(row["rps"], float) and row["rps"] > 0, (name, row["rps"]))
        _expect(row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"], (name, row["p50_ms"], row["p99_ms"]))
    _expect(rows["floor"]["success"] == rows["floor"]["requests"], rows["floor"])
    return payload, rows

"""Shared bench harness: gunicorn on a free port, wrk runs over pre-built requests, fresh databases, tables."""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
FLOOR_TARGET = "bench.floor_app:app"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


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

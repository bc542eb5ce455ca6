"""wrk over pre-built requests: the Lua script, the request files, one run and its parsed result."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.servers import Server, pinned
from bench.settings import BenchError

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
    cpus: str = "",
) -> WrkResult:
    """Run wrk against `server` for `duration` seconds and return its numbers and our checks.
    `marker`: count the 200 answers whose body contains it (WrkResult.marked). `cpus`: pin wrk there."""
    if not wrk_available():
        raise BenchError("wrk is not installed (Debian: apt-get install wrk)")
    if any(c in marker for c in "\t\n\r"):
        raise BenchError("the marker contains a tab or newline")
    threads = max(1, min(threads, connections))
    cmd = pinned([
        "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(duration)}s",
        "--timeout", timeout, "-s", str(lua), server.url + "/", "--", str(requests_file), str(threads), marker,
    ], cpus)
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


# --- one bench run: options, floor, databases, payload -----------------------------------

RequestItem = tuple[str, bytes] | tuple[str, bytes, Mapping[str, str]]

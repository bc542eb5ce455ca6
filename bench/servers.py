"""Bench servers: gunicorn started with the anchor settings, waited for, stopped; a plain HTTP POST."""
from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.settings import REPO, BenchError

# --- gunicorn -----------------------------------------------------------------------


@dataclass(frozen=True)
class GunicornSettings:
    """One set of server settings, used unchanged for the floor and the app under test."""

    worker_class: str = "sync"
    workers: int = 5
    threads: int = 1  # only for gthread
    cpus: str = ""  # taskset CPU list the server is pinned to ("" = not pinned)

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
        pinned = f", pinned to cpu {self.cpus}" if self.cpus else ""
        return f"{self.workers} {self.worker_class} workers{extra}{pinned}"


# The settings the peers were measured under (the hot-path issue's table): 2 gthread workers x 4
# threads with the server pinned to one core and wrk to the other, so a ratio here can be set
# beside theirs. The project's own default (2 x cores + 1 sync workers, unpinned) stays the
# production-like one; `--settings both` reports the two.
ANCHOR = GunicornSettings("gthread", 2, 4, cpus="0")
ANCHOR_WRK_CPUS = "1"


def pinned(cmd: list[str], cpus: str) -> list[str]:
    """`cmd` run under `taskset -c cpus` where a CPU list is given and taskset exists."""
    if not cpus:
        return cmd
    if shutil.which("taskset") is None:
        raise BenchError("pinning needs taskset (Debian: util-linux)")
    return ["taskset", "-c", cpus, *cmd]


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
    cmd = pinned([
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
    ], settings.cpus)
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

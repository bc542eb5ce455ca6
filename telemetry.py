"""What the running system tells operators: structured logs (request id, hashed openid) and metrics."""
from __future__ import annotations

import contextvars
import hashlib
import hmac
import logging
import os
import sys
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

# Set per request (web) or per job (worker); every log record carries them.
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
openid_hash: contextvars.ContextVar[str] = contextvars.ContextVar("openid_hash", default="-")

HTTP_REQUESTS = Counter("xinwei_http_requests_total", "HTTP requests served", ["endpoint", "method", "status"])
HTTP_SECONDS = Histogram("xinwei_http_request_seconds", "HTTP request latency", ["endpoint"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
# labels() takes a lock and builds a key on every call (~6 us): the request path asks for the same
# few children millions of times, so they are kept here. Bounded: a client inventing methods or
# paths must not grow this without limit (prometheus_client itself still would).
_REQUEST_CHILDREN: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_MAX_CHILDREN = 1024


def request_metrics(endpoint: str, method: str, status: str) -> tuple[Any, Any]:
    """The (requests counter, latency histogram) children for one endpoint, method and status."""
    key = (endpoint, method, status)
    found = _REQUEST_CHILDREN.get(key)
    if found is None:
        found = (HTTP_REQUESTS.labels(endpoint, method, status), HTTP_SECONDS.labels(endpoint))
        if len(_REQUEST_CHILDREN) < _MAX_CHILDREN:
            _REQUEST_CHILDREN[key] = found
    return found


WEBHOOK_DELIVERIES = Counter("xinwei_webhook_deliveries_total",
                             "WeChat deliveries by outcome (handled, duplicate, refused)", ["outcome"])
_DELIVERY_CHILDREN: dict[str, Any] = {}


def delivery_outcome(outcome: str) -> Any:
    """WEBHOOK_DELIVERIES' child for `outcome` (a handful: handled, duplicate, error, refused_4xx)."""
    found = _DELIVERY_CHILDREN.get(outcome)
    if found is None:
        found = _DELIVERY_CHILDREN[outcome] = WEBHOOK_DELIVERIES.labels(outcome=outcome)
    return found


JOB_OUTCOMES = Counter("xinwei_job_outcomes_total", "Background job runs by kind and outcome", ["kind", "outcome"])
WECHAT_API_ERRORS = Counter("xinwei_wechat_api_errors_total", "Failed WeChat API calls by path and errcode",
                            ["path", "errcode"])


def hash_openid(openid: str, key: str) -> str:
    """A stable pseudonym for an openid in logs: traceable across lines, not reversible."""
    return hmac.new(key.encode("utf-8"), openid.encode("utf-8"), hashlib.sha256).hexdigest()[:12]


def count_wechat_api_error(path: str, errcode: int | None) -> None:
    WECHAT_API_ERRORS.labels(path=path, errcode=str(errcode) if errcode is not None else "transport").inc()


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.openid_hash = openid_hash.get()
        return True


def configure_logging(json_logs: bool, level: str = "INFO") -> None:
    """Set up the root logger for a process entry point (web server, worker, CLI) — never on import."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if json_logs:
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(openid_hash)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # urllib3 logs whole request URLs at DEBUG, and WeChat puts secrets and OAuth codes in
    # query strings: never let it below INFO.
    logging.getLogger("urllib3").setLevel(max(logging.INFO, root.level))


def metrics_payload() -> bytes:
    """The Prometheus exposition: all processes' metrics when gunicorn runs in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


def job_status_lines(counts: dict[str, Any]) -> bytes:
    """Gauges read from the jobs table at scrape time: the same answer on every host."""
    lines = ["# HELP xinwei_jobs Jobs in the database by status", "# TYPE xinwei_jobs gauge"]
    for status, n in sorted(counts.items()):
        lines.append(f'xinwei_jobs{{status="{status}"}} {int(n)}')
    return ("\n".join(lines) + "\n").encode("utf-8")

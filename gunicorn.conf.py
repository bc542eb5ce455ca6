"""gunicorn settings for the web processes; every value can be overridden from the environment."""
from __future__ import annotations

import multiprocessing
import os
import shutil

bind = os.environ.get("BIND", "0.0.0.0:8000")
# Sync workers: each request is short (WeChat's 5 s window; slow work goes to jobs).
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# Well under WeChat's 5 s: a stuck worker is recycled before WeChat's third retry.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# Restart workers now and then so a slow leak can never take a host down.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = 500
# Behind a load balancer: trust its X-Forwarded-* only from the addresses given.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn's control socket defaults to one path per user: two servers on a host would clash.
control_socket_disable = True
accesslog = None  # the app logs each request itself, with its request id
errorlog = "-"

_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def on_starting(server):  # type: ignore[no-untyped-def]
    # prometheus_client's multiprocess mode needs an empty folder per server start.
    if _metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
        os.makedirs(_metrics_dir, exist_ok=True)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    if _metrics_dir:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

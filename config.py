"""Configuration: defaults, then the environment, then an explicit mapping (tests)."""
from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from typing import Any

from wechat.fake import paykeys

# Values that only make sense on a developer's machine. In production every one of
# these must come from the environment, or start-up fails with the list of names.
DEV_SECRETS: dict[str, str] = {
    "SECRET_KEY": "dev-only-secret-key-not-for-production",
    "WECHAT_APP_ID": "wxd0000000000dev01",
    "WECHAT_APP_SECRET": "dev0secret0for0the0fake0wechat00",
    "WECHAT_TOKEN": "xinweidevtoken",
    # 43 characters of base64 without the trailing '=' (WeChat's EncodingAESKey format).
    "WECHAT_ENCODING_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    # Ed25519 seed (32 bytes, base64) that signs certificates; production keeps its own.
    "CERT_SIGNING_KEY": "ZGV2LW9ubHktY2VydGlmaWNhdGUtc2lnbmluZy1rZXk=",
    # WeChat Pay (API v3): the fake's test merchant and platform keys (wechat/fake/paykeys.py).
    "WECHAT_PAY_MCHID": paykeys.MCHID,
    "WECHAT_PAY_API_V3_KEY": paykeys.API_V3_KEY,
    "WECHAT_PAY_PRIVATE_KEY": paykeys.MERCHANT_PRIVATE_KEY,
    "WECHAT_PAY_CERT_SERIAL": paykeys.MERCHANT_CERT_SERIAL,
    "WECHAT_PAY_PUBLIC_KEY": paykeys.PLATFORM_PUBLIC_KEY,
    "WECHAT_PAY_PUBLIC_KEY_ID": paykeys.PLATFORM_PUBLIC_KEY_ID,
}

REQUIRED_IN_PRODUCTION = (
    "SECRET_KEY",
    "DATABASE_URL",
    "PUBLIC_URL",
    "WECHAT_APP_ID",
    "WECHAT_APP_SECRET",
    "WECHAT_TOKEN",
    "WECHAT_ENCODING_AES_KEY",
    "CERT_SIGNING_KEY",
    "WECHAT_PAY_MCHID",
    "WECHAT_PAY_API_V3_KEY",
    "WECHAT_PAY_PRIVATE_KEY",
    "WECHAT_PAY_CERT_SERIAL",
    "WECHAT_PAY_PUBLIC_KEY",
    "WECHAT_PAY_PUBLIC_KEY_ID",
)

DEFAULTS: dict[str, Any] = {
    "XINWEI_ENV": "development",
    "DATABASE_URL": None,  # filled in with a SQLite file under instance/
    "REDIS_URL": None,
    "PUBLIC_URL": "http://127.0.0.1:5000",
    # Other host names production answers besides PUBLIC_URL's (comma-separated), e.g. an internal one.
    "EXTRA_HOSTS": "",
    # Proxies in front of the app whose X-Forwarded-For / -Proto are believed (0: none; behind one
    # load balancer: 1). Without it every client has the balancer's address.
    "TRUSTED_PROXY_HOPS": 0,
    "WECHAT_API_BASE": "https://api.weixin.qq.com",
    "WECHAT_OPEN_BASE": "https://open.weixin.qq.com",
    "WECHAT_PAY_API_BASE": "https://api.mch.weixin.qq.com",
    # Seconds either side of now that a webhook timestamp may stand; WeChat retries
    # within ~15 s, so 5 minutes is generous for clock skew and still stops old replays.
    "WECHAT_REPLAY_WINDOW": 300,
    # Largest webhook body accepted; WeChat's own messages are a few KiB.
    "WECHAT_MAX_BODY": 64 * 1024,
    # How long a retried delivery waits for the first delivery's reply (seconds).
    "WECHAT_DEDUP_WAIT": 4.0,
    # Timeout for every outbound call to WeChat (seconds).
    "WECHAT_HTTP_TIMEOUT": 5.0,
    "SIMULATOR_ENABLED": None,  # None: on in development, off in production
    # Template (模板消息) telling a student staff answered, for replies outside WeChat's 48-hour
    # window: fields first, keyword1 (the reply), keyword2 (time), remark. None: a dev id in
    # development; in production the console offers no template notice until it is set.
    "WECHAT_TEMPLATE_STAFF_REPLY": None,
    # /metrics: a bearer token, or (unset) loopback callers only.
    "METRICS_TOKEN": None,
    # JSON log lines (production) or readable ones (development); None: by XINWEI_ENV.
    "LOG_JSON": None,
    "LOG_LEVEL": "INFO",
    # Days a student's H5 sign-in lasts (the signed session cookie), counted from the login.
    "H5_SESSION_DAYS": 7,
    # The login's own timestamp bounds its life; re-signing the cookie on every request
    # (Flask's default for permanent sessions) only costs time on each heartbeat.
    "SESSION_REFRESH_EACH_REQUEST": False,
    # Seconds a signed-in student's row is trusted to still exist before it is checked again.
    "H5_USER_CHECK_SECONDS": 60,
    # Where certificate exports (zips) are written; None: <instance>/exports.
    "EXPORT_DIR": None,
    # Where large files live (blobstore.py): file:///abs/path (None: <instance>/blobs) or s3://bucket,
    # with the S3 endpoint the app reaches, the one students reach (a CDN; None: the same), keys.
    "BLOB_STORE_URL": None,
    "BLOB_S3_ENDPOINT": None,
    "BLOB_S3_PUBLIC_ENDPOINT": None,
    "BLOB_S3_REGION": "us-east-1",
    "BLOB_S3_ACCESS_KEY": None,
    "BLOB_S3_SECRET_KEY": None,
    "BLOB_S3_CREATE_BUCKET": False,  # create the bucket at start-up if it is missing (development)
    # Seconds a signed download link (certificate files, exports, lecture segments) works.
    "BLOB_LINK_SECONDS": 300,
    # How long a student's lecture links live beyond the lecture's own length: a link copied out of
    # WeChat dies within that; a player paused longer asks for fresh links (web/lectures.py).
    "LECTURE_LINK_SECONDS": 900,
    # The lecture ladder: name:height:video kbit/s per rung, lowest first (video/transcode.py).
    "VIDEO_LADDER": "360p:360:250,540p:540:700,720p:720:1400",
    # Folder of the generated demo clips ("demo:<name>" topic videos); None: <instance>/videos.
    "DEMO_VIDEO_DIR": None,
    # Background work (see jobs/). The queue uses Redis when REDIS_URL is set, else this file.
    "QUEUE_SQLITE_PATH": None,  # filled in with instance/huey.db
    "JOB_LEASE_SECONDS": 300,  # a claimed job whose worker is silent this long is run again
    "JOB_RETRY_BASE_SECONDS": 10,  # first retry delay; doubles per attempt
    "JOB_RETRY_MAX_SECONDS": 3600,
    "JOB_REQUEUE_SECONDS": 60,  # a pending job enqueued this long ago was lost by the queue
    "JOB_SWEEP_SECONDS": 15,  # how often each worker looks for such jobs
    # WeChat Pay: where payment notifications arrive (None: PUBLIC_URL + /pay/notify).
    "WECHAT_PAY_NOTIFY_URL": None,
    # Where refund notifications arrive (None: PUBLIC_URL + /pay/refund-notify).
    "WECHAT_PAY_REFUND_NOTIFY_URL": None,
    # Paper certificate prices in fen, per course code ("*": every other course). JSON.
    "PAPER_CERT_PRICES": '{"*": {"fee": 2000, "postage": 1000}}',
    # An unpaid order closes after this many seconds; a paying order without a notification
    # is queried from WeChat Pay after PAY_QUERY_AFTER_SECONDS.
    "PAY_ORDER_TIMEOUT_SECONDS": 1800,
    "PAY_QUERY_AFTER_SECONDS": 60,
    # The template message telling a student their paper certificate shipped, when the
    # 48-hour customer-service window has closed (first/keyword1 carrier/keyword2 tracking/remark).
    "WECHAT_TEMPLATE_SHIPPED": None,
    # Seconds either side of now that a payment notification's Wechatpay-Timestamp may stand.
    "PAY_NOTIFY_WINDOW": 300,
    # Template messages to school admins (see README, "Progress pushes"): the template ids from
    # the official account's template library, and each template's field names in slot order.
    "WECHAT_TEMPLATE_DIGEST": "dev-template-daily-digest",
    "WECHAT_TEMPLATE_DIGEST_FIELDS": "thing1,time2,number3,number4,number5,number6",
    "WECHAT_TEMPLATE_PASS": "dev-template-pass-notice",
    "WECHAT_TEMPLATE_PASS_FIELDS": "thing1,number2,thing3,time4",
    "WECHAT_TEMPLATE_APPROVAL": "dev-template-approval-notice",
    "WECHAT_TEMPLATE_APPROVAL_FIELDS": "thing1,number2,thing3,time4",
    # The template message that tells a student their certificate is ready or updated (staff re-send it).
    "WECHAT_TEMPLATE_CERT_NOTICE": "dev-certificate-notice",
    **DEV_SECRETS,
}

INT_KEYS = {"WECHAT_REPLAY_WINDOW", "WECHAT_MAX_BODY", "H5_SESSION_DAYS", "PAY_ORDER_TIMEOUT_SECONDS",
            "PAY_QUERY_AFTER_SECONDS", "PAY_NOTIFY_WINDOW", "TRUSTED_PROXY_HOPS", "BLOB_LINK_SECONDS",
            "LECTURE_LINK_SECONDS"}
FLOAT_KEYS = {
    "WECHAT_DEDUP_WAIT",
    "H5_USER_CHECK_SECONDS",
    "WECHAT_HTTP_TIMEOUT",
    "JOB_LEASE_SECONDS",
    "JOB_RETRY_BASE_SECONDS",
    "JOB_RETRY_MAX_SECONDS",
    "JOB_REQUEUE_SECONDS",
    "JOB_SWEEP_SECONDS",
}
BOOL_KEYS = {"SIMULATOR_ENABLED", "LOG_JSON", "BLOB_S3_CREATE_BUCKET"}


class ConfigError(RuntimeError):
    """The configuration cannot run the app; the message names what to set."""


def _coerce(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if key in INT_KEYS:
            return int(value)
        if key in FLOAT_KEYS:
            return float(value)
    except ValueError as exc:
        raise ConfigError(f"{key} must be a number, got {value!r}") from exc
    if key in BOOL_KEYS:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return value


def load_config(
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    instance_path: str,
) -> dict[str, Any]:
    """Merge defaults, environment and overrides, then check the result."""
    environ = os.environ if environ is None else environ
    config: dict[str, Any] = dict(DEFAULTS)
    production = (overrides or {}).get("XINWEI_ENV", environ.get("XINWEI_ENV")) == "production"
    if production:
        # Never let a dev secret reach production by default.
        for key in DEV_SECRETS:
            config[key] = None
        config["PUBLIC_URL"] = None
    for key in DEFAULTS:
        if key in environ and environ[key] != "":
            config[key] = _coerce(key, environ[key])
    for key, value in (overrides or {}).items():
        config[key] = _coerce(key, value)
    if not config.get("DATABASE_URL") and not production:
        config["DATABASE_URL"] = "sqlite:///" + os.path.join(instance_path, "xinwei.db")
    if not config.get("EXPORT_DIR"):
        config["EXPORT_DIR"] = os.path.join(instance_path, "exports")
    if not config.get("QUEUE_SQLITE_PATH"):
        config["QUEUE_SQLITE_PATH"] = os.path.join(instance_path, "huey.db")
    if not config.get("WECHAT_PAY_NOTIFY_URL") and config.get("PUBLIC_URL"):
        config["WECHAT_PAY_NOTIFY_URL"] = str(config["PUBLIC_URL"]).rstrip("/") + "/pay/notify"
    if not config.get("WECHAT_PAY_REFUND_NOTIFY_URL") and config.get("PUBLIC_URL"):
        config["WECHAT_PAY_REFUND_NOTIFY_URL"] = str(config["PUBLIC_URL"]).rstrip("/") + "/pay/refund-notify"
    if config["LOG_JSON"] is None:
        config["LOG_JSON"] = production
    if not config.get("WECHAT_TEMPLATE_STAFF_REPLY") and not production:
        config["WECHAT_TEMPLATE_STAFF_REPLY"] = "dev_tpl_staff_reply"
    if config["SIMULATOR_ENABLED"] is None:
        config["SIMULATOR_ENABLED"] = not production
    check_config(config)
    # Uploads (rosters, content files) are the largest bodies; the webhook has its own cap.
    config.setdefault("MAX_CONTENT_LENGTH", 16 * 1024 * 1024)
    return config


def check_config(config: Mapping[str, Any]) -> None:
    """Raise ConfigError naming every missing or malformed setting."""
    problems: list[str] = []
    if config.get("XINWEI_ENV") == "production":
        missing = [k for k in REQUIRED_IN_PRODUCTION if not config.get(k)]
        if missing:
            problems.append("missing in production: " + ", ".join(missing))
        if config.get("SIMULATOR_ENABLED"):
            problems.append("SIMULATOR_ENABLED must be off in production")
    key = config.get("WECHAT_ENCODING_AES_KEY")
    if key:
        try:
            if len(key) != 43 or len(base64.b64decode(key + "=", validate=True)) != 32:
                raise ValueError
        except (ValueError, binascii.Error):
            problems.append("WECHAT_ENCODING_AES_KEY must be WeChat's 43-character base64 key")
    cert_key = config.get("CERT_SIGNING_KEY")
    if cert_key:
        try:
            if len(base64.b64decode(cert_key, validate=True)) != 32:
                raise ValueError
        except (ValueError, binascii.Error):
            problems.append("CERT_SIGNING_KEY must be 32 bytes, base64-encoded")
    v3_key = config.get("WECHAT_PAY_API_V3_KEY")
    if v3_key and len(str(v3_key).encode()) != 32:
        problems.append("WECHAT_PAY_API_V3_KEY must be the 32-character API v3 key")
    try:
        paper_prices(config)
    except ValueError as exc:
        problems.append(str(exc))
    for url_key in ("WECHAT_API_BASE", "WECHAT_OPEN_BASE", "WECHAT_PAY_API_BASE", "PUBLIC_URL"):
        url = config.get(url_key)
        if url and not str(url).startswith(("http://", "https://")):
            problems.append(f"{url_key} must be an http(s) URL")
    if problems:
        raise ConfigError("xinwei cannot start: " + "; ".join(problems))


def paper_prices(config: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """PAPER_CERT_PRICES as {course code or "*": (fee, postage)} in fen. Integers only: a
    float or a string amount is a configuration error, never rounded."""
    raw = config.get("PAPER_CERT_PRICES") or "{}"
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise ValueError(f"PAPER_CERT_PRICES must be JSON: {exc}") from exc
    prices: dict[str, tuple[int, int]] = {}
    if not isinstance(data, dict) or "*" not in data:
        raise ValueError('PAPER_CERT_PRICES must map course codes (and "*") to {"fee": fen, "postage": fen}')
    for code, entry in data.items():
        fee, postage = (entry or {}).get("fee"), (entry or {}).get("postage")
        if type(fee) is not int or type(postage) is not int or fee <= 0 or postage < 0:
            raise ValueError(f"PAPER_CERT_PRICES[{code!r}]: fee and postage must be whole fen (integers), fee > 0")
        prices[str(code)] = (fee, postage)
    return prices

"""WeChat web OAuth (snsapi_base): the authorize URL and the code-for-openid exchange."""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import requests

import telemetry

logger = logging.getLogger(__name__)

SNS_TOKEN_PATH = "/sns/oauth2/access_token"
# Codes WeChat gives for a code that is unknown, expired, already used or missing: the
# student's page is stale (back button, reload, forwarded link), not our fault.
REJECTED_CODE_ERRCODES = frozenset({40029, 40163, 41008})
# What real openids look like (28 characters of base64url today); anything else is refused.
OPENID_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class OAuthGrant:
    openid: str
    snapshot: bool


class OAuthCodeRejected(Exception):
    """WeChat refused the code (unknown, expired, used): the student's page is stale."""


class OAuthUnavailable(Exception):
    """No usable answer from WeChat: network failure, HTTP error, other errcode, odd body."""


def authorize_url(config: Mapping[str, Any], redirect_uri: str, state: str) -> str:
    """WeChat's authorize page for snsapi_base (silent: no consent screen). WeChat needs the
    parameters in this order and the #wechat_redirect fragment."""
    query = urlencode([("appid", config["WECHAT_APP_ID"]), ("redirect_uri", redirect_uri),
                       ("response_type", "code"), ("scope", "snsapi_base"), ("state", state)],
                      quote_via=quote)
    return f"{str(config['WECHAT_OPEN_BASE']).rstrip('/')}/connect/oauth2/authorize?{query}#wechat_redirect"


def exchange_code(config: Mapping[str, Any], code: str) -> OAuthGrant:
    """Trade an OAuth code for the student's openid at WeChat.

    Plain requests rather than wechatpy's WeChatOAuth: that class sets no timeout and lets
    connection errors escape unwrapped. Exception texts carry the URL (code and secret), so
    only their type is ever logged.
    """
    url = str(config["WECHAT_API_BASE"]).rstrip("/") + SNS_TOKEN_PATH
    params = {"appid": config["WECHAT_APP_ID"], "secret": config["WECHAT_APP_SECRET"], "code": code,
              "grant_type": "authorization_code"}
    try:
        res = requests.get(url, params=params, timeout=float(config["WECHAT_HTTP_TIMEOUT"]))
        res.raise_for_status()
        body = res.json()
    except (requests.RequestException, ValueError) as exc:
        logger.warning("WeChat API %s failed: errcode=None %s", SNS_TOKEN_PATH, type(exc).__name__)
        telemetry.count_wechat_api_error(SNS_TOKEN_PATH, None)
        raise OAuthUnavailable from None
    if not isinstance(body, dict):
        raise OAuthUnavailable
    try:
        errcode = int(body.get("errcode") or 0)
    except (TypeError, ValueError):
        errcode = -1
    if errcode:
        logger.warning("WeChat API %s failed: errcode=%s", SNS_TOKEN_PATH, errcode)
        telemetry.count_wechat_api_error(SNS_TOKEN_PATH, errcode)
        raise OAuthCodeRejected if errcode in REJECTED_CODE_ERRCODES else OAuthUnavailable
    openid = body.get("openid")
    if not isinstance(openid, str) or not OPENID_SHAPE.match(openid):
        logger.warning("WeChat API %s answered without a well-formed openid", SNS_TOKEN_PATH)
        raise OAuthUnavailable
    # Fail closed: any value other than an explicit 0 means a snapshot (快照页) visitor.
    snapshot = body.get("is_snapshotuser") not in (None, 0, "0", False)
    return OAuthGrant(openid=openid, snapshot=snapshot)

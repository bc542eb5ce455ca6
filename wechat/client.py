"""The WeChat API client: wechatpy's WeChatClient on a configurable base URL and the shared token store."""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import requests
from wechatpy import WeChatClient
from wechatpy.exceptions import APILimitedException, WeChatClientException
from wechatpy.utils import json

from wechat.tokens import LocalCache, TokenStore

logger = logging.getLogger(__name__)

REAL_API_BASE = "https://api.weixin.qq.com"
# 40001 invalid/not latest, 42001 expired, 40014 malformed: a newer token may fix all three.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
API_LIMITED_ERRCODES = frozenset({45009, 45011})

_SECRET_QUERY = re.compile(r"((?:access_token|secret|code|ticket)=)[^&\s'\"]+")

ErrorHook = Callable[[str, "int | None"], None]
"""Called with (api path, errcode) for every failed call; errcode None for transport errors."""


class WeChatTransportError(WeChatClientException):
    """No WeChat answer at all: timeout, refused or dropped connection, or a non-2xx HTTP status."""


def _redact(text: str) -> str:
    return _SECRET_QUERY.sub(r"\1***", text)


class XinweiWeChatClient(WeChatClient):
    """wechatpy's client, talking to `api_base` with a timeout on every call and tokens from a shared store.

    On 40001/42001/40014 it refreshes the token once (through the store, so only one worker
    fetches) and retries the call once; a second failure raises.
    """

    def __init__(self, appid: str, secret: str, *, api_base: str, token_store: TokenStore,
                 timeout: float = 5.0, cache_seconds: float = 60.0,
                 on_error: ErrorHook | None = None) -> None:
        super().__init__(appid, secret, timeout=timeout, auto_retry=False)
        self.api_base = api_base.rstrip("/")
        # Shadows the class constant that wechatpy's _request reads.
        self.API_BASE_URL = f"{self.api_base}/cgi-bin/"
        self.token_store = token_store
        self.tokens = LocalCache(token_store, max_age=cache_seconds)
        self.on_error = on_error

    # -- names in the shared store ------------------------------------------------
    @property
    def access_token_name(self) -> str:
        return f"access_token:{self.appid}"

    @property
    def jsapi_ticket_name(self) -> str:
        return f"jsapi_ticket:{self.appid}"

    # -- tokens -------------------------------------------------------------------
    @property
    def access_token(self) -> str:
        return self.tokens.get(self.access_token_name, self._fetch_access_token_from_wechat)

    def fetch_access_token(self) -> dict[str, Any]:
        """Force a new access_token through the store (wechatpy's public name for it)."""
        current = self.token_store.get(self.access_token_name)
        value = self.tokens.refresh(self.access_token_name, self._fetch_access_token_from_wechat,
                                    stale=current.value if current else "")
        return {"access_token": value}

    def _fetch_access_token_from_wechat(self) -> tuple[str, int]:
        result = self._send_json("get", f"{self.api_base}/cgi-bin/token", "/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret,
        })
        self._raise_for_errcode(result, "/cgi-bin/token")
        return result["access_token"], int(result.get("expires_in", 7200))

    def jsapi_ticket(self) -> str:
        """The JS-SDK ticket, shared like the access_token."""
        for attempt in (1, 2):
            # The access_token is settled before the ticket's refresh lock is taken: on
            # SQLite that lock is the database write lock, and a token refresh inside it
            # would wait for itself.
            token = self.access_token
            try:
                return self.tokens.get(self.jsapi_ticket_name,
                                       lambda token=token: self._fetch_jsapi_ticket_from_wechat(token))
            except WeChatClientException as exc:
                if attempt == 2 or exc.errcode not in TOKEN_ERRCODES:
                    raise
            self.tokens.refresh(self.access_token_name, self._fetch_access_token_from_wechat, stale=token)
        raise AssertionError("unreachable")

    def _fetch_jsapi_ticket_from_wechat(self, access_token: str) -> tuple[str, int]:
        result = self.get("ticket/getticket", params={"type": "jsapi", "access_token": access_token})
        return result["ticket"], int(result.get("expires_in", 7200))

    # -- HTTP -----------------------------------------------------------------------
    def _resolve_url(self, url_or_endpoint: str, api_base_url: str | None) -> str:
        if not url_or_endpoint.startswith(("http://", "https://")):
            url_or_endpoint = f"{api_base_url or self.API_BASE_URL}{url_or_endpoint}"
        # Some wechatpy APIs carry the real host in their own API_BASE_URL.
        if url_or_endpoint.startswith(REAL_API_BASE + "/"):
            url_or_endpoint = self.api_base + url_or_endpoint[len(REAL_API_BASE):]
        return url_or_endpoint

    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        url = self._resolve_url(url_or_endpoint, kwargs.pop("api_base_url", None))
        path = url[len(self.api_base):] if url.startswith(self.api_base) else url
        params = kwargs.get("params")
        if params is None:
            params = kwargs["params"] = {}
        manage_token = isinstance(params, dict) and "access_token" not in params
        if isinstance(kwargs.get("data", ""), dict):
            kwargs["data"] = json.dumps(kwargs["data"], ensure_ascii=False).encode("utf-8")
        if kwargs.get("files"):
            # Read uploads once, so a retry after a token refresh sends the same bytes.
            kwargs["files"] = {name: _materialise(f) for name, f in kwargs["files"].items()}
        result_processor = kwargs.pop("result_processor", None)

        token = None
        if manage_token:
            token = params["access_token"] = self.access_token
        result = self._send_json(method, url, path, **kwargs)
        errcode = _errcode(result)
        if manage_token and errcode in TOKEN_ERRCODES:
            logger.info("WeChat rejected the access_token on %s (errcode=%s); refreshing once",
                        path, errcode)
            params["access_token"] = self.tokens.refresh(
                self.access_token_name, self._fetch_access_token_from_wechat, stale=token or "")
            result = self._send_json(method, url, path, **kwargs)
        self._raise_for_errcode(result, path)
        return result_processor(result) if result_processor else result

    def _send_json(self, method: str, url: str, path: str, **kwargs: Any) -> Any:
        """One HTTP exchange with the timeout; the decoded JSON (or the response if not JSON)."""
        kwargs["timeout"] = kwargs.get("timeout") or self.timeout
        try:
            res = self._http.request(method=method, url=url, **kwargs)
            res.raise_for_status()
        except requests.Timeout as exc:
            raise self._transport_error(path, f"timed out after {kwargs['timeout']} s", exc) from None
        except requests.ConnectionError as exc:
            raise self._transport_error(path, "connection failed or dropped", exc) from None
        except requests.RequestException as exc:
            raise self._transport_error(path, "HTTP error", exc) from None
        return self._decode_result(res)

    def _transport_error(self, path: str, what: str, exc: requests.RequestException) -> WeChatTransportError:
        # Exception texts from urllib3 can contain the full URL, query string and all.
        errmsg = _redact(f"WeChat {path}: {what} ({type(exc).__name__}: {exc})")
        logger.warning("WeChat API %s failed: errcode=None %s", path, what)
        self._report(path, None)
        response = getattr(exc, "response", None)
        return WeChatTransportError(None, errmsg, client=self, request=getattr(exc, "request", None),
                                    response=response)

    def _raise_for_errcode(self, result: Any, path: str) -> None:
        errcode = _errcode(result)
        if not errcode:
            return
        errmsg = result.get("errmsg", str(errcode))
        # One line per failure with the errcode, for log-based metrics.
        logger.warning("WeChat API %s failed: errcode=%s errmsg=%s", path, errcode, errmsg)
        self._report(path, errcode)
        cls = APILimitedException if errcode in API_LIMITED_ERRCODES else WeChatClientException
        raise cls(errcode, errmsg, client=self)

    def _report(self, path: str, errcode: int | None) -> None:
        if self.on_error is None:
            return
        try:
            self.on_error(path, errcode)
        except Exception:  # a metrics bug must not turn into an API failure
            logger.exception("on_error hook failed")

    def _handle_result(self, res: Any, method: Any = None, url: Any = None,
                       result_processor: Any = None, **kwargs: Any) -> Any:
        # wechatpy's version retries without bound; all of our calls go through _request.
        result = res if isinstance(res, dict) else self._decode_result(res)
        self._raise_for_errcode(result, str(url))
        return result_processor(result) if result_processor else result


def _errcode(result: Any) -> int:
    if not isinstance(result, dict):
        return 0
    if "base_resp" in result:
        result.update(result.pop("base_resp"))
    try:
        return int(result.get("errcode") or 0)
    except (TypeError, ValueError):
        return -1


def _materialise(upload: Any) -> Any:
    if hasattr(upload, "read"):
        name = os.path.basename(str(getattr(upload, "name", "media")))
        return (name, upload.read())
    return upload


def make_wechat_client(config: Mapping[str, Any], token_store: TokenStore, *,
                       on_error: ErrorHook | None = None) -> XinweiWeChatClient:
    """The client for the configured official account."""
    return XinweiWeChatClient(
        config["WECHAT_APP_ID"],
        config["WECHAT_APP_SECRET"],
        api_base=config["WECHAT_API_BASE"],
        token_store=token_store,
        timeout=float(config["WECHAT_HTTP_TIMEOUT"]),
        on_error=on_error,
    )

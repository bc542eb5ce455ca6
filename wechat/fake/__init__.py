"""A fake WeChat server (api.weixin.qq.com + open.weixin.qq.com) for dev and tests.

Run it alone with ``python -m wechat.fake --port 8701`` and point WECHAT_API_BASE and
WECHAT_OPEN_BASE at it. OAuth picks the "logged-in" user from the cookie
``fake_wechat_openid`` or the query parameter ``fake_openid`` on /connect/oauth2/authorize
(without either, it shows a small form asking for an openid). Control endpoints (JSON)
live under /_fake/: requests, reset, fail, users, tokens/expire, clock, state.

It also plays WeChat Pay (api.mch.weixin.qq.com, API v3; point WECHAT_PAY_API_BASE at it):
JSAPI orders, query, close and refunds, signed with the test keys in paykeys.py; a cashier page
(/_fake/pay/cashier) stands in for WeixinJSBridge, and /_fake/pay/pay and /_fake/pay/settings
send signed, encrypted notifications, with duplicates and delays on request.
"""
from wechat.fake.app import OPENID_COOKIE, OPENID_PARAM, create_fake_wechat
from wechat.fake.server import FakeWeChatServer
from wechat.fake.state import FakeState

__all__ = ["OPENID_COOKIE", "OPENID_PARAM", "FakeState", "FakeWeChatServer", "create_fake_wechat"]

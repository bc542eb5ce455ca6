"""A fake WeChat server (api.weixin.qq.com + open.weixin.qq.com) for dev and tests.

Run it alone with ``python -m wechat.fake --port 8701`` and point WECHAT_API_BASE and
WECHAT_OPEN_BASE at it. OAuth picks the "logged-in" user from the cookie
``fake_wechat_openid`` or the query parameter ``fake_openid`` on /connect/oauth2/authorize
(without either, it shows a small form asking for an openid). Control endpoints (JSON)
live under /_fake/: requests, reset, fail, users, tokens/expire, clock, state.
"""
from wechat.fake.app import OPENID_COOKIE, OPENID_PARAM, create_fake_wechat
from wechat.fake.server import FakeWeChatServer
from wechat.fake.state import FakeState

__all__ = ["OPENID_COOKIE", "OPENID_PARAM", "FakeState", "FakeWeChatServer", "create_fake_wechat"]

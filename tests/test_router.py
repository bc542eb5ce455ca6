"""The router registry: specific before general, fallback last, wiring mistakes fail early."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from handlers.messages import Inbound, TextReply
from wechat.router import Router
from wechat.routes import build_router


def inbound(msg_type: str, event: str | None = None, key: str | None = None) -> Inbound:
    return Inbound("o", "gh", datetime.now(timezone.utc), msg_type, event, key)


def named(name: str):  # type: ignore[no-untyped-def]
    return lambda session, _inbound: TextReply(name)


def test_resolution_order() -> None:
    router = Router()
    router.on_message("text", named("text"))
    router.on_event("click", named("any click"))
    router.on_click("FAQ", named("faq"))
    router.fallback(named("fallback"))
    assert router.dispatch(None, inbound("text")) == TextReply("text")  # type: ignore[arg-type]
    assert router.dispatch(None, inbound("event", "click", "FAQ")) == TextReply("faq")  # type: ignore[arg-type]
    assert router.dispatch(None, inbound("event", "click", "OTHER")) == TextReply("any click")  # type: ignore[arg-type]
    assert router.dispatch(None, inbound("image")) == TextReply("fallback")  # type: ignore[arg-type]
    assert router.dispatch(None, inbound("event", "scan")) == TextReply("fallback")  # type: ignore[arg-type]


def test_no_handler_means_no_reply() -> None:
    assert Router().dispatch(None, inbound("text")) is None  # type: ignore[arg-type]


def test_registering_a_key_twice_fails() -> None:
    router = Router()
    router.on_click("FAQ", named("a"))
    with pytest.raises(ValueError, match="FAQ"):
        router.on_click("FAQ", named("b"))


def test_the_product_router_builds() -> None:
    router = build_router()
    assert {"TRAINING", "MY_CERTIFICATE", "FAQ"} <= router.click_keys
